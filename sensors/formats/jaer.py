"""jAER AEDAT 2.0 (``#!AER-DAT2.0``): ``#`` text header, then big-endian (u32 address, i32 µs timestamp) pairs.

The address layout depends on the chip named in the header (``# AEChip: ...``):

* DVS128 (``ch.unizh.ini.jaer.chip.retina.DVS128``, the DVS Gesture sensor): bit 0 polarity (0 = ON), bits 1-7 x
  as jAER stores it, bits 8-14 y, bit 15 a special (sync/trigger) event. jAER's own extractor turns the stored
  x into ``127 - x``; we do the same, and like jAER y = 0 is the bottom row (``spec.y_up``; ``spec.x_mirrored``
  because the result is mirrored relative to the camera image).
* DAVIS (``DAVIS240``, ``DAVIS346``, ...): bit 31 set for APS/IMU samples (skipped and counted), bit 10 an
  external (trigger) event, bit 11 polarity (1 = ON), bits 12-21 x, bits 22-30 y (y = 0 at the bottom).

Special / external events are returned by ``triggers()``. Timestamps are unwrapped past 2³² µs (71 minutes).
"""

from __future__ import annotations

import numpy as np

from runtime.events import DVS_EVENT

from .base import TRIGGER_EVENT, Reader
from .kernels.common import unwrap_u32

__all__ = ["Aedat2Reader", "CHIPS"]

# chip name fragment (lower case) -> (layout, width, height)
CHIPS = (
    ("dvs128", ("dvs128", 128, 128)),
    ("tmpdiff128", ("dvs128", 128, 128)),
    ("davis240", ("davis", 240, 180)),
    ("davis346", ("davis", 346, 260)),
    ("davis640", ("davis", 640, 480)),
    ("davis128", ("davis", 128, 128)),
    ("davis208", ("davis", 208, 192)),
)
_RECORD = np.dtype([("a", ">u4"), ("t", ">u4")])
_MAX_HEADER = 1 << 22


class Aedat2Reader(Reader):
    format = "aedat2"
    has_triggers = True

    def _open(self) -> None:
        chip = ""
        offset = 0
        with open(self.path, "rb") as f:
            first = f.readline(4096)
            if not first.startswith(b"#!AER-DAT2"):
                raise self._fail(f"expected the '#!AER-DAT2.0' magic, found {first[:12]!r}", offset=0)
            offset = len(first)
            while True:
                peek = f.read(1)
                if peek != b"#":
                    break
                line = peek + f.readline(_MAX_HEADER)
                if not line.endswith(b"\n"):
                    raise self._fail("header line without a newline (file truncated in the header?)", offset=offset)
                offset += len(line)
                if offset > _MAX_HEADER:
                    raise self._fail(f"header longer than {_MAX_HEADER} bytes", offset=offset)
                text = line.decode("latin-1").strip()
                if text.startswith("# AEChip:"):
                    chip = text.split(":", 1)[1].strip()
                if text.startswith("#End Of ASCII Header"):
                    break
        self.data_offset = offset
        self.chip = chip
        name = chip.lower()
        found = next((v for key, v in CHIPS if key in name), None)
        if found is None:
            if self.user_sensor_size is None:
                known = ", ".join(sorted({k for k, _ in CHIPS}))
                raise self._fail(
                    f"unknown AEChip {chip!r}: cannot tell the address layout (known: {known}); pass sensor_size "
                    "to read it with the DAVIS layout (or the DVS128 layout for sizes up to 128×128)"
                )
            w, h = self.user_sensor_size
            found = ("dvs128", w, h) if w <= 128 and h <= 128 else ("davis", w, h)
        self.layout, w, h = found
        self._x_flip = w - 1
        self._set_geometry(None, camera_size=(w, h), x_mirrored=self.layout == "dvs128", y_up=True)

    def _records(self, max_events: int):
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            index = 0
            while True:
                data = f.read(max_events * 8)
                if not data:
                    return
                n = len(data) // 8
                if len(data) % 8:
                    raise self._fail(
                        f"file truncated: {len(data) % 8} byte(s) after the last whole 8-byte event",
                        offset=self.data_offset + (index + n) * 8,
                    )
                yield np.frombuffer(data, dtype=_RECORD, count=n)
                index += n

    def _decode(self, max_events: int, want_triggers: bool = False):
        state = np.array([-1, 0], dtype=np.int64)
        self._trigger_parts = []
        for rec in self._records(max_events):
            a = rec["a"].astype(np.uint32)
            t = np.empty(rec.shape[0], np.int64)
            self.counts["wraps_unwrapped"] += int(unwrap_u32(rec["t"].astype(np.uint32), t, state))
            if self.layout == "dvs128":
                special = (a & 0x8000) != 0
                keep = ~special
            else:
                sample = (a & 0x80000000) != 0
                special = ~sample & ((a & 0x400) != 0)
                keep = ~sample & ~special
                n_sample = int(np.count_nonzero(sample))
                if n_sample:
                    imu = sample & ((a & 0xC00) == 0xC00)
                    n_imu = int(np.count_nonzero(imu))
                    if n_imu:
                        self._skip("imu samples", n_imu)
                    if n_sample - n_imu:
                        self._skip("aps samples", n_sample - n_imu)
            n_special = int(np.count_nonzero(special))
            if n_special:
                self.counts["triggers"] += n_special
                if want_triggers:
                    part = np.empty(n_special, TRIGGER_EVENT)
                    part["t"] = t[special]
                    part["id"] = 0
                    part["p"] = True
                    self._trigger_parts.append(part)
            if n_special or self.layout != "dvs128":
                a = a[keep]
                t = t[keep]
            out = np.empty(a.shape[0], DVS_EVENT)
            out["t"] = t
            if self.layout == "dvs128":
                out["x"] = self._x_flip - ((a >> 1) & 0x7F).astype(np.int32)
                out["y"] = (a >> 8) & 0x7F
                out["p"] = (a & 1) == 0
            else:
                out["x"] = (a >> 12) & 0x3FF
                out["y"] = (a >> 22) & 0x1FF
                out["p"] = (a & 0x800) != 0
            yield out
