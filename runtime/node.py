"""Synchronous node runners shared by the trio executor and the reference executor.

A runner owns one stage's state and statistics and wraps every call so that an exception names its node and the
packet's time range. Nothing here blocks or touches trio.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from .errors import ClocklessError, NodeError, StreamOrderError
from .metrics import EdgeStats, NodeStats
from .packet import Packet, check_packet
from .spec import StreamSpec

__all__ = ["StageRunner", "SourceRunner", "run_chain", "finish_chain"]

_now = time.perf_counter_ns


class StageRunner:
    def __init__(self, name: str, kind: str, obj: Any, spec_in: StreamSpec, spec_out: StreamSpec, n_inputs: int):
        self.name = name
        self.kind = kind
        self.obj = obj
        self.spec_in = spec_in
        self.spec_out = spec_out
        self.stats = NodeStats(edges_in=[EdgeStats() for _ in range(n_inputs)])
        self.finished = False
        try:
            self.state = obj.init(spec_in)
        except ClocklessError:
            raise
        except Exception as exc:
            raise NodeError(name, None, None, exc) from exc

    def step(self, packet: Packet) -> list[Packet]:
        st = self.stats
        n = packet.events.shape[0]
        st.packets_in += 1
        st.events_in += n
        st.wakeups += 1
        t0 = _now()
        try:
            self.state, outs = self.obj.step(self.state, packet)
        except Exception as exc:
            t = packet.events["t"]
            a, b = (int(t[0]), int(t[-1])) if n else (packet.t_end_us, packet.t_end_us)
            raise NodeError(self.name, a, b, exc) from exc
        dt = _now() - t0
        st.busy_ns += dt
        if dt > st.max_step_ns:
            st.max_step_ns = dt
        for o in outs:
            st.packets_out += 1
            st.events_out += o.events.shape[0]
        return outs

    def finish(self) -> list[Packet]:
        if self.finished:
            return []
        self.finished = True
        t0 = _now()
        try:
            outs = self.obj.finish(self.state)
        except Exception as exc:
            raise NodeError(self.name, None, None, exc) from exc
        self.stats.busy_ns += _now() - t0
        for o in outs:
            self.stats.packets_out += 1
            self.stats.events_out += o.events.shape[0]
        return outs

    def counters(self) -> dict[str, int]:
        fn = getattr(self.obj, "counters", None)
        return dict(fn(self.state)) if fn is not None else {}

    def dense_macs_per_bin(self) -> int:
        fn = getattr(self.obj, "dense_macs_per_bin", None)
        return int(fn(self.spec_in)) if fn is not None else 0

    def result(self) -> dict:
        fn = getattr(self.obj, "result", None)
        return dict(fn(self.state)) if fn is not None else {}


class SourceRunner:
    """Checks every packet a source yields against the packet rules before it enters the graph."""

    def __init__(self, name: str, opened: Any):
        self.name = name
        self.opened = opened
        self.spec: StreamSpec = opened.spec
        self.blocking = bool(getattr(opened, "blocking", False))
        # live: timestamps are arrival times, so replay pacing does not apply (a video file may block yet be paced)
        self.live = bool(getattr(opened, "live", self.blocking))
        # "perf_counter_us" when the source stamps events with time.perf_counter_ns() // 1000 (live cameras)
        self.t_clock = getattr(opened, "t_clock", None)
        self.stats = NodeStats()
        self.last_wm: int | None = None
        self.t_first: int | None = None

    def admit(self, packet: Packet) -> Packet:
        ev = packet.events
        if ev.dtype != self.spec.dtype:
            raise StreamOrderError(
                f"source '{self.name}': packet dtype {ev.dtype} differs from the stream's {self.spec.dtype}"
            )
        check_packet(ev, packet.t_end_us, where=f"source '{self.name}'", t_min_us=self.last_wm)
        if ev.flags.writeable:
            ev = ev.view()
            ev.flags.writeable = False
            packet = Packet(ev, packet.t_end_us)
        if self.t_first is None:
            self.t_first = int(ev["t"][0]) if ev.shape[0] else None
        self.last_wm = packet.t_end_us
        st = self.stats
        st.packets_out += 1
        st.events_out += ev.shape[0]
        st.wakeups += 1
        return packet

    def next_packet(self) -> Packet | None:
        """The next packet (timed as busy work), or None at the end of the stream."""
        t0 = _now()
        try:
            packet = next(self.opened)
        except StopIteration:
            return None
        except ClocklessError:
            raise
        except Exception as exc:
            raise NodeError(self.name, self.last_wm, self.last_wm, exc) from exc
        finally:
            dt = _now() - t0
            self.stats.busy_ns += dt
            if dt > self.stats.max_step_ns:
                self.stats.max_step_ns = dt
        return packet

    def counters(self) -> dict[str, int]:
        fn = getattr(self.opened, "counters", None)
        return dict(fn()) if fn is not None else {}

    def info(self) -> dict:
        fn = getattr(self.opened, "info", None)
        return dict(fn()) if fn is not None else {}

    def close(self) -> None:
        self.opened.close()


def run_chain(chain: list[StageRunner], packet: Packet) -> list[Packet]:
    outs = [packet]
    for r in chain:
        if len(outs) == 1:
            outs = r.step(outs[0])
        else:
            nxt: list[Packet] = []
            for p in outs:
                nxt.extend(r.step(p))
            outs = nxt
    return outs


def finish_chain(chain: list[StageRunner]) -> list[Packet]:
    final: list[Packet] = []
    for i, r in enumerate(chain):
        outs = r.finish()
        for r2 in chain[i + 1:]:
            nxt: list[Packet] = []
            for p in outs:
                nxt.extend(r2.step(p))
            outs = nxt
        final.extend(outs)
    return final


def source_events_span(runners: list[SourceRunner]) -> tuple[int, int | None, int | None]:
    events = sum(r.stats.events_out for r in runners)
    firsts = [r.t_first for r in runners if r.t_first is not None]
    lasts = [r.last_wm for r in runners if r.last_wm is not None]
    return events, (min(firsts) if firsts else None), (max(lasts) if lasts else None)


def as_int_array(x) -> np.ndarray:
    return np.asarray(x, dtype=np.int64)
