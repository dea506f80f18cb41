"""Smoke runs of the bench suites on tiny inputs: they run and their numbers are consistent. Never timing."""


import numpy as np
import pytest

from apps.cli import main


def test_runtime_suite_rows_are_consistent():
    from apps.bench.runtime import run_suite

    out = run_suite(quick=True, sizes=(1, 64), budget=40, repeats=1)
    assert [r["packet_events"] for r in out["rows"]] == [1, 64]
    for r in out["rows"]:
        assert r["packets"] == 40
        for key in ("bare_events_per_s", "fused_events_per_s", "unfused_events_per_s"):
            assert r[key] > 0
        assert r["fused_vs_bare"] == pytest.approx(r["bare_events_per_s"] / r["fused_events_per_s"], rel=1e-6)


def test_decode_rates_count_every_event(shared_data):
    from apps.bench.decode import _rates, ours
    from sensors.formats import open_reader

    path = shared_data / "vision" / "ncars_tonic.dat"
    n = open_reader(path).read_all().shape[0]
    rates = _rates({"ours": ours(path, {})}, n, target=3 * n, trials=1)
    assert set(rates) == {"ours"} and rates["ours"][0] > 0


def test_emulator_pass_matches_the_emulator():
    from apps.bench.emulator import _emulator_pass, _synthetic_frames
    from sensors.emulator import DvsConfig, emulate_frames

    frames = _synthetic_frames((64, 48), 5)
    cfg = DvsConfig.preset("clean")
    seconds, events_per_frame, macs = _emulator_pass(frames, 33_333, cfg)()
    expected = emulate_frames(frames, np.arange(5) * 33_333, cfg).shape[0]
    assert seconds > 0 and macs > 0
    assert events_per_frame * 4 == pytest.approx(expected)


def test_emulator_suite_judges_its_goal_on_both_scenes_from_its_own_rows(shared_data, capsys):
    from apps.bench.emulator import GOAL_FPS_640, run

    out = run(True, None)
    printed = capsys.readouterr().out
    for scene, key, goal_key in (("synthetic", "synthetic_640x480_frames_per_s_with_decode", "goal_met"),
                                 ("vid2e_sample", "shared_video_640x480_frames_per_s_with_decode",
                                  "goal_met_shared_video")):
        rows = {("noise_on" if r["noise"] else "noise_off"): r for r in out["rows"]
                if r["scene"] == scene and r["size"] == "640x480"}
        assert set(rows) == {"noise_off", "noise_on"}
        for k, r in rows.items():
            assert out[key][k] == r["frames_per_s_with_decode"] > 0
            assert out[goal_key][k] == (r["frames_per_s_with_decode"] >= GOAL_FPS_640)
            assert r["frames_per_s_with_decode"] < r["frames_per_s"]  # decode adds time, never removes it
    assert printed.count("goal ≥ 300 frames/s at 640x480 including decode") == 2


def test_idle_suite_costs_no_ops_in_silence():
    from apps.bench.idle import run

    out = run(seconds=0.4)
    assert out["with_graph"]["events"] == 0 and out["with_graph"]["synaptic_ops"] == 0
    assert out["emulator_only"]["frames"] >= 5
    assert all(w <= 10 for w in out["with_graph"]["wakeups"].values())  # heartbeats every 100 ms, not per frame


def test_bench_command_rejects_unknown_suites(capsys):
    assert main(["bench", "nonsense"]) == 2
    assert "unknown bench suite" in capsys.readouterr().err


def test_bench_writes_its_tables_into_the_readme_section(tmp_path):
    from apps.cmd_bench import README_END, README_START

    readme = tmp_path / "README.md"
    readme.write_text(f"# x\n\n## Performance\n\n{README_START}\nold text\n{README_END}\n\n## After\nkept\n")
    assert main(["bench", "runtime", "--quick", "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "old text" not in text and text.endswith("## After\nkept\n")
    body = text[text.index(README_START):text.index(README_END)]
    assert "**runtime**" in body and "logical CPUs" in body and "clockless bench" in body
    assert "fused" in body  # the suite's own table, as printed


def test_bench_readme_without_markers_is_a_clear_error(tmp_path, capsys):
    readme = tmp_path / "README.md"
    readme.write_text("# no markers\n")
    assert main(["bench", "runtime", "--quick", "--readme", str(readme)]) == 2
    assert "bench:start" in capsys.readouterr().err
    assert readme.read_text() == "# no markers\n"


def test_bench_json_has_peak_memory_per_suite(tmp_path):
    import json

    path = tmp_path / "b.json"
    assert main(["bench", "runtime", "--quick", "--json", str(path)]) == 0
    section = json.loads(path.read_text())["suites"]["runtime"]
    assert section["peak_rss_mb"] > 10  # a Python process with numpy and numba loaded


def test_bench_passes_each_suite_its_own_network_file(monkeypatch, tmp_path, capsys):
    """--gesture-weights and --vad-weights reach their suites (and nothing else does): the suites themselves are
    replaced by recorders, so this checks the command's wiring, not a measurement."""
    import apps.bench.gesture as bg
    import apps.bench.vad as bvad

    seen = {}

    def recorder(name):
        def run(quick, plots, **kw):
            seen[name] = kw
            return {"recorded": True}
        return run

    monkeypatch.setattr(bg, "run", recorder("gesture"))
    monkeypatch.setattr(bvad, "run", recorder("vad"))
    assert main(["bench", "gesture", "vad", "--gesture-weights", "g.json", "--json", str(tmp_path / "b.json")]) == 0
    assert seen == {"gesture": {"weights": "g.json"}, "vad": {}}
    assert main(["bench", "vad", "--vad-weights", "v.json"]) == 0
    assert seen["vad"] == {"weights": "v.json"}
