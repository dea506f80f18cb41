"""iniVation AEDAT 3.1 (cAER / libcaer; the DVS128 Gesture dataset's format).

Layout (libcaer ``events/common.h`` and ``events/polarity.h``): a text header from ``#!AER-DAT3.1`` to
``#!END-HEADER``, then packets. Each packet is a 28-byte little-endian header -- eventType i16, eventSource i16,
eventSize i32, eventTSOffset i32, eventTSOverflow i32, eventCapacity i32, eventNumber i32, eventValid i32 --
followed by ``eventCapacity * eventSize`` bytes of events. Polarity events (type 1) are 8 bytes: a u32 with the
valid mark in bit 0, polarity in bit 1 (1 = ON), y in bits 2-16 and x in bits 17-31, then an i32 timestamp (µs)
whose 31 bits are extended by the packet's ``eventTSOverflow << 31``. Invalid events (valid mark 0) are dropped and
counted; other packet types (special, frame, IMU...) are skipped and counted by type. The sensor size comes from
the header's ``#Source N: NAME`` line (DVS128 128×128, DAVIS240 240×180, DAVIS346 346×260, DVXplorer 640×480) or
from ``dvsSizeX``/``dvsSizeY`` in a source description. libcaer's y = 0 is the top row.

No real AEDAT 3.1 recording ships with the project: this reader is tested on bytes built from this description.
"""

from __future__ import annotations

import re

import numpy as np

from runtime.events import DVS_EVENT

from .base import Reader

__all__ = ["Aedat31Reader", "PACKET_HEADER", "EVENT_TYPES", "SOURCE_SIZES"]

PACKET_HEADER = np.dtype(
    [
        ("type", "<i2"),
        ("source", "<i2"),
        ("size", "<i4"),
        ("ts_offset", "<i4"),
        ("ts_overflow", "<i4"),
        ("capacity", "<i4"),
        ("number", "<i4"),
        ("valid", "<i4"),
    ]
)
EVENT_TYPES = {
    0: "special",
    1: "polarity",
    2: "frame",
    3: "imu6",
    4: "imu9",
    5: "sample",
    6: "ear",
    7: "config",
    8: "point1d",
    9: "point2d",
    10: "point3d",
    11: "point4d",
    12: "spike",
    13: "matrix4x4",
}
SOURCE_SIZES = (
    ("dvs128", (128, 128)),
    ("edvs", (128, 128)),
    ("davis240", (240, 180)),
    ("davis346", (346, 260)),
    ("davis640", (640, 480)),
    ("dvxplorer", (640, 480)),
)
_POLARITY = np.dtype([("data", "<u4"), ("t", "<i4")])
_MAX_HEADER = 1 << 22
_MAX_PACKET_BYTES = 1 << 40


