"""App helpers: the built-in demo clip and running the network part on network-input clips."""

from __future__ import annotations

import numpy as np

from apps.gesture.app import DEMO_LABELS, build_gesture_graph, demo_clip, demo_source, run_network_input
from graphs.gesture import LABELS, front_end, apply_stages, load_network_file, topology
from graphs.network import save_network
from runtime.executor import run
from runtime.spec import dvs_spec


def _net(tmp_path):
    rng = np.random.default_rng(1)
    topo = topology([60e3, 80e3, 100e3, 200e3, 200e3], bin_us=20_000, delays_us=(0, 100_000),
                    meta={"decision": {"p_on": 0.5, "p_off": 0.3}})
    arrays = {
        "conv1.weight": rng.normal(0, 0.4, (8, 4, 5, 5)), "conv2.weight": rng.normal(0, 0.3, (16, 8, 3, 3)),
        "conv3.weight": rng.normal(0, 0.3, (32, 16, 3, 3)), "hidden.weight": rng.normal(0, 0.15, (128, 512)),
        "hidden.recurrent_weight": rng.normal(0, 0.05, (128, 128)), "out.weight": rng.normal(0.05, 0.3, (9, 128)),
    }
    save_network(topo, tmp_path / "net", arrays)
    return load_network_file(tmp_path / "net")


def test_demo_clip_is_reproducible_and_labelled():
    a, b = demo_clip(), demo_clip()
    assert np.array_equal(a.events, b.events) and a.truth == b.truth
    assert [t[0] for t in a.truth] == list(DEMO_LABELS) and a.width == a.height == 128
    onsets = [t[1] for t in a.truth]
    assert onsets == sorted(onsets) and all(on < off for _, on, off in a.truth) and abs(a.duration_us - 6_000_000) < 10
    assert np.all(np.diff(a.events["t"]) >= 0) and a.events["t"][-1] < a.duration_us
    assert demo_source(a).open().spec.shape == (128, 128, 2)


def test_network_part_equals_the_whole_graph_on_the_same_clip(tmp_path):
    net = _net(tmp_path)
    clip = demo_clip(labels=("swipe_left",))
    whole = run(build_gesture_graph(demo_source(clip), weights=net))
    spikes, _ = apply_stages(front_end(), dvs_spec(128, 128), clip.events, t_end_us=clip.duration_us)
    part = run_network_input(net, spikes["t"], spikes["addr"], clip.duration_us)
    assert whole["decisions"] == part["decisions"]
    assert whole["nodes"]["snn"]["synaptic_ops"] == part["nodes"]["snn"]["synaptic_ops"] > 0
    assert all(d["label"] in LABELS for d in part["decisions"])
