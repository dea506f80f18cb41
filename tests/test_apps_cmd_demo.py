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


def test_describe_answer_gives_the_best_decision_and_the_labels_first():
    from apps.cmd_demo import describe_answer

    decisions = [
        {"t_us": 900_000, "label": "swipe_left", "score": 0.2, "onset_us": 800_000},  # before the gesture
        {"t_us": 1_300_000, "label": "swipe_up", "score": 0.3, "onset_us": 1_200_000},
        {"t_us": 1_250_000, "label": "circle_cw", "score": 0.15, "onset_us": 1_100_000},
        {"t_us": 1_600_000, "label": "circle_cw", "score": 0.55, "onset_us": 1_100_000},  # its rise
        {"t_us": 3_000_000, "label": "circle_cw", "score": 0.9, "onset_us": 2_900_000},  # after the window
    ]
    text = describe_answer(decisions, 1_000_000, 2_000_000)
    assert text == "circle_cw (score 0.55, 600 ms after onset; first decided 250 ms after onset)"
    assert describe_answer(decisions[1:2], 1_000_000, 2_000_000) == "swipe_up (score 0.30, 300 ms after onset)"
    assert describe_answer(decisions, 4_000_000, 5_000_000) == "none"
