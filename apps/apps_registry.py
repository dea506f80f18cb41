"""The apps a graph can end in: ``gesture``, ``vad``, or ``none`` (count what arrives).

Each app builder takes a Source and options and returns a Graph. ``args.weights``: a network file written by
``clockless train gesture|vad`` to run instead of the shipped one.
"""

from __future__ import annotations

from typing import Any

from runtime.errors import ClocklessError
from runtime.graph import Graph
from runtime.stages import CountSink

__all__ = ["APPS", "build_app_graph"]

APPS = ("gesture", "vad", "none")


def build_app_graph(app: str, source: Any, args: Any = None) -> Graph:
    if app == "none":
        g = Graph("count")
        g.sink("count", CountSink(), g.source("input", source))
        return g
    if app == "gesture":
        from graphs.gesture import build as build_gesture

        return build_gesture(source, weights=getattr(args, "weights", None), gates=not getattr(args, "no_gates", False))
    if app == "vad":
        from graphs.vad import build as build_vad

        return build_vad(source, scores_path=getattr(args, "scores", None), weights=getattr(args, "weights", None))
    raise ClocklessError(f"unknown app {app!r}; choose one of {', '.join(APPS)}")
