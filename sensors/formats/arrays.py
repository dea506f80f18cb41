"""Event arrays in generic containers: tonic-style ``.npy``, ``.npz`` archives and HDF5 files.

Columns are found by name: x (``x``, ``xs``), y (``y``, ``ys``), time (``t``, ``ts``, ``timestamp(s)``) and polarity
(``p``, ``ps``, ``pol``, ``polarity``, ``polarities``, ``on``). An array with x, t and p but no y is a cochlea
(audio) stream with x the channel. Time stored as integers is µs; time stored as floats is seconds and is
converted to µs by rounding to the nearest µs. Polarity is ON where the stored value is > 0 (so 0/1, -1/1 and
booleans all work).

These containers carry no standard geometry. The sensor size comes from, in order: ``sensor_size``; the
file (an npz member ``sensor_size`` or a ``meta`` member holding JSON with ``sensor_size``, HDF5 attributes
``sensor_size`` or ``width``/``height`` on the events group or the file, or DSEC-style ``sensor_resolution``); a
sidecar ``NAME.json`` next to the file with a ``sensor_size`` list (as ``sensors.writers`` and ``clockless
convert`` write it); otherwise a FormatError asks for ``--sensor-size`` (we never guess it from the largest
coordinate). ``x_mirrored`` / ``y_up`` are read from the same place as the size. ``.npy`` files are memory-mapped and npz / HDF5 members are
read a slice at a time, so memory stays bounded.
"""

from __future__ import annotations

import json
import struct
import tokenize
import zipfile
import zlib
from contextlib import contextmanager

import numpy as np

from runtime.events import AUDIO_EVENT, DVS_EVENT

from .base import ORIGIN_SIDECAR, Reader
from .kernels.pack import pack_dvs

__all__ = ["NpyReader", "NpzReader", "Hdf5Reader", "COLUMN_NAMES"]

COLUMN_NAMES = {
    "x": ("x", "xs"),
    "y": ("y", "ys"),
    "t": ("t", "ts", "timestamp", "timestamps"),
    "p": ("p", "ps", "pol", "polarity", "polarities", "on"),
}


def match_columns(names) -> dict[str, str]:
    """Map x/y/t/p to the names present (y may be missing: audio)."""
    lower = {n.lower(): n for n in names}
    found = {}
    for key, options in COLUMN_NAMES.items():
        for o in options:
            if o in lower:
                found[key] = lower[o]
                break
    return found


_HDF5_BLOCK = 1 << 20  # events per h5py read

# what zipfile / numpy.lib.format / h5py raise on damaged input
_CONTAINER_ERRORS = (
    zipfile.BadZipFile, zlib.error, struct.error, OSError, EOFError, ValueError, KeyError, TypeError,
    NotImplementedError, RuntimeError, IndexError, SyntaxError, tokenize.TokenError,
)
# numpy.lib.format parses a .npy header with ``ast``: a damaged header can raise any of these
_HEADER_ERRORS = (ValueError, OSError, EOFError, SyntaxError, tokenize.TokenError, TypeError, KeyError)


@contextmanager
def _damaged_as_format_error(reader: Reader, what: str):
    """Report a damaged container as a FormatError naming the file (our own FormatErrors pass through)."""
    from runtime.errors import ClocklessError

    try:
        yield
    except ClocklessError:
        raise
    except _CONTAINER_ERRORS as exc:
        raise reader._fail(f"damaged {what}: {type(exc).__name__}: {exc}") from None


def _checked_meta(reader: Reader, meta, where: str) -> dict:
    if not isinstance(meta, dict):
        raise reader._fail(f"{where}: expected a JSON object, found {type(meta).__name__}")
    size = meta.get("sensor_size")
    if size is not None and (
        not isinstance(size, (list, tuple)) or not size or not all(isinstance(v, int) and v > 0 for v in size)
    ):
        raise reader._fail(f"{where}: 'sensor_size' must be a list of positive integers, found {size!r}")
    return meta


