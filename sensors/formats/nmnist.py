"""N-MNIST / N-Caltech101 ``.bin`` files (Orchard et al. 2015): no header, 5-byte records
``x, y, p << 7 | t[22:16], t[15:8], t[7:0]`` (t in µs, 23 bits, unwrapped if it ever rolls over).

There is no header, so no geometry: the default is N-MNIST's 34×34; N-Caltech101 samples (up to 240×180) need
``sensor_size`` (events outside the size are an error that says so).
"""

from __future__ import annotations

import numpy as np

from runtime.events import DVS_EVENT

from .base import Reader

__all__ = ["NmnistReader"]


class NmnistReader(Reader):
    format = "nmnist_bin"
    DEFAULT_SIZE = (34, 34)

    def _open(self) -> None:
        size = self.path.stat().st_size
        if size == 0:
            raise self._fail("empty file (expected 5-byte N-MNIST records)", offset=0)
        self._set_geometry(None, default_size=self.DEFAULT_SIZE)

    def _decode(self, max_events: int):
        wraps = 0
        last = -1
        with open(self.path, "rb") as f:
            index = 0
            while True:
                data = f.read(max_events * 5)
                if not data:
                    break
                n = len(data) // 5
                if len(data) % 5:
                    raise self._fail(
                        f"file truncated: {len(data) % 5} byte(s) after the last whole 5-byte record",
                        offset=(index + n) * 5,
                    )
                b = np.frombuffer(data, np.uint8, count=n * 5).reshape(n, 5).astype(np.int64)
                raw_t = ((b[:, 2] & 0x7F) << 16) | (b[:, 3] << 8) | b[:, 4]
                # a 23-bit counter: a backward step of more than half its range is a wrap
                steps = np.diff(raw_t, prepend=raw_t[0] if last < 0 else last)
                wrap_at = steps < -(1 << 22)
                n_wraps = int(np.count_nonzero(wrap_at))
                t = raw_t + ((wraps + np.cumsum(wrap_at)) << 23)
                wraps += n_wraps
                self.counts["wraps_unwrapped"] += n_wraps
                last = int(raw_t[-1])
                out = np.empty(n, DVS_EVENT)
                out["x"] = b[:, 0]
                out["y"] = b[:, 1]
                out["t"] = t
                out["p"] = (b[:, 2] >> 7) == 1
                index += n
                yield out
