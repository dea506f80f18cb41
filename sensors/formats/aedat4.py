"""iniVation AEDAT 4.0 (DV): a container of LZ4/ZSTD-compressed flatbuffer packets, one stream per kind.

Layout (iniVation's AEDAT 4.0 description): ``#!AER-DAT4.0\r\n``, an int32 size and an ``IOHeader`` flatbuffer
(compression, data-table position, and an XML description of the streams with their type identifier and
geometry), then packets ``int32 stream id, int32 size, size bytes`` up to the data table. Uncompressed and LZ4
files are decoded by our numba kernels (``kernels/aedat4.py``: LZ4 frames, flatbuffer ``EventPacket``s, one call
walks every packet of a memory-mapped window of the file); ZSTD files by the ``aedat`` package (Rust), one
packet in memory at a time. The first
``EVTS`` stream is read; frame, IMU and other packets are skipped and counted per kind in
``counts["skipped_packets"]``; trigger events are counted and returned by ``triggers()``.
"""

from __future__ import annotations

import mmap
import struct
import xml.etree.ElementTree as ET

import numpy as np

from runtime.events import DVS_EVENT

from .base import CHUNK_EVENTS, TRIGGER_EVENT, Reader
from .kernels import aedat4 as K

__all__ = ["Aedat4Reader", "parse_io_header"]

COMPRESSION = {0: "NONE", 1: "LZ4", 2: "LZ4_HIGH", 3: "ZSTD", 4: "ZSTD_HIGH"}
KINDS = {"EVTS": "events", "FRME": "frame", "IMUS": "imus", "TRIG": "triggers", "BBOX": "bounding boxes"}
_MAGIC = b"#!AER-DAT4.0\r\n"
_WINDOW = 1 << 24
_MAX_HEADER = 1 << 24


def _table_field(fb: bytes, table: int, index: int) -> int:
    """Absolute position of field ``index`` of the flatbuffer table at ``table``, or 0 when absent."""
    vtable = table - struct.unpack_from("<i", fb, table)[0]
    vsize = struct.unpack_from("<H", fb, vtable)[0]
    if 4 + 2 * index + 2 > vsize:
        return 0
    off = struct.unpack_from("<H", fb, vtable + 4 + 2 * index)[0]
    return table + off if off else 0


def parse_io_header(fb: bytes) -> tuple[int, int, str]:
    """(compression, data table position or -1, XML info) from an ``IOHeader`` flatbuffer."""
    table = struct.unpack_from("<I", fb, 0)[0]
    at = _table_field(fb, table, 0)
    compression = struct.unpack_from("<i", fb, at)[0] if at else 0
    at = _table_field(fb, table, 1)
    data_table = struct.unpack_from("<q", fb, at)[0] if at else -1
    at = _table_field(fb, table, 2)
    info = ""
    if at:
        s = at + struct.unpack_from("<I", fb, at)[0]
        n = struct.unpack_from("<I", fb, s)[0]
        info = fb[s + 4 : s + 4 + n].decode("utf-8", "replace")
    return compression, data_table, info


def parse_streams(xml: str) -> dict[int, dict]:
    """{stream id: {"type": EVTS/FRME/..., "width", "height", "compression"}} from the header's XML."""
    root = ET.fromstring(xml)
    streams = {}
    for node in root.iter("node"):
        path = node.get("path", "")
        name = node.get("name", "")
        if not name.isdigit() or not path.rstrip("/").endswith(f"outInfo/{name}"):
            continue
        attrs = {a.get("key"): (a.text or "") for a in node.findall("attr")}
        entry = {"type": attrs.get("typeIdentifier", "?"), "compression": attrs.get("compression", "")}
        for child in node.findall("node"):
            if child.get("name") == "info":
                info = {a.get("key"): (a.text or "") for a in child.findall("attr")}
                if "sizeX" in info and "sizeY" in info:
                    entry["width"], entry["height"] = int(info["sizeX"]), int(info["sizeY"])
        streams[int(name)] = entry
    return streams


