"""Streaming event-file writers: ``.npy``, ``.npz``, HDF5 and AEDAT 4.0.

``open_writer(path, spec)`` returns a writer that takes sorted event chunks one at a time (``write``) and keeps
only one chunk in memory, so a live stream or a 10 GB conversion is written in bounded memory::

    with open_writer("out.aedat4", dvs_spec(346, 260)) as w:
        for chunk in chunks:
            w.write(chunk)

Layouts (what other tools read back):

* ``.npy`` — one structured array in tonic's layout: ``x i2, y i2, t i8, p bool`` for camera streams, ``t i8,
  x i2, p bool`` for audio streams, in stream order, ``t`` in µs as given (no re-basing), ``p`` = 1 for ON,
  coordinates as given (the stream's native orientation). The header's event count is rewritten after every
  chunk, so a file cut short by a crash still loads with every chunk written before it. A sidecar ``OUT.json``
  holds the sensor size, orientation, event count and first/last time, plus any ``meta`` (time-rule counts).
* ``.npz`` — the same array stored as ``events`` in a zip archive (plus ``meta``: the sidecar's JSON as a string);
  the events stream to a temporary ``.npy`` beside the target and are zipped on ``close``.
* HDF5 (``.h5``, ``.hdf5``) — group ``events`` with one chunked, resizable 1-D dataset per field (``x``, ``y``,
  ``t``, ``p``; ``t`` int64 µs, ``p`` uint8 0/1). Attributes on the group and the root: ``sensor_size``
  ``(W, H, P)``, ``width``, ``height``, ``x_mirrored``, ``y_up``, ``t_unit = "us"``, ``kind``, ``clockless_meta``
  (JSON).
* AEDAT 4.0 (``.aedat4``) — written from iniVation's format description: the ``#!AER-DAT4.0\\r\\n`` line, a
  size-prefixed ``IOHeader`` flatbuffer (file identifier ``IOHE``; compression NONE; the data-table position; the
  XML stream description with one ``EVTS`` stream 0 and its ``sizeX``/``sizeY``), then packets (int32 stream id,
  int32 byte size, a size-prefixed ``EventPacket`` flatbuffer, identifier ``EVTS``, holding a vector of 16-byte
  ``Event`` structs ``{int64 t, int16 x, int16 y, bool on}``), and on ``close`` the size-prefixed
  ``FileDataTable`` flatbuffer (identifier ``FTAB``: per packet the byte offset of its body, its header, element count and first
  and last time) whose position is then patched into the header. Packets are uncompressed (LZ4/ZSTD are
  optional in the format; not written here). Orientation flags that are set are recorded as extra
  ``clocklessXMirrored``/``clocklessYUp`` attributes in the stream's ``info`` node.

Every writer checks that chunks are sorted by ``t`` (also across chunks) and that coordinates lie inside the
sensor, and raises an error naming the file, the event index, the field, what was expected and what was found.
"""

from __future__ import annotations

import json
import os
import struct
import zipfile
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from runtime.errors import ClocklessError, StreamOrderError
from runtime.events import AUDIO_EVENT, DVS_EVENT
from runtime.spec import StreamSpec

from .filters import check_in_sensor

__all__ = [
    "WRITABLE_FORMATS",
    "EventWriter",
    "NpyWriter",
    "NpzWriter",
    "Hdf5Writer",
    "Aedat4Writer",
    "open_writer",
    "write_events",
    "writer_format_for",
    "sidecar_path",
]

# format name -> file extensions that select it
WRITABLE_FORMATS: dict[str, tuple[str, ...]] = {
    "npy": (".npy",),
    "npz": (".npz",),
    "hdf5": (".h5", ".hdf5", ".hdf"),
    "aedat4": (".aedat4",),
}


class WriterError(ClocklessError):
    """Events handed to a writer do not fit the file (wrong layout, unsorted, unwritable stream kind)."""


def writer_format_for(path: str | Path, format: str | None = None) -> str:
    """The writable format for ``path``: ``format`` when given, else from the file extension."""
    if format is not None:
        name = format.lower().lstrip(".")
        aliases = {"h5": "hdf5", "hdf": "hdf5", "aedat": "aedat4", "aedat4.0": "aedat4"}
        name = aliases.get(name, name)
        if name not in WRITABLE_FORMATS:
            raise WriterError(
                f"{path}: cannot write format '{format}'; writable formats are {', '.join(WRITABLE_FORMATS)}"
            )
        return name
    suffix = Path(path).suffix.lower()
    for name, exts in WRITABLE_FORMATS.items():
        if suffix in exts:
            return name
    known = ", ".join(e for exts in WRITABLE_FORMATS.values() for e in exts)
    raise WriterError(
        f"{path}: cannot tell the output format from the extension '{suffix or '(none)'}'; expected one of {known}, "
        "or pass --out-format"
    )


