"""The runtime benchmark's graph: a source, five pass-through stages, a counting sink."""

from __future__ import annotations

import numpy as np

from runtime.events import make_dvs_events
from runtime.graph import Graph
from runtime.sources import ArraySource
from runtime.spec import dvs_spec
from runtime.stages import CountSink, Identity

__all__ = ["build", "build_default"]


def build(source, n_stages: int = 5) -> Graph:
    g = Graph("passthrough")
    ev = g.source("source", source)
    for i in range(n_stages):
        ev = g.stage(f"pass{i}", Identity(), ev)
    g.sink("count", CountSink(), ev)
    return g


def build_default() -> Graph:
    rng = np.random.default_rng(0)
    n = 10_000
    events = make_dvs_events(rng.integers(0, 128, n), rng.integers(0, 128, n), np.sort(rng.integers(0, 1_000_000, n)), rng.integers(0, 2, n))
    return build(ArraySource(events, dvs_spec(128, 128), name="random 128×128"))