class _ColumnReader(Reader):
    """Shared conversion from named columns to DVS_EVENT / AUDIO_EVENT."""

    kind_from_file = True
    container = "file"

    def _open(self) -> None:
        with _damaged_as_format_error(self, self.container):
            self._open_inner()

    def _decode(self, max_events: int):
        with _damaged_as_format_error(self, self.container):
            yield from self._decode_inner(max_events)

    def _setup_columns(self, names, dtypes: dict, file_meta: dict | None, *, offset_us: int = 0) -> None:
        cols = match_columns(names)
        missing = [k for k in ("x", "t", "p") if k not in cols]
        if missing:
            raise self._fail(
                f"no {'/'.join(missing)} column (found {sorted(names)}; expected x, y, t, p as in tonic, "
                "or t, x, p for audio)"
            )
        self.cols = cols
        self.audio = "y" not in cols
        t_dtype = np.dtype(dtypes[cols["t"]])
        if t_dtype.kind == "f":
            self.t_unit = "s"
        elif t_dtype.kind in "iu":
            self.t_unit = "us"
        else:
            raise self._fail(f"time column {cols['t']!r} has dtype {t_dtype} (expected integer µs or float seconds)")
        self.offset_us = int(offset_us)
        meta, origin = file_meta or {}, None
        if meta.get("sensor_size") is None:
            meta = self._sidecar()
            origin = ORIGIN_SIDECAR if meta.get("sensor_size") is not None else None
        size = meta.get("sensor_size")
        size = None if size is None else tuple(int(v) for v in size)[: 1 if self.audio else 2]
        orient = {} if self.audio else {k: bool(meta.get(k, False)) for k in ("x_mirrored", "y_up")}
        self._set_geometry(size, hint=" (no sensor_size in the file or a NAME.json sidecar)", **orient)
        if origin is not None and self.sensor_size_origin != "user":
            self.sensor_size_origin = origin

    def _sidecar(self) -> dict:
        """``NAME.json`` beside the file (as ``clockless convert`` writes it), or {}."""
        side = self.path.with_suffix(".json")
        if not side.is_file():
            return {}
        try:
            meta = json.loads(side.read_text())
        except (OSError, ValueError) as exc:
            raise self._fail(f"sidecar {side.name} is not valid JSON: {exc}") from None
        return _checked_meta(self, meta, side.name)

    def _convert(self, x, y, t, p) -> np.ndarray:
        if self.t_unit == "s":
            tt = np.asarray(t, dtype=np.float64) * 1e6
            if not np.all(np.isfinite(tt)):
                i = int(np.flatnonzero(~np.isfinite(tt))[0])
                raise self._fail(f"time column holds a non-finite value at row {i} of this chunk")
            t64 = np.rint(tt).astype(np.int64)
        else:
            t64 = np.asarray(t).astype(np.int64, copy=False)
        if self.offset_us:
            t64 = t64 + self.offset_us
        on = np.asarray(p) > 0
        if self.audio:
            out = np.empty(t64.shape[0], AUDIO_EVENT)
            out["t"] = t64
            out["x"] = _int16_or_minus_one(np.asarray(x))
            out["p"] = on
            return out
        out = np.empty(t64.shape[0], DVS_EVENT)
        pack_dvs(_as_int32(x), _as_int32(y), t64, on, out.view(np.uint8))
        return out


def _as_int32(col) -> np.ndarray:
    """A column as int32 (values beyond int32 become -1: outside any sensor, reported by the bounds check)."""
    col = np.asarray(col)
    if col.dtype.kind in "iub" and col.dtype.itemsize <= 4 and col.dtype != np.uint32:
        return col.astype(np.int32, copy=False)
    wide = col.astype(np.float64) if col.dtype.kind == "f" else col
    bad = (wide < -(1 << 31)) | (wide >= (1 << 31))
    if col.dtype.kind == "f":
        bad |= ~np.isfinite(wide)
    return np.where(bad, -1, wide).astype(np.int32)


def _int16_or_minus_one(col: np.ndarray) -> np.ndarray:
    c = _as_int32(col)
    return np.where((c < -(1 << 15)) | (c >= (1 << 15)), -1, c).astype(np.int16)


class NpyReader(_ColumnReader):
    """A structured ``.npy`` array (``tonic.io.events_struct`` layout or any with matching field names), read a
    chunk at a time straight into the output arrays (a plain ``readinto``: no memory map, whose element-wise copy
    of packed records is an order of magnitude slower)."""

    format = "npy"
    container = ".npy array"

    def _open_inner(self) -> None:
        with open(self.path, "rb") as f:
            try:
                version = np.lib.format.read_magic(f)
                if version == (1, 0):
                    shape, fortran, dtype = np.lib.format.read_array_header_1_0(f)
                else:
                    shape, fortran, dtype = np.lib.format.read_array_header_2_0(f)
            except _HEADER_ERRORS as exc:
                raise self._fail(f"not a readable .npy header: {type(exc).__name__}: {exc}") from None
            self.data_offset = f.tell()
        if dtype.names is None or len(shape) != 1 or dtype.hasobject:
            raise self._fail(
                f"expected a 1-D structured array with fields x, y, t, p, found dtype {dtype} shape {shape}"
            )
        available = self.path.stat().st_size - self.data_offset
        if available < shape[0] * dtype.itemsize:
            raise self._fail(
                f"file truncated: the header promises {shape[0]} events ({shape[0] * dtype.itemsize} bytes), "
                f"{available} bytes follow it",
                offset=self.data_offset,
            )
        self.n_events = shape[0]
        self.file_dtype = dtype
        self._setup_columns(dtype.names, {n: dtype[n] for n in dtype.names}, None)

    def _decode_inner(self, max_events: int):
        c = self.cols
        dtype = self.file_dtype
        fast = dtype == (AUDIO_EVENT if self.audio else DVS_EVENT) and self.t_unit == "us"
        with open(self.path, "rb") as f:
            f.seek(self.data_offset)
            for a in range(0, self.n_events, max_events):
                part = np.empty(min(max_events, self.n_events - a), dtype)
                if f.readinto(memoryview(part.view(np.uint8))) != part.nbytes:
                    raise self._fail("file truncated while reading events", offset=self.data_offset + a * dtype.itemsize)
                if fast:
                    yield part
                else:
                    yield self._convert(part[c["x"]], part[c["y"]] if "y" in c else None, part[c["t"]], part[c["p"]])


