"""The reader contract shared by every file format, and the time rules every reader applies.

A reader decodes a file into chunks of events (``DVS_EVENT`` or ``AUDIO_EVENT``), each chunk sorted by ``t``
and never earlier than the chunk before, in bounded memory: it reads (or memory-maps) the file a window at a
time and keeps nothing else, so a 10 GB recording replays in the same memory as a 10 MB one.

* ``wraps_unwrapped`` etc. below are the time rules; ``time_low_backsteps_held`` counts time words that stepped
  back (EVT 3.0), ``order_repairs`` events moved by ``repair_order``.
* Events outside the sensor (x or y ≥ the size, or negative) are a :class:`~runtime.errors.FormatError` naming
  the event index and where the size came from; pass the right ``sensor_size`` to read such a file.
* ``skipped_packets`` also counts dropped non-polarity records by kind: jAER APS/IMU samples, AEDAT 3.1 events
  whose valid mark is 0.

Time rules (issue 3, item 2), counted in ``reader.counts``:

* ``wraps_unwrapped`` -- a timestamp counter of fixed width (32-bit µs in jAER/DAT files, 24-bit in EVT 3.0,
  34-bit in EVT 2.x) rolled over; the reader adds the period so time keeps increasing.
* ``time_low_backsteps_held`` -- the format's own time words stepped back a little (EVT 3.0 TIME_LOW does this
  on some IMX636 recordings); the reader holds time at the latest value seen, as faery and evlib do.
* ``ticks_floored`` -- events whose timestamp was not a whole µs (NAS cochlea files tick every 0.2 µs).
* ``order_repairs`` -- with ``repair_order=True``, events that went back in time and were moved; without it
  such an event is a :class:`~runtime.errors.StreamOrderError` naming its index.
* ``skipped_packets`` -- per kind, container packets that hold no polarity events (frames, IMU, ...).
* ``triggers`` -- external trigger events seen (returned separately by ``reader.triggers()``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterator

import numpy as np

from runtime.errors import FormatError, StreamOrderError
from runtime.events import AUDIO_EVENT, DVS_EVENT
from runtime.spec import StreamSpec, audio_spec, dvs_spec

from .kernels.common import check_chunk, first_out_of_bounds, repair_chunk_order

__all__ = [
    "CHUNK_EVENTS",
    "TRIGGER_EVENT",
    "Reader",
    "ORIGIN_HEADER",
    "ORIGIN_CAMERA",
    "ORIGIN_DEFAULT",
    "ORIGIN_USER",
    "ORIGIN_SIDECAR",
    "DEFAULT_MAX_EVENTS",
]

TRIGGER_EVENT = np.dtype([("t", "<i8"), ("id", "u1"), ("p", "?")])
"""External trigger edges: time (µs), channel id, edge (True = rising)."""

ORIGIN_HEADER = "header"
ORIGIN_CAMERA = "camera model in header"
ORIGIN_DEFAULT = "format default"
ORIGIN_USER = "user"
ORIGIN_SIDECAR = "sidecar json"

DEFAULT_MAX_EVENTS = 1 << 20
CHUNK_EVENTS = 1 << 15  # decoding in 32 k-event pieces is faster than in big ones (buffers stay in cache, reused)


def normalize_sensor_size(sensor_size, *, audio: bool = False) -> tuple[int, ...] | None:
    """``(W, H)`` / ``(W, H, 2)`` for cameras, ``C`` / ``(C,)`` / ``(C, 2)`` for cochleas; None stays None."""
    if sensor_size is None:
        return None
    if isinstance(sensor_size, (int, np.integer)):
        dims = (int(sensor_size),)
    else:
        dims = tuple(int(s) for s in sensor_size)
    want = 1 if audio else 2
    if len(dims) == want + 1 and dims[-1] in (1, 2):
        dims = dims[:want]
    if len(dims) != want or min(dims) < 1:
        shape = "channels" if audio else "(width, height)"
        raise ValueError(f"sensor_size: expected {shape} with positive values, got {sensor_size!r}")
    return dims


class Reader:
    """Base class of every file reader. Subclasses set ``format`` and implement ``_open`` and ``_decode``.

    ``_open()`` parses the header and must set ``self.spec`` and ``self.sensor_size_origin``.
    ``_decode(max_events)`` yields event arrays of at most ``max_events`` events each, or ``(events, verified)``
    tuples where ``verified`` says the decoding kernel already checked order and sensor bounds for that chunk.
    """

    format: str = ""
    audio: bool = False

    def __init__(self, path, *, sensor_size=None, repair_order: bool = False):
        self.path = Path(path)
        self.repair_order = bool(repair_order)
        self._user_size_arg = sensor_size
        if not getattr(type(self), "kind_from_file", False):
            normalize_sensor_size(sensor_size, audio=self.audio)  # a malformed size fails before the file is read
        self.counts: dict = self._fresh_counts()
        self.spec: StreamSpec
        self.sensor_size_origin: str
        if not self.path.is_file():
            raise FormatError(self.path, "no such file (expected an event recording)")
        self._open()

    @property
    def user_sensor_size(self) -> tuple[int, ...] | None:
        """The caller's ``sensor_size``, normalised for this stream's kind (camera or cochlea)."""
        return normalize_sensor_size(self._user_size_arg, audio=self.audio)

    # -- public API -----------------------------------------------------------------------------------------
    @property
    def sensor_size(self) -> tuple[int, ...]:
        return self.spec.shape

    def chunks(self, max_events: int = DEFAULT_MAX_EVENTS) -> Iterator[np.ndarray]:
        """Sorted event arrays of at most ``max_events`` events each (often fewer: readers decode at most
        ``CHUNK_EVENTS`` at a time, which keeps the output buffers in cache and reused)."""
        if int(max_events) < 1:
            raise ValueError(f"{self.path}: max_events must be ≥ 1, got {max_events}")
        max_events = min(int(max_events), CHUNK_EVENTS)
        self.counts = self._fresh_counts()
        state = _ChunkState()
        for item in self._decode(max_events):
            if isinstance(item, tuple):
                events, verified = item
            else:
                events, verified = item, False
            if events.shape[0] == 0:
                continue
            if not verified or (state.last_t is not None and int(events["t"][0]) < state.last_t):
                events = self._enforce(events, state)
            state.last_t = int(events["t"][-1])
            state.emitted += events.shape[0]
            yield events

    def read_all(self) -> np.ndarray:
        """Every event in one array (the concatenation of ``chunks()``)."""
        parts = list(self.chunks())
        if not parts:
            return np.empty(0, dtype=self.spec.dtype)
        if len(parts) == 1:
            return parts[0]
        return np.concatenate(parts)

    has_triggers = False

    def triggers(self) -> np.ndarray:
        """External trigger events (``TRIGGER_EVENT``) in one pass over the file; empty where the format has none.

        Does not change ``counts`` (those describe the last ``chunks()`` pass)."""
        if not self.has_triggers:
            return np.empty(0, dtype=TRIGGER_EVENT)
        saved = self.counts
        self.counts = self._fresh_counts()
        self._trigger_parts: list[np.ndarray] = []
        try:
            for _ in self._decode(DEFAULT_MAX_EVENTS, want_triggers=True):
                pass
            parts = self._trigger_parts
        finally:
            self.counts = saved
            self._trigger_parts = []
        return np.concatenate(parts) if parts else np.empty(0, dtype=TRIGGER_EVENT)

    def describe(self) -> dict:
        """Format, stream and sensor-size origin as plain data (for reports and ``clockless info``)."""
        return {
            "path": str(self.path),
            "format": self.format,
            "kind": self.spec.kind,
            "sensor_size": list(self.spec.shape),
            "sensor_size_origin": self.sensor_size_origin,
            "x_mirrored": self.spec.x_mirrored,
            "y_up": self.spec.y_up,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({str(self.path)!r}, format={self.format!r}, spec={self.spec.describe()})"

    # -- helpers for subclasses -----------------------------------------------------------------------------
    def _fresh_counts(self) -> dict:
        return {
            "wraps_unwrapped": 0,
            "time_low_backsteps_held": 0,
            "ticks_floored": 0,
            "order_repairs": 0,
            "skipped_packets": {},
            "triggers": 0,
        }

    def _set_geometry(self, header_size, *, camera_size=None, default_size=None, hint: str = "", **orient):
        """Choose the sensor size: user > header > camera model > format default; remember where it came from."""
        if self.user_sensor_size is not None:
            size, origin = self.user_sensor_size, ORIGIN_USER
        elif header_size is not None:
            size, origin = tuple(int(v) for v in header_size), ORIGIN_HEADER
        elif camera_size is not None:
            size, origin = tuple(int(v) for v in camera_size), ORIGIN_CAMERA
        elif default_size is not None:
            size, origin = tuple(int(v) for v in default_size), ORIGIN_DEFAULT
        else:
            kind = "channel count" if self.audio else "sensor size"
            raise FormatError(self.path, f"the file does not give its {kind}{hint}; pass sensor_size / --sensor-size")
        if self.audio:
            self.spec = audio_spec(size[0], format=self.format)
        else:
            self.spec = dvs_spec(size[0], size[1], format=self.format, **orient)
        self.sensor_size_origin = origin

    def _fail(self, message: str, offset: int | None = None) -> FormatError:
        return FormatError(self.path, message, offset=offset)

    def _skip(self, kind: str, n: int = 1) -> None:
        skipped = self.counts["skipped_packets"]
        skipped[kind] = skipped.get(kind, 0) + n

    # -- order and bounds rules -----------------------------------------------------------------------------
    def _enforce(self, events: np.ndarray, state: "_ChunkState") -> np.ndarray:
        t = events["t"]
        last = np.iinfo(np.int64).min if state.last_t is None else state.last_t
        w = self.spec.shape[0]
        if self.audio:
            bad, outside = check_chunk(t, events["x"], events["x"], last, w, w)
        else:
            bad, outside = check_chunk(t, events["x"], events["y"], last, w, self.spec.shape[1])
        if bad >= 0:
            if not self.repair_order:
                prev = last if bad == 0 else int(t[bad - 1])
                raise StreamOrderError(
                    f"{self.path}: event {state.emitted + bad} has t={int(t[bad])} µs after t={prev} µs "
                    f"(expected non-decreasing time; pass repair_order=True / --repair-order to sort and count)"
                )
            events = np.array(events)  # own copy: never reorder the decoder's buffer in place
            order = np.argsort(events["t"], kind="stable")
            events = events[order]
            self.counts["order_repairs"] += int(repair_chunk_order(t, events["t"], last))
            outside = 0 if outside >= 0 else -1  # indices changed with the sort: rescan below
        if outside >= 0:
            self._check_bounds(events, state.emitted)
        return events

    def _check_bounds(self, events: np.ndarray, emitted: int) -> None:
        if self.audio:
            limits = (("x", self.spec.shape[0]),)
        else:
            limits = (("x", self.spec.shape[0]), ("y", self.spec.shape[1]))
        for field, limit in limits:
            i = first_out_of_bounds(events[field], limit)
            if i >= 0:
                what = "channel" if self.audio else "sensor"
                size = "×".join(str(s) for s in self.spec.shape[: len(limits)])
                raise FormatError(
                    self.path,
                    f"event {emitted + i} has {field}={int(events[field][i])}, outside the {size} {what} "
                    f"(size from {self.sensor_size_origin}; pass the right sensor_size / --sensor-size)",
                )

    def _open(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _decode(self, max_events: int):  # pragma: no cover - abstract
        raise NotImplementedError


class _ChunkState:
    __slots__ = ("last_t", "emitted")

    def __init__(self):
        self.last_t: int | None = None
        self.emitted = 0


def event_dtype(audio: bool) -> np.dtype:
    return AUDIO_EVENT if audio else DVS_EVENT


def read_exact(f, n: int, path, what: str, offset: int) -> bytes:
    """Read ``n`` bytes or raise a FormatError saying the file is truncated at ``offset``."""
    data = f.read(n)
    if len(data) != n:
        raise FormatError(path, f"file truncated in the {what}: expected {n} bytes, found {len(data)}", offset=offset)
    return data
