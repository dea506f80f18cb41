"""Generic sources that need no sensor code: an in-memory event array, or any iterator of packets."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .packet import Packet, Packetizer
from .spec import StreamSpec

__all__ = ["ArraySource", "IterSource", "Limited", "OpenIter"]


class OpenIter:
    """An opened source backed by a Python iterator of packets."""

    def __init__(
        self,
        spec: StreamSpec,
        packets: Iterable[Packet],
        *,
        blocking: bool = False,
        info: dict | None = None,
        on_close: Callable[[], None] | None = None,
    ):
        self.spec = spec
        self.blocking = blocking
        self._it = iter(packets)
        self._info = info if info is not None else {}
        self._on_close = on_close
        self._lock = threading.Lock()
        self._busy = False  # a worker thread is inside next()
        self._close_pending = False
        self._closed = False

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        if not self.blocking:  # read in the run's own thread: close() cannot overlap a next()
            return next(self._it)
        with self._lock:
            self._busy = True
        try:
            return next(self._it)
        finally:
            with self._lock:
                self._busy = False
                pending, self._close_pending = self._close_pending, False
            if pending:
                self._close_now()

    def close(self) -> None:
        # A blocking source's next() may still run in a worker thread the run has abandoned (Ctrl-C while a
        # camera waits for its frame): a generator cannot be closed while it executes, so it closes when that
        # call returns.
        with self._lock:
            if self._busy:
                self._close_pending = True
                return
        self._close_now()

    def _close_now(self) -> None:
        if self._closed:
            return
        self._closed = True
        close = getattr(self._it, "close", None)
        if close is not None:
            close()
        if self._on_close is not None:
            self._on_close()

    def info(self) -> Mapping[str, Any]:
        return self._info


@dataclass(frozen=True)
class ArraySource:
    """Replays an in-memory sorted event array, cut into packets by count and time span."""

    events: np.ndarray
    spec: StreamSpec
    max_events: int = 4096
    max_span_us: int | None = 1000
    t_end_us: int | None = None
    name: str = "array"

    def open(self) -> OpenIter:
        packetizer = Packetizer(self.events.dtype, self.max_events, self.max_span_us, where=self.name)

        def gen():
            yield from packetizer.feed(self.events)
            yield from packetizer.flush(self.t_end_us)

        return OpenIter(self.spec, gen(), info={"source": self.name, "events": int(self.events.shape[0])})


@dataclass(frozen=True)
class IterSource:
    """Wraps a function returning packets (for tests and adapters)."""

    spec: StreamSpec
    make_packets: Callable[[], Iterable[Packet]]
    blocking: bool = False
    name: str = "iter"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def open(self) -> OpenIter:
        return OpenIter(self.spec, self.make_packets(), blocking=self.blocking, info={"source": self.name, **self.extra})


@dataclass(frozen=True)
class Limited:
    """Ends another source after ``duration_us`` of its stream time (``clockless live --duration``)."""

    source: Any
    duration_us: int

    def open(self) -> "OpenLimited":
        return OpenLimited(self.source.open(), self.duration_us)


class OpenLimited:
    def __init__(self, inner: Any, duration_us: int):
        self._inner = inner
        self.spec = inner.spec
        self.blocking = bool(getattr(inner, "blocking", False))
        self.live = bool(getattr(inner, "live", self.blocking))
        self.t_clock = getattr(inner, "t_clock", None)
        self._duration_us = int(duration_us)
        self._t0: int | None = None
        self._done = False

    def __iter__(self) -> "OpenLimited":
        return self

    def __next__(self) -> Packet:
        if self._done:
            raise StopIteration
        packet = next(self._inner)
        t = packet.events["t"]
        if self._t0 is None:
            self._t0 = int(t[0]) if t.shape[0] else packet.t_end_us
        end = self._t0 + self._duration_us
        if packet.t_end_us >= end:
            self._done = True
            keep = packet.events[t < end]
            keep.flags.writeable = False
            return Packet(keep, end)
        return packet

    def close(self) -> None:
        self._inner.close()

    def info(self) -> Mapping[str, Any]:
        fn = getattr(self._inner, "info", None)
        return {**(fn() if fn else {}), "limited_to_us": self._duration_us}

    def counters(self) -> Mapping[str, int]:
        fn = getattr(self._inner, "counters", None)
        return fn() if fn else {}
