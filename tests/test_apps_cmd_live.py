"""clockless live on a video file (no camera here): duration limit, recording, no window."""

import json

import numpy as np

from apps.cli import main


def test_live_video_records_what_it_ran(shared_data, tmp_path, capsys):
    video = shared_data / "vision" / "vid2e_sample.mp4"
    rec = tmp_path / "live.npy"
    out = tmp_path / "r.json"
    code = main(["live", "--video", str(video), "--no-window", "--duration", "0.1", "--record", str(rec),
                 "--json", str(out)])
    assert code == 0
    rep = json.loads(out.read_text())
    events = np.load(rec)
    assert rep["input"]["events"] == events.shape[0] > 0
    assert events["t"].max() - events["t"].min() < 100_000
    assert rep["latency_us"]["kind"] == "latency"
    assert rep["nodes"]["record"]["events_in"] == events.shape[0]


def test_live_needs_a_source(capsys):
    try:
        main(["live"])
    except SystemExit as exc:
        assert exc.code == 2
    assert "one of the arguments" in capsys.readouterr().err
