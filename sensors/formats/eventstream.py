"""Event Stream ``.es`` files (Neuromorphic Systems / faery / command-line tools): ``Event Stream`` magic,
version (major 2), type byte (1 = DVS, 2 = ATIS), width and height (u16 little-endian), then a byte stream of
relative timestamps. Generic (0) and colour (4) streams carry no polarity events and are refused.

The format stores y with 0 at the bottom row; like faery we output image orientation (y = 0 at the top).
"""

from __future__ import annotations

import numpy as np

from runtime.events import DVS_EVENT

from .base import Reader, read_exact
from .kernels.es import ES_STATE_SIZE, es_decode

__all__ = ["EventStreamReader"]

_TYPES = {0: "generic", 1: "dvs", 2: "atis", 4: "color"}


class EventStreamReader(Reader):
    format = "es"

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            magic = read_exact(f, 12, self.path, "'Event Stream' magic", 0)
            if magic != b"Event Stream":
                raise self._fail(f"expected the 'Event Stream' magic, found {magic!r}", offset=0)
            major, minor, patch = read_exact(f, 3, self.path, "version", 12)
            if major != 2:
                raise self._fail(f"Event Stream version {major}.{minor}.{patch} is not supported (expected 2.x)", 12)
            kind = read_exact(f, 1, self.path, "stream type", 15)[0]
            if kind not in (1, 2):
                name = _TYPES.get(kind, "unknown")
                raise self._fail(f"stream type {kind} ({name}) holds no polarity events (expected 1 DVS or 2 ATIS)", 15)
            size = read_exact(f, 4, self.path, "width/height", 16)
        self.atis = kind == 2
        self.data_offset = 20
        width = int.from_bytes(size[:2], "little")
        height = int.from_bytes(size[2:], "little")
        if width == 0 or height == 0:
            raise self._fail(f"header gives a {width}×{height} sensor (expected both > 0)", offset=16)
        self.file_height = height
        self._set_geometry((width, height))

    def _decode(self, max_events: int):
        state = np.zeros(ES_STATE_SIZE, np.int64)
        block = max(4096, max_events * 5)
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            while True:
                raw = f.read(block)
                if not raw:
                    break
                data = np.frombuffer(raw, np.uint8)
                pos = 0
                while pos < data.shape[0]:
                    out = np.empty(max_events, DVS_EVENT)
                    pos, k = es_decode(data, pos, out, state, self.atis, self.file_height)
                    if k:
                        yield out[:k]
        if state[0] != 0:
            raise self._fail("file truncated inside an event (the last event's x/y bytes are missing)")
