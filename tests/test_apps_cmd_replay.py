"""clockless replay on real recordings, and its errors."""

import json

from apps.cli import main


def test_replay_real_file_writes_the_report(shared_data, reference_stats, tmp_path, capsys):
    path = shared_data / "vision" / "dvs128_walking.aedat"
    out = tmp_path / "r.json"
    assert main(["replay", str(path), "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    ref = reference_stats["vision/dvs128_walking.aedat"]
    assert rep["input"]["events"] == ref["events"]
    assert rep["input"]["duration_us"] >= ref["t_last_us"] - ref["t_first_us"]
    assert rep["input"]["sensor_size"] == [128, 128, 2]
    assert rep["nodes"]["count"]["events_in"] == ref["events"]
    assert rep["latency_us"]["kind"] == "queueing" and rep["latency_us"]["count"] == ref["events"]
    assert "clockless run" in capsys.readouterr().out


def test_replay_window_and_real_time_factor(shared_data, tmp_path):
    path = shared_data / "vision" / "dvs128_right_clamp.aedat"
    out = tmp_path / "r.json"
    assert main(["replay", str(path), "--start", "1", "--duration", "2", "--json", str(out)]) == 0
    rep = json.loads(out.read_text())
    assert 0 < rep["input"]["events"] < 110_228
    assert rep["input"]["duration_us"] <= 2_000_000 + 1
    assert rep["realtime_factor"] > 1


def test_replay_garbage_is_a_one_line_error(tmp_path, capsys):
    bad = tmp_path / "bad.raw"
    bad.write_bytes(b"% evt 3.0\n% end\n" + bytes(range(7)))
    code = main(["replay", str(bad)])
    err = capsys.readouterr().err
    assert code == 2
    assert str(bad) in err and "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_replay_missing_file(capsys):
    assert main(["replay", "/nonexistent/file.aedat4"]) == 2
    assert "no such file" in capsys.readouterr().err


def test_quiet_output_marks_a_decision_that_repeats_a_gesture_more_certainly():
    from apps.cmd_replay import render

    report = {"decisions": [
        {"t_us": 400_000, "label": "circle_cw", "score": 0.42, "onset_us": 100_000},
        {"t_us": 600_000, "label": "circle_cw", "score": 0.55, "onset_us": 100_000},
        {"t_us": 1_900_000, "label": "circle_cw", "score": 0.41, "onset_us": 100_000},  # released, decided anew
        {"t_us": 2_600_000, "label": "circle_cw", "score": 0.45, "onset_us": 2_300_000},
    ], "segments": []}
    lines = render(report, quiet=True).splitlines()
    assert [line.endswith("(rise)") for line in lines] == [False, True, False, False]
    assert lines[1].startswith("0.600 s  circle_cw  score 0.55")


def test_replay_runs_the_network_file_given_with_weights(shared_data, tmp_path, capsys):
    """--weights runs another network file (one written by clockless train): a copy of the shipped gesture
    network whose `none` prior outweighs every gesture decides nothing where the shipped one decides; a missing
    file is a one-line error that names it."""
    import shutil

    from graphs.gesture import WEIGHTS_PATH

    path = shared_data / "vision" / "dvs128_walking.aedat"
    mine = tmp_path / "mine"
    shutil.copy(WEIGHTS_PATH.with_suffix(".npz"), mine.with_suffix(".npz"))
    topo = json.loads(WEIGHTS_PATH.with_suffix(".json").read_text())
    topo["meta"]["decision"]["none_bias"] = 1e4  # `none` outweighs every gesture
    mine.with_suffix(".json").write_text(json.dumps(topo))
    reports = {}
    for name, extra in (("shipped", []), ("mine", ["--weights", str(mine.with_suffix(".json"))])):
        out = tmp_path / f"{name}.json"
        assert main(["replay", str(path), "--app", "gesture", "--duration", "45", "--quiet", "--json", str(out),
                     *extra]) == 0
        reports[name] = json.loads(out.read_text())
    assert len(reports["shipped"]["decisions"]) > 0 and reports["mine"]["decisions"] == []
    assert reports["mine"]["input"]["events"] == reports["shipped"]["input"]["events"]
    capsys.readouterr()
    assert main(["replay", str(path), "--app", "gesture", "--weights", str(tmp_path / "absent.json")]) == 2
    err = capsys.readouterr().err
    assert str(tmp_path / "absent.json") in err and len(err.strip().splitlines()) == 1
