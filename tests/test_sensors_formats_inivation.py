"""iniVation / jAER readers beyond the reference files: AEDAT 2.0 DAVIS layout and special events, AEDAT 3.1
(no real recording ships with the project: files are built here from libcaer's packet description), AEDAT 4.0
side streams and bad input."""

from __future__ import annotations

import numpy as np
import pytest

from runtime.errors import FormatError
from sensors.formats import open_reader


# -- AEDAT 2.0 --------------------------------------------------------------------------------------------------
def _aedat2(path, chip, addresses, timestamps):
    rec = np.empty(len(addresses), [("a", ">u4"), ("t", ">u4")])
    rec["a"], rec["t"] = addresses, timestamps
    header = f"#!AER-DAT2.0\r\n# This is a raw AE data file\r\n# AEChip: {chip}\r\n#End Of ASCII Header\r\n"
    path.write_bytes(header.encode() + rec.tobytes())


def test_aedat2_davis_layout_skips_aps_imu_and_exposes_specials(tmp_path):
    def dvs(x, y, on):
        return (y << 22) | (x << 12) | (int(on) << 11)

    addrs = [dvs(3, 4, True), 0x8000_0000 | (5 << 12), dvs(239, 179, False), 0x8000_0C00, dvs(1, 2, False) | 0x400]
    path = tmp_path / "davis.aedat"
    _aedat2(path, "eu.seebetter.ini.chips.davis.DAVIS240C", addrs, [10, 11, 12, 13, 14])
    reader = open_reader(path)
    ev = reader.read_all()
    assert reader.spec.shape == (240, 180, 2) and reader.spec.y_up and not reader.spec.x_mirrored
    assert ev.tolist() == [(3, 4, 10, True), (239, 179, 12, False)]
    assert reader.counts["skipped_packets"] == {"aps samples": 1, "imu samples": 1}
    assert reader.triggers()["t"].tolist() == [14]


def test_aedat2_dvs128_unwraps_32bit_time_and_flags_orientation(tmp_path):
    path = tmp_path / "w.aedat"
    # jAER DVS128: stored x 5 -> 127 - 5; y 7; bit 0 = 0 is ON
    _aedat2(path, "ch.unizh.ini.jaer.chip.retina.DVS128", [(7 << 8) | (5 << 1), 1, 0x8000], [4_294_967_290, 6, 9])
    reader = open_reader(path)
    assert reader.spec.x_mirrored and reader.spec.y_up
    assert reader.read_all().tolist() == [(122, 7, 4_294_967_290, True), (127, 0, (1 << 32) + 6, False)]
    assert reader.counts["wraps_unwrapped"] == 1 and reader.counts["triggers"] == 1


def test_aedat2_unknown_chip_needs_a_size(tmp_path):
    path = tmp_path / "u.aedat"
    _aedat2(path, "some.Chip", [0], [1])
    with pytest.raises(FormatError, match="unknown AEChip 'some.Chip'"):
        open_reader(path)
    assert open_reader(path, sensor_size=(64, 64)).read_all().shape[0] == 1


def test_aedat2_time_going_back_is_an_order_error_or_a_counted_repair(tmp_path):
    from runtime.errors import StreamOrderError

    path = tmp_path / "o.aedat"
    _aedat2(path, "DVS128", [2, 4, 6, 8], [100, 200, 150, 300])
    with pytest.raises(StreamOrderError, match=r"event 2 has t=150 µs after t=200 µs"):
        open_reader(path).read_all()
    reader = open_reader(path, repair_order=True)
    assert reader.read_all()["t"].tolist() == [100, 150, 200, 300]
    assert reader.counts["order_repairs"] == 1


# -- AEDAT 3.1 --------------------------------------------------------------------------------------------------
_HEADER = np.dtype(
    [("type", "<i2"), ("source", "<i2"), ("size", "<i4"), ("tsoff", "<i4"), ("tsover", "<i4"),
     ("cap", "<i4"), ("num", "<i4"), ("valid", "<i4")]
)


def _packet(kind, events_bytes, n, size, overflow=0, valid=None):
    h = np.zeros(1, _HEADER)
    h["type"], h["source"], h["size"], h["tsoff"] = kind, 1, size, 4
    h["tsover"], h["cap"], h["num"], h["valid"] = overflow, n, n, n if valid is None else valid
    return h.tobytes() + events_bytes


def _polarity(xs, ys, ts, ons, valid=None):
    ev = np.empty(len(xs), [("d", "<u4"), ("t", "<i4")])
    valid = [True] * len(xs) if valid is None else valid
    ev["d"] = [(x << 17) | (y << 2) | (int(o) << 1) | int(v) for x, y, o, v in zip(xs, ys, ons, valid)]
    ev["t"] = ts
    return ev.tobytes()


def _aedat31(path, packets, source="DVS128"):
    header = f"#!AER-DAT3.1\r\n#Format: RAW\r\n#Source 1: {source}\r\n#Start-Time: 2017-05-09\r\n#!END-HEADER\r\n"
    path.write_bytes(header.encode() + b"".join(packets))


