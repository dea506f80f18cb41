"""Every reader reproduces REFERENCE.json exactly on the real recordings (one parametrised test, no per-file cases),
and the two files without reference statistics (HDF5 smoke file, NAS cochlea) pass their sanity checks."""

from __future__ import annotations

import json

import numpy as np
import pytest

from runtime.events import AUDIO_EVENT, DVS_EVENT
from sensors.formats import open_reader
from tests.conftest import SHARED_DATA

REFERENCE = json.loads((SHARED_DATA / "REFERENCE.json").read_text()) if SHARED_DATA.is_dir() else {}


def _stats(events: np.ndarray) -> dict:
    t = events["t"]
    return {
        "events": int(events.shape[0]),
        "t_first_us": int(t[0]),
        "t_last_us": int(t[-1]),
        "t_monotonic": bool(np.all(np.diff(t) >= 0)),
        "x_min": int(events["x"].min()),
        "x_max": int(events["x"].max()),
        "y_min": int(events["y"].min()),
        "y_max": int(events["y"].max()),
        "sum_x": int(events["x"].astype(np.int64).sum()),
        "sum_y": int(events["y"].astype(np.int64).sum()),
        "on_events": int(np.count_nonzero(events["p"])),
    }


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_reader_reproduces_reference(shared_data, reference_stats, name):
    ref = reference_stats[name]
    reader = open_reader(shared_data / name)
    events = reader.read_all()
    assert events.dtype == DVS_EVENT
    got = _stats(events)
    want = {k: ref[k] for k in got}
    assert got == want
    w, h = reader.spec.shape[:2]
    assert got["x_max"] < w and got["y_max"] < h
    assert reader.sensor_size_origin in ("header", "camera model in header", "format default")


@pytest.mark.parametrize("name", sorted(REFERENCE))
def test_small_chunks_give_the_same_events(shared_data, name):
    reader = open_reader(shared_data / name)
    whole = reader.read_all()
    counts = dict(reader.counts)
    parts = list(reader.chunks(max_events=777))
    assert all(0 < p.shape[0] <= 777 for p in parts)
    assert np.array_equal(np.concatenate(parts), whole)
    assert reader.counts == counts


def test_hdf5_float_seconds_layout(shared_data):
    import h5py

    path = shared_data / "vision" / "events_evlib.hdf5"
    reader = open_reader(path, sensor_size=(346, 260))
    assert reader.format == "hdf5" and reader.sensor_size_origin == "user"
    events = reader.read_all()
    with h5py.File(path, "r") as f:
        g = f["raw_events"]
        t_s, x, y, p = g["t"][:], g["x"][:], g["y"][:], g["p"][:]
    assert events.shape[0] == t_s.shape[0] == 17
    assert np.array_equal(events["t"], np.rint(t_s * 1e6).astype(np.int64))
    assert np.array_equal(events["x"], x) and np.array_equal(events["y"], y) and np.array_equal(events["p"], p)


def test_nas_cochlea_sanity(shared_data):
    path = shared_data / "audio" / "nas_mono_32ch.aedat"
    reader = open_reader(path, format="nas_aedat")
    events = reader.read_all()
    assert events.dtype == AUDIO_EVENT and reader.spec.kind == "audio" and reader.spec.shape == (32, 2)
    assert events.shape[0] == path.stat().st_size // 6
    assert np.all(np.diff(events["t"]) >= 0)
    pairs = set(zip(events["x"].tolist(), events["p"].tolist()))
    assert pairs == {(c, p) for c in range(32) for p in (False, True)}
    raw = np.frombuffer(path.read_bytes(), dtype=[("a", ">u2"), ("t", ">u4")])
    assert np.array_equal(events["t"], raw["t"].astype(np.int64) // 5)
    assert reader.counts["ticks_floored"] == int(np.count_nonzero(raw["t"] % 5))


def test_nas_needs_explicit_format(shared_data):
    from runtime.errors import FormatError

    with pytest.raises(FormatError, match="nas_aedat"):
        open_reader(shared_data / "audio" / "nas_mono_32ch.aedat")


def test_evt3_time_low_backsteps_are_held_and_counted(shared_data):
    reader = open_reader(shared_data / "vision" / "gen4_expelliarmus_evt3.raw")
    events = reader.read_all()
    assert reader.counts["time_low_backsteps_held"] > 0
    assert np.all(np.diff(events["t"]) >= 0)


def test_evt3_triggers_are_separate(shared_data):
    from faery.extension import evt

    path = shared_data / "vision" / "gen4_triggers_evt3.raw"
    reader = open_reader(path)
    reader.read_all()
    trig = reader.triggers()
    peer = []
    with evt.Decoder(path, (1280, 720), "evt3") as d:
        for packet in d:
            if "triggers" in packet:
                peer.append(packet["triggers"])
    peer = np.concatenate(peer) if peer else np.empty(0)
    assert trig.shape[0] == peer.shape[0] == reader.counts["triggers"] > 0
    assert np.array_equal(trig["t"], peer["t"].astype(np.int64))
    assert np.array_equal(trig["id"], peer["source"]) and np.array_equal(trig["p"], peer["rising"])
