"""The cost of silence: a live-paced camera looking at a static scene, emulator noise off.

A stand-in camera (the OpenCV boundary of ``sensors.frames``) delivers a static frame at 30 fps in real time, as a
webcam would. Two runs of the same length, side by side: the emulator alone into a counting sink, and the
emulator into the app graph. The difference in process CPU time is what the graph costs while nothing happens;
the emulator's own per-frame work (it still converts every frame) is reported apart. Goal: zero synaptic ops and
under 1 % of a core for the graph. A third run with the emulator's default noise on shows what noise costs.
"""

from __future__ import annotations

import time
from pathlib import Path

import cv2
import numpy as np

from runtime.executor import run as run_graph
from runtime.graph import Graph
from runtime.sources import Limited
from runtime.stages import CountSink

FPS = 30.0
SIZE = (346, 260)


class StaticCamera:
    """Looks like ``cv2.VideoCapture`` on a webcam that sees a still scene, frames paced in real time."""

    def __init__(self, _index, frame: np.ndarray | None = None):
        rng = np.random.default_rng(7)
        w, h = SIZE
        self.frame = frame if frame is not None else cv2.GaussianBlur(
            rng.integers(40, 220, (h, w), dtype=np.uint8), (0, 0), 3)
        self.next_s = time.perf_counter()

    def isOpened(self) -> bool:
        return True

    def get(self, prop) -> float:
        return FPS if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        self.next_s += 1.0 / FPS
        delay = self.next_s - time.perf_counter()
        if delay > 0:
            time.sleep(delay)
        return True, self.frame

    def release(self) -> None:
        return None


def _source(noise: bool, seconds: float):
    from sensors.emulator import DvsConfig, EmulatorSource
    from sensors.frames import FrameSource

    frames = FrameSource(0, capture_factory=StaticCamera)
    return Limited(EmulatorSource(frames, config=DvsConfig().with_noise(noise)), int(seconds * 1e6))


def _app_graph(source) -> tuple[Graph, str]:
    from runtime.errors import ClocklessError

    try:
        from graphs.gesture import build as build_gesture

        return build_gesture(source), "gesture"
    except (ModuleNotFoundError, ClocklessError):
        pass  # no gesture app or weights in this build: measure the event filters instead
    from sensors.filters import BackgroundActivityFilter, RefractoryFilter

    g = Graph("filters")
    ev = g.source("camera", source)
    ev = g.stage("refractory", RefractoryFilter(period_us=1000), ev)
    ev = g.stage("denoise", BackgroundActivityFilter(window_us=5000), ev)
    g.sink("count", CountSink(), ev)
    return g, "filters (gesture app not available)"


def _measure(graph: Graph) -> tuple[dict, float, float]:
    c0, w0 = time.process_time(), time.perf_counter()
    report = run_graph(graph)
    return report, time.process_time() - c0, time.perf_counter() - w0


def run(quick: bool = False, plots_dir: Path | None = None, *, seconds: float | None = None) -> dict:
    seconds = seconds or (2.0 if quick else 10.0)
    alone = Graph("emulator only")
    alone.sink("count", CountSink(), alone.source("camera", _source(False, seconds)))
    rep_a, cpu_a, wall_a = _measure(alone)
    graph, which = _app_graph(_source(False, seconds))
    rep_b, cpu_b, wall_b = _measure(graph)
    noisy, _ = _app_graph(_source(True, seconds))
    rep_n, cpu_n, wall_n = _measure(noisy)

    graph_cpu = cpu_b - cpu_a
    stage_nodes = {k: v for k, v in rep_b["nodes"].items() if k != "camera" and k in graph.nodes and graph.nodes[k].kind != "source"}
    frames = rep_b["input"].get("emulated_frames") or 0
    section = {
        "seconds": seconds,
        "graph": which,
        "emulator_only": {"cpu_s": round(cpu_a, 4), "wall_s": round(wall_a, 3), "frames": rep_a["input"].get("emulated_frames"),
                          "events": rep_a["input"]["events"], "frontend_macs": rep_a["ops"]["frontend_macs"]},
        "with_graph": {"cpu_s": round(cpu_b, 4), "wall_s": round(wall_b, 3), "events": rep_b["input"]["events"],
                       "synaptic_ops": rep_b["ops"]["synaptic_ops"], "gate_ops": rep_b["ops"]["gate_ops"],
                       "wakeups": {k: v["wakeups"] for k, v in stage_nodes.items()},
                       "stage_busy_s": round(sum(v["busy_s"] for v in stage_nodes.values()), 6)},
        "graph_idle_cpu_s": round(graph_cpu, 4),
        "graph_idle_core_fraction": round(max(graph_cpu, 0.0) / wall_b, 5),
        "emulator_ns_per_pixel": round(cpu_a / max(frames, 1) / (SIZE[0] * SIZE[1]) * 1e9, 2) if frames else None,
        "noise_on": {"events": rep_n["input"]["events"], "events_per_s": round(rep_n["input"]["events"] / seconds, 1),
                     "synaptic_ops": rep_n["ops"]["synaptic_ops"], "cpu_s": round(cpu_n, 4)},
        "goals": {"synaptic_ops": 0, "core_fraction_max": 0.01},
    }
    _print(section)
    return section


def _print(s: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"idle: {s['seconds']:.0f} s of a static scene at {FPS:.0f} fps, emulator noise off ({s['graph']})")
    t.add_column("run")
    for col in ("CPU s", "events", "synaptic ops", "note"):
        t.add_column(col, justify="right")
    a, b, n = s["emulator_only"], s["with_graph"], s["noise_on"]
    t.add_row("emulator → count", f"{a['cpu_s']:.3f}", f"{a['events']:,}", "0", f"{a['frames']} frames, {s['emulator_ns_per_pixel']} ns/px")
    t.add_row("emulator → app graph", f"{b['cpu_s']:.3f}", f"{b['events']:,}", f"{b['synaptic_ops']:,}",
              "wakeups " + ", ".join(f"{k} {v}" for k, v in b["wakeups"].items()))
    t.add_row("graph's own idle cost", f"{s['graph_idle_cpu_s']:.3f}", "", "",
              f"{s['graph_idle_core_fraction']:.2%} of a core (goal < 1 %)")
    t.add_row("same graph, noise on", f"{n['cpu_s']:.3f}", f"{n['events']:,}", f"{n['synaptic_ops']:,}",
              f"{n['events_per_s']:,.0f} noise ev/s")
    Console(width=200).print(t)
