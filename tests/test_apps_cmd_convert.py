"""clockless convert: every real recording to every writable format and back, exact against REFERENCE.json."""

from __future__ import annotations

import json

import numpy as np
import pytest

import aedat
import faery
from apps.cli import main
from runtime.events import AUDIO_EVENT, DVS_EVENT, make_dvs_events
from sensors.filters import transform_events
from sensors.formats import open_reader

VISION = [
    "dvxplorer_tonic.aedat4", "davis346_evlib.aedat4", "gen3_faery_evt2.raw", "gen3_expelliarmus_evt2.raw",
    "gen4_expelliarmus_evt3.raw", "gen4_triggers_evt3.raw", "dvs_faery.es", "ncars_tonic.dat",
    "dvs128_walking.aedat", "dvs128_right_clamp.aedat", "nmnist_tonic.bin",
]
OUT_EXTS = ["npy", "npz", "h5", "aedat4"]


def convert(*argv):
    return main(["convert", *map(str, argv), "--quiet"])


@pytest.mark.parametrize("name", VISION)
def test_npy_output_matches_reference(shared_data, reference_stats, tmp_path, name):
    ref = reference_stats[f"vision/{name}"]
    out = tmp_path / "o.npy"
    assert convert(shared_data / "vision" / name, out) == 0
    ev = np.load(out)
    assert ev.dtype == DVS_EVENT  # tonic layout x, y, t, p
    assert len(ev) == ref["events"]
    assert (int(ev["t"][0]), int(ev["t"][-1])) == (ref["t_first_us"], ref["t_last_us"])  # no re-basing
    assert int(ev["x"].astype(np.int64).sum()) == ref["sum_x"] and int(ev["y"].astype(np.int64).sum()) == ref["sum_y"]
    assert int(ev["p"].sum()) == ref["on_events"]
    assert (int(ev["x"].min()), int(ev["x"].max())) == (ref["x_min"], ref["x_max"])
    assert bool(np.all(np.diff(ev["t"]) >= 0)) == ref["t_monotonic"]
    side = json.loads((tmp_path / "o.json").read_text())
    reader = open_reader(shared_data / "vision" / name)
    assert side["sensor_size"] == list(reader.spec.shape) and side["events"] == ref["events"]
    assert side["x_mirrored"] == reader.spec.x_mirrored and side["y_up"] == reader.spec.y_up
    assert set(side["counts"]) >= {"wraps_unwrapped", "time_low_backsteps_held", "ticks_floored", "order_repairs"}
    if name == "gen4_expelliarmus_evt3.raw":
        assert side["counts"]["time_low_backsteps_held"] > 0  # the held EVT3 back-steps are counted
    if name.startswith("dvs128"):
        assert side["x_mirrored"] and side["y_up"]  # native jAER orientation kept and declared


@pytest.mark.parametrize("ext", OUT_EXTS)
@pytest.mark.parametrize("name", VISION)
def test_every_readable_to_every_writable_round_trips(shared_data, tmp_path, name, ext):
    src = shared_data / "vision" / name
    original = open_reader(src).read_all()
    out = tmp_path / f"o.{ext}"
    assert convert(src, out, "--chunk-events", 50_000) == 0
    back = open_reader(out)
    np.testing.assert_array_equal(back.read_all(), original)
    assert back.spec.shape[:2] == open_reader(src).spec.shape[:2]


@pytest.mark.parametrize("name", ["gen4_triggers_evt3.raw", "dvs_faery.es", "dvs128_right_clamp.aedat"])
def test_aedat4_output_reads_the_same_in_faery_and_aedat(shared_data, tmp_path, name):
    src = shared_data / "vision" / name
    original = open_reader(src).read_all()
    out = tmp_path / "o.aedat4"
    assert convert(src, out) == 0
    stream = faery.events_stream_from_file(out)
    theirs = np.concatenate(list(stream))
    assert stream.dimensions() == tuple(open_reader(src).spec.shape[:2])
    for got in (theirs, np.concatenate([p["events"] for p in aedat.Decoder(str(out))])):
        np.testing.assert_array_equal(got["t"].astype(np.int64), original["t"])
        np.testing.assert_array_equal(got["x"].astype(np.int64), original["x"])
        np.testing.assert_array_equal(got["y"].astype(np.int64), original["y"])
        np.testing.assert_array_equal(got["on"], original["p"])


def test_cochlea_to_npy_and_hdf5(shared_data, tmp_path):
    src = shared_data / "audio" / "nas_mono_32ch.aedat"
    original = open_reader(src, format="nas_aedat").read_all()
    assert convert(src, tmp_path / "n.npy", "--format", "nas_aedat") == 0
    ev = np.load(tmp_path / "n.npy")
    assert ev.dtype == AUDIO_EVENT and ev.dtype.names == ("t", "x", "p")
    np.testing.assert_array_equal(ev, original)
    side = json.loads((tmp_path / "n.json").read_text())
    assert side["channels"] == 32 and side["counts"]["ticks_floored"] > 0
    assert convert(src, tmp_path / "n.h5", "--format", "nas_aedat") == 0
    np.testing.assert_array_equal(open_reader(tmp_path / "n.h5").read_all(), original)