def sidecar_path(path: str | Path) -> Path:
    """``OUT.json`` beside ``OUT.npy`` / ``OUT.npz``."""
    p = Path(path)
    return p.with_suffix(".json")


def _layout(spec: StreamSpec, path) -> np.dtype:
    if spec.kind == "dvs":
        return DVS_EVENT
    if spec.kind == "audio":
        return AUDIO_EVENT
    raise WriterError(
        f"{path}: cannot write a '{spec.kind}' stream; event files hold camera ('dvs') or audio ('audio') events"
    )


class EventWriter:
    """Base class: validation, sortedness across chunks, counts, context manager. Subclasses store bytes."""

    format: str = ""

    def __init__(self, path: str | Path, spec: StreamSpec, meta: Mapping[str, Any] | None = None):
        self.path = Path(path)
        self.spec = spec
        self.dtype = _layout(spec, self.path)
        self.meta: dict[str, Any] = dict(meta or {})
        self.events_written = 0
        self.t_first_us: int | None = None
        self.t_last_us: int | None = None
        self.closed = False

    # -- public API ------------------------------------------------------------------------------------------
    def write(self, events: np.ndarray) -> None:
        """Append one chunk of events (sorted by ``t``, continuing the previous chunk)."""
        if self.closed:
            raise WriterError(f"{self.path}: write() after close()")
        chunk = self._conform(events)
        if chunk.shape[0] == 0:
            return
        try:
            self._store(chunk)
        except OSError as exc:
            raise WriterError(f"{self.path}: could not write {chunk.shape[0]} events: {exc}") from exc
        if self.t_first_us is None:
            self.t_first_us = int(chunk["t"][0])
        self.t_last_us = int(chunk["t"][-1])
        self.events_written += chunk.shape[0]

    def flush(self) -> None:
        """Push what was written to the operating system (the file is then readable up to here)."""
        if not self.closed:
            self._flush()

    def update_meta(self, **items: Any) -> None:
        """Add entries (e.g. ``counts`` from the reader's time rules) to the metadata written on close."""
        self.meta.update(items)

    def close(self) -> None:
        """Finish the file (headers, tables, sidecar). Idempotent."""
        if self.closed:
            return
        self.closed = True
        self._finish()

    def __enter__(self) -> "EventWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        self.close()
        return False

    def summary(self) -> dict[str, Any]:
        """What the sidecar / attributes record about the stream."""
        out: dict[str, Any] = {
            "format": self.format,
            "kind": self.spec.kind,
            "fields": list(self.dtype.names),
            "events": int(self.events_written),
            "t_first_us": self.t_first_us,
            "t_last_us": self.t_last_us,
            "t_unit": "us",
        }
        if self.spec.kind == "dvs":
            out["sensor_size"] = [int(s) for s in self.spec.shape]
            out["x_mirrored"] = bool(self.spec.x_mirrored)
            out["y_up"] = bool(self.spec.y_up)
        else:
            out["channels"] = int(self.spec.shape[0])
            out["sensor_size"] = [int(s) for s in self.spec.shape]
        out.update(self.meta)
        return out

    # -- shared validation ------------------------------------------------------------------------------------
    def _conform(self, events: np.ndarray) -> np.ndarray:
        names = events.dtype.names
        if names is None:
            raise WriterError(
                f"{self.path}: expected a structured event array with fields {list(self.dtype.names)}, "
                f"got dtype {events.dtype}"
            )
        missing = [f for f in self.dtype.names if f not in names]
        if missing:
            raise WriterError(
                f"{self.path}: events lack field(s) {missing}; expected fields {list(self.dtype.names)} "
                f"for a '{self.spec.kind}' stream, got {list(names)}"
            )
        if events.ndim != 1:
            raise WriterError(f"{self.path}: expected a 1-D event array, got shape {events.shape}")
        if events.dtype == self.dtype:
            chunk = events
        else:
            chunk = np.empty(events.shape[0], dtype=self.dtype)
            for f in self.dtype.names:
                chunk[f] = events[f]
        n = chunk.shape[0]
        if n == 0:
            return chunk
        t = chunk["t"]
        if n > 1:
            steps = np.diff(t)
            if steps.min() < 0:
                i = int(np.argmax(steps < 0)) + 1
                raise StreamOrderError(
                    f"{self.path}: field 't' must not decrease; event {self.events_written + i} has "
                    f"t={int(t[i])} µs after t={int(t[i - 1])} µs (writers take events sorted by time)"
                )
        if self.t_last_us is not None and int(t[0]) < self.t_last_us:
            raise StreamOrderError(
                f"{self.path}: field 't' must not decrease; event {self.events_written} has t={int(t[0])} µs "
                f"after t={self.t_last_us} µs at the end of the previous chunk (writers take events sorted by time)"
            )
        check_in_sensor(chunk, self.spec, where=str(self.path), first_index=self.events_written)
        return chunk

    # -- subclass hooks ---------------------------------------------------------------------------------------
    def _flush(self) -> None:
        f = getattr(self, "_file", None)
        if f is not None:
            f.flush()

    def _store(self, chunk: np.ndarray) -> None:  # pragma: no cover - abstract
        raise NotImplementedError

    def _finish(self) -> None:  # pragma: no cover - abstract
        raise NotImplementedError