class _NpyMember:
    """Reads a .npy member of a zip archive a slice at a time."""

    def __init__(self, zf: zipfile.ZipFile, name: str, reader: Reader):
        self.f = zf.open(name)
        try:
            version = np.lib.format.read_magic(self.f)
            if version == (1, 0):
                shape, fortran, dtype = np.lib.format.read_array_header_1_0(self.f)
            else:
                shape, fortran, dtype = np.lib.format.read_array_header_2_0(self.f)
        except _HEADER_ERRORS as exc:
            raise reader._fail(f"npz member {name!r} is not a .npy array: {type(exc).__name__}: {exc}") from None
        if dtype.hasobject:
            raise reader._fail(f"npz member {name!r} holds Python objects (expected numbers)")
        self.name, self.shape, self.dtype, self.fortran = name, shape, dtype, fortran
        self.reader = reader

    def read(self, n: int) -> np.ndarray:
        want = n * self.dtype.itemsize
        data = self.f.read(want)
        if len(data) % self.dtype.itemsize:
            raise self.reader._fail(f"npz member {self.name!r} is truncated")
        return np.frombuffer(data, dtype=self.dtype)

    def close(self):
        self.f.close()


class NpzReader(_ColumnReader):
    """An ``.npz`` archive with either one structured member (``events`` preferred) or one member per column."""

    format = "npz"
    container = ".npz archive"

    def _open_inner(self) -> None:
        try:
            with zipfile.ZipFile(self.path) as zf:
                members = {n[:-4]: n for n in zf.namelist() if n.endswith(".npy")}
                heads = {k: _NpyMember(zf, v, self) for k, v in members.items()}
                for h in heads.values():
                    h.close()
                meta: dict = {}
                if "meta" in members and heads["meta"].dtype.kind == "U" and heads["meta"].shape == ():
                    with zf.open(members["meta"]) as f:
                        text = str(np.lib.format.read_array(f, allow_pickle=False))
                    try:
                        meta = _checked_meta(self, json.loads(text), "npz member 'meta'")
                    except ValueError as exc:
                        raise self._fail(f"npz member 'meta' is not valid JSON: {exc}") from None
                if "sensor_size" in members:
                    with zf.open(members["sensor_size"]) as f:
                        meta["sensor_size"] = np.lib.format.read_array(f, allow_pickle=False).astype(int).tolist()
        except zipfile.BadZipFile as exc:
            raise self._fail(f"not a readable .npz (zip) archive: {exc}") from None
        structured = [k for k, h in heads.items() if h.dtype.names is not None and len(h.shape) == 1]
        if structured:
            key = "events" if "events" in structured else structured[0]
            self.layout = ("structured", members[key])
            dt = heads[key].dtype
            self._setup_columns(dt.names, {n: dt[n] for n in dt.names}, meta)
        else:
            cols = match_columns(heads)
            self.layout = ("columns", {k: members[v] for k, v in cols.items()})
            self._setup_columns(list(heads), {k: heads[k].dtype for k in heads}, meta)
            lengths = {heads[cols[k]].shape for k in cols}
            if len(lengths) != 1:
                raise self._fail(f"column members differ in length: { {cols[k]: heads[cols[k]].shape for k in cols} }")

    def _decode_inner(self, max_events: int):
        with zipfile.ZipFile(self.path) as zf:
            if self.layout[0] == "structured":
                m = _NpyMember(zf, self.layout[1], self)
                c = self.cols
                try:
                    while True:
                        part = m.read(max_events)
                        if part.shape[0] == 0:
                            break
                        yield self._convert(part[c["x"]], part[c["y"]] if "y" in c else None, part[c["t"]], part[c["p"]])
                finally:
                    m.close()
            else:
                ms = {k: _NpyMember(zf, v, self) for k, v in self.layout[1].items()}
                try:
                    while True:
                        cols = {k: m.read(max_events) for k, m in ms.items()}
                        if cols["t"].shape[0] == 0:
                            break
                        yield self._convert(cols["x"], cols.get("y"), cols["t"], cols["p"])
                finally:
                    for m in ms.values():
                        m.close()


