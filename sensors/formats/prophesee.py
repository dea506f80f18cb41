"""Prophesee recordings: EVT 2.0, EVT 2.1 and EVT 3.0 ``.raw`` files, and ``.dat`` files.

A ``.raw`` file is a text header of ``% key value`` lines (ended by ``% end`` in newer files) followed by the
camera's words, little-endian. The header names the encoding (``% evt 3.0`` or ``% format EVT3;width=...``) and,
in newer files, the geometry (``% geometry 1280x720`` or ``width=``/``height=`` in the format line). Older Gen3
files name no geometry: the size then comes from the camera model in the header (``plugin_name`` /
``sensor_generation``, see ``CAMERA_SIZES``) and failing that from ``DEFAULT_SIZE`` (1280×720, Metavision's and
faery's fallback); ``sensor_size_origin`` says which. EVT words are decoded by the numba kernels in
``kernels/evt.py``, a block of the file at a time.
"""

from __future__ import annotations

import mmap
import re

import numpy as np

from runtime.events import DVS_EVENT

from .base import CHUNK_EVENTS, TRIGGER_EVENT, Reader
from .kernels import evt as K
from .kernels.common import unwrap_u32

__all__ = ["RawHeader", "read_raw_header", "EvtReader", "Evt2Reader", "Evt21Reader", "Evt3Reader", "DatReader"]

DEFAULT_SIZE = (1280, 720)
# camera model named in the header -> sensor size, for headers without geometry (checked in order)
CAMERA_SIZES = (
    ("gen31", (640, 480)),
    ("gen3", (640, 480)),
    ("imx636", (1280, 720)),
    ("gen41", (1280, 720)),
    ("gen4", (1280, 720)),
    ("imx646", (1280, 720)),
    ("genx320", (320, 320)),
    ("imx8", (320, 320)),
)
GENERATION_SIZES = {"3.0": (640, 480), "3.1": (640, 480), "4.0": (1280, 720), "4.1": (1280, 720), "4.2": (1280, 720)}
_MAX_HEADER = 1 << 20
_HEADER_READ = 1 << 12
WINDOW_BYTES = 1 << 24
TRIGGER_BLOCK = 4096


class RawHeader:
    """The ``%`` header of a Prophesee file: its lines as a dict, and where the binary data starts."""

    def __init__(self, fields: dict[str, str], data_offset: int, path=None):
        self.fields = fields
        self.data_offset = data_offset
        self.path = path

    def _size(self, key: str, value: str) -> int:
        text = value.strip()
        if not text.isdigit() or not 0 < int(text) <= 65535:
            raise _header_error(self.path, 0, f"header field {key}={value!r}: expected a positive integer")
        return int(text)

    def encoding(self) -> str | None:
        """``"evt2"``, ``"evt21"``, ``"evt3"`` from ``% evt X`` or ``% format EVTX``; None if not named."""
        fmt = self.fields.get("format", "")
        name = fmt.split(";")[0].strip().upper() if fmt else ""
        table = {"EVT2": "evt2", "EVT21": "evt21", "EVT3": "evt3", "EVT2.0": "evt2", "EVT2.1": "evt21", "EVT3.0": "evt3"}
        if name in table:
            return table[name]
        evt = self.fields.get("evt", "").strip()
        return {"2.0": "evt2", "2.1": "evt21", "3.0": "evt3", "2": "evt2", "3": "evt3"}.get(evt)

    def format_options(self) -> dict[str, str]:
        opts = {}
        for part in self.fields.get("format", "").split(";")[1:]:
            if "=" in part:
                key, value = part.split("=", 1)
                opts[key.strip().lower()] = value.strip()
        return opts

    def geometry(self) -> tuple[int, int] | None:
        opts = self.format_options()
        if "width" in opts and "height" in opts:
            return self._size("width", opts["width"]), self._size("height", opts["height"])
        geo = self.fields.get("geometry")
        if geo:
            m = re.fullmatch(r"\s*(\d+)\s*x\s*(\d+)\s*", geo)
            if not m:
                raise _header_error(self.path, 0, f"header field geometry={geo!r}: expected WIDTHxHEIGHT")
            return self._size("width", m.group(1)), self._size("height", m.group(2))
        lower = {k.lower(): v for k, v in self.fields.items()}
        if "width" in lower and "height" in lower:
            return self._size("Width", lower["width"]), self._size("Height", lower["height"])
        return None

    def camera_size(self) -> tuple[tuple[int, int], str] | None:
        plugin = self.fields.get("plugin_name", "").lower()
        for key, size in CAMERA_SIZES:
            if key in plugin:
                return size, f"plugin_name {self.fields['plugin_name']}"
        gen = self.fields.get("sensor_generation", "").strip()
        if gen in GENERATION_SIZES:
            return GENERATION_SIZES[gen], f"sensor_generation {gen}"
        return None