# ------------------------------------------------------------------------------------------------------------
# .npy / .npz
# ------------------------------------------------------------------------------------------------------------

_NPY_MAGIC = b"\x93NUMPY\x01\x00"
_NPY_HEADER_BYTES = 256  # fixed, so the count can be rewritten in place; multiple of 64 as numpy requires


def _npy_header(dtype: np.dtype, count: int) -> bytes:
    descr = np.lib.format.dtype_to_descr(dtype)
    text = "{'descr': %r, 'fortran_order': False, 'shape': (%d,), }" % (descr, count)
    room = _NPY_HEADER_BYTES - len(_NPY_MAGIC) - 2
    if len(text) + 1 > room:  # cannot happen for our two layouts; guard anyway
        raise WriterError(f"npy header for dtype {dtype} does not fit in {_NPY_HEADER_BYTES} bytes")
    text = text.ljust(room - 1) + "\n"
    return _NPY_MAGIC + struct.pack("<H", room) + text.encode("latin1")


def _write_sidecar(path: Path, summary: Mapping[str, Any]) -> None:
    tmp = path.with_name(path.name + ".part")
    tmp.write_text(json.dumps(summary, indent=1, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(obj):
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.floating):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    return str(obj)


class NpyWriter(EventWriter):
    """Structured ``.npy`` in tonic's layout, written in place; sidecar ``.json`` on close."""

    format = "npy"

    def __init__(self, path, spec, meta=None, *, sidecar: bool = True):
        super().__init__(path, spec, meta)
        self.sidecar = sidecar
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise WriterError(f"{self.path}: cannot create the output file: {exc}") from exc
        self._file.write(_npy_header(self.dtype, 0))

    def _store(self, chunk):
        self._file.write(chunk.tobytes())
        # keep the file loadable after every chunk: a crash leaves every chunk written so far readable
        end = self._file.tell()
        self._file.seek(0)
        self._file.write(_npy_header(self.dtype, self.events_written + chunk.shape[0]))
        self._file.seek(end)

    def _finish(self):
        self._file.seek(0)
        self._file.write(_npy_header(self.dtype, self.events_written))
        self._file.close()
        if self.sidecar:
            _write_sidecar(sidecar_path(self.path), self.summary())


class NpzWriter(EventWriter):
    """``events`` (and ``meta`` JSON) in a ``.npz`` archive; streams through a temporary ``.npy`` first."""

    format = "npz"

    def __init__(self, path, spec, meta=None, *, sidecar: bool = True, compress: bool = False):
        super().__init__(path, spec, meta)
        self.sidecar = sidecar
        self.compress = compress
        self._tmp_path = self.path.with_name(self.path.name + ".events.npy.part")
        self._inner = NpyWriter(self._tmp_path, spec, sidecar=False)

    def _store(self, chunk):
        self._inner.write(chunk)

    def _flush(self):
        self._inner.flush()

    def _finish(self):
        self._inner.close()
        summary = self.summary()
        mode = zipfile.ZIP_DEFLATED if self.compress else zipfile.ZIP_STORED
        part = self.path.with_name(self.path.name + ".part")
        try:
            with zipfile.ZipFile(part, "w", compression=mode, allowZip64=True) as zf:
                with zf.open("events.npy", "w", force_zip64=True) as dst, open(self._tmp_path, "rb") as src:
                    while True:
                        block = src.read(1 << 20)
                        if not block:
                            break
                        dst.write(block)
                meta = np.array(json.dumps(summary, default=_json_default))
                with zf.open("meta.npy", "w") as dst:
                    np.lib.format.write_array(dst, meta, allow_pickle=False)
            os.replace(part, self.path)
        finally:
            self._tmp_path.unlink(missing_ok=True)
        if self.sidecar:
            _write_sidecar(sidecar_path(self.path), summary)


# ------------------------------------------------------------------------------------------------------------
# HDF5
# ------------------------------------------------------------------------------------------------------------


class Hdf5Writer(EventWriter):
    """Group ``events`` with resizable, chunked datasets per field; geometry and meta as attributes."""

    format = "hdf5"

    def __init__(self, path, spec, meta=None, *, chunk_events: int = 1 << 16, compression: str | None = None):
        super().__init__(path, spec, meta)
        import h5py  # deferred: only this writer needs it

        try:
            self._file = h5py.File(self.path, "w")
        except OSError as exc:
            raise WriterError(f"{self.path}: cannot create the HDF5 file: {exc}") from exc
        group = self._file.create_group("events")
        self._datasets = {}
        for name in self.dtype.names:
            store_dtype = np.uint8 if name == "p" else self.dtype[name]
            self._datasets[name] = group.create_dataset(
                name, shape=(0,), maxshape=(None,), dtype=store_dtype, chunks=(int(chunk_events),),
                compression=compression,
            )
        self._write_attrs()

    def _write_attrs(self):
        summary = self.summary()
        for target in (self._file.attrs, self._file["events"].attrs):
            target["sensor_size"] = np.asarray(self.spec.shape, dtype=np.int64)
            target["kind"] = self.spec.kind
            target["t_unit"] = "us"
            if self.spec.kind == "dvs":
                target["width"] = int(self.spec.shape[0])
                target["height"] = int(self.spec.shape[1])
                target["x_mirrored"] = bool(self.spec.x_mirrored)
                target["y_up"] = bool(self.spec.y_up)
            else:
                target["channels"] = int(self.spec.shape[0])
            target["clockless_meta"] = json.dumps(summary, default=_json_default)

    def _store(self, chunk):
        start = self.events_written
        end = start + chunk.shape[0]
        for name, ds in self._datasets.items():
            ds.resize((end,))
            col = chunk[name]
            ds[start:end] = col.astype(np.uint8) if name == "p" else col

    def _finish(self):
        self._write_attrs()
        self._file.close()


# ------------------------------------------------------------------------------------------------------------
# AEDAT 4.0
# ------------------------------------------------------------------------------------------------------------

_AEDAT4_MAGIC = b"#!AER-DAT4.0\r\n"
_AEDAT4_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("on", "u1"), ("pad", "V3")])  # 16 bytes
# One FileDataDefinition table in the data table: soffset, PacketHeader{id, size}, ByteOffset, NumElements,
# TimestampStart, TimestampEnd, then 4 bytes so the next table keeps the 8-byte alignment of its int64 fields.
_FTAB_ENTRY = np.dtype(
    [("soffset", "<i4"), ("stream_id", "<i4"), ("size", "<i4"), ("byte_offset", "<i8"), ("count", "<i8"),
     ("t_start", "<i8"), ("t_end", "<i8"), ("pad", "V4")]
)


