"""iniVation AEDAT 4.0 (DV): a container of LZ4/ZSTD-compressed flatbuffer packets, one stream per kind.

Decoded with the ``aedat`` package (Rust, streaming: one packet in memory at a time). The first stream of type
``events`` is read; frame, IMU and other packets are skipped and counted per kind in
``counts["skipped_packets"]``; trigger packets are counted and returned by ``triggers()``. Geometry comes from the
stream's description in the file header.
"""

from __future__ import annotations

import numpy as np

from runtime.events import DVS_EVENT

from .base import TRIGGER_EVENT, Reader

__all__ = ["Aedat4Reader"]


class Aedat4Reader(Reader):
    format = "aedat4"
    has_triggers = True

    def _open(self) -> None:
        import aedat

        with open(self.path, "rb") as f:
            magic = f.read(14)
        if not magic.startswith(b"#!AER-DAT4.0"):
            raise self._fail(f"expected the '#!AER-DAT4.0' magic, found {magic[:12]!r}", offset=0)
        try:
            decoder = aedat.Decoder(str(self.path))
            streams = decoder.id_to_stream()
        except BaseException as exc:  # noqa: BLE001 - Rust panics are BaseExceptions
            if isinstance(exc, (KeyboardInterrupt, SystemExit)):
                raise
            raise self._fail(f"not a valid AEDAT 4.0 header: {exc}") from None
        event_ids = sorted(i for i, s in streams.items() if s.get("type") == "events")
        if not event_ids:
            kinds = sorted({s.get("type", "?") for s in streams.values()})
            raise self._fail(f"no 'events' stream in the file (streams: {', '.join(kinds) or 'none'})")
        self.stream_id = event_ids[0]
        info = streams[self.stream_id]
        size = (info["width"], info["height"]) if "width" in info and "height" in info else None
        self.streams = {int(i): s.get("type", "?") for i, s in streams.items()}
        self._set_geometry(size)

    def _packets(self):
        import aedat

        decoder = aedat.Decoder(str(self.path))
        it = iter(decoder)
        while True:
            try:
                packet = next(it)
            except StopIteration:
                return
            except BaseException as exc:  # noqa: BLE001 - Rust panics are BaseExceptions
                if isinstance(exc, (KeyboardInterrupt, SystemExit, GeneratorExit)):
                    raise
                raise self._fail(f"corrupt AEDAT 4.0 packet: {exc}") from None
            yield packet

    def _decode(self, max_events: int, want_triggers: bool = False):
        pending: list[np.ndarray] = []
        n_pending = 0
        self._trigger_parts = []
        for packet in self._packets():
            sid = packet.get("stream_id")
            if sid == self.stream_id and "events" in packet:
                ev = packet["events"]
                if ev.shape[0] == 0:
                    continue
                pending.append(ev)
                n_pending += ev.shape[0]
                if n_pending >= max_events:
                    yield from self._emit(pending, max_events)
                    n_pending = pending[0].shape[0]
                continue
            kind = self.streams.get(sid, "unknown")
            if "triggers" in packet:
                trig = packet["triggers"]
                self.counts["triggers"] += int(trig.shape[0])
                if want_triggers and trig.shape[0]:
                    part = np.empty(trig.shape[0], TRIGGER_EVENT)
                    part["t"] = trig["t"]
                    part["id"] = trig["source"] if "source" in trig.dtype.names else 0
                    part["p"] = True
                    self._trigger_parts.append(part)
            self._skip(kind)
        if n_pending:
            yield from self._emit(pending, max_events, final=True)

    def _emit(self, pending, max_events: int, final: bool = False):
        """Convert whole max_events blocks of the pending packets; keep the remainder in pending[-1]."""
        src = np.concatenate(pending) if len(pending) > 1 else pending[0]
        n = src.shape[0]
        stop = n if final else n - n % max_events
        for a in range(0, stop, max_events):
            part = src[a : min(stop, a + max_events)]
            out = np.empty(part.shape[0], DVS_EVENT)
            out["t"] = part["t"]
            out["x"] = part["x"]
            out["y"] = part["y"]
            out["p"] = part["on"]
            yield out
        pending[:] = [src[stop:]]