class Aedat4Reader(Reader):
    format = "aedat4"
    has_triggers = True

    def _open(self) -> None:
        size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            magic = f.read(len(_MAGIC))
            if magic != _MAGIC:
                raise self._fail(f"expected the '#!AER-DAT4.0' magic line, found {magic[:14]!r}", offset=0)
            raw = f.read(4)
            if len(raw) < 4:
                raise self._fail("file truncated before the IOHeader size", offset=len(_MAGIC))
            n = struct.unpack("<i", raw)[0]
            if not 8 <= n <= min(_MAX_HEADER, size - 18):
                raise self._fail(f"IOHeader size {n} is impossible for a {size}-byte file", offset=len(_MAGIC))
            fb = f.read(n)
        try:
            compression, data_table, xml = parse_io_header(fb)
            streams = parse_streams(xml)
        except (struct.error, ET.ParseError, ValueError, IndexError, UnicodeError) as exc:
            raise self._fail(f"unreadable IOHeader: {type(exc).__name__}: {exc}", offset=18) from None
        if compression not in COMPRESSION:
            raise self._fail(f"unknown compression {compression} (expected 0-4: {COMPRESSION})", offset=18)
        event_ids = sorted(i for i, st in streams.items() if st["type"] == "EVTS")
        if not event_ids:
            kinds = sorted({st["type"] for st in streams.values()})
            raise self._fail(f"no 'EVTS' (events) stream in the file (streams: {', '.join(kinds) or 'none'})")
        self.stream_id = event_ids[0]
        trig = sorted(i for i, st in streams.items() if st["type"] == "TRIG")
        self.trigger_id = trig[0] if trig else -1
        self.streams = {i: KINDS.get(st["type"], st["type"]) for i, st in streams.items()}
        self.compression = COMPRESSION[compression]
        self.data_offset = 18 + n
        self.data_end = data_table if self.data_offset <= data_table <= size else size
        info = streams[self.stream_id]
        geometry = (info["width"], info["height"]) if "width" in info else None
        self._set_geometry(geometry, hint=" (no sizeX/sizeY in the events stream's info)")

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
        if want_triggers or self.compression.startswith("ZSTD"):
            yield from self._decode_aedat(max_events, want_triggers)
        else:
            yield from self._decode_own(max_events)

    def _decode_own(self, max_events: int):
        """Walk the packets through windows of a memory map: no copy out of the page cache, and at most one
        window (``_WINDOW`` bytes, or one packet if bigger) mapped at a time, so memory stays bounded."""
        width, height = self.spec.shape[0], self.spec.shape[1]
        chunk = min(max_events, CHUNK_EVENTS)
        lz4 = self.compression.startswith("LZ4")
        scratch = np.empty(1 << 18, np.uint8)
        skipped = np.zeros(64, np.int64)
        # detail: [status detail, last t, order/bounds problem in the current chunk, triggers]
        detail = np.array([0, np.iinfo(np.int64).min, 0, 0], np.int64)
        out = np.empty(chunk, DVS_EVENT)
        k = 0
        pos_file = self.data_offset  # file offset of the next packet
        with open(self.path, "rb") as f:
            while pos_file < self.data_end:
                base = pos_file - pos_file % mmap.ALLOCATIONGRANULARITY
                length = min(self.data_end - base, max(_WINDOW, pos_file - base + self._claimed(f, pos_file)))
                mm = mmap.mmap(f.fileno(), length, access=mmap.ACCESS_READ, offset=base)
                buf = None
                try:
                    buf = np.frombuffer(mm, np.uint8)
                    pos = pos_file - base
                    while True:
                        pos, k, status = K.walk_packets(
                            buf, pos, length, self.stream_id, self.trigger_id, lz4, scratch, out.view(np.uint8), k, skipped,
                            detail, width, height,
                        )
                        if status == K.NEED_DATA:
                            break
                        if status == K.OUT_FULL:
                            for a in range(0, k, max_events):  # a packet can be bigger than max_events
                                yield out[a : min(k, a + max_events)], not detail[2]
                            out = np.empty(max(chunk, int(detail[0])), DVS_EVENT)
                            k = 0
                            detail[2] = 0
                        elif status == K.NEED_SCRATCH:
                            scratch = np.empty(int(detail[0]) + 8 - int(detail[0]) % 8, np.uint8)
                        else:
                            what = {K.BAD_PACKET: "packet header", K.BAD_LZ4: "LZ4 frame", K.BAD_FLATBUFFER: "flatbuffer"}
                            raise self._fail(
                                f"corrupt AEDAT 4.0 packet: bad {what.get(status, status)} (expected a valid "
                                f"{self.compression} packet of stream {self.stream_id})",
                                offset=base + int(detail[0]),
                            )
                finally:
                    buf = None  # release the view before unmapping (also when an error leaves the loop)
                    mm.close()
                if base + pos == pos_file and base + length >= self.data_end:
                    # no progress with everything mapped: the last packet runs past the end of the data
                    claimed = self._claimed(f, pos_file)
                    raise self._fail(
                        f"file truncated inside a packet: it claims {claimed} bytes, {self.data_end - pos_file} are left",
                        offset=pos_file,
                    )
                pos_file = base + pos
        for a in range(0, k, max_events):
            yield out[a : min(k, a + max_events)], not detail[2]
        for sid in np.flatnonzero(skipped):
            kind = self.streams.get(int(sid), "unknown") if sid < skipped.shape[0] - 1 else "unknown"
            self._skip(kind, int(skipped[sid]))
        self.counts["triggers"] += int(detail[3])

    def _claimed(self, f, pos: int) -> int:
        """Bytes the packet at ``pos`` claims (header included), from its header; 8 if the header is cut."""
        f.seek(pos)
        head = f.read(8)
        if len(head) < 8:
            return 8
        return 8 + min(int.from_bytes(head[4:8], "little"), 1 << 31)

    def _decode_aedat(self, max_events: int, want_triggers: bool = False):
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
