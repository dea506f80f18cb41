"""Generic containers (.npy, .npz, HDF5): column names, time units, geometry sources, streaming, order rules."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest

from runtime.errors import FormatError, StreamOrderError
from runtime.events import AUDIO_EVENT, DVS_EVENT
from sensors.formats import open_reader


def _events(n=5000, seed=0):
    rng = np.random.default_rng(seed)
    ev = np.empty(n, DVS_EVENT)
    ev["x"] = rng.integers(0, 346, n)
    ev["y"] = rng.integers(0, 260, n)
    ev["t"] = np.sort(rng.integers(0, 10**7, n))
    ev["p"] = rng.integers(0, 2, n)
    return ev


def test_npy_tonic_layout_needs_a_size_and_takes_the_sidecar(tmp_path):
    ev = _events()
    path = tmp_path / "a.npy"
    np.save(path, ev)
    with pytest.raises(FormatError, match="does not give its sensor size .* pass sensor_size / --sensor-size"):
        open_reader(path)
    r = open_reader(path, sensor_size=(346, 260))
    assert r.sensor_size_origin == "user" and np.array_equal(r.read_all(), ev)
    (tmp_path / "a.json").write_text(json.dumps({"sensor_size": [346, 260, 2], "y_up": True}))
    r = open_reader(path)
    assert r.sensor_size_origin == "sidecar json" and r.spec.y_up and r.spec.shape == (346, 260, 2)
    parts = list(r.chunks(max_events=999))
    assert max(p.shape[0] for p in parts) <= 999 and np.array_equal(np.concatenate(parts), ev)


def test_npy_other_field_names_float_seconds_and_signed_polarity(tmp_path):
    ev = _events(300)
    other = np.empty(300, [("ts", "<f8"), ("xs", "<u2"), ("ys", "<u2"), ("polarity", "<i1")])
    other["ts"] = ev["t"] / 1e6
    other["xs"], other["ys"] = ev["x"], ev["y"]
    other["polarity"] = np.where(ev["p"], 1, -1)
    path = tmp_path / "b.npy"
    np.save(path, other)
    got = open_reader(path, sensor_size=(346, 260)).read_all()
    assert np.array_equal(got, ev)


def test_npy_audio_layout(tmp_path):
    au = np.empty(4, AUDIO_EVENT)
    au["t"], au["x"], au["p"] = [1, 2, 2, 9], [0, 5, 63, 1], [True, False, True, False]
    path = tmp_path / "c.npy"
    np.save(path, au)
    r = open_reader(path, sensor_size=64)
    assert r.spec.kind == "audio" and r.spec.shape == (64, 2) and np.array_equal(r.read_all(), au)
    with pytest.raises(FormatError, match=r"event 2 has x=63, outside the 32 channel"):
        open_reader(path, sensor_size=32).read_all()


def test_unsorted_events_error_names_the_index_or_are_repaired(tmp_path):
    ev = _events(50)
    ev["t"][30] = ev["t"][10]
    path = tmp_path / "u.npy"
    np.save(path, ev)
    with pytest.raises(StreamOrderError, match=rf"event 30 has t={ev['t'][10]} µs after t={ev['t'][29]} µs"):
        open_reader(path, sensor_size=(346, 260)).read_all()
    r = open_reader(path, sensor_size=(346, 260), repair_order=True)
    got = r.read_all()
    assert np.all(np.diff(got["t"]) >= 0) and r.counts["order_repairs"] == 1
    assert sorted(got.tolist()) == sorted(ev.tolist())


def test_repair_across_chunks_holds_late_events_at_the_chunk_end(tmp_path):
    t = np.array([10, 20, 30, 40, 15, 50], np.int64)
    ev = np.zeros(6, DVS_EVENT)
    ev["t"] = t
    path = tmp_path / "late.npy"
    np.save(path, ev)
    r = open_reader(path, sensor_size=(4, 4), repair_order=True)
    got = np.concatenate(list(r.chunks(max_events=4)))
    assert got["t"].tolist() == [10, 20, 30, 40, 40, 50] and r.counts["order_repairs"] == 1


def test_npz_structured_member_with_writer_meta_and_column_members(tmp_path):
    ev = _events(700)
    path = tmp_path / "s.npz"
    meta = json.dumps({"sensor_size": [346, 260, 2], "x_mirrored": True})
    np.savez_compressed(path, events=ev, meta=np.array(meta))
    r = open_reader(path)
    assert r.sensor_size_origin == "header" and r.spec.x_mirrored and np.array_equal(r.read_all(), ev)
    cols = tmp_path / "c.npz"
    np.savez(cols, x=ev["x"].astype(np.int32), y=ev["y"], t=ev["t"], p=ev["p"].astype(np.uint8), sensor_size=[346, 260])
    r = open_reader(cols)
    assert np.array_equal(np.concatenate(list(r.chunks(max_events=128))), ev)
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=ev["x"], y=ev["y"][:5], t=ev["t"], p=ev["p"], sensor_size=[346, 260])
    with pytest.raises(FormatError, match="column members differ in length"):
        open_reader(bad)


def test_hdf5_layouts_units_and_dsec_offset(tmp_path):
    ev = _events(900)
    path = tmp_path / "e.h5"
    with h5py.File(path, "w") as f:
        g = f.create_group("events")
        g["x"], g["y"], g["t"], g["p"] = ev["x"], ev["y"], ev["t"] - 5000, ev["p"].astype(np.int8)
        f["t_offset"] = np.int64(5000)
        f.attrs["width"], f.attrs["height"] = 346, 260
    r = open_reader(path)
    assert r.format == "hdf5" and r.sensor_size_origin == "header"
    assert np.array_equal(np.concatenate(list(r.chunks(max_events=100))), ev)
    comp = tmp_path / "compound.h5"
    rec = np.empty(900, [("t", "<f8"), ("x", "<u2"), ("y", "<u2"), ("p", "<i1")])
    rec["t"], rec["x"], rec["y"], rec["p"] = ev["t"] / 1e6, ev["x"], ev["y"], np.where(ev["p"], 1, 0)
    with h5py.File(comp, "w") as f:
        f["CD/events"] = rec
    assert np.array_equal(open_reader(comp, sensor_size=(346, 260)).read_all(), ev)
    empty = tmp_path / "none.h5"
    with h5py.File(empty, "w") as f:
        f["something"] = np.arange(3)
    with pytest.raises(FormatError, match="no event datasets found"):
        open_reader(empty)


def test_writer_files_round_trip(shared_data, tmp_path):
    from sensors.writers import open_writer

    src = open_reader(shared_data / "vision" / "dvs128_walking.aedat")
    ev = src.read_all()
    for ext in ("npy", "npz", "h5", "aedat4"):
        path = tmp_path / f"w.{ext}"
        with open_writer(path, src.spec) as w:
            for chunk in src.chunks(max_events=3000):
                w.write(chunk)
        back = open_reader(path)
        assert np.array_equal(back.read_all(), ev)
        assert back.spec.shape == src.spec.shape
        if ext != "aedat4":
            assert back.spec.x_mirrored and back.spec.y_up
