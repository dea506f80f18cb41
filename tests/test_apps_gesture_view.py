"""The gesture live window's board, drawn without a window from a real gesture graph run."""

from __future__ import annotations

from apps.cmd_live import add_gesture_view
from apps.gesture.app import demo_source
from graphs.gesture import LABELS, build
from runtime.executor import run


def test_board_shows_events_attention_and_the_decision_rules_confidences():
    src = demo_source()
    g = build(src)
    board = add_gesture_view(g, "input", window=False, display_hz=1e6, mirror=False)
    assert {"view_events", "view_attention", "view_confidence"} <= set(g.nodes)
    report = run(g)
    assert report["results"]["view_events"]["view_frames"] == board.frames_drawn > 1
    assert board.frames_shown == 0 and board.window is False
    img = board.last_image
    assert img is not None and img.ndim == 3 and img.shape[2] == 3
    assert board.attention.max() > 0  # the gated input reached the heatmap
    p = board.confidences
    assert p is not None and p.shape == (len(LABELS),) and abs(p.sum() - 1) < 1e-9
    # the board's last decision is the decision sink's last decision (same rule, same settings)
    decisions = report["decisions"]
    if decisions:
        last = decisions[-1]
        label, score, t_us = board.last_decision
        assert (label, t_us) == (last["label"], last["t_us"]) and abs(score - last["score"]) < 1e-6
    else:
        assert board.last_decision is None
