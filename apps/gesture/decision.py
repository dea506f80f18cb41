"""The gesture app's early-decision sink.

The implementation lives in ``graphs.gesture_decision`` because the gesture graph (``graphs/``) ends in this sink
and ``graphs/`` may not import from ``apps/`` (see DEVELOPING.md, layering); it is re-exported here for the app
code and the CLI.
"""

from graphs.gesture_decision import (
    DecisionConfig, DecisionCore, DecisionState, GestureDecision, clip_answer, decide_counts,
)

__all__ = ["DecisionConfig", "DecisionCore", "DecisionState", "GestureDecision", "clip_answer", "decide_counts"]
