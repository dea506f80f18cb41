"""IBM's DVS128 Gesture dataset, as tonic keeps it on disk, turned into clips for the gesture trainer.

``tonic.datasets.DVSGesture(save_to=ROOT)`` leaves ``ROOT/DVSGesture/ibmGestureTrain/userNN_LIGHTING/K.npy`` (and
``ibmGestureTest/...``): one sample per file, K its class (``graphs.gesture.DVS_GESTURE_CLASSES``), users 1–23 in
the train split and 24–29 in the test split. The samples are read by tonic's own class (its file reader and its
ms → µs conversion), with one change: it never downloads. Tonic checks that the archive is present and verifies
its MD5 (gigabytes) before reading; here the extracted folder is enough, and a missing one is an error naming it.

Each sample goes through the runtime's own front end (``graphs.gesture.front_end``: orientation, centred crop,
integrate-and-fire binning to the network's 32 × 32 input), so the trainer sees what ``clockless replay`` feeds
the network. The samples keep tonic's coordinates (no orientation flags): replay them with
``TonicDatasetSource(dataset)`` and its default flags and the network sees the same picture. A DVS Gesture
sample is one gesture from its first event to its last: its clip has onset 0 and offset = its duration.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from graphs.gesture import DVS_GESTURE_CLASSES, apply_stages, front_end
from runtime.spec import dvs_spec
from sensors.filters import check_in_sensor
from sensors.tonic_datasets import DatasetError, sample_to_events

from .dataset import DATA_VERSION, ClipSet

__all__ = ["FOLDERS", "VAL_USERS", "open_split", "to_clips", "load_splits"]

FOLDERS = {True: "ibmGestureTrain", False: "ibmGestureTest"}
VAL_USERS = (21, 22, 23)  # train-split users held out to pick the epoch and the decision settings
SENSOR = (128, 128)


def _dataset_class():
    import tonic

    class DVSGesture(tonic.datasets.DVSGesture):  # the same class name: tonic files it under ROOT/DVSGesture
        def _check_exists(self) -> bool:
            folder = Path(self.location_on_system) / self.folder_name
            if not folder.is_dir() or next(folder.glob("*/*.npy"), None) is None:
                raise DatasetError(
                    f"DVS128 Gesture: no samples in {folder}; expected {self.folder_name}/userNN_LIGHTING/K.npy as "
                    f"tonic.datasets.DVSGesture(save_to=...) extracts them (get the dataset with tonic on a machine "
                    f"with internet access, then pass the save_to folder)")
            return True

        def download(self) -> None:  # pragma: no cover - _check_exists raises first
            raise DatasetError(f"DVS128 Gesture: not downloading to {self.location_on_system}")

    return DVSGesture


def open_split(root: str | Path, train: bool):
    """tonic's ``DVSGesture`` over the extracted ``ROOT/DVSGesture/<split folder>`` (never downloads)."""
    ds = _dataset_class()(str(root), train=train)  # _check_exists found at least one sample or raised
    n = len(DVS_GESTURE_CLASSES)
    bad = [(p, k) for p, k in zip(ds.data, ds.targets) if not 0 <= k < n]
    if bad:
        raise DatasetError(f"DVS128 Gesture: {bad[0][0]} is class {bad[0][1]}; expected 0..{n - 1} "
                           f"({len(bad)} such files)")
    return ds


def to_clips(dataset, indices: Sequence[int], name: str,
             progress: Callable[[int, int], None] | None = None) -> ClipSet:
    """Samples ``indices`` of a tonic DVS Gesture dataset as a ``ClipSet`` on the network input."""
    spec = dvs_spec(*SENSOR)
    stages = front_end()
    ts, addrs, lens, labels, durs, sensor = [], [], [], [], [], []
    for k, i in enumerate(indices):
        raw, target = dataset[int(i)]
        where = f"DVS128 Gesture: {dataset.data[int(i)]}"
        ev = sample_to_events(raw, "dvs", where=where)
        if ev.shape[0] == 0:
            raise DatasetError(f"{where}: the sample has no events")
        check_in_sensor(ev, spec, where=where)
        ev["t"] -= ev["t"][0]  # clip time from the sample's first event
        dur = int(ev["t"][-1]) + 1
        spikes, _ = apply_stages(stages, spec, ev, t_end_us=dur)
        ts.append(spikes["t"].astype(np.int32))
        addrs.append(spikes["addr"].astype(np.int16))
        lens.append(spikes.shape[0])
        labels.append(int(target))
        durs.append(dur)
        sensor.append(int(ev.shape[0]))
        if progress is not None:
            progress(k + 1, len(indices))
    n = len(lens)
    return ClipSet(
        name, np.concatenate(ts) if ts else np.zeros(0, np.int32),
        np.concatenate(addrs) if addrs else np.zeros(0, np.int16),
        np.concatenate([[0], np.cumsum(np.asarray(lens, np.int64))]), np.asarray(labels, np.int8),
        np.zeros(n, np.int64), np.asarray(durs, np.int64), np.asarray(durs, np.int64),
        np.full(n, SENSOR[0], np.int32), np.full(n, SENSOR[1], np.int32), np.zeros(n, np.float32),
        np.asarray(sensor, np.int64), {"dataset": "DVSGesture"})


def load_splits(root: str | Path, cache_dir: Path, val_users: Sequence[int] = VAL_USERS,
                progress: Callable[[str], Callable[[int, int], None]] | None = None
                ) -> tuple[ClipSet, ClipSet, ClipSet]:
    """(train, val, test) clips: the train split without ``val_users``, those users, the test split. Cached in
    ``cache_dir`` under a key of the files, their sizes and the clips' ``DATA_VERSION`` (a changed dataset or front
    end is read again)."""
    sets = []
    train_ds, test_ds = open_split(root, True), open_split(root, False)
    val_users = {int(u) for u in val_users}
    tr = [i for i, u in enumerate(train_ds.users) if u not in val_users]
    va = [i for i, u in enumerate(train_ds.users) if u in val_users]
    if not tr or not va:
        raise DatasetError(f"DVS128 Gesture: users {sorted(val_users)} leave {len(tr)} train and {len(va)} val samples "
                           f"(users on disk: {sorted(set(train_ds.users))}); both must be > 0")
    for name, ds, idx in (("train", train_ds, tr), ("val", train_ds, va), ("test", test_ds, list(range(len(test_ds))))):
        files = [ds.data[i] for i in idx]
        key = hashlib.sha1(repr((DATA_VERSION, [(f, Path(f).stat().st_size) for f in files])).encode()).hexdigest()[:12]
        path = Path(cache_dir) / f"dvsgesture_{name}_{key}.npz"
        if path.is_file():
            sets.append(ClipSet.load(path, name))
            continue
        cs = to_clips(ds, idx, name, progress(name) if progress else None)
        cs.save(path)
        sets.append(cs)
    return sets[0], sets[1], sets[2]
