"""Prophesee readers: EVT 2.0 / 3.0 against faery's encoder, EVT 2.1 against bytes built from the format
documentation (no real EVT 2.1 recording exists here, and faery 0.7.1 neither reads nor writes EVT 2.1), headers,
geometry origin, triggers, and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import FormatError
from sensors.formats import open_reader


def _sorted(ev, on="p"):
    order = np.lexsort((ev[on], ev["x"], ev["y"], ev["t"]))
    return ev[order]


@pytest.mark.parametrize("version", ["evt2", "evt3"])
def test_faery_encoded_files_read_back_event_for_event(tmp_path, version):
    import faery
    from faery.extension import evt

    rng = np.random.default_rng(3)
    n = 20_000
    ev = np.zeros(n, dtype=faery.EVENTS_DTYPE)
    ev["t"] = np.sort(rng.integers(10, 40_000_000, n))  # crosses the 24-bit EVT 3.0 wrap at 16.8 s
    ev["x"] = rng.integers(0, 1280, n)
    ev["y"] = rng.integers(0, 720, n)
    ev["on"] = rng.integers(0, 2, n)
    path = tmp_path / f"f.{version}.raw"
    with evt.Encoder(path, version, False, (1280, 720), True) as enc:
        enc.write({"events": ev})
    reader = open_reader(path)
    got = reader.read_all()
    assert reader.format == version and reader.spec.shape == (1280, 720, 2) and reader.sensor_size_origin == "header"
    a, b = _sorted(got), _sorted(ev, "on")
    assert np.array_equal(a["t"], b["t"].astype(np.int64))
    assert np.array_equal(a["x"], b["x"]) and np.array_equal(a["y"], b["y"]) and np.array_equal(a["p"], b["on"])
    if version == "evt3":
        assert reader.counts["wraps_unwrapped"] == 2


def _evt21_words(swap=False):
    """EVT 2.1 words from the documentation: type in bits 63-60, t low 59-54, x (32-aligned) 53-43, y 42-32,
    valid mask 31-0 for CD; TIME_HIGH's 28 bits in 59-32; EXT_TRIGGER channel 44-40, value bit 32."""
    words = [
        (8 << 60) | (1000 << 32),  # TIME_HIGH: base 64 000 µs
        (1 << 60) | (5 << 54) | (64 << 43) | (10 << 32) | 0b1001,  # ON at x=64, 67, y=10, t=64 005
        (0 << 60) | (7 << 54) | (96 << 43) | (11 << 32) | 0x8000_0000,  # OFF at x=127, y=11, t=64 007
        (0xA << 60) | (9 << 54) | (3 << 40) | (1 << 32),  # trigger channel 3 rising at 64 009
        (0xE << 60) | 12345,  # OTHERS: ignored
        (8 << 60) | (1001 << 32),
        (1 << 60) | (0 << 54) | (0 << 43) | (0 << 32) | 1,  # ON at 0,0 t=64 064
    ]
    arr = np.array(words, dtype=np.uint64)
    if swap:
        arr = (arr << np.uint64(32)) | (arr >> np.uint64(32))
    return arr


@pytest.mark.parametrize("legacy", [False, True])
def test_evt21_built_from_the_documentation(tmp_path, legacy):
    path = tmp_path / "doc.raw"
    fmt = "EVT21;endianness=legacy" if legacy else "EVT21"
    path.write_bytes(f"% format {fmt};width=1280;height=720\n% end\n".encode() + _evt21_words(legacy).tobytes())
    reader = open_reader(path)
    ev = reader.read_all()
    assert reader.format == "evt21" and reader.spec.shape == (1280, 720, 2)
    assert ev["x"].tolist() == [64, 67, 127, 0]
    assert ev["y"].tolist() == [10, 10, 11, 0]
    assert ev["t"].tolist() == [64_005, 64_005, 64_007, 64_064]
    assert ev["p"].tolist() == [True, True, False, True]
    trig = reader.triggers()
    assert trig.tolist() == [(64_009, 3, True)]
    assert reader.counts["triggers"] == 1


def test_evt2_triggers_are_returned_separately(tmp_path):
    words = np.array(
        [(8 << 28) | 10, (1 << 28) | (3 << 22) | (5 << 11) | 6, (0xA << 28) | (4 << 22) | (2 << 8) | 0,
         (0 << 28) | (9 << 22) | (1 << 11) | 2],
        dtype=np.uint32,
    )
    path = tmp_path / "t.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 640x480\n" + words.tobytes())
    reader = open_reader(path)
    assert reader.read_all()[["x", "y", "t"]].tolist() == [(5, 6, 643), (1, 2, 649)]
    assert reader.triggers().tolist() == [(644, 2, False)]


def test_geometry_origin_rules(shared_data, tmp_path):
    gen3 = shared_data / "vision" / "gen3_faery_evt2.raw"
    r = open_reader(gen3)
    assert (r.spec.shape[:2], r.sensor_size_origin) == ((640, 480), "camera model in header")
    r = open_reader(gen3, sensor_size=(1280, 720))
    assert (r.spec.shape[:2], r.sensor_size_origin) == ((1280, 720), "user")
    bare = tmp_path / "bare.raw"
    bare.write_bytes(b"% evt 2.0\n" + gen3.read_bytes()[gen3.read_bytes().index(b"% evt 2.0\n") + 10:][-4000:])
    r = open_reader(bare)
    assert (r.spec.shape[:2], r.sensor_size_origin) == ((1280, 720), "format default")


