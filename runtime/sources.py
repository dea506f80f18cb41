"""Generic sources that need no sensor code: an in-memory event array, or any iterator of packets."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Iterator, Mapping

import numpy as np

from .packet import Packet, Packetizer
from .spec import StreamSpec

__all__ = ["ArraySource", "IterSource", "OpenIter"]


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

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        return next(self._it)

    def close(self) -> None:
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
