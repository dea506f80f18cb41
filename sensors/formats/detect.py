"""Which format a file is: from its first bytes (magic numbers and headers) first, its extension second.

Content wins over the extension: a ``.aedat`` file that starts with ``#!AER-DAT4.0`` is read as AEDAT 4.0. When
the caller names a format and the file's own header names another one, that is an error (a file that claims to
be something else is more likely mislabelled than misread). Files with no header at all (NAS cochlea
recordings, headerless ``.raw``) need an explicit format.
"""

from __future__ import annotations

from pathlib import Path

from runtime.errors import FormatError

from .prophesee import read_raw_header

__all__ = ["FORMATS", "detect_format", "sniff"]

FORMATS = {
    "aedat4": "iniVation AEDAT 4.0 (DV)",
    "aedat2": "jAER AEDAT 2.0 (DVS128, DAVIS)",
    "aedat31": "iniVation AEDAT 3.1 (cAER, DVS128 Gesture)",
    "evt2": "Prophesee EVT 2.0 .raw",
    "evt21": "Prophesee EVT 2.1 .raw",
    "evt3": "Prophesee EVT 3.0 .raw",
    "dat": "Prophesee .dat",
    "es": "Event Stream .es",
    "npy": "numpy .npy structured events (tonic layout)",
    "npz": "numpy .npz archive of events",
    "hdf5": "HDF5 events (events/{x,y,t,p} and similar)",
    "nmnist_bin": "N-MNIST / N-Caltech101 .bin (40-bit records)",
    "nas_aedat": "NAS neuromorphic cochlea AEDAT (2-byte address, 4-byte 0.2 µs ticks)",
}

_EXTENSIONS = {
    ".aedat4": "aedat4",
    ".es": "es",
    ".npy": "npy",
    ".npz": "npz",
    ".h5": "hdf5",
    ".hdf5": "hdf5",
    ".hdf": "hdf5",
    ".bin": "nmnist_bin",
    ".dat": "dat",
}


def sniff(path: Path) -> tuple[str | None, str]:
    """(format named by the content or None, what the content looked like) from the first bytes of ``path``."""
    with open(path, "rb") as f:
        head = f.read(64)
        if head.startswith(b"#!AER-DAT4"):
            return "aedat4", "#!AER-DAT4 magic"
        if head.startswith(b"#!AER-DAT3"):
            return "aedat31", "#!AER-DAT3 magic"
        if head.startswith(b"#!AER-DAT2"):
            return "aedat2", "#!AER-DAT2 magic"
        if head.startswith(b"#!AER-DAT"):
            version = head[9:13].split(b"\r")[0].split(b"\n")[0].decode("latin-1", "replace")
            raise FormatError(path, f"AEDAT version {version!r} is not supported (expected 2.0, 3.1 or 4.0)", offset=9)
        if head.startswith(b"Event Stream"):
            return "es", "Event Stream magic"
        if head.startswith(b"\x93NUMPY"):
            return "npy", "numpy magic"
        if head.startswith(b"PK\x03\x04") or head.startswith(b"PK\x05\x06"):
            return "npz", "zip magic"
        if head.startswith(b"\x89HDF\r\n\x1a\n"):
            return "hdf5", "HDF5 magic"
        if head.startswith(b"%"):
            f.seek(0)
            header = read_raw_header(path, f)
            encoding = header.encoding()
            if encoding is not None:
                return encoding, f"Prophesee header naming {encoding.upper()}"
            if path.suffix.lower() == ".dat" or "Version" in header.fields or "Data" in header.fields:
                return "dat", "Prophesee DAT header"
            return None, "a Prophesee '%' header that names no encoding"
    if not head:
        raise FormatError(path, "empty file (expected an event recording)", offset=0)
    return None, "no known magic number"


def detect_format(path, format: str | None = None) -> str:
    """The format to read ``path`` as; raises FormatError when it cannot tell or the header contradicts ``format``."""
    path = Path(path)
    if format is not None:
        format = format.lower().replace(".", "").replace("-", "_")
        format = {"evt20": "evt2", "evt30": "evt3", "aedat3": "aedat31", "aedat": "aedat2", "h5": "hdf5"}.get(
            format, format
        )
        if format not in FORMATS:
            raise FormatError(path, f"unknown format {format!r} (expected one of {', '.join(FORMATS)})")
    if not path.is_file():
        raise FormatError(path, "no such file (expected an event recording)")
    claimed, seen = sniff(path)
    if format is not None:
        if claimed is not None and claimed != format:
            raise FormatError(
                path,
                f"the file's header says {FORMATS[claimed]} ({seen}) but format {format!r} was asked for "
                "(drop --format to use the header's)",
                offset=0,
            )
        return format
    if claimed is not None:
        return claimed
    ext = path.suffix.lower()
    if ext in _EXTENSIONS:
        return _EXTENSIONS[ext]
    if ext == ".raw":
        raise FormatError(path, f"a .raw file with {seen}: pass format='evt2', 'evt21' or 'evt3' (--format)")
    if ext == ".aedat":
        raise FormatError(
            path, f"an .aedat file with {seen}: pass format='nas_aedat' for cochlea recordings (--format)"
        )
    raise FormatError(path, f"cannot tell the format from {seen} and extension {ext!r}; pass format= (--format)")