def test_events_outside_the_sensor_are_an_error(shared_data):
    reader = open_reader(shared_data / "vision" / "gen3_faery_evt2.raw", sensor_size=(320, 240))
    with pytest.raises(FormatError, match=r"event \d+ has [xy]=\d+, outside the 320×240 sensor \(size from user"):
        reader.read_all()


def test_header_that_claims_another_format(shared_data):
    with pytest.raises(FormatError, match="header says .*EVT 2.0.* but format 'evt3'"):
        open_reader(shared_data / "vision" / "gen3_faery_evt2.raw", format="evt3")


def test_truncated_word_names_the_byte_offset(shared_data, tmp_path):
    src = (shared_data / "vision" / "gen3_expelliarmus_evt2.raw").read_bytes()
    cut = tmp_path / "cut.raw"
    cut.write_bytes(src[:-3])
    with pytest.raises(FormatError, match=r"at byte \d+: file truncated: 1 byte\(s\) left after the last whole 4-byte"):
        open_reader(cut).read_all()


def test_reserved_word_type_names_offset_expected_and_found(tmp_path):
    words = np.array([(8 << 28) | 1, (1 << 28) | 5, (0xC << 28) | 7], dtype=np.uint32)
    path = tmp_path / "bad.raw"
    header = b"% evt 2.0\n% geometry 640x480\n"
    path.write_bytes(header + words.tobytes())
    with pytest.raises(FormatError, match=rf"at byte {len(header) + 8}: EVT2 word 0xc0000007 has reserved type 0xc"):
        open_reader(path).read_all()


def test_raw_without_encoding_needs_a_format(tmp_path):
    path = tmp_path / "x.raw"
    path.write_bytes(b"% Date 2020\n" + np.array([(8 << 28) | 1], np.uint32).tobytes())
    with pytest.raises(FormatError, match="pass format='evt2', 'evt21' or 'evt3'"):
        open_reader(path)
    assert open_reader(path, format="evt2").read_all().shape[0] == 0


def test_dat_with_geometry_and_truncation(tmp_path):
    ts = np.array([5, 9, 9, 40], np.uint32)
    data = np.array([1 | (2 << 14) | (1 << 28), 3 | (4 << 14), 639 | (479 << 14) | (1 << 28), 7], np.uint32)
    body = np.empty(4, [("t", "<u4"), ("d", "<u4")])
    body["t"], body["d"] = ts, data
    header = b"% Data file containing CD events\n% Version 2\n% Width 640\n% Height 480\n"
    path = tmp_path / "g.dat"
    path.write_bytes(header + bytes([0x0C, 8]) + body.tobytes())
    reader = open_reader(path)
    ev = reader.read_all()
    assert reader.format == "dat" and reader.spec.shape == (640, 480, 2) and reader.sensor_size_origin == "header"
    assert ev.tolist() == [(1, 2, 5, True), (3, 4, 9, False), (639, 479, 9, True), (7, 0, 40, False)]
    path.write_bytes(header + bytes([0x0C, 8]) + body.tobytes()[:-5])
    with pytest.raises(FormatError, match=r"truncated: 3 byte\(s\) after the last whole 8-byte event"):
        open_reader(path).read_all()
    path.write_bytes(header + bytes([0x0E, 8]) + body.tobytes())
    with pytest.raises(FormatError, match="event type byte is 0x0e, expected 0x00 or 0x0c"):
        open_reader(path)


def test_dat_32bit_timestamps_unwrap(tmp_path):
    body = np.empty(3, [("t", "<u4"), ("d", "<u4")])
    body["t"] = [4_294_967_000, 4_294_967_290, 100]
    body["d"] = [1, 2, 3]
    path = tmp_path / "w.dat"
    path.write_bytes(b"% Version 2\n" + bytes([0, 8]) + body.tobytes())
    reader = open_reader(path)
    assert reader.read_all()["t"].tolist() == [4_294_967_000, 4_294_967_290, (1 << 32) + 100]
    assert reader.counts["wraps_unwrapped"] == 1


def test_evt2_event_going_back_is_an_order_error_or_a_repair(tmp_path):
    words = np.array(
        [(8 << 28) | 1, (1 << 28) | (9 << 22) | (1 << 11) | 1, (1 << 28) | (4 << 22) | (2 << 11) | 2,
         (0 << 28) | (12 << 22) | (3 << 11) | 3],
        dtype=np.uint32,
    )
    path = tmp_path / "o.raw"
    path.write_bytes(b"% evt 2.0\n% geometry 640x480\n" + words.tobytes())
    from runtime.errors import StreamOrderError

    with pytest.raises(StreamOrderError, match=r"event 1 has t=68 µs after t=73 µs"):
        open_reader(path).read_all()
    reader = open_reader(path, repair_order=True)
    assert reader.read_all()["t"].tolist() == [68, 73, 76] and reader.counts["order_repairs"] == 1


@pytest.mark.parametrize("name", ["gen3_expelliarmus_evt2.raw", "gen4_expelliarmus_evt3.raw", "gen4_triggers_evt3.raw"])
def test_memory_map_windows_give_the_same_events(shared_data, monkeypatch, name):
    import sensors.formats.prophesee as prophesee

    path = shared_data / "vision" / name
    whole = open_reader(path).read_all()
    trig = open_reader(path).triggers()
    monkeypatch.setattr(prophesee, "WINDOW_BYTES", 12_288)  # many windows, data start not page aligned
    reader = open_reader(path)
    assert np.array_equal(np.concatenate(list(reader.chunks(max_events=5000))), whole)
    assert np.array_equal(reader.triggers(), trig)
