"""clockless demo runs with no arguments' worth of setup and reports the built-in clip."""

import json

from apps.cli import main


def test_demo_runs_on_the_built_in_clip(tmp_path, capsys):
    out = tmp_path / "demo.json"
    assert main(["demo", "--speed", "max", "--json", str(out)]) == 0
    text = capsys.readouterr().out
    assert "true gestures:" in text and "swipe_right" in text
    rep = json.loads(out.read_text())
    assert rep["input"]["events"] > 10_000 and rep["input"]["sensor_size"] == [128, 128, 2]
    assert rep["input"]["duration_us"] >= 5_000_000
    for d in rep["decisions"]:
        assert d["label"] != "none" and 0.0 <= d["score"] <= 1.0
