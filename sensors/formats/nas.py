"""Spike recordings of NAS neuromorphic cochleas (pyNAVIS / jAER AEDAT without a header): 6-byte big-endian
records, a u16 address then a u32 timestamp in 0.2 µs ticks.

Address layout (pyNAVIS, ON/OFF cochleas): ``address = 2 * channel + off`` -- even addresses are ON spikes
(the positive half of the band-passed signal), odd addresses OFF; a stereo cochlea numbers the right ear's
channels after the left's. Output is ``AUDIO_EVENT`` with x = channel and p = ON. Ticks are unwrapped past 2³²
and floored to whole µs (counted in ``ticks_floored`` when a tick is not a whole µs), so t never decreases.
The file has no header: ``format="nas_aedat"`` is required, and the channel count defaults to 32 (a mono
32-channel NAS); pass ``sensor_size=64`` for 64 channels or a stereo 32-channel cochlea.
"""

from __future__ import annotations

import numpy as np

from runtime.events import AUDIO_EVENT

from .base import Reader
from .kernels.common import unwrap_u32

__all__ = ["NasReader"]

_RECORD = np.dtype([("a", ">u2"), ("t", ">u4")])
TICKS_PER_US = 5


class NasReader(Reader):
    format = "nas_aedat"
    audio = True
    DEFAULT_CHANNELS = 32

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            head = f.read(2)
        if head.startswith(b"#"):
            raise self._fail("starts with a '#' text header: a NAS recording has none (is it jAER AEDAT?)", offset=0)
        if not head:
            raise self._fail("empty file (expected 6-byte NAS records)", offset=0)
        self._set_geometry(None, default_size=(self.DEFAULT_CHANNELS,))

    def _decode(self, max_events: int):
        state = np.array([-1, 0], dtype=np.int64)
        with open(self.path, "rb") as f:
            index = 0
            while True:
                data = f.read(max_events * 6)
                if not data:
                    break
                n = len(data) // 6
                if len(data) % 6:
                    raise self._fail(
                        f"file truncated: {len(data) % 6} byte(s) after the last whole 6-byte record",
                        offset=(index + n) * 6,
                    )
                rec = np.frombuffer(data, _RECORD, count=n)
                ticks = np.empty(n, np.int64)
                self.counts["wraps_unwrapped"] += int(unwrap_u32(rec["t"].astype(np.uint32), ticks, state))
                t, rem = np.divmod(ticks, TICKS_PER_US)
                self.counts["ticks_floored"] += int(np.count_nonzero(rem))
                a = rec["a"].astype(np.int32)
                out = np.empty(n, AUDIO_EVENT)
                out["t"] = t
                out["x"] = a >> 1
                out["p"] = (a & 1) == 0
                index += n
                yield out
