"""Bench plots (PNG, matplotlib's Agg canvas, no pyplot): latency histogram, ops per event over time, and a
timeline of input event rate against compute that shows the idle stretches at zero.

What the plots read is recorded on the real event path without touching the runtime: ``Probe`` wraps any stage and
appends, per packet it steps, (wall time the step began, how long it ran, the packet's watermark in stream time,
events in, synaptic ops and spikes that step performed, from the stage's own cumulative counters) to a
``Timeline``. Latency samples come from the executor's ``LatencyRecorder`` (``Run(...).latency.samples_ns()``).
In outline (``write_engine_plots`` is the complete, runnable version):

    tl = Timeline()
    g.stage("snn", Probe(net, tl), ev)
    r = Run(g, speed=1.0); trio.run(r.main)
    latency_histogram(r.latency.samples_ns(), "latency.png")
    ops_per_event_plot(tl.arrays(), "ops.png", dense_macs_per_bin=net.dense_macs_per_bin())
    rate_vs_compute_plot(tl.arrays(), "timeline.png")
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.packet import Packet
from runtime.spec import StreamSpec

__all__ = [
    "Timeline", "Probe", "window_series", "latency_histogram", "ops_per_event_plot", "rate_vs_compute_plot",
    "paced_run", "write_engine_plots",
]

TIMELINE_FIELDS = ("wall_ns", "busy_ns", "t_end_us", "t_first_us", "events_in", "synaptic_ops", "spikes_out")
NO_EVENT = np.iinfo(np.int64).min


class Timeline:
    """Per-packet records of one probed stage (columns ``TIMELINE_FIELDS``, int64), appended during a run."""

    def __init__(self) -> None:
        self._buf = np.zeros((1024, len(TIMELINE_FIELDS)), np.int64)
        self.n = 0

    def add(self, wall_ns: int, busy_ns: int, t_end_us: int, t_first_us: int, events_in: int, synaptic_ops: int,
            spikes_out: int) -> None:
        if self.n == self._buf.shape[0]:
            self._buf = np.concatenate([self._buf, np.zeros_like(self._buf)])
        self._buf[self.n] = (wall_ns, busy_ns, t_end_us, t_first_us, events_in, synaptic_ops, spikes_out)
        self.n += 1

    def arrays(self) -> dict[str, np.ndarray]:
        rows = self._buf[: self.n]
        return {name: rows[:, i].copy() for i, name in enumerate(TIMELINE_FIELDS)}


@dataclass
class _ProbeState:
    inner: Any
    ops: int = 0
    spikes_key: str = "spikes"


@dataclass(frozen=True, eq=False)
class Probe:
    """Wraps a stage and records one ``Timeline`` row per packet it steps; otherwise behaves exactly like it.

    The timeline is a recorder handed in by the caller and read after the run (as ``run(on_output=...)`` is a
    callback): it is the one mutable thing the frozen config refers to, and the only way to get per-packet
    figures out of a run without a hook in the runtime."""

    inner: Any
    timeline: Timeline

    @property
    def delay_us(self) -> int:
        return int(getattr(self.inner, "delay_us", 0))

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        return self.inner.out_spec(spec)

    def init(self, spec: StreamSpec) -> _ProbeState:
        return _ProbeState(self.inner.init(spec))

    def _ops(self, state: _ProbeState) -> int:
        fn = getattr(self.inner, "counters", None)
        return int(fn(state.inner).get("synaptic_ops", 0)) if fn is not None else 0

    def step(self, state: _ProbeState, packet: Packet) -> tuple[_ProbeState, list[Packet]]:
        t0 = time.perf_counter_ns()
        state.inner, outs = self.inner.step(state.inner, packet)
        busy = time.perf_counter_ns() - t0
        ops = self._ops(state)
        n = packet.events.shape[0]
        self.timeline.add(t0, busy, int(packet.t_end_us), int(packet.events["t"][0]) if n else NO_EVENT, n,
                          ops - state.ops, sum(o.events.shape[0] for o in outs))
        state.ops = ops
        return state, outs

    def finish(self, state: _ProbeState) -> list[Packet]:
        return self.inner.finish(state.inner)

    def counters(self, state: _ProbeState) -> dict[str, int]:
        fn = getattr(self.inner, "counters", None)
        return dict(fn(state.inner)) if fn is not None else {}

    def dense_macs_per_bin(self, spec: StreamSpec | None = None) -> int:
        fn = getattr(self.inner, "dense_macs_per_bin", None)
        return int(fn(spec)) if fn is not None else 0

    def result(self, state: _ProbeState) -> dict:
        fn = getattr(self.inner, "result", None)
        return dict(fn(state.inner)) if fn is not None else {}

    def close(self, state: _ProbeState) -> None:
        fn = getattr(self.inner, "close", None)
        if fn is not None and state is not None:
            fn(state.inner)


def window_series(tl: dict[str, np.ndarray], window_us: int = 10_000, *, by: str = "stream") -> dict[str, np.ndarray]:
    """Sum the timeline per window: ``by="stream"`` places each packet by its watermark (stream time, from the
    first event), ``by="wall"`` by the wall time its step began (from the first step). Returns ``t_s`` (window
    start, seconds), ``events``, ``synaptic_ops``, ``spikes``, ``busy_s`` and ``packets``; windows with no
    packet are present with zeros (that is the point: nothing ran)."""
    if window_us <= 0:
        raise ValueError(f"window_series: window_us must be > 0, got {window_us}")
    if by not in ("stream", "wall"):
        raise ValueError(f"window_series: by must be 'stream' or 'wall', got {by!r}")
    t = tl["t_end_us"]
    if t.shape[0] == 0:
        z = np.zeros(0)
        return {"t_s": z, "events": z, "synaptic_ops": z, "spikes": z, "busy_s": z, "packets": z}
    if by == "stream":
        first = np.where(tl["t_first_us"] != NO_EVENT, tl["t_first_us"], t)
        pos = t - 1 - int(first.min())  # a packet belongs to the window of its last instant (watermark - 1)
    else:
        pos = (tl["wall_ns"] - int(tl["wall_ns"].min())) // 1000
    pos = np.maximum(pos, 0)
    n_win = int(pos.max()) // window_us + 1
    w = pos // window_us

    def total(col):
        return np.bincount(w, weights=col.astype(np.float64), minlength=n_win)

    return {
        "t_s": np.arange(n_win) * window_us / 1e6,
        "events": total(tl["events_in"]),
        "synaptic_ops": total(tl["synaptic_ops"]),
        "spikes": total(tl["spikes_out"]),
        "busy_s": total(tl["busy_ns"]) / 1e9,
        "packets": np.bincount(w, minlength=n_win).astype(np.float64),
    }


def _figure(width: float = 8.0, height: float = 4.0):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def _save(fig, path: Path | str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, format="png")
    return path


def latency_histogram(samples_ns: np.ndarray, path: Path | str, *, title: str = "latency per output spike",
                      kind: str = "latency") -> Path:
    """Histogram of latency samples (log-spaced µs bins) with p50 / p99 / max marked."""
    lat_us = np.asarray(samples_ns, np.float64) / 1000.0
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    if lat_us.shape[0]:
        lo = max(float(lat_us.min()), 0.1)
        hi = max(float(lat_us.max()), lo * 10)
        bins = np.geomspace(lo, hi, 60)
        ax.hist(np.clip(lat_us, lo, None), bins=bins, color="#3673a5")
        ax.set_xscale("log")
        for q, style in ((50, "-"), (99, "--")):
            v = float(np.percentile(lat_us, q))
            ax.axvline(v, color="#c44e52", linestyle=style, label=f"p{q} {v:,.0f} µs")
        ax.axvline(float(lat_us.max()), color="#555555", linestyle=":", label=f"max {lat_us.max():,.0f} µs")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no output spikes: no latency samples", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel(f"{kind} (µs, log scale)")
    ax.set_ylabel("samples")
    ax.set_title(f"{title} (n={lat_us.shape[0]:,})")
    return _save(fig, path)


def ops_per_event_plot(tl: dict[str, np.ndarray], path: Path | str, *, dense_macs_per_bin: int = 0,
                       window_us: int = 10_000, bin_us: int = 1000, title: str = "synaptic ops per input event") -> Path:
    """Synaptic ops per input event per window (log scale); with ``dense_macs_per_bin``, the MACs per event a
    clock-driven run of the same network would spend in the same window."""
    s = window_series(tl, window_us)
    fig = _figure()
    ax = fig.add_subplot(1, 1, 1)
    ev = s["events"]
    has = ev > 0
    ax.plot(s["t_s"][has], s["synaptic_ops"][has] / ev[has], ".", color="#3673a5", markersize=4,
            label="clockless: synaptic ops / event (executed)")
    if dense_macs_per_bin:
        dense = dense_macs_per_bin * (window_us / bin_us)
        ax.plot(s["t_s"][has], dense / ev[has], "_", color="#c44e52", markersize=6,
                label=f"clock-driven 1 ms bins: MACs / event (same window)")
    silent = s["t_s"][~has]
    if silent.shape[0]:
        ax.plot(silent, np.full(silent.shape[0], 1.0), "|", color="#999999", markersize=8,
                label="no input events in the window (clockless: 0 ops)")
    ax.set_yscale("log")
    ax.set_xlabel("stream time (s)")
    ax.set_ylabel("operations per input event")
    ax.set_title(f"{title}, {window_us / 1000:.0f} ms windows")
    ax.legend(fontsize=8)
    return _save(fig, path)


def rate_vs_compute_plot(tl: dict[str, np.ndarray], path: Path | str, *, window_us: int = 10_000,
                         title: str = "input event rate vs compute") -> Path:
    """Timeline: input events/s by event time (top); synaptic ops/s and the share of each window the stage spent
    stepping, by wall-clock time of each step (bottom). Windows in which nothing arrived show zero compute."""
    s_in = window_series(tl, window_us, by="stream")
    s_cpu = window_series(tl, window_us, by="wall")
    w = window_us / 1e6
    fig = _figure(9.0, 5.0)
    ax1 = fig.add_subplot(2, 1, 1)
    ax1.step(s_in["t_s"], s_in["events"] / w, where="post", color="#3673a5")
    ax1.set_ylabel("input events/s")
    ax1.set_ylim(bottom=0)
    ax1.set_title(f"{title}, {window_us / 1000:.0f} ms windows")
    ax2 = fig.add_subplot(2, 1, 2, sharex=ax1)
    ax2.step(s_cpu["t_s"], s_cpu["synaptic_ops"] / w, where="post", color="#c44e52", label="synaptic ops/s")
    ax2.set_ylabel("synaptic ops/s")
    ax3 = ax2.twinx()
    ax3.step(s_cpu["t_s"], 100.0 * s_cpu["busy_s"] / w, where="post", color="#55a868", linestyle="--",
             label="stage busy (wall time in its steps, % of the window)")
    ax3.set_ylabel("stage busy (% of the window)")
    ax3.set_ylim(bottom=0)
    ax2.set_ylim(bottom=0)
    ax2.set_xlabel("time from start (s): input by event time, compute by wall clock")
    idle = s_cpu["packets"] == 0
    frac = float(idle.mean()) if idle.shape[0] else 0.0
    ax2.legend(handles=ax2.get_lines() + ax3.get_lines(), loc="upper right", fontsize=8,
               title=f"{frac:.0%} of windows: no packet, 0 ops, 0 busy time", title_fontsize=8)
    return _save(fig, path)


def paced_run(graph, *, speed: float | None = 1.0) -> tuple[dict, np.ndarray]:
    """Run ``graph`` with the trio executor and return (report, latency samples in ns)."""
    import trio

    from runtime.executor import Run

    r = Run(graph, speed=speed)
    trio.run(r.main)
    return r.report(), r.latency.samples_ns()


def write_engine_plots(net, plots_dir: Path | str, *, duration_us: int = 3_000_000, rate_hz: float = 100_000,
                       patch_frac: float = 0.375, prefix: str = "peers") -> dict:
    """Replay a bursty synthetic stream (bursts of ``rate_hz`` from a textured object ``patch_frac`` of the field
    wide, and silences) through ``net`` in real time and write the three PNGs into ``plots_dir``; returns their
    paths and the figures they show."""
    from runtime.graph import Graph
    from runtime.sources import ArraySource
    from runtime.spec import dvs_spec
    from runtime.stages import CountSink

    from .peers import BIN_US, bursty_stream

    h, w = net.input_shape[1], net.input_shape[2]
    patch = max(1, int(round(patch_frac * w)))
    events = bursty_stream(duration_us, rate_hz=rate_hz, size=w, patch_px=patch)
    tl = Timeline()
    g = Graph(f"{prefix}_paced")
    s = g.source("stream", ArraySource(events, dvs_spec(w, h), max_events=4096, max_span_us=BIN_US))
    s = g.stage("snn", Probe(net, tl), s)
    g.sink("out", CountSink(), s)
    report, samples = paced_run(g, speed=1.0)
    arrays = tl.arrays()
    plots_dir = Path(plots_dir)
    paths = {
        "latency_histogram": latency_histogram(
            samples, plots_dir / f"{prefix}_latency.png", kind=report["latency_us"]["kind"],
            title="latency per output spike, real-time replay, packets ≤ 1 ms"),
        "ops_per_event": ops_per_event_plot(arrays, plots_dir / f"{prefix}_ops_per_event.png",
                                            dense_macs_per_bin=net.dense_macs_per_bin()),
        "rate_vs_compute": rate_vs_compute_plot(arrays, plots_dir / f"{prefix}_timeline.png"),
    }
    series = window_series(arrays, by="wall")
    idle = series["packets"] == 0
    out = {
        "paths": {k: str(v) for k, v in paths.items()},
        "stream": f"bursty synthetic: {rate_hz / 1e3:.0f} k ev/s bursts of 150 ms from a {patch}×{patch} px object, "
                  f"250 ms silences, "
                  f"{(int(events['t'][-1]) + 1) / 1e6:.2f} s, real-time pacing",
        "latency_us": report["latency_us"],
        "idle_windows": int(idle.sum()),
        "windows": int(idle.shape[0]),
    }
    print(f"plots: {', '.join(out['paths'].values())}")
    print(f"  paced replay: latency p50 {out['latency_us']['p50']} µs, p99 {out['latency_us']['p99']} µs; "
          f"{out['idle_windows']}/{out['windows']} wall-clock 10 ms windows without a packet (0 ops, 0 busy time)")
    return out