def _aedat4_xml(spec: StreamSpec) -> str:
    w, h = int(spec.shape[0]), int(spec.shape[1])
    base = "/mainloop/Recorder/outInfo/"
    extra = ""
    if spec.x_mirrored:
        extra += '                <attr key="clocklessXMirrored" type="string">true</attr>\n'
    if spec.y_up:
        extra += '                <attr key="clocklessYUp" type="string">true</attr>\n'
    return (
        '<dv version="2.0">\n'
        f'    <node name="outInfo" path="{base}">\n'
        f'        <node name="0" path="{base}0/">\n'
        '            <attr key="compression" type="string">NONE</attr>\n'
        '            <attr key="originalModuleName" type="string">clockless</attr>\n'
        '            <attr key="originalOutputName" type="string">events</attr>\n'
        '            <attr key="typeDescription" type="string">Array of events (polarity ON/OFF).</attr>\n'
        '            <attr key="typeIdentifier" type="string">EVTS</attr>\n'
        f'            <node name="info" path="{base}0/info/">\n'
        f'                <attr key="sizeX" type="int">{w}</attr>\n'
        f'                <attr key="sizeY" type="int">{h}</attr>\n'
        '                <attr key="source" type="string">clockless</attr>\n'
        f"{extra}"
        "            </node>\n"
        "        </node>\n"
        "    </node>\n"
        "</dv>\n"
    )


