"""Event-file readers: one entry point, :func:`open_reader`, for every format clockless reads.

>>> from sensors.formats import open_reader
>>> r = open_reader("../shared/data/vision/gen3_faery_evt2.raw")      # doctest: +SKIP
>>> r.format, r.spec.shape, r.sensor_size_origin                      # doctest: +SKIP
('evt2', (640, 480, 2), 'camera model in header')
>>> for chunk in r.chunks(max_events=1 << 20): ...                    # doctest: +SKIP

Every reader streams in bounded memory (a block of the file at a time), returns ``DVS_EVENT`` arrays for
cameras and ``AUDIO_EVENT`` arrays for cochleas, sorted by int64 µs time, and applies the time rules described
in :mod:`sensors.formats.base` (counted in ``reader.counts``). Bad input raises
:class:`runtime.errors.FormatError` naming the file and the byte offset or event index.
"""

from __future__ import annotations

from pathlib import Path

from .base import DEFAULT_MAX_EVENTS, TRIGGER_EVENT, Reader
from .detect import FORMATS, detect_format

__all__ = ["open_reader", "Reader", "FORMATS", "TRIGGER_EVENT", "DEFAULT_MAX_EVENTS", "detect_format", "reader_class"]


def reader_class(format: str) -> type[Reader]:
    """The reader class for a format name of :data:`FORMATS`."""
    if format in ("evt2", "evt21", "evt3", "dat"):
        from . import prophesee as m

        return {"evt2": m.Evt2Reader, "evt21": m.Evt21Reader, "evt3": m.Evt3Reader, "dat": m.DatReader}[format]
    if format == "aedat4":
        from .aedat4 import Aedat4Reader

        return Aedat4Reader
    if format == "aedat2":
        from .jaer import Aedat2Reader

        return Aedat2Reader
    if format == "aedat31":
        from .aedat31 import Aedat31Reader

        return Aedat31Reader
    if format == "es":
        from .eventstream import EventStreamReader

        return EventStreamReader
    if format in ("npy", "npz", "hdf5"):
        from . import arrays as m

        return {"npy": m.NpyReader, "npz": m.NpzReader, "hdf5": m.Hdf5Reader}[format]
    if format == "nmnist_bin":
        from .nmnist import NmnistReader

        return NmnistReader
    if format == "nas_aedat":
        from .nas import NasReader

        return NasReader
    raise ValueError(f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")


def open_reader(path, format: str | None = None, sensor_size=None, repair_order: bool = False) -> Reader:
    """Open an event recording: detect its format (header magic, then extension) unless ``format`` is given.

    ``sensor_size`` (``(W, H)`` for cameras, a channel count for cochleas) overrides what the file says;
    ``reader.sensor_size_origin`` records where the size came from. ``repair_order=True`` sorts events that go
    back in time (counted in ``reader.counts["order_repairs"]``) instead of raising StreamOrderError.
    """
    path = Path(path)
    fmt = detect_format(path, format)
    return reader_class(fmt)(path, sensor_size=sensor_size, repair_order=repair_order)
