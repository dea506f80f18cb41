"""Packets: the unit that moves along every edge of a graph, and the rules that make them.

Event-time rules (normative, see README "Event time"):

* ``events`` is read-only and sorted by ``t`` (non-decreasing); every event has ``t < t_end_us``.
* ``t_end_us`` is a watermark: no later packet on the same edge holds an event before it.
* An empty packet that only advances the watermark is legal (a heartbeat).
* Events with equal ``t`` are simultaneous: a source never splits a run of equal timestamps across packets.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np

from .errors import StreamOrderError
from .packet_kernels import cut_points, first_descent

__all__ = ["Packet", "make_packet", "check_packet", "Packetizer", "packetize", "concat_events"]


@dataclass(frozen=True, slots=True)
class Packet:
    events: np.ndarray  # sorted by t, read-only
    t_end_us: int  # watermark

    def __len__(self) -> int:
        return self.events.shape[0]

    @property
    def t_first_us(self) -> int | None:
        return int(self.events["t"][0]) if self.events.shape[0] else None

    @property
    def t_last_us(self) -> int | None:
        return int(self.events["t"][-1]) if self.events.shape[0] else None

    def derive(self, events: np.ndarray, delay_us: int = 0) -> "Packet":
        """A new packet with other events and this packet's watermark (plus a stage delay)."""
        if events.flags.writeable:
            events.flags.writeable = False
        return Packet(events, self.t_end_us + delay_us)


def make_packet(events: np.ndarray, t_end_us: int) -> Packet:
    """Validate ``events`` against the packet rules, freeze them, and wrap them in a Packet."""
    check_packet(events, int(t_end_us), where="make_packet")
    if events.flags.writeable:
        events = events.view()
        events.flags.writeable = False
    return Packet(events, int(t_end_us))


def check_packet(events: np.ndarray, t_end_us: int, *, where: str, t_min_us: int | None = None) -> None:
    """Raise StreamOrderError naming ``where`` if the events break the packet rules."""
    if events.dtype.names is None or "t" not in events.dtype.names:
        raise StreamOrderError(f"{where}: expected a structured event array with a 't' field, got dtype {events.dtype}")
    n = events.shape[0]
    if n == 0:
        if t_min_us is not None and t_end_us < t_min_us:
            raise StreamOrderError(f"{where}: watermark went back from {t_min_us} to {t_end_us} µs")
        return
    t = events["t"]
    i = first_descent(t)
    if i >= 0:
        raise StreamOrderError(
            f"{where}: field 't' must not decrease; event {i} has t={int(t[i])} µs after t={int(t[i - 1])} µs "
            "(sort the events, or replay with --repair-order)"
        )
    if int(t[-1]) >= t_end_us:
        raise StreamOrderError(f"{where}: watermark t_end_us={t_end_us} must exceed the last event's t={int(t[-1])}")
    if t_min_us is not None and int(t[0]) < t_min_us:
        raise StreamOrderError(
            f"{where}: event at t={int(t[0])} µs arrived after watermark {t_min_us} µs promised no event before it"
        )


def concat_events(packets: Iterable[Packet], dtype: np.dtype) -> np.ndarray:
    """All events of ``packets`` as one array (used by tests and sinks that collect streams)."""
    parts = [p.events for p in packets if p.events.shape[0]]
    if not parts:
        return np.empty(0, dtype=dtype)
    return np.concatenate(parts)


def _cut_points(t: np.ndarray, max_events: int, max_span_us: int | None) -> list[int]:
    """Greedy packet boundaries: ≤ max_events and span < max_span_us, never inside a run of equal t."""
    return cut_points(t, max_events, max_span_us).tolist()


class Packetizer:
    """Cuts a stream of sorted event chunks into packets, identical to cutting the whole stream at once.

    A chunk may end anywhere (even inside a run of equal timestamps): the last packet is held back until the
    next chunk or ``flush`` fixes its end and watermark. Packet size bounds the time a step blocks the event loop
    and the latency added by waiting for a packet to fill: at most ``max_span_us`` of stream time.
    """

    def __init__(self, dtype: np.dtype, max_events: int = 4096, max_span_us: int | None = 1000, where: str = "source"):
        if max_events < 1:
            raise ValueError(f"{where}: max_events must be ≥ 1, got {max_events}")
        if max_span_us is not None and max_span_us < 1:
            raise ValueError(f"{where}: max_span_us must be ≥ 1 µs or None, got {max_span_us}")
        self.dtype = np.dtype(dtype)
        self.max_events = max_events
        self.max_span_us = max_span_us
        self.where = where
        self._pending = np.empty(0, dtype=self.dtype)
        self._last_t: int | None = None
        self.events_seen = 0

    def feed(self, chunk: np.ndarray) -> list[Packet]:
        if chunk.shape[0] == 0:
            return []
        t = chunk["t"]
        if t.shape[0] > 1 and np.diff(t).min() < 0:
            i = int(np.argmax(np.diff(t) < 0)) + 1
            raise StreamOrderError(
                f"{self.where}: field 't' decreases at event {self.events_seen + i}: t={int(t[i])} µs after "
                f"t={int(t[i - 1])} µs (expected non-decreasing time; use --repair-order to sort and count)"
            )
        if self._last_t is not None and int(t[0]) < self._last_t:
            raise StreamOrderError(
                f"{self.where}: field 't' decreases at event {self.events_seen}: t={int(t[0])} µs after "
                f"t={self._last_t} µs (expected non-decreasing time; use --repair-order to sort and count)"
            )
        self.events_seen += chunk.shape[0]
        self._last_t = int(t[-1])
        buf = np.concatenate([self._pending, chunk]) if self._pending.shape[0] else chunk
        bt = np.ascontiguousarray(buf["t"])
        cuts = _cut_points(bt, self.max_events, self.max_span_us)
        out = []
        start = 0
        for end in cuts[:-1]:
            events = buf[start:end].copy()  # own copy: callers may reuse their chunk buffers
            events.flags.writeable = False
            out.append(Packet(events, int(bt[end])))
            start = end
        self._pending = np.array(buf[start:])
        return out

    def flush(self, t_end_us: int | None = None) -> list[Packet]:
        """Emit what is held back; ``t_end_us`` defaults to one past the last event."""
        if self._pending.shape[0] == 0:
            if t_end_us is None:
                return []
            return [Packet(_frozen_empty(self.dtype), int(t_end_us))]
        last = int(self._pending["t"][-1])
        end = last + 1 if t_end_us is None else int(t_end_us)
        if end <= last:
            raise StreamOrderError(f"{self.where}: final watermark {end} µs must exceed the last event t={last} µs")
        events = self._pending
        events.flags.writeable = False
        self._pending = np.empty(0, dtype=self.dtype)
        return [Packet(events, end)]


def _frozen_empty(dtype: np.dtype) -> np.ndarray:
    events = np.empty(0, dtype=dtype)
    events.flags.writeable = False
    return events


def packetize(
    events: np.ndarray, max_events: int = 4096, max_span_us: int | None = 1000, t_end_us: int | None = None
) -> Iterator[Packet]:
    """Cut one sorted event array into packets (see Packetizer)."""
    p = Packetizer(events.dtype, max_events, max_span_us)
    yield from p.feed(events)
    yield from p.flush(t_end_us)