def _aedat4_ioheader(xml: str, data_table_position: int) -> tuple[bytes, int]:
    """The IOHeader flatbuffer (compression NONE) and the byte offset of its dataTablePosition field in it.

    The file's 4-byte length field in front of the header acts as a flatbuffer size prefix (DV aligns the header
    that way), so 8-byte fields sit at 4 mod 8 within the buffer. Layout: 0 root offset -> 20; 4 "IOHE";
    8 vtable [10, 20, 4, 8, 16]; 20 table (soffset 12; +4 compression int32; +8 dataTablePosition int64;
    +16 offset to infoNode); 40 the string (length, bytes, NUL), padded. Every field is written even at its
    default, so the header keeps its size when the data-table position is patched in on close.
    """
    text = xml.encode("utf-8")
    buf = bytearray()
    buf += struct.pack("<I", 20)
    buf += b"IOHE"
    buf += struct.pack("<5H", 10, 20, 4, 8, 16)  # vtable at 8..18
    buf += b"\x00" * 2  # 18..20
    buf += struct.pack("<i", 20 - 8)  # table at 20: soffset to the vtable at 8
    buf += struct.pack("<i", 0)  # compression NONE
    buf += struct.pack("<q", data_table_position)  # at 28 (32 counting the length field)
    buf += struct.pack("<I", 40 - 36)  # infoNode offset field at 36 -> string at 40
    buf += struct.pack("<I", len(text)) + text + b"\x00"
    buf += b"\x00" * (-(len(buf) + 4) % 8)
    return bytes(buf), 28


def _aedat4_event_packet(chunk: np.ndarray) -> bytes:
    """Size-prefixed EventPacket flatbuffer: [size][root=16]["EVTS"][vtable 6,8,4][pad][table][vector]."""
    n = chunk.shape[0]
    recs = np.zeros(n, dtype=_AEDAT4_EVENT)
    recs["t"] = chunk["t"]
    recs["x"] = chunk["x"]
    recs["y"] = chunk["y"]
    recs["on"] = chunk["p"]
    total = 32 + 16 * n
    head = struct.pack("<I", total - 4)  # size prefix
    head += struct.pack("<I", 16)  # root table at buffer offset 16 (file offset 20 of this payload)
    head += b"EVTS"
    head += struct.pack("<3H", 6, 8, 4)  # vtable: 1 field (elements) at +4
    head += b"\x00\x00"
    head += struct.pack("<i", 8)  # table at payload 20, vtable at payload 12
    head += struct.pack("<I", 4)  # elements vector at payload 28
    head += struct.pack("<I", n)
    return head + recs.tobytes()


def _aedat4_data_table(entries: np.ndarray) -> bytes:
    """Size-prefixed FileDataTable flatbuffer (identifier FTAB) for the packets written."""
    n = entries.shape[0]
    head = bytearray()
    head += struct.pack("<I", 0)  # size prefix, filled below
    head += struct.pack("<I", 28)  # root: FileDataTable table at payload 32 = buffer 28
    head += b"FTAB"
    head += struct.pack("<3H", 6, 8, 4)  # vtable of FileDataTable at payload 12
    # vtable of FileDataDefinition at payload 18: ByteOffset +12, PacketInfo +4, NumElements +20,
    # TimestampStart +28, TimestampEnd +36; object size 44
    head += struct.pack("<7H", 14, 44, 12, 4, 20, 28, 36)
    head += struct.pack("<i", 32 - 12)  # FileDataTable at 32
    head += struct.pack("<I", 4)  # its vector at 40
    head += struct.pack("<I", n)  # 40: vector length; element offsets follow at 44
    tables_at = 44 + 4 * n
    tables_at += -(tables_at - 4) % 8  # tables start at 4 mod 8 so their int64 fields are 8-aligned
    slots = 44 + 4 * np.arange(n, dtype=np.int64)
    starts = tables_at + 48 * np.arange(n, dtype=np.int64)
    offsets = (starts - slots).astype("<u4")
    pad = tables_at - (44 + 4 * n)
    tables = entries.copy()
    tables["soffset"] = (starts - 18).astype(np.int32)
    body = offsets.tobytes() + b"\x00" * pad + tables.tobytes()
    out = bytes(head) + body
    return struct.pack("<I", len(out) - 4) + out[4:]


