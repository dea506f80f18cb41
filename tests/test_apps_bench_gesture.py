"""Smoke run of the gesture bench on a few clips with a small random network file (the figures are measured by
`clockless bench gesture`, never by tests)."""

from __future__ import annotations

import numpy as np

from apps.bench.gesture import run_suite
from graphs.gesture import LABELS, topology
from graphs.network import save_network


def _random_network(path, seed: int, p_on: float, p_off: float, mean: float, scale: float) -> None:
    """A small gesture network file with random weights (``mean``, and ``scale`` times the usual spreads)."""
    rng = np.random.default_rng(seed)
    topo = topology([60e3, 80e3, 100e3, 200e3, 200e3], bin_us=20_000, delays_us=(0, 100_000),
                    meta={"decision": {"p_on": p_on, "p_off": p_off}})
    arrays = {
        "conv1.weight": rng.normal(mean, 0.4 * scale, (8, 4, 5, 5)),
        "conv2.weight": rng.normal(mean, 0.3 * scale, (16, 8, 3, 3)),
        "conv3.weight": rng.normal(mean, 0.3 * scale, (32, 16, 3, 3)),
        "hidden.weight": rng.normal(mean / 2, 0.15 * scale, (128, 512)),
        "hidden.recurrent_weight": rng.normal(0, 0.05, (128, 128)),
        "out.weight": rng.normal(0.05, 0.3 * scale, (9, 128)),
    }
    save_network(topo, path, arrays)


def test_bench_runs_and_reports_every_figure(tmp_path, capsys):
    _random_network(tmp_path / "net", 0, 0.5, 0.3, 0.0, 1.0)
    out = run_suite(True, tmp_path / "plots", n_test=9, n_videos=1, weights=tmp_path / "net", workers=1,
                    cache_dir=tmp_path / "cache")
    assert out["clips"] == 9 and set(out["runtime"]["per_class"]) == set(LABELS)
    assert 0 <= out["runtime"]["accuracy"] <= 1 and 0 <= out["training_framework"]["accuracy"] <= 1
    g = out["gates"]
    assert g["synaptic_ops_off"] > g["synaptic_ops_on"] > 0 and 0 < g["gated_fraction"] < 1
    by_layer = g["ops_by_layer"]  # every layer with synapses, and they add up to the totals
    assert set(by_layer) >= {"conv1", "conv2", "conv3", "hidden", "out"}
    assert sum(n["off"] for n in by_layer.values()) == g["synaptic_ops_off"]
    assert sum(n["on"] for n in by_layer.values()) == g["synaptic_ops_on"]
    assert out["ops_per_event"] > 0 and out["realtime_factor_network"] > 0
    b = out["runtime_back_to_back"]
    assert b["clips"] == 9 and b["run_length"] == 6 and 0 <= b["accuracy"] <= 1
    assert out["demo"]["truth"] == ["swipe_right", "circle_cw", "zoom_in"] and out["demo"]["events"] > 1000
    assert out["videos"]["clips"] == 1 and out["videos"]["answers"][0]["true"] == "swipe_left"
    assert (tmp_path / "plots" / "gesture_confusion_runtime.png").is_file()
    printed = capsys.readouterr().out
    assert "held-out clips" in printed and "synaptic ops by layer" in printed and "conv3 " in printed


def test_back_to_back_streams_of_one_clip_are_the_clips_alone(tmp_path):
    """A stream of one clip is that clip run alone: same answers; longer streams carry state across clips."""
    from apps.bench.gesture import _back_to_back, _runtime
    from apps.gesture.dataset import build_split
    from graphs.gesture import load_network_file
    from graphs.gesture_decision import DecisionConfig

    _random_network(tmp_path / "net", 1, 0.3, 0.2, 0.05, 1.3)
    net = load_network_file(tmp_path / "net.json")
    clips = build_split("test", 9, workers=1, cache_dir=tmp_path / "cache")
    cfg = DecisionConfig(**net.decision)
    alone = _runtime(net, clips, cfg, gates=True)
    one = _back_to_back(net, clips, cfg, run_length=1)
    assert one["clips"] == 9 and one["per_class"] == alone["summary"]["per_class"]
    assert one["accuracy"] == alone["summary"]["accuracy"]
    assert len(alone["pred"]) == 9 and any(p != "none" for p in alone["pred"])  # the network does decide
