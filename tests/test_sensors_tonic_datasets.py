"""Replaying tonic datasets: an in-memory dataset with tonic's interface, tonic's real NMNIST class on the real
N-MNIST sample, tonic transforms on samples and on packets, labels in info()."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tonic
import tonic.transforms as T

from runtime.errors import StreamOrderError
from runtime.events import AUDIO_EVENT, DVS_EVENT
from runtime.executor import run
from runtime.graph import Graph
from runtime.packet import check_packet
from runtime.stages import CountSink
from sensors.filters import EventRangeError
from sensors.tonic_datasets import DatasetError, TonicDatasetSource


class TinyGestures:
    """Mimics a tonic vision dataset: class attributes sensor_size/dtype/classes, (events, target) items."""

    sensor_size = (32, 24, 2)
    dtype = np.dtype([("x", int), ("y", int), ("t", int), ("p", int)])  # tonic's own int64 fields
    ordering = dtype.names
    classes = ["wave", "clap", "spin"]

    def __init__(self, n=4, seed=0, transform=None, events_per_sample=700):
        rng = np.random.default_rng(seed)
        self.samples = []
        for _ in range(n):
            m = int(rng.integers(events_per_sample // 2, events_per_sample))
            ev = np.zeros(m, dtype=self.dtype)
            ev["x"] = rng.integers(0, 32, m)
            ev["y"] = rng.integers(0, 24, m)
            ev["t"] = np.sort(rng.integers(0, 50_000, m))
            ev["p"] = rng.integers(0, 2, m)
            self.samples.append(ev)
        self.targets = [int(t) for t in rng.integers(0, 3, n)]
        self.transform = transform

    def __getitem__(self, i):
        ev = self.samples[i].copy()
        if self.transform is not None:
            ev = self.transform(ev)
        return ev, self.targets[i]

    def __len__(self):
        return len(self.samples)


def replay(source):
    opened = source.open()
    packets = list(opened)
    last = None
    for p in packets:
        check_packet(p.events, p.t_end_us, where="test", t_min_us=last)
        last = p.t_end_us
    events = np.concatenate([p.events for p in packets]) if packets else np.empty(0, opened.spec.dtype)
    return opened, packets, events


def test_samples_replay_in_order_with_labels_and_spans():
    ds = TinyGestures(n=4)
    opened, packets, got = replay(TonicDatasetSource(ds, gap_us=10_000))
    assert opened.spec.kind == "dvs" and opened.spec.shape == (32, 24, 2) and got.dtype == DVS_EVENT
    info = opened.info()
    assert [s["index"] for s in info["samples"]] == [0, 1, 2, 3]
    assert [s["target"] for s in info["samples"]] == ds.targets
    assert info["classes"] == ds.classes and info["dataset"] == "TinyGestures"
    assert len(got) == sum(len(s) for s in ds.samples)
    a = 0
    for k, (s, meta) in enumerate(zip(ds.samples, info["samples"])):
        part = got[a : a + len(s)]
        a += len(s)
        np.testing.assert_array_equal(part["x"], s["x"])
        np.testing.assert_array_equal(part["p"], s["p"].astype(bool))
        np.testing.assert_array_equal(part["t"], s["t"] + meta["t_shift_us"])  # a pure shift, spacing kept
        assert (meta["t_start_us"], meta["t_end_us"]) == (int(part["t"][0]), int(part["t"][-1]) + 1)
        if k:
            assert meta["t_start_us"] == info["samples"][k - 1]["t_end_us"] + 10_000
    assert info["samples"][0]["t_shift_us"] == 0  # the first sample keeps its own times


def test_indices_select_samples():
    ds = TinyGestures(n=5, seed=1)
    opened, _, got = replay(TonicDatasetSource(ds, indices=[3, 1]))
    assert [s["index"] for s in opened.info()["samples"]] == [3, 1]
    assert len(got) == len(ds.samples[3]) + len(ds.samples[1])


def test_tonic_transform_on_samples_equals_tonic_dataset_transform():
    tf = T.Compose([T.Denoise(filter_time=3_000), T.Downsample(spatial_factor=0.5)])
    ours = TonicDatasetSource(TinyGestures(n=3, seed=2), transform=tf, sensor_size=(16, 12, 2), gap_us=0)
    theirs = TonicDatasetSource(TinyGestures(n=3, seed=2, transform=tf), sensor_size=(16, 12, 2), gap_us=0)
    _, _, a = replay(ours)
    _, _, b = replay(theirs)
    np.testing.assert_array_equal(a, b)
    assert 0 < len(a) < sum(len(s) for s in TinyGestures(n=3, seed=2).samples)  # Denoise removed some


def test_tonic_transforms_run_on_packets_directly():
    ds = TinyGestures(n=1, seed=3)
    _, packets, got = replay(TonicDatasetSource(ds, max_events=97, max_span_us=None))
    assert len(packets) > 3
    # a pointwise tonic transform on each packet equals the transform on the whole stream
    per_packet = np.concatenate([T.Downsample(spatial_factor=0.5)(np.array(p.events)) for p in packets])
    np.testing.assert_array_equal(per_packet, T.Downsample(spatial_factor=0.5)(np.array(got)))
    # and tonic's frame binning takes packets as they are
    frames = sum(T.ToFrame(sensor_size=ds.sensor_size, event_count=len(p))(np.array(p.events)).sum()
                 for p in packets if len(p))
    assert frames == len(got)


def test_real_tonic_nmnist_class_on_the_real_sample(shared_data, tmp_path):
    """tonic.datasets.NMNIST itself, pointed at a folder laid out as after its download (10 labels × 1000 links
    to the real N-MNIST sample), so no download happens."""
    sample = shared_data / "vision" / "nmnist_tonic.bin"
    root = tmp_path / "NMNIST"
    for label in range(10):
        d = root / "Test" / str(label)
        d.mkdir(parents=True)
        for k in range(1000):
            os.symlink(sample, d / f"{k:05d}.bin")
    (root / "test.zip").write_bytes(b"")
    ds = tonic.datasets.NMNIST(save_to=str(tmp_path), train=False)
    assert len(ds) == 10_000
    opened, _, got = replay(TonicDatasetSource(ds, indices=[0, 4321, 9999], gap_us=1_000))
    info = opened.info()
    assert [s["target"] for s in info["samples"]] == [0, 4, 9]
    assert opened.spec.shape == (34, 34, 2)
    direct = tonic.io.read_mnist_file(str(sample), dtype=ds.dtype)
    assert len(got) == 3 * len(direct) == 3 * 4325  # REFERENCE.json: 4,325 events per sample
    np.testing.assert_array_equal(got["x"][:4325], direct["x"])
    assert int(got["x"][:4325].astype(np.int64).sum()) == 74457 and int(got["p"][:4325].sum()) == 2145


def test_audio_dataset_like_shd():
    class TinySHD:
        sensor_size = (700, 1, 1)
        dtype = np.dtype([("t", float), ("x", int), ("p", int)])

        def __getitem__(self, i):
            ev = np.zeros(4, dtype=self.dtype)
            ev["t"] = [0.4, 10.0, 10.7, 2000.2]
            ev["x"] = [699, 3, 4, 0]
            ev["p"] = 1
            return ev, 7

        def __len__(self):
            return 2

    opened, _, got = replay(TonicDatasetSource(TinySHD(), gap_us=0))
    assert opened.spec.kind == "audio" and opened.spec.shape == (700, 2) and got.dtype == AUDIO_EVENT
    np.testing.assert_array_equal(got["t"][:4], [0, 10, 10, 2000])
    np.testing.assert_array_equal(got["t"][4:], [2001, 2011, 2011, 4001])
    assert opened.info()["counts"]["ticks_floored"] == 6


def test_source_runs_in_a_graph():
    ds = TinyGestures(n=3, seed=4)
    g = Graph("tonic")
    src = g.source("ds", TonicDatasetSource(ds))
    g.sink("count", CountSink(), src)
    report = run(g, keep_outputs=True)
    got = np.concatenate([p.events for p in report["_outputs"]["count"]])
    assert len(got) == sum(len(s) for s in ds.samples)


def test_errors_name_sample_field_and_fix():
    ds = TinyGestures(n=2, seed=5)
    ds.samples[1]["t"][5] = -1  # goes backwards
    with pytest.raises(StreamOrderError, match=r"tonic: dataset\[1\]: field 't' decreases at event 5.*repair_order"):
        replay(TonicDatasetSource(ds))
    opened, _, got = replay(TonicDatasetSource(ds, repair_order=True))
    assert opened.info()["counts"]["order_repairs"] > 0 and np.all(np.diff(got["t"]) >= 0)

    ds = TinyGestures(n=2, seed=6)
    ds.samples[1]["y"][3] = 24
    with pytest.raises(EventRangeError, match=r"dataset\[1\]: field 'y' = 24 at event 3 .*32×24"):
        replay(TonicDatasetSource(ds))

    class NoSize:
        def __getitem__(self, i):
            return np.zeros(1, dtype=DVS_EVENT), 0

        def __len__(self):
            return 1

    with pytest.raises(DatasetError, match=r"has no 'sensor_size'.*pass sensor_size"):
        TonicDatasetSource(NoSize()).open()

    class NotPairs(NoSize):
        sensor_size = (4, 4, 2)

        def __getitem__(self, i):
            return np.zeros(1, dtype=DVS_EVENT)

    with pytest.raises(DatasetError, match=r"dataset\[0\] returned ndarray; expected a tuple \(events, target\)"):
        TonicDatasetSource(NotPairs()).open()
    with pytest.raises(DatasetError, match="sample index 5 is outside the dataset's 2 samples"):
        TonicDatasetSource(TinyGestures(n=2), indices=[5]).open()
