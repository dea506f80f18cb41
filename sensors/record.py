"""Record a stream to an event file while the graph runs (``clockless live --record FILE``).

``Record(path)`` is a pass-through stage: every packet goes on unchanged and its events are appended to ``path``
(any writable format: ``.npy``/``.npz``, ``.h5``/``.hdf5``, ``.aedat4``; see :mod:`sensors.writers`). It can also
be used as a sink (``result()`` reports the file and the count), for example on a branch of the source::

    ev = g.source("udp", UdpSource(346, 260, port=3333))
    g.sink("record", Record("session.aedat4"), ev)
    g.sink("app", GestureDecision(...), g.stage("snn", net, ev))

The file is opened in ``init`` and closed (headers and tables completed) in ``finish``. If writing fails the
file is closed before the error propagates; if the graph stops because another node failed, ``close(state)``
closes it (idempotent), and as a last resort the writer is closed when the state is garbage-collected or the
interpreter exits. Until it is closed the file is readable up to its last written chunk (npy header and AEDAT 4.0
packets are kept consistent after every write).
"""

from __future__ import annotations

import time
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from runtime.packet import Packet
from runtime.spec import StreamSpec

from .writers import EventWriter, open_writer

__all__ = ["Record", "RecordState"]


@dataclass
class RecordState:
    writer: EventWriter
    spec: StreamSpec
    packets: int = 0
    last_flush_s: float = 0.0
    finalizer: Any = field(default=None, repr=False)


@dataclass(frozen=True)
class Record:
    """Pass-through stage that appends every event to ``path`` (format from ``format`` or the extension).

    ``flush_interval_s``: at most this much wall time of written events sits in write buffers (what a crash
    could lose); 0 flushes after every packet.
    """

    path: str | Path
    format: str | None = None
    meta: Mapping[str, Any] = field(default_factory=dict)
    flush_interval_s: float = 0.5

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        return spec

    def init(self, spec: StreamSpec) -> RecordState:
        writer = open_writer(self.path, spec, self.format, meta={"recorded_by": "clockless Record", **self.meta})
        state = RecordState(writer=writer, spec=spec, last_flush_s=time.monotonic())
        state.finalizer = weakref.finalize(state, writer.close)
        return state

    def step(self, state: RecordState, packet: Packet) -> tuple[RecordState, list[Packet]]:
        if packet.events.shape[0]:
            try:
                state.writer.write(packet.events)
            except BaseException:
                self.close(state)  # leave a valid file holding everything written before the failure
                raise
            now = time.monotonic()
            if now - state.last_flush_s >= self.flush_interval_s:
                state.writer.flush()
                state.last_flush_s = now
        state.packets += 1
        return state, [packet]

    def finish(self, state: RecordState) -> list[Packet]:
        self.close(state)
        return []

    def close(self, state: RecordState) -> None:
        """Complete and close the file (idempotent)."""
        if state.finalizer is not None:
            state.finalizer()  # runs writer.close once and detaches the finalizer

    def result(self, state: RecordState) -> dict[str, Any]:
        w = state.writer
        return {
            "recorded": str(w.path),
            "format": w.format,
            "events": int(w.events_written),
            "t_first_us": w.t_first_us,
            "t_last_us": w.t_last_us,
        }
