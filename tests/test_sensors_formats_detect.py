"""Format detection (content first, extension second) and the small headerless / byte-stream formats."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import FormatError
from sensors.formats import FORMATS, detect_format, open_reader


@pytest.mark.parametrize(
    "name, fmt",
    [
        ("vision/dvxplorer_tonic.aedat4", "aedat4"),
        ("vision/dvs128_walking.aedat", "aedat2"),
        ("vision/gen3_faery_evt2.raw", "evt2"),
        ("vision/gen4_triggers_evt3.raw", "evt3"),
        ("vision/ncars_tonic.dat", "dat"),
        ("vision/dvs_faery.es", "es"),
        ("vision/nmnist_tonic.bin", "nmnist_bin"),
        ("vision/events_evlib.hdf5", "hdf5"),
    ],
)
def test_detects_every_shared_file(shared_data, name, fmt):
    assert detect_format(shared_data / name) == fmt


def test_content_wins_over_the_extension(shared_data, tmp_path):
    path = tmp_path / "misnamed.aedat4"
    path.write_bytes((shared_data / "vision" / "dvs_faery.es").read_bytes())
    assert detect_format(path) == "es"


def test_format_names_and_errors(shared_data, tmp_path):
    with pytest.raises(FormatError, match="unknown format 'evt9'"):
        detect_format(shared_data / "vision" / "dvs_faery.es", "evt9")
    with pytest.raises(FormatError, match="header says Event Stream .* but format 'aedat4'"):
        open_reader(shared_data / "vision" / "dvs_faery.es", format="aedat4")
    with pytest.raises(FormatError, match="no such file"):
        open_reader(tmp_path / "missing.raw")
    empty = tmp_path / "empty.es"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty file"):
        open_reader(empty)
    odd = tmp_path / "x.xyz"
    odd.write_bytes(b"hello")
    with pytest.raises(FormatError, match="cannot tell the format"):
        open_reader(odd)
    assert set(FORMATS) >= {"aedat4", "aedat2", "aedat31", "evt2", "evt21", "evt3", "dat", "es", "npy", "npz",
                            "hdf5", "nmnist_bin", "nas_aedat"}


def test_es_header_errors_and_truncated_event(shared_data, tmp_path):
    data = (shared_data / "vision" / "dvs_faery.es").read_bytes()
    path = tmp_path / "v.es"
    path.write_bytes(data[:12] + bytes([3, 0, 0]) + data[15:])
    with pytest.raises(FormatError, match=r"version 3.0.0 is not supported \(expected 2.x\)"):
        open_reader(path)
    path.write_bytes(data[:15] + bytes([0]) + data[16:])
    with pytest.raises(FormatError, match="stream type 0 .generic. holds no polarity events"):
        open_reader(path)
    path.write_bytes(data[:20] + bytes([0x02, 1, 0]))
    with pytest.raises(FormatError, match="truncated inside an event"):
        open_reader(path).read_all()
    path.write_bytes(data[:20] + bytes([0x02, 1, 0, 0xF0, 0]))  # y = 240 on a 240-row sensor
    with pytest.raises(FormatError, match=r"event 0 has y=-1, outside the 320×240 sensor"):
        open_reader(path).read_all()


def test_nmnist_records_and_sizes(tmp_path):
    rec = np.array([[3, 4, 0x80 | 0x01, 0x02, 0x03], [33, 0, 0x01, 0x02, 0x04]], np.uint8)
    path = tmp_path / "n.bin"
    path.write_bytes(rec.tobytes())
    r = open_reader(path)
    assert r.sensor_size_origin == "format default" and r.spec.shape == (34, 34, 2)
    assert r.read_all().tolist() == [(3, 4, 0x010203, True), (33, 0, 0x010204, False)]
    path.write_bytes(rec.tobytes() + bytes([200, 1, 0x01, 0x02, 0x09]))
    with pytest.raises(FormatError, match="x=200, outside the 34×34 sensor .*format default"):
        open_reader(path).read_all()
    assert open_reader(path, sensor_size=(240, 180)).read_all().shape[0] == 3
    path.write_bytes(rec.tobytes()[:-2])
    with pytest.raises(FormatError, match=r"at byte 5: file truncated: 3 byte\(s\) after the last whole 5-byte record"):
        open_reader(path).read_all()


def test_nas_address_layout_and_channel_count(tmp_path):
    rec = np.empty(4, [("a", ">u2"), ("t", ">u4")])
    rec["a"] = [0, 1, 62, 64]  # ch 0 ON, ch 0 OFF, ch 31 ON, ch 32 ON (a second ear / a 64-channel NAS)
    rec["t"] = [5, 9, 10, 16]  # 0.2 µs ticks
    path = tmp_path / "c.aedat"
    path.write_bytes(rec[:3].tobytes())
    r = open_reader(path, format="nas_aedat")
    assert r.read_all().tolist() == [(1, 0, True), (1, 0, False), (2, 31, True)]
    assert r.counts["ticks_floored"] == 1
    path.write_bytes(rec.tobytes())
    with pytest.raises(FormatError, match="x=32, outside the 32 channel"):
        open_reader(path, format="nas_aedat").read_all()
    assert open_reader(path, format="nas_aedat", sensor_size=64).read_all()["x"].tolist() == [0, 0, 31, 32]