class Aedat31Reader(Reader):
    format = "aedat31"

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            first = f.readline(4096)
            if not first.startswith(b"#!AER-DAT3"):
                raise self._fail(f"expected the '#!AER-DAT3.1' magic, found {first[:12]!r}", offset=0)
            offset = len(first)
            lines = []
            while True:
                line = f.readline(_MAX_HEADER)
                if not line:
                    raise self._fail("file truncated in the header: no '#!END-HEADER' line", offset=offset)
                if not line.startswith(b"#"):
                    raise self._fail(f"header line does not start with '#': {line[:20]!r}", offset=offset)
                offset += len(line)
                if offset > _MAX_HEADER:
                    raise self._fail(f"header longer than {_MAX_HEADER} bytes", offset=offset)
                if line.startswith(b"#!END-HEADER"):
                    break
                lines.append(line.decode("latin-1").strip())
        self.data_offset = offset
        self.header_lines = lines
        header = "\n".join(lines)
        size = None
        m_x = re.search(r"dvsSizeX\D{0,40}?(\d+)", header)
        m_y = re.search(r"dvsSizeY\D{0,40}?(\d+)", header)
        if m_x and m_y:
            size = (int(m_x.group(1)), int(m_y.group(1)))
        camera = None
        for line in lines:
            m = re.match(r"#-?Source \d+:\s*(.+)", line)
            if m:
                name = m.group(1).lower()
                camera = next((s for key, s in SOURCE_SIZES if key in name), None)
                if camera is not None:
                    break
        self._set_geometry(size, camera_size=camera, hint=" (no '#Source' line names a known camera)")

    def _decode(self, max_events: int):
        pending: list[np.ndarray] = []
        n_pending = 0
        file_size = self.path.stat().st_size
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            offset = self.data_offset
            while True:
                raw = f.read(PACKET_HEADER.itemsize)
                if not raw:
                    break
                if len(raw) < PACKET_HEADER.itemsize:
                    raise self._fail(
                        f"file truncated in a packet header: {len(raw)} of {PACKET_HEADER.itemsize} bytes", offset
                    )
                h = np.frombuffer(raw, PACKET_HEADER)[0]
                kind, size, cap, number = int(h["type"]), int(h["size"]), int(h["capacity"]), int(h["number"])
                if size <= 0 or cap < 0 or number < 0 or number > cap or size * cap > _MAX_PACKET_BYTES:
                    raise self._fail(
                        f"packet header is invalid: eventSize={size}, eventCapacity={cap}, eventNumber={number} "
                        "(expected size > 0 and 0 ≤ number ≤ capacity)",
                        offset,
                    )
                body_offset = offset + PACKET_HEADER.itemsize
                nbytes = size * cap
                if kind != 1:
                    if kind not in EVENT_TYPES:
                        raise self._fail(f"packet has unknown eventType {kind} (expected 0-13)", offset)
                    if body_offset + nbytes > file_size:
                        raise self._fail(f"file truncated inside a {EVENT_TYPES[kind]} packet", body_offset)
                    self._skip(EVENT_TYPES[kind])
                    f.seek(nbytes, 1)
                    offset = body_offset + nbytes
                    continue
                if size != 8 or int(h["ts_offset"]) != 4:
                    raise self._fail(
                        f"polarity packet with eventSize={size}, eventTSOffset={int(h['ts_offset'])} "
                        "(expected 8 and 4)",
                        offset,
                    )
                if body_offset + nbytes > file_size:
                    raise self._fail(
                        f"file truncated inside a polarity packet: {file_size - body_offset} of {nbytes} bytes",
                        body_offset,
                    )
                overflow = np.int64(int(h["ts_overflow"])) << 31
                # read the packet a piece at a time: a packet header can claim a lot, memory stays bounded
                piece = max(1, min(max_events, 1 << 16))
                for first in range(0, number, piece):
                    count = min(piece, number - first)
                    ev = np.frombuffer(f.read(count * 8), _POLARITY, count=count)
                    out = self._polarity(ev, overflow, body_offset + first * 8)
                    if out.shape[0]:
                        pending.append(out)
                        n_pending += out.shape[0]
                    if n_pending >= max_events:
                        buf = np.concatenate(pending)
                        stop = n_pending - n_pending % max_events
                        for a in range(0, stop, max_events):
                            yield buf[a : a + max_events]
                        pending = [buf[stop:]] if stop < n_pending else []
                        n_pending -= stop
                f.seek(body_offset + nbytes)
                offset = body_offset + nbytes
        if n_pending:
            buf = np.concatenate(pending)
            for a in range(0, n_pending, max_events):
                yield buf[a : a + max_events]

    def _polarity(self, ev: np.ndarray, overflow, offset: int) -> np.ndarray:
        data = ev["data"]
        valid = (data & 1) == 1
        n_valid = int(np.count_nonzero(valid))
        if n_valid != ev.shape[0]:
            self._skip("invalid polarity events", ev.shape[0] - n_valid)
            ev = ev[valid]
            data = ev["data"]
        ts = ev["t"].astype(np.int64)
        if ts.shape[0] and ts.min() < 0:
            i = int(np.argmax(ts < 0))
            raise self._fail(f"polarity event has a negative timestamp {ts[i]}", offset + i * 8)
        out = np.empty(ev.shape[0], DVS_EVENT)
        out["t"] = ts + overflow
        out["x"] = (data >> 17) & 0x7FFF
        out["y"] = (data >> 2) & 0x7FFF
        out["p"] = (data & 2) != 0
        return out
