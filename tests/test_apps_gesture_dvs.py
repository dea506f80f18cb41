"""IBM's DVS128 Gesture as the trainer's data: tonic's on-disk layout read without a download, samples through the
runtime's front end, the 11-class vocabulary with its own output head, and a network the runtime replays.

The dataset itself (2.4 GB) is not on this machine: the folder here is written in tonic's layout from a real DVS128
recording of the shared data, cut into samples that carry class numbers but no real gestures. It tests the reading
and the plumbing, not the accuracy a real training would reach."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.gesture.dvs_gesture import load_splits, open_split
from apps.gesture.train import LABEL_SWAPS, dihedral, init_from, main, runtime_accuracy
from graphs.gesture import DVS_GESTURE_CLASSES, DVS_GESTURE_LABELS, INPUT_PX, WEIGHTS_PATH, build, front_end
from graphs.gesture import load_network_file
from runtime.executor import run
from runtime.testing import run_stage
from sensors.formats import open_reader
from sensors.tonic_datasets import DatasetError, TonicDatasetSource

SPAN_US = 400_000


def _tonic_folder(root, recording, train_users=(1, 2, 21), test_users=(24,)):
    """ROOT/DVSGesture/ibmGesture{Train,Test}/userNN_fluorescent/K.npy as tonic extracts them: (N, 4) int arrays
    of x, y, p, t in ms, cut from ``recording``. Returns {file: (events, class)} of what was written."""
    ev = open_reader(recording).read_all()
    written, k = {}, 0
    for folder, users in (("ibmGestureTrain", train_users), ("ibmGestureTest", test_users)):
        for u in users:
            d = root / "DVSGesture" / folder / f"user{u:02d}_fluorescent"
            d.mkdir(parents=True)
            for c in range(len(DVS_GESTURE_CLASSES)):
                t0 = int(ev["t"][0]) + k * SPAN_US
                s = ev[(ev["t"] >= t0) & (ev["t"] < t0 + SPAN_US)]
                np.save(d / f"{c}.npy", np.stack([s["x"], s["y"], s["p"], s["t"] // 1000], axis=1).astype(np.int64))
                written[str(d / f"{c}.npy")] = (s, c)
                k += 1
    return written


@pytest.fixture(scope="module")
def dvs_root(shared_data, tmp_path_factory):
    root = tmp_path_factory.mktemp("dvsgesture")
    written = _tonic_folder(root, shared_data / "vision" / "dvs128_right_clamp.aedat")
    return root, written


def test_a_missing_dataset_is_an_error_naming_the_folder_and_nothing_is_downloaded(tmp_path):
    with pytest.raises(DatasetError, match=r"no samples in .*DVSGesture/ibmGestureTrain; expected "
                                           r"ibmGestureTrain/userNN_LIGHTING/K\.npy"):
        open_split(tmp_path, True)
    assert sorted(p.name for p in tmp_path.rglob("*")) == []  # no archive fetched, no folder made


def test_a_sample_of_an_unknown_class_is_refused(tmp_path):
    d = tmp_path / "DVSGesture" / "ibmGestureTest" / "user24_led"
    d.mkdir(parents=True)
    np.save(d / "11.npy", np.array([[1, 2, 1, 5]], np.int64))
    with pytest.raises(DatasetError, match=r"11\.npy is class 11; expected 0\.\.10"):
        open_split(tmp_path, False)


def test_splits_hold_the_users_classes_and_times_tonic_gives(dvs_root, tmp_path):
    root, written = dvs_root
    train, val, test = load_splits(root, tmp_path / "cache")
    assert (len(train), len(val), len(test)) == (22, 11, 11)  # users 1, 2 | 21 (the val users) | 24
    ds = open_split(root, True)
    assert sorted(ds.users) == [1] * 11 + [2] * 11 + [21] * 11
    va = [i for i, u in enumerate(ds.users) if u == 21]
    assert val.label.tolist() == [ds.targets[i] for i in va]
    for j, i in enumerate(va):
        events, cls = written[ds.data[i]]
        assert val.label[j] == cls
        # tonic turned the ms column into µs: the clip spans the sample's first to last ms
        t_ms = events["t"] // 1000
        assert val.duration_us[j] == (int(t_ms[-1]) - int(t_ms[0])) * 1000 + 1 == val.offset_us[j]
        assert val.onset_us[j] == 0 and val.sensor_events[j] == events.shape[0]
    # cached: a second read gives the same arrays without tonic
    again = load_splits(root, tmp_path / "cache")[1]
    assert np.array_equal(again.t_us, val.t_us) and np.array_equal(again.addr, val.addr)


def test_a_clip_is_what_the_runtime_front_end_makes_of_the_replayed_sample(dvs_root, tmp_path):
    root, _ = dvs_root
    _, _, test = load_splits(root, tmp_path / "cache")
    ds = open_split(root, False)
    for i in (0, 5):
        src = TonicDatasetSource(ds, indices=[i]).open()
        packets, spec = list(src), src.spec
        for _, stage in front_end():
            _, _, packets = run_stage(stage, spec, packets)
            spec = stage.out_spec(spec)
        out = np.concatenate([p.events for p in packets])
        t, addr = test.events(i)
        first = src.info()["samples"][0]["t_start_us"]
        assert out.shape[0] == t.shape[0] > 0
        assert np.array_equal(out["t"] - first, t) and np.array_equal(out["addr"], addr)
        assert addr.max() < 2 * INPUT_PX * INPUT_PX


def test_the_mirror_swaps_right_and_left_arms_and_upside_down_is_refused():
    swaps = LABEL_SWAPS[DVS_GESTURE_LABELS]
    assert sorted(swaps) == ["flip_x"]
    addr = np.array([3 * INPUT_PX + 4], np.int32)  # polarity 0, y 3, x 4
    for a, b in (("right_hand_wave", "left_hand_wave"), ("right_arm_cw", "left_arm_ccw"),
                 ("right_arm_ccw", "left_arm_cw"), ("arm_roll", "arm_roll"), ("none", "none")):
        p, x, y, label = dihedral(addr, DVS_GESTURE_LABELS.index(a), True, False, False, swaps=swaps)
        assert DVS_GESTURE_LABELS[label] == b and x[0] == INPUT_PX - 1 - 4 and y[0] == 3
        assert DVS_GESTURE_LABELS[dihedral(addr, label, True, False, False, swaps=swaps)[3]] == a
    with pytest.raises(ValueError, match="flip_y is not a symmetry of this vocabulary"):
        dihedral(addr, 0, False, True, False, swaps=swaps)


def test_init_from_the_rendered_clips_network_keeps_the_trunk_and_a_fresh_head():
    import torch

    from apps.gesture.model import GestureSNN, from_network_file

    shipped, topo = from_network_file(WEIGHTS_PATH)
    cfg = shipped.cfg
    model = GestureSNN(type(cfg)(**{**cfg.__dict__, "n_out": len(DVS_GESTURE_LABELS)}))
    head = model.fc2.weight.detach().clone()
    dcfg = init_from(model, WEIGHTS_PATH)
    for k, v in shipped.state_dict().items():
        if k != "fc2.weight":
            assert torch.equal(model.state_dict()[k], v), k
    assert torch.equal(model.fc2.weight, head) and model.fc2.weight.shape[0] == 12
    assert dcfg.to_dict() == type(dcfg)().to_dict()  # the learned settings belonged to the other head


def test_training_on_dvs_gesture_writes_a_network_the_runtime_replays(dvs_root, tmp_path):
    root, _ = dvs_root
    out = tmp_path / "dvs.json"
    rc = main(["--dvs-gesture", str(root), "--init", str(WEIGHTS_PATH), "--out", str(out), "--confusion",
               str(tmp_path / "c.png"), "--data-dir", str(tmp_path / "cache"), "--epochs", "1", "--batch", "11",
               "--workers", "1", "--clip-us", "1000000", "--label-from-ms", "100", "--calib-streams", "2", "--quiet"])
    assert rc == 0 and (tmp_path / "c.png").is_file()
    raw = json.loads(out.read_text())
    assert raw["labels"] == list(DVS_GESTURE_LABELS) and raw["layers"][-1]["out_features"] == 12
    metrics = raw["meta"]["metrics"]
    assert metrics["dataset"] == {"name": "DVSGesture", "train": 22, "val": 11, "test": 11}
    assert set(metrics["train_framework"]["gates_on"]["per_class"]) == set(DVS_GESTURE_LABELS)
    test = load_splits(root, tmp_path / "cache")[2]
    assert metrics["runtime"] == {"accuracy": runtime_accuracy(out, test), "clips": 11}
    # the graph `clockless replay` builds, on the test split as tonic serves it
    net = load_network_file(out)
    assert net.labels == DVS_GESTURE_LABELS
    report = run(build(TonicDatasetSource(open_split(root, False), gap_us=300_000), weights=net))
    assert report["decisions"], "the fine-tuned network decided nothing on 11 samples of real DVS128 events"
    assert {d["label"] for d in report["decisions"]} <= set(DVS_GESTURE_CLASSES)
    # --recalibrate and the bench's rendered clips know it is a DVS128 Gesture network
    with pytest.raises(SystemExit, match="is a DVS128 Gesture network; expected --dvs-gesture ROOT"):
        main(["--out", str(out), "--recalibrate", "--quiet"])
    from apps.bench.gesture import run_suite

    with pytest.raises(ValueError, match=r"answers 11 other gestures \(hand_clapping, .*measured by the trainer"):
        run_suite(quick=True, weights=out, cache_dir=tmp_path / "cache")


def test_the_runtime_refuses_a_network_file_with_another_vocabulary(tmp_path):
    raw = json.loads(WEIGHTS_PATH.read_text())
    raw["labels"] = [f"g{i}" for i in range(9)]
    (tmp_path / "odd.json").write_text(json.dumps(raw))
    (tmp_path / "odd.npz").write_bytes(WEIGHTS_PATH.with_suffix(".npz").read_bytes())
    with pytest.raises(Exception, match="field 'labels': expected one of"):
        load_network_file(tmp_path / "odd.json")