def test_orientation_options(shared_data, tmp_path):
    src = shared_data / "vision" / "dvs128_walking.aedat"
    native = open_reader(src).read_all()
    assert convert(src, tmp_path / "img.npy", "--image-orientation") == 0
    img = np.load(tmp_path / "img.npy")
    np.testing.assert_array_equal(img["x"], 127 - native["x"])
    np.testing.assert_array_equal(img["y"], 127 - native["y"])
    side = json.loads((tmp_path / "img.json").read_text())
    assert not side["x_mirrored"] and not side["y_up"]
    assert side["orientation_change"] == {"flip_x": True, "flip_y": True, "rotate": 0}

    assert convert(src, tmp_path / "r.npy", "--flip-y", "--rotate", "90") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "r.npy"), transform_events(native, 128, 128, False, True, 90))

    src2 = shared_data / "vision" / "ncars_tonic.dat"
    w, h = open_reader(src2).spec.shape[:2]
    assert convert(src2, tmp_path / "c.npy", "--rotate", "270") == 0
    assert json.loads((tmp_path / "c.json").read_text())["sensor_size"][:2] == [h, w]


def test_repair_order_is_counted(tmp_path):
    ev = make_dvs_events([1, 2, 3, 4], [0, 0, 0, 0], [10, 30, 20, 40], True)
    np.save(tmp_path / "u.npy", ev)
    (tmp_path / "u.json").write_text(json.dumps({"sensor_size": [8, 8, 2]}))
    assert convert(tmp_path / "u.npy", tmp_path / "o.npy") == 2
    assert not (tmp_path / "o.npy").exists()  # no half-written output left behind
    assert convert(tmp_path / "u.npy", tmp_path / "o.npy", "--repair-order") == 0
    np.testing.assert_array_equal(np.load(tmp_path / "o.npy")["t"], [10, 20, 30, 40])
    assert json.loads((tmp_path / "o.json").read_text())["counts"]["order_repairs"] > 0


def test_errors_are_one_line_and_exit_2(shared_data, tmp_path, capsys):
    src = shared_data / "vision" / "dvs128_walking.aedat"
    cases = [
        ([tmp_path / "missing.aedat", tmp_path / "o.npy"], r"missing\.aedat: no such file"),
        ([src, tmp_path / "o.txt"], r"cannot tell the output format from the extension '\.txt'"),
        ([src, tmp_path / "o.npy", "--sensor-size", "100", "100"], r"x=114, outside the 100×100 sensor"),
        ([src, tmp_path / "o.npy", "--sensor-size", "1", "2", "3"], r"--sensor-size: expected W H"),
        ([src, src], r"OUT is the input file"),
        ([src, tmp_path / "o.npy", "--flip-x", "--image-orientation"], r"--image-orientation already chooses"),
        ([shared_data / "audio" / "nas_mono_32ch.aedat", tmp_path / "o.npy", "--format", "nas_aedat", "--flip-x"],
         r"apply to camera events; this file holds 'audio' events"),
        ([shared_data / "audio" / "nas_mono_32ch.aedat", tmp_path / "o.aedat4", "--format", "nas_aedat"],
         r"AEDAT 4.0 stores camera \(polarity\) events"),
    ]
    import re

    for argv, pattern in cases:
        assert convert(*argv) == 2, argv
        err = capsys.readouterr().err
        assert err.startswith("clockless convert: error: ") and err.count("\n") == 1, err
        assert "Traceback" not in err and re.search(pattern, err), err
    assert not (tmp_path / "o.npy").exists() and not (tmp_path / "o.json").exists()


def test_chain_through_every_writable_format_is_lossless(shared_data, tmp_path):
    src = shared_data / "vision" / "dvxplorer_tonic.aedat4"
    original = open_reader(src).read_all()
    prev = src
    for k, ext in enumerate(["h5", "npz", "npy", "aedat4", "npy"]):
        out = tmp_path / f"step{k}.{ext}"
        assert convert(prev, out) == 0
        prev = out
    np.testing.assert_array_equal(np.load(prev), original)
    assert json.loads((tmp_path / "step4.json").read_text())["sensor_size"] == [320, 240, 2]


def test_headerless_hdf5_needs_and_takes_a_sensor_size(shared_data, tmp_path, capsys):
    src = shared_data / "vision" / "events_evlib.hdf5"  # float seconds, no geometry
    assert convert(src, tmp_path / "e.npy") == 2
    assert "--sensor-size" in capsys.readouterr().err
    assert convert(src, tmp_path / "e.npy", "--sensor-size", "640", "480") == 0
    ev = np.load(tmp_path / "e.npy")
    import h5py

    with h5py.File(src) as f:
        t_s = f["raw_events"]["t"][:]
        xs = f["raw_events"]["x"][:]
    assert len(ev) == len(t_s) == 17
    np.testing.assert_array_equal(ev["t"], np.rint(t_s * 1e6).astype(np.int64))  # seconds became whole µs
    np.testing.assert_array_equal(ev["x"], xs)
    assert json.loads((tmp_path / "e.json").read_text())["sensor_size_origin"] == "user"