def read_raw_header(path, f) -> RawHeader:
    """Parse ``% ...`` lines from the start of ``f``; stops after ``% end`` or at the first non-``%`` byte.
    Leaves ``f`` at the first data byte."""
    fields: dict[str, str] = {}
    data = f.read(_HEADER_READ)
    offset = 0
    while True:
        if offset >= len(data):
            more = f.read(_HEADER_READ)
            if not more:
                break
            data += more
        if data[offset : offset + 1] != b"%":
            break
        nl = data.find(b"\n", offset)
        while nl < 0:
            if len(data) > _MAX_HEADER:
                raise _header_error(path, offset, f"header longer than {_MAX_HEADER} bytes")
            more = f.read(_HEADER_READ)
            if not more:
                raise _header_error(path, offset, "header line without a newline (file truncated in the header?)")
            data += more
            nl = data.find(b"\n", offset)
        text = data[offset + 1 : nl].decode("latin-1").strip()
        offset = nl + 1
        if offset > _MAX_HEADER:
            raise _header_error(path, offset, f"header longer than {_MAX_HEADER} bytes")
        if text == "end":
            break
        if text:
            key, _, value = text.partition(" ")
            fields[key] = value.strip()
    f.seek(offset)
    return RawHeader(fields, offset, path)


def _header_error(path, offset, msg):
    from runtime.errors import FormatError

    return FormatError(path, msg, offset=offset)