class Aedat4Writer(EventWriter):
    """AEDAT 4.0 with one uncompressed polarity-event stream (id 0) and a file data table."""

    format = "aedat4"

    def __init__(self, path, spec, meta=None, *, events_per_packet: int = 8192):
        super().__init__(path, spec, meta)
        if spec.kind != "dvs":
            raise WriterError(
                f"{self.path}: AEDAT 4.0 stores camera (polarity) events; a stream of kind '{spec.kind}' can be "
                "written to .npy, .npz or .hdf5"
            )
        if events_per_packet < 1:
            raise WriterError(f"{self.path}: events_per_packet must be ≥ 1, got {events_per_packet}")
        self.events_per_packet = int(events_per_packet)
        try:
            self._file = open(self.path, "wb")
        except OSError as exc:
            raise WriterError(f"{self.path}: cannot create the output file: {exc}") from exc
        header, self._dtp_field = _aedat4_ioheader(_aedat4_xml(spec), -1)
        self._file.write(_AEDAT4_MAGIC)
        self._file.write(struct.pack("<I", len(header)))
        self._header_at = len(_AEDAT4_MAGIC) + 4
        self._file.write(header)
        self._entries: list[np.ndarray] = []
        self._pending: list[tuple[int, int, int, int, int]] = []

    def _store(self, chunk):
        for a in range(0, chunk.shape[0], self.events_per_packet):
            part = chunk[a : a + self.events_per_packet]
            payload = _aedat4_event_packet(part)
            self._file.write(struct.pack("<iI", 0, len(payload)))
            body_at = self._file.tell()  # the data table points at the packet body, after its 8-byte header
            self._file.write(payload)
            self._pending.append((body_at, len(payload), part.shape[0], int(part["t"][0]), int(part["t"][-1])))
            if len(self._pending) >= 4096:
                self._flush_entries()

    def _flush_entries(self):
        if not self._pending:
            return
        arr = np.zeros(len(self._pending), dtype=_FTAB_ENTRY)
        cols = np.array(self._pending, dtype=np.int64)
        arr["stream_id"] = 0
        arr["byte_offset"] = cols[:, 0]
        arr["size"] = cols[:, 1]
        arr["count"] = cols[:, 2]
        arr["t_start"] = cols[:, 3]
        arr["t_end"] = cols[:, 4]
        self._entries.append(arr)
        self._pending = []

    def _finish(self):
        self._flush_entries()
        entries = np.concatenate(self._entries) if self._entries else np.zeros(0, dtype=_FTAB_ENTRY)
        position = self._file.tell()
        self._file.write(_aedat4_data_table(entries))
        self._file.seek(self._header_at + self._dtp_field)
        self._file.write(struct.pack("<q", position))
        self._file.close()


# ------------------------------------------------------------------------------------------------------------

_WRITERS = {"npy": NpyWriter, "npz": NpzWriter, "hdf5": Hdf5Writer, "aedat4": Aedat4Writer}


def open_writer(
    path: str | Path, spec: StreamSpec, format: str | None = None, *, meta: Mapping[str, Any] | None = None,
    **options: Any,
) -> EventWriter:
    """Open a streaming writer for ``path`` (format from ``format`` or the extension).

    ``meta`` (e.g. ``{"counts": reader.counts, "source": "in.aedat"}``) goes to the sidecar JSON (npy/npz) or the
    ``clockless_meta`` attribute (HDF5). ``options`` go to the writer class (``events_per_packet`` for AEDAT 4.0,
    ``chunk_events``/``compression`` for HDF5, ``compress`` for npz, ``sidecar`` for npy/npz).
    """
    name = writer_format_for(path, format)
    parent = Path(path).parent
    if not parent.is_dir():
        raise WriterError(f"{path}: the output folder {parent} does not exist")
    try:
        return _WRITERS[name](path, spec, meta, **options)
    except TypeError as exc:
        raise WriterError(f"{path}: bad option for the {name} writer: {exc}") from exc


def write_events(path: str | Path, events: np.ndarray, spec: StreamSpec, format: str | None = None, **kw) -> Path:
    """Write one in-memory event array (convenience for tests and small scripts)."""
    with open_writer(path, spec, format, **kw) as w:
        w.write(events)
    return Path(path)

