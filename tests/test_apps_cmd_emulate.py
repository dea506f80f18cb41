"""``clockless emulate``: real video in, event files out, read back by the project's readers."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from apps.cli import main
from sensors.emulator import DvsConfig, emulate_frames
from sensors.formats import open_reader
from sensors.writers import sidecar_path


def _grey_frames(path, size=None):
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        out.append(cv2.resize(g, size, interpolation=cv2.INTER_AREA) if size else g)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return out, [round(i * 1e6 / fps) for i in range(len(out))]


def test_emulate_writes_npy_equal_to_the_in_memory_emulator(shared_data, tmp_path, capsys):
    video = shared_data / "vision" / "vid2e_sample.mp4"
    out = tmp_path / "ev.npy"
    rc = main(["emulate", str(video), str(out), "--seed", "3", "--no-noise", "--threshold", "0.25",
               "--size", "173", "130"])
    assert rc == 0
    printed = capsys.readouterr().out
    assert "9 frames 173×130" in printed and "ended: end of video" in printed
    got = np.load(out)
    frames, t_us = _grey_frames(video, (173, 130))
    cfg = DvsConfig(seed=3, threshold_on=0.25, threshold_off=0.25).with_noise(False)
    want = emulate_frames(frames, t_us, cfg)
    assert want.shape[0] > 1000 and np.array_equal(got, want)
    side = json.loads(sidecar_path(out).read_text())
    assert side["sensor_size"] == [173, 130, 2] and side["emulator"]["threshold_on"] == 0.25


def test_emulate_writes_aedat4_that_reads_back(shared_data, tmp_path):
    video = shared_data / "vision" / "vid2e_sample.mp4"
    a = tmp_path / "a.aedat4"
    assert main(["emulate", str(video), str(a), "--seed", "1", "--quiet"]) == 0
    reader = open_reader(a)
    events = reader.read_all()
    assert tuple(reader.sensor_size)[:2] == (346, 260)
    frames, t_us = _grey_frames(video)
    want = emulate_frames(frames, t_us, DvsConfig(seed=1))
    assert np.array_equal(events["t"], want["t"]) and np.array_equal(events["x"], want["x"])
    assert np.array_equal(events["p"], want["p"])


@pytest.mark.parametrize("argv, message", [
    (["/no/such.mp4", "x.npy"], "no such video file"),
    (["VIDEO", "x.npy", "--threshold", "-1"], "threshold_on: expected a positive threshold"),
    (["VIDEO", "x.txt"], "cannot tell the output format"),
    (["0", "x.npy"], "a camera never ends; give --max-frames N"),
])
def test_emulate_errors_are_one_line_and_exit_2(shared_data, tmp_path, capsys, argv, message):
    video = str(shared_data / "vision" / "vid2e_sample.mp4")
    argv = [video if a == "VIDEO" else (str(tmp_path / a) if a.startswith("x.") else a) for a in argv]
    assert main(["emulate", *argv]) == 2
    err = capsys.readouterr().err
    assert message in err and err.startswith("clockless emulate: error:") and err.count("\n") == 1