class EvtReader(Reader):
    """Shared block loop of the EVT readers (the kernel and word size differ)."""

    word_dtype = np.dtype("<u4")
    version = ""
    has_triggers = True
    max_events_per_word = 1

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            header = read_raw_header(self.path, f)
        self.header = header
        named = header.encoding()
        if named is not None and named != self.version:
            raise self._fail(
                f"the header says {named.upper()} but the file is being read as {self.version.upper()} "
                f"(drop format= to use the header's)",
                offset=0,
            )
        camera = header.camera_size()
        self._set_geometry(
            header.geometry(),
            camera_size=None if camera is None else camera[0],
            default_size=DEFAULT_SIZE,
        )
        self.data_offset = header.data_offset
        self.swap_halves = header.format_options().get("endianness", "") == "legacy"

    def _run(self, words, start, out, trig, state, width, height):
        return K.evt2_decode(words, start, out, trig[0], trig[1], trig[2], state, width, height)

    def _decode(self, max_events: int, want_triggers: bool = False):
        """Decode the words through windows of a memory map (no copy out of the page cache; one window of at
        most ``WINDOW_BYTES`` mapped at a time, so memory stays bounded whatever the file size)."""
        width, height = self.spec.shape[0], self.spec.shape[1]
        itemsize = self.word_dtype.itemsize
        # Small chunks keep the output in cache and let the allocator reuse it: bigger chunks decode slower
        # (page faults on fresh memory), and the contract allows chunks smaller than max_events.
        chunk = min(max_events, CHUNK_EVENTS)
        cap = max(chunk, 64)  # room for one whole vector word whatever max_events is
        state = K.new_state()
        trig = (np.empty(TRIGGER_BLOCK, np.int64), np.empty(TRIGGER_BLOCK, np.uint8), np.empty(TRIGGER_BLOCK, np.bool_))
        self._trigger_parts = []
        data_bytes = self.path.stat().st_size - self.data_offset
        n_total = max(0, data_bytes) // itemsize
        word0 = 0
        with open(self.path, "rb") as f:
            while word0 < n_total:
                first = self.data_offset + word0 * itemsize
                base = first - first % mmap.ALLOCATIONGRANULARITY
                nwords = min(n_total - word0, WINDOW_BYTES // itemsize)
                mm = mmap.mmap(f.fileno(), first - base + nwords * itemsize, access=mmap.ACCESS_READ, offset=base)
                words = None
                try:
                    words = np.frombuffer(mm, self.word_dtype, count=nwords, offset=first - base)
                    pos = 0
                    out = None
                    while pos < nwords:
                        if out is None:
                            out = np.empty(cap, dtype=DVS_EVENT)
                            out_bytes = out.view(np.uint8)
                            filled = 0
                            state[K.S_DISORDER] = 0
                            state[K.S_OUTSIDE] = 0
                        pos, k, ntrig, status, bad = self._run(
                            words, pos, out_bytes[filled * DVS_EVENT.itemsize :], trig, state, width, height
                        )
                        filled += k
                        if ntrig:
                            self.counts["triggers"] += int(ntrig)
                            if want_triggers:
                                part = np.empty(ntrig, TRIGGER_EVENT)
                                part["t"] = trig[0][:ntrig]
                                part["id"] = trig[1][:ntrig]
                                part["p"] = trig[2][:ntrig]
                                self._trigger_parts.append(part)
                        if status == K.BAD_TYPE:
                            w = int(words[bad])
                            raise self._fail(
                                f"{self.version.upper()} word 0x{w:0{itemsize * 2}x} has reserved type "
                                f"0x{w >> (itemsize * 8 - 4):x} (expected one of {self.known_types}); "
                                "the file is corrupt or not this encoding",
                                offset=first + bad * itemsize,
                            )
                        if cap - filled < self.max_events_per_word or pos >= nwords:
                            if filled:
                                self.counts["wraps_unwrapped"] = int(state[K.S_WRAPS])
                                self.counts["time_low_backsteps_held"] = int(state[K.S_HELD])
                                ok = bool(state[K.S_DISORDER] == 0 and state[K.S_OUTSIDE] == 0)
                                for j in range(0, filled, chunk):
                                    yield out[j : min(filled, j + chunk)], ok
                            out = None
                finally:
                    words = None  # release the view before unmapping
                    mm.close()
                word0 += nwords
        self.counts["wraps_unwrapped"] = int(state[K.S_WRAPS])
        self.counts["time_low_backsteps_held"] = int(state[K.S_HELD])
        if data_bytes > n_total * itemsize:
            self._trailing(data_bytes - n_total * itemsize, n_total)

    def _trailing(self, nbytes: int, words_read: int) -> None:
        offset = self.data_offset + words_read * self.word_dtype.itemsize
        raise self._fail(
            f"file truncated: {nbytes} byte(s) left after the last whole {self.word_dtype.itemsize}-byte "
            f"{self.version.upper()} word",
            offset=offset,
        )


class Evt2Reader(EvtReader):
    format = "evt2"
    version = "evt2"
    word_dtype = np.dtype("<u4")
    known_types = "0x0 CD_OFF, 0x1 CD_ON, 0x8 TIME_HIGH, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED"


class Evt21Reader(EvtReader):
    format = "evt21"
    version = "evt21"
    word_dtype = np.dtype("<u8")
    max_events_per_word = 32
    known_types = "0x0 EVT_NEG, 0x1 EVT_POS, 0x8 TIME_HIGH, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED"

    def _run(self, words, start, out, trig, state, width, height):
        return K.evt21_decode(words, start, out, trig[0], trig[1], trig[2], state, width, height, self.swap_halves)


class Evt3Reader(EvtReader):
    format = "evt3"
    version = "evt3"
    word_dtype = np.dtype("<u2")
    max_events_per_word = 12
    known_types = (
        "0x0 ADDR_Y, 0x2 ADDR_X, 0x3 VECT_BASE_X, 0x4 VECT_12, 0x5 VECT_8, 0x6 TIME_LOW, 0x7 CONTINUED_4, "
        "0x8 TIME_HIGH, 0xA EXT_TRIGGER, 0xE OTHERS, 0xF CONTINUED_12"
    )

    def _run(self, words, start, out, trig, state, width, height):
        return K.evt3_decode(words, start, out, trig[0], trig[1], trig[2], state, width, height)


_DAT_EVENT = np.dtype([("ts", "<u4"), ("data", "<u4")])


class DatReader(Reader):
    """Prophesee ``.dat``: ``%`` header, a 2-byte (event type, event size) pair, then 8-byte events
    (u32 µs timestamp; u32 with x in bits 0-13, y in 14-27, polarity in 28-31). Geometry from ``% Width`` /
    ``% Height`` or ``% geometry``; without them the ATIS (Gen1) 304×240 this format was written for."""

    format = "dat"
    DEFAULT_SIZE = (304, 240)
    CD_TYPES = (0x00, 0x0C)  # Event2d (ATIS / Gen1 era), EventCD

    def _open(self) -> None:
        with open(self.path, "rb") as f:
            header = read_raw_header(self.path, f)
            pair = f.read(2)
        self.header = header
        if len(pair) < 2:
            raise self._fail("file truncated: no event type/size bytes after the header", offset=header.data_offset)
        ev_type, ev_size = pair[0], pair[1]
        if ev_size != 8:
            raise self._fail(f"event size byte is {ev_size}, expected 8 (DAT CD events)", offset=header.data_offset + 1)
        if ev_type not in self.CD_TYPES:
            raise self._fail(
                f"event type byte is 0x{ev_type:02x}, expected 0x00 or 0x0c (CD events)", offset=header.data_offset
            )
        self.data_offset = header.data_offset + 2
        self._set_geometry(header.geometry(), default_size=self.DEFAULT_SIZE)

    def _decode(self, max_events: int):
        state = np.array([-1, 0], dtype=np.int64)
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            index = 0
            while True:
                data = f.read(max_events * 8)
                if not data:
                    break
                n = len(data) // 8
                if len(data) % 8:
                    raise self._fail(
                        f"file truncated: {len(data) % 8} byte(s) after the last whole 8-byte event",
                        offset=self.data_offset + (index + n) * 8,
                    )
                raw = np.frombuffer(data, dtype=_DAT_EVENT, count=n)
                out = np.empty(n, DVS_EVENT)
                t = np.empty(n, np.int64)
                self.counts["wraps_unwrapped"] += int(unwrap_u32(raw["ts"], t, state))
                d = raw["data"]
                out["t"] = t
                out["x"] = d & 0x3FFF
                out["y"] = (d >> 14) & 0x3FFF
                out["p"] = (d >> 28) != 0
                index += n
                yield out