class Hdf5Reader(_ColumnReader):
    """HDF5 with x/y/t/p datasets in a group (``events``, ``raw_events``, ``CD``, or the root), or one compound
    dataset with those fields. DSEC's ``t_offset`` (µs, at the root) is added to t."""

    format = "hdf5"
    container = "HDF5 file"
    GROUPS = ("events", "raw_events", "CD", "cd", "")

    def _open_inner(self) -> None:
        import h5py

        try:
            f = h5py.File(self.path, "r")
        except OSError as exc:
            raise self._fail(f"not a readable HDF5 file: {exc}") from None
        with f:
            target = None
            for g in self.GROUPS:
                if g and g not in f:
                    continue
                obj = f[g] if g else f
                if isinstance(obj, h5py.Group):
                    names = [n for n in obj if isinstance(obj[n], h5py.Dataset)]
                    cols = match_columns(names)
                    if "x" in cols and "t" in cols and "p" in cols:
                        target = ("group", obj.name, {n: obj[n].dtype for n in names})
                        break
                    if "events" in obj and isinstance(obj["events"], h5py.Dataset) and obj["events"].dtype.names:
                        ds = obj["events"]
                        target = ("compound", ds.name, {n: ds.dtype[n] for n in ds.dtype.names})
                        break
                elif isinstance(obj, h5py.Dataset) and obj.dtype.names:
                    target = ("compound", obj.name, {n: obj.dtype[n] for n in obj.dtype.names})
                    break
            if target is None:
                raise self._fail(
                    "no event datasets found (expected a group such as events/ or raw_events/ with x, y, t, p, "
                    "or a compound dataset with those fields)"
                )
            self.layout = target
            meta = self._meta_attrs(f, f[target[1]] if target[0] == "group" else f[target[1]].parent)
            offset = int(np.asarray(f["t_offset"][()]).item()) if "t_offset" in f else 0
            if target[0] == "group":
                g = f[target[1]]
                cols = match_columns(list(target[2]))
                lengths = {n: g[cols[n]].shape for n in cols}
                if len(set(lengths.values())) != 1:
                    raise self._fail(f"event columns differ in length: {lengths}")
                self.n_events = g[cols["t"]].shape[0]
            else:
                self.n_events = f[target[1]].shape[0]
            try:
                self._setup_columns(list(target[2]), target[2], meta, offset_us=offset)
            except ValueError as exc:
                raise self._fail(str(exc)) from None

    @staticmethod
    def _meta_attrs(f, group) -> dict:
        for obj in (group, f):
            a = obj.attrs
            meta = {}
            for key in ("sensor_size", "sensor_resolution"):
                if key in a:
                    meta["sensor_size"] = [int(v) for v in np.asarray(a[key]).ravel()]
                    break
            if "sensor_size" not in meta and "width" in a and "height" in a:
                meta["sensor_size"] = [int(np.asarray(a["width"]).item()), int(np.asarray(a["height"]).item())]
            if "sensor_size" in meta:
                for key in ("x_mirrored", "y_up"):
                    if key in a:
                        meta[key] = bool(np.asarray(a[key]).item())
                return meta
        return {}

    def _decode_inner(self, max_events: int):
        import h5py

        with h5py.File(self.path, "r") as f:
            c = self.cols
            if self.layout[0] == "group":
                # h5py pays a fixed cost per read: read big blocks into reused buffers, convert them in chunks
                g = f[self.layout[1]]
                names = [k for k in ("x", "y", "t", "p") if k in c]
                block = max(max_events, _HDF5_BLOCK)
                bufs = {k: np.empty(min(block, self.n_events), g[c[k]].dtype) for k in names}
                for a in range(0, self.n_events, block):
                    b = min(self.n_events, a + block)
                    for k in names:
                        g[c[k]].read_direct(bufs[k], np.s_[a:b], np.s_[0 : b - a])
                    for j in range(0, b - a, max_events):
                        e = min(b - a, j + max_events)
                        yield self._convert(
                            bufs["x"][j:e], bufs["y"][j:e] if "y" in bufs else None, bufs["t"][j:e], bufs["p"][j:e]
                        )
            else:
                ds = f[self.layout[1]]
                for a in range(0, self.n_events, max_events):
                    part = ds[a : min(self.n_events, a + max_events)]
                    yield self._convert(part[c["x"]], part[c["y"]] if "y" in c else None, part[c["t"]], part[c["p"]])
