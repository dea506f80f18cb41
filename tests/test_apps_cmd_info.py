"""clockless info: text output, JSON schema, PNG plot, one-line errors with exit code 2."""

from __future__ import annotations

import json

import numpy as np

from apps.cli import main
from apps.cmd_info import RateHistogram, describe, sparkline
from sensors.formats import open_reader


def test_info_text_json_and_plot(shared_data, tmp_path, capsys):
    path = shared_data / "vision" / "gen4_expelliarmus_evt3.raw"
    js, png = tmp_path / "i.json", tmp_path / "r.png"
    assert main(["info", str(path), "--json", str(js), "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "evt3" in out and "219,596" in out and "backsteps held 59" in out
    assert "camera model in header" in out
    info = json.loads(js.read_text())
    ev = open_reader(path).read_all()
    assert info["schema"] == "clockless.info/1"
    assert info["events"] == ev.shape[0] and info["t_first_us"] == int(ev["t"][0]) and info["t_last_us"] == int(ev["t"][-1])
    assert info["duration_us"] == int(ev["t"][-1] - ev["t"][0])
    assert abs(info["on_fraction"] - ev["p"].mean()) < 1e-12
    assert info["sensor_size"] == [1280, 720, 2] and info["sensor_size_origin"] == "camera model in header"
    assert sum(info["rate"]["counts"]) == ev.shape[0]
    assert info["time_rules"]["time_low_backsteps_held"] == 59
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_info_on_a_cochlea_file_needs_format(shared_data, capsys):
    path = shared_data / "audio" / "nas_mono_32ch.aedat"
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "pass format='nas_aedat'" in err and "Traceback" not in err
    assert main(["info", str(path), "--format", "nas_aedat"]) == 0
    assert "audio 32" in capsys.readouterr().out


def test_bad_file_is_one_line_exit_2(tmp_path, capsys):
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"% evt 2.0\n" + bytes([0, 0, 0, 0x30]))
    assert main(["info", str(bad)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("clockless info: error:") and "reserved type 0x3" in err and err.count("\n") == 1


def test_rate_histogram_coarsens_and_keeps_every_event():
    rng = np.random.default_rng(1)
    t = np.sort(rng.integers(0, 5_000_000_000, 200_000))  # 83 minutes: bins must widen
    h = RateHistogram(bin_us=10)
    for part in np.array_split(t, 7):
        h.add(part)
    assert h.counts.sum() == t.shape[0] and h.counts.shape[0] <= 100_000 and h.bin_us > 10
    idx = (t - t[0]) // h.bin_us
    assert np.array_equal(np.bincount(idx, minlength=h.counts.shape[0]), h.counts)
    assert len(sparkline(h.resample(60))) == 60


def test_describe_empty_npy(tmp_path):
    from runtime.events import DVS_EVENT

    path = tmp_path / "e.npy"
    np.save(path, np.empty(0, DVS_EVENT))
    info, _ = describe(path, sensor_size=(8, 8))
    assert info["events"] == 0 and info["t_first_us"] is None and info["on_fraction"] is None
