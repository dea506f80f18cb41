"""Helpers the CLI and the bench call to build and run the gesture app.

* ``build_gesture_graph(source, weights=None, gates=True, decision=None)``: the gesture graph on any DVS source
  (file replay, emulator on a video or camera), see ``graphs.gesture``;
* ``demo_clip()`` / ``demo_source()``: a built-in clip rendered by our own scene generator and turned into events
  by our emulator (its licence is ours): three gestures one after another on a 128×128 sensor, with their true
  labels and onsets;
* ``run_network_input(...)``: run the network and decision sink through the trio executor on a clip that is
  already at the network input (what the dataset stores), for runtime-vs-training comparisons.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from graphs.gesture import INPUT_PX, GestureNet, add_core, build, load_network_file
from graphs.gesture_decision import DecisionConfig, clip_answer
from runtime.events import SPIKE_EVENT
from runtime.executor import run
from runtime.graph import Graph
from runtime.sources import ArraySource
from runtime.spec import dvs_spec, spike_spec
from sensors.emulator import DvsConfig, emulate_frames

from .render import render_clip

__all__ = [
    "DEMO_LABELS", "DemoClip", "build_gesture_graph", "demo_clip", "demo_source", "run_network_input",
    "network_input_source", "clip_answer",
]

DEMO_LABELS = ("swipe_right", "circle_cw", "zoom_in")


def build_gesture_graph(source: Any, weights: str | Path | GestureNet | None = None, gates: bool = True,
                        decision: Mapping[str, Any] | None = None) -> Graph:
    """The gesture graph on ``source`` (see ``graphs.gesture.build``)."""
    return build(source, weights=weights, gates=gates, decision=decision)


@dataclass(frozen=True)
class DemoClip:
    events: np.ndarray  # DVS_EVENT, sorted
    width: int
    height: int
    truth: tuple[tuple[str, int, int], ...]  # (label, onset_us, offset_us) per gesture
    duration_us: int


def demo_clip(labels: Sequence[str] = DEMO_LABELS, seed: int = 7, width: int = 128, height: int = 128,
              fps: float = 60.0) -> DemoClip:
    """Render ``labels`` one after another (2 s each), emulate them with the default DVS settings, concatenate."""
    parts, truth = [], []
    t0 = 0
    for i, label in enumerate(labels):
        clip = render_clip(label, seed + 1000 * i, width, height, fps=fps)
        ev = emulate_frames(clip.frames, clip.t_us, DvsConfig(seed=seed + i))
        ev["t"] += t0
        parts.append(ev)
        truth.append((label, t0 + clip.onset_us, t0 + clip.offset_us))
        t0 += int(clip.t_us[-1]) + 1
    events = np.concatenate(parts)
    return DemoClip(events, width, height, tuple(truth), t0)


def demo_source(clip: DemoClip | None = None) -> ArraySource:
    clip = clip if clip is not None else demo_clip()
    # 5 ms packets: a 60 fps camera's emulated events arrive in 17 ms bursts anyway, and 1 ms packets spent more
    # on per-packet work in the twelve nodes than on the events (measured: realtime 0.9x vs 2x)
    return ArraySource(clip.events, dvs_spec(clip.width, clip.height), t_end_us=clip.duration_us, max_span_us=5_000,
                       name=f"built-in rendered clip ({' → '.join(t[0] for t in clip.truth)})")


def network_input_source(t_us: np.ndarray, addr: np.ndarray, t_end_us: int, name: str = "clip") -> ArraySource:
    ev = np.empty(t_us.shape[0], SPIKE_EVENT)
    ev["t"] = t_us
    ev["addr"] = addr
    return ArraySource(ev, spike_spec((2, INPUT_PX, INPUT_PX)), t_end_us=int(t_end_us), name=name)


def run_network_input(net: GestureNet, t_us: np.ndarray, addr: np.ndarray, t_end_us: int, *, gates: bool = True,
                      decision: DecisionConfig | None = None) -> dict:
    """Network + decision sink (trio executor) on a clip already at the network input; returns the run report."""
    g = Graph("gesture-core")
    ev = g.source("input", network_input_source(t_us, addr, t_end_us))
    add_core(g, ev, net, gates=gates, decision=None if decision is None else decision.to_dict())
    return run(g)


def default_network() -> GestureNet:
    return load_network_file()