def test_aedat31_polarity_packets_built_from_the_format_description(tmp_path):
    path = tmp_path / "g.aedat"
    frame = _packet(2, bytes(40), 1, 40)
    p1 = _packet(1, _polarity([0, 127, 5], [0, 127, 9], [10, 20, 20], [True, False, True], [True, True, False]), 3, 8,
                 valid=2)
    p2 = _packet(1, _polarity([64], [32], [5], [False]), 1, 8, overflow=1)  # time continues past 2^31 µs
    _aedat31(path, [p1, frame, p2])
    reader = open_reader(path)
    ev = reader.read_all()
    assert reader.format == "aedat31" and reader.spec.shape == (128, 128, 2)
    assert reader.sensor_size_origin == "camera model in header"
    assert ev.tolist() == [(0, 0, 10, True), (127, 127, 20, False), (64, 32, (1 << 31) + 5, False)]
    assert reader.counts["skipped_packets"] == {"invalid polarity events": 1, "frame": 1}


def test_aedat31_bad_packets(tmp_path):
    path = tmp_path / "b.aedat"
    good = _packet(1, _polarity([1], [1], [1], [True]), 1, 8)
    _aedat31(path, [good[:-3]])
    with pytest.raises(FormatError, match="truncated inside a polarity packet"):
        open_reader(path).read_all()
    _aedat31(path, [_packet(77, b"", 0, 8)])
    with pytest.raises(FormatError, match="unknown eventType 77"):
        open_reader(path).read_all()
    _aedat31(path, [_packet(1, b"", 0, 0)])
    with pytest.raises(FormatError, match="eventSize=0"):
        open_reader(path).read_all()
    _aedat31(path, [good], source="Mystery")
    with pytest.raises(FormatError, match="sensor size"):
        open_reader(path)
    assert open_reader(path, sensor_size=(4, 4)).read_all().shape[0] == 1


# -- AEDAT 4.0 --------------------------------------------------------------------------------------------------
def test_aedat4_side_streams_are_skipped_and_counted(shared_data):
    reader = open_reader(shared_data / "vision" / "davis346_evlib.aedat4")
    reader.read_all()
    skipped = reader.counts["skipped_packets"]
    assert set(skipped) == {"frame", "imus", "triggers"} and all(v > 0 for v in skipped.values())
    trig = reader.triggers()
    assert trig.shape[0] == reader.counts["triggers"] > 0
    assert np.all(np.diff(trig["t"]) >= 0)


def test_aedat4_truncated_and_wrong_magic(shared_data, tmp_path):
    src = (shared_data / "vision" / "dvxplorer_tonic.aedat4").read_bytes()
    cut = tmp_path / "cut.aedat4"
    cut.write_bytes(src[: len(src) // 2])
    with pytest.raises(FormatError, match="cut.aedat4"):
        open_reader(cut).read_all()
    wrong = tmp_path / "wrong.aedat4"
    wrong.write_bytes(b"#!AER-DAT9.0\r\n" + src[14:])
    with pytest.raises(FormatError, match="AEDAT version '9.0' is not supported"):
        open_reader(wrong)


@pytest.mark.parametrize("name", ["dvxplorer_tonic.aedat4", "davis346_evlib.aedat4"])
def test_aedat4_memory_map_windows_give_the_same_events(shared_data, monkeypatch, name):
    import sensors.formats.aedat4 as aedat4

    path = shared_data / "vision" / name
    plain = open_reader(path)
    whole = plain.read_all()
    monkeypatch.setattr(aedat4, "_WINDOW", 20_000)  # packets straddle windows
    reader = open_reader(path)
    assert np.array_equal(np.concatenate(list(reader.chunks(max_events=1000))), whole)
    assert reader.counts == plain.counts


def test_aedat4_own_decoder_matches_the_aedat_package(shared_data):
    for name in ("dvxplorer_tonic.aedat4", "davis346_evlib.aedat4"):
        reader = open_reader(shared_data / "vision" / name)
        ours = reader.read_all()
        theirs = np.concatenate(list(reader._decode_aedat(1 << 16)))  # the aedat package's decoding
        assert np.array_equal(ours, theirs)


@pytest.mark.parametrize("compression", ["LZ4_FASTEST", "LZ4_HIGHEST", "ZSTD_DEFAULT", None])
def test_aedat4_written_by_faery_with_each_compression(shared_data, tmp_path, compression):
    from faery.extension import aedat as faery_aedat

    src = shared_data / "vision" / "davis346_evlib.aedat4"
    with faery_aedat.Decoder(src) as dec:
        description = dec.description()
        packets = [(track.id, packet) for track, packet in dec]
    path = tmp_path / f"{compression}.aedat4"
    with faery_aedat.Encoder(path, description, None if compression is None else getattr(faery_aedat, compression)) as enc:
        for track_id, packet in packets:
            enc.write(track_id, packet)
    original = open_reader(src)
    want = original.read_all()
    reader = open_reader(path)
    assert reader.compression == ("NONE" if compression is None else compression.split("_")[0])
    assert np.array_equal(reader.read_all(), want)
    assert reader.counts["skipped_packets"] == original.counts["skipped_packets"]
    assert reader.counts["triggers"] == original.counts["triggers"] > 0
