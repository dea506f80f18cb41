"""Per-node counters and latency, defined once for every executor.

Latency of an output = wall time it is emitted by a sink − wall time its contributing input event was due.
Paced replay: due = start + (t − t0) / speed. As fast as possible (``speed=None``) or live: due = the wall time the
source released the packet holding t (so at full speed the figure is queueing delay, and reports say so).
Wall times come from ``time.perf_counter_ns``, never from trio's clock.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["NodeStats", "EdgeStats", "LatencyRecorder", "ReleaseLog"]


@dataclass
class EdgeStats:
    sent_packets: int = 0
    received_packets: int = 0
    high_water: int = 0
    dropped_packets: int = 0
    dropped_events: int = 0


@dataclass
class NodeStats:
    events_in: int = 0
    events_out: int = 0
    packets_in: int = 0
    packets_out: int = 0
    wakeups: int = 0
    busy_ns: int = 0
    max_step_ns: int = 0  # the longest single step: how long this node held the event loop at once
    edges_in: list[EdgeStats] = field(default_factory=list)

    @property
    def drops(self) -> int:
        return sum(e.dropped_events for e in self.edges_in)

    @property
    def queue_high_water(self) -> int:
        return max((e.high_water for e in self.edges_in), default=0)


class ReleaseLog:
    """When each source packet was released (stream watermark → wall ns), to find when an event was due."""

    def __init__(self) -> None:
        self._t_end = np.empty(1024, dtype=np.int64)
        self._ns = np.empty(1024, dtype=np.int64)
        self.n = 0

    def add(self, t_end_us: int, wall_ns: int) -> None:
        if self.n and t_end_us <= self._t_end[self.n - 1]:
            return
        if self.n == self._t_end.shape[0]:
            self._t_end = np.concatenate([self._t_end, np.empty_like(self._t_end)])
            self._ns = np.concatenate([self._ns, np.empty_like(self._ns)])
        self._t_end[self.n] = t_end_us
        self._ns[self.n] = wall_ns
        self.n += 1

    def due_ns(self, t_us: np.ndarray) -> np.ndarray:
        idx = np.searchsorted(self._t_end[: self.n], t_us, side="right")
        return self._ns[np.minimum(idx, self.n - 1)]


class LatencyRecorder:
    """Collects latency samples (ns) of sink outputs; keeps at most ``cap`` samples by regular thinning."""

    def __init__(self, cap: int = 2_000_000) -> None:
        self.cap = cap
        self.per_packet = 256
        self._chunks: list[np.ndarray] = []
        self._n = 0
        self._stride = 1
        self._phase = 0
        self.count = 0
        self.paced = False
        self.speed: float | None = None
        self.start_ns: int | None = None
        self.t0_us: int | None = None
        self.release = ReleaseLog()

    def anchor(self, t0_us: int, start_ns: int, speed: float | None) -> None:
        self.t0_us, self.start_ns, self.speed = t0_us, start_ns, speed
        self.paced = speed is not None

    def record(self, t_us: np.ndarray, now_ns: int | None = None) -> None:
        n = t_us.shape[0]
        if n == 0 or (self.start_ns is None and self.release.n == 0):
            return
        now = time.perf_counter_ns() if now_ns is None else now_ns
        if n > self.per_packet:
            # all events of one output packet leave at the same instant; an even subsample (first = oldest = the
            # packet's worst case, kept so max stays exact) describes them, and keeps big packets cheap
            self.count += n - self.per_packet
            t_us = t_us[np.linspace(0, n - 1, self.per_packet).astype(np.int64)]
        if self.paced:
            due = self.start_ns + ((t_us - self.t0_us) * (1000.0 / self.speed)).astype(np.int64)
        else:
            due = self.release.due_ns(t_us)
        lat = now - due
        self.count += lat.shape[0]
        if self._stride > 1:
            lat = lat[(self._phase + np.arange(lat.shape[0])) % self._stride == 0]
            self._phase = (self._phase + t_us.shape[0]) % self._stride
        self._chunks.append(lat)
        self._n += lat.shape[0]
        if self._n > self.cap:
            allv = np.concatenate(self._chunks)[::2]
            self._chunks = [allv]
            self._n = allv.shape[0]
            self._stride *= 2

    def samples_ns(self) -> np.ndarray:
        return np.concatenate(self._chunks) if self._chunks else np.empty(0, dtype=np.int64)

    def summary_us(self) -> dict:
        s = self.samples_ns()
        if s.shape[0] == 0:
            return {"p50": None, "p90": None, "p99": None, "max": None, "count": 0}
        q = np.percentile(s, [50, 90, 99]) / 1000.0
        return {
            "p50": round(float(q[0]), 1),
            "p90": round(float(q[1]), 1),
            "p99": round(float(q[2]), 1),
            "max": round(float(s.max()) / 1000.0, 1),
            "count": int(self.count),
        }
