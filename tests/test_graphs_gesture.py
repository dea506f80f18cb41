"""The gesture graph: front end for any sensor, network file, the whole graph on the executors."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphs.gesture import (
    INPUT_PX, LABELS, BinToInput, DelayLine, SquareCrop, apply_stages, bin_factor, build, default_gates, front_end,
    load_network_file, sweep_events, topology,
)
from graphs.motion import MotionDirections
from graphs.network import save_network
from runtime.engine.gates import SpatialGate, TemporalGate
from runtime.errors import FormatError, GraphError
from runtime.events import SPIKE_EVENT, make_dvs_events
from runtime.executor import run
from runtime.graph import Graph
from runtime.reference import run_reference
from runtime.sources import ArraySource
from runtime.spec import dvs_spec, spike_spec
from runtime.stages import CollectSink, Delay
from runtime.testing import check_packet_invariance


def _net_file(tmp_path, seed=0, gates=None, bin_us=20_000, delays_us=(0, 40_000, 80_000), motion=None):
    rng = np.random.default_rng(seed)
    topo = topology([60e3, 80e3, 100e3, 200e3, 200e3], bin_us=bin_us, gates=gates, delays_us=delays_us,
                    meta={"decision": {"p_on": 0.6, "p_off": 0.35, "none_bias": 1.0, "beta": 1.0}}, motion=motion)
    channels = motion.channels if motion is not None else 2
    arrays = {
        "conv1.weight": rng.normal(0, 0.35, (8, channels * len(delays_us), 5, 5)), "conv2.weight": rng.normal(0, 0.3, (16, 8, 3, 3)),
        "conv3.weight": rng.normal(0, 0.3, (32, 16, 3, 3)), "hidden.weight": rng.normal(0, 0.15, (128, 512)),
        "hidden.recurrent_weight": rng.normal(0, 0.05, (128, 128)), "out.weight": rng.normal(0.05, 0.3, (9, 128)),
    }
    path = tmp_path / "gesture"
    save_network(topo, path, arrays)
    return path


@pytest.mark.parametrize("w,h,factor,crop", [(128, 128, 4, None), (346, 260, 8, (45, 2, 256)),
                                            (640, 480, 15, (80, 0, 480)), (32, 32, 1, None), (240, 180, 5, (40, 10, 160))])
def test_front_end_maps_any_sensor_onto_the_input(w, h, factor, crop):
    spec = dvs_spec(w, h)
    assert bin_factor(w, h) == factor
    inner = SquareCrop().inner(spec)
    if crop is None:
        assert inner is None
    else:
        assert (inner.x0, inner.y0, inner.width) == crop
    s = spec
    for _, stage in front_end():
        s = stage.out_spec(s)
    assert s.kind == "spike" and s.shape == (2, INPUT_PX, INPUT_PX)
    pool = BinToInput().inner(dvs_spec(factor * 32, factor * 32)).layers[0]
    assert pool.kernel_size == (factor, factor) and pool.neuron.threshold == max(1.0, factor * factor / 4)


def test_too_small_sensor_is_a_named_error():
    with pytest.raises(GraphError, match="sensor 28×28 is smaller than the network input 32×32"):
        SquareCrop().out_spec(dvs_spec(28, 28))


def test_jaer_orientation_is_undone_from_the_spec():
    ev = make_dvs_events([0, 127], [0, 127], [10, 20], [True, True])
    for flags, expect in (({"x_mirrored": True, "y_up": True}, [(31, 31), (0, 0)]),
                          ({}, [(0, 0), (31, 31)]), ({"y_up": True}, [(0, 31), (31, 0)])):
        # threshold 4 at 128 px: send each event 4 times so that one spike comes out per input pixel
        ev4 = np.repeat(ev, 4)
        out, _ = apply_stages(front_end(), dvs_spec(128, 128, **flags), ev4)
        yx = [((a % 1024) // 32, a % 32) for a in out["addr"]]
        assert [(x, y) for y, x in yx] == expect


def test_event_density_is_evened_out_across_sensor_sizes():
    ev = sweep_events(128, 128)
    small, _ = apply_stages(front_end(), dvs_spec(128, 128), ev)
    # the same scene on a 256×256 sensor: every event appears at the 2×2 sensor pixels it now covers
    big = np.concatenate([ev.copy() for _ in range(4)])
    for i, (dx, dy) in enumerate(((0, 0), (1, 0), (0, 1), (1, 1))):
        part = big[i * len(ev):(i + 1) * len(ev)]
        part["x"] = ev["x"] * 2 + dx
        part["y"] = ev["y"] * 2 + dy
    big = big[np.argsort(big["t"], kind="stable")]
    large, _ = apply_stages(front_end(), dvs_spec(256, 256), big)
    assert small.shape[0] > 500 and ev.shape[0] / small.shape[0] > 3  # f = 4: about one spike per 4 events
    assert np.array_equal(np.sort(small, order=["t", "addr"]), np.sort(large, order=["t", "addr"]))


@given(st.lists(st.integers(0, 5000), max_size=8))
def test_front_end_stages_are_packet_invariant(cuts):
    rng = np.random.default_rng(1)
    n = 5000
    ev = make_dvs_events(rng.integers(0, 346, n), rng.integers(0, 260, n), np.sort(rng.integers(0, 400_000, n)),
                         rng.integers(0, 2, n))
    spec = dvs_spec(346, 260)
    check_packet_invariance(SquareCrop(), spec, ev, cuts)
    crop = SquareCrop().out_spec(spec)
    inside = (ev["x"] >= 45) & (ev["x"] < 301) & (ev["y"] >= 2) & (ev["y"] < 258)
    sq = ev[inside]
    sq["x"] -= 45
    sq["y"] -= 2
    check_packet_invariance(BinToInput(), crop, sq, cuts)


def test_network_file_round_trip_and_errors(tmp_path):
    path = _net_file(tmp_path, gates=(SpatialGate(8, 50_000.0, 1.0, 1.5), TemporalGate(10_000, 4)))
    net = load_network_file(path)
    assert net.labels == LABELS and net.bin_us == 20_000 and net.decision["p_on"] == 0.6
    assert [type(g).__name__ for g in net.gates] == ["SpatialGate", "TemporalGate"]
    assert net.network().input_gates == () and net.delays_us == (0, 40_000, 80_000)
    assert net.network().input_shape == (6, INPUT_PX, INPUT_PX)
    hidden = net.net.layer("hidden")
    assert hidden.recurrent_delay_us == 20_000 and hidden.neuron.tau_us == 200e3
    with pytest.raises(FormatError, match="not found"):
        load_network_file(tmp_path / "missing")
    topo = json.loads(path.with_suffix(".json").read_text())
    topo["labels"] = ["a"] * 9
    path.with_suffix(".json").write_text(json.dumps(topo))
    with pytest.raises(FormatError, match="field 'labels'"):
        load_network_file(path)


def test_default_gates_take_overrides():
    sp, tp = default_gates({"spatial": {"rel_threshold": 2.0}, "temporal": {"min_events": 9}})
    assert sp.rel_threshold == 2.0 and sp.tile_px == 8 and tp.min_events == 9


def test_whole_graph_runs_on_both_executors_with_gates_on_and_off(tmp_path):
    path = _net_file(tmp_path)
    ev = sweep_events(128, 128)
    src = ArraySource(ev, dvs_spec(128, 128, x_mirrored=True, y_up=True), name="sweep")
    g = build(src, weights=path, gates=True)
    assert list(g.nodes) == ["input", "orient", "crop", "bin", "spatial_gate", "temporal_gate", "line0", "delay1",
                             "line1", "delay2", "line2", "snn", "decide"]
    assert g.nodes["snn"].inputs == ("line0", "line1", "line2")
    on = run(g)
    ref = run_reference(build(src, weights=path, gates=True))
    assert on["decisions"] == ref["decisions"]
    assert on["nodes"]["snn"]["synaptic_ops"] == ref["nodes"]["snn"]["synaptic_ops"] > 0
    off = run(build(src, weights=path, gates=False))
    assert "spatial_gate" not in off["nodes"]
    assert on["ops"]["gated_events"] > 0 and off["ops"]["gated_events"] == 0
    assert off["nodes"]["snn"]["synaptic_ops"] > on["nodes"]["snn"]["synaptic_ops"]
    for d in on["decisions"]:
        assert d["label"] in LABELS[:-1] and 0 <= d["score"] <= 1 and d["onset_us"] <= d["t_us"]


def test_delay_lines_resend_each_spike_later_on_their_own_channels(tmp_path):
    net = load_network_file(_net_file(tmp_path))
    rng = np.random.default_rng(4)
    n = 300
    ev = np.empty(n, SPIKE_EVENT)
    ev["t"] = np.sort(rng.integers(0, 200_000, n))
    ev["addr"] = rng.integers(0, 2 * INPUT_PX * INPUT_PX, n)
    g = Graph("lines")
    src = g.source("in", ArraySource(ev, spike_spec((2, INPUT_PX, INPUT_PX)), t_end_us=200_000))
    lines = []
    for k, d in enumerate(net.delays_us):
        x = g.stage(f"delay{k}", Delay(d), src) if d else src
        lines.append(g.stage(f"line{k}", DelayLine(k, 3), x))
    g.sink("collect", CollectSink(), *lines)
    report = run(g, keep_outputs=True)
    got = np.concatenate([p.events for p in report["_outputs"]["collect"] if len(p.events)])
    expect = np.concatenate([np.array(list(zip(ev["t"] + d, ev["addr"] + k * 2048)), dtype=SPIKE_EVENT)
                             for k, d in enumerate(net.delays_us)])
    assert np.array_equal(np.sort(got, order=["t", "addr"]), np.sort(expect, order=["t", "addr"]))
    assert np.all(np.diff(got["t"]) >= 0)
    with pytest.raises(GraphError, match=r"expects a \(C, H, W\) spike stream"):
        DelayLine(0, 2).out_spec(spike_spec((9,)))


def test_motion_stage_sits_between_the_gates_and_the_delay_lines(tmp_path):
    motion = MotionDirections(4, window_us=100_000)
    path = _net_file(tmp_path, delays_us=(0, 40_000), motion=motion)
    net = load_network_file(path)
    assert net.motion == motion and net.network().input_shape == (8, INPUT_PX, INPUT_PX)
    src = ArraySource(sweep_events(128, 128), dvs_spec(128, 128), name="sweep")
    g = build(src, weights=path, gates=True)
    assert list(g.nodes) == ["input", "orient", "crop", "bin", "spatial_gate", "temporal_gate", "motion", "line0",
                             "delay1", "line1", "snn", "decide"]
    report = run(g)
    assert report["nodes"]["snn"]["synaptic_ops"] > 0 and report["nodes"]["motion"]["filtered_events"] > 0
    assert run_reference(build(src, weights=path, gates=True))["decisions"] == report["decisions"]
    topo = json.loads(path.with_suffix(".json").read_text())
    topo["meta"]["motion"]["n_dir"] = 6  # no longer matches the input shape (4 directions × 2 lines)
    path.with_suffix(".json").write_text(json.dumps(topo))
    with pytest.raises(FormatError, match="2 delay lines of 6 channels"):
        load_network_file(path)


def test_a_motion_stage_with_polarity_banks_feeds_twice_the_channels(tmp_path):
    motion = MotionDirections(4, window_us=100_000, polarity=1)
    path = _net_file(tmp_path, delays_us=(0, 40_000), motion=motion)
    net = load_network_file(path)
    assert net.motion == motion and net.network().input_shape == (16, INPUT_PX, INPUT_PX)  # 4 dirs × 2 × 2 lines
    src = ArraySource(sweep_events(128, 128), dvs_spec(128, 128), name="sweep")
    report = run(build(src, weights=path, gates=True))
    assert report["nodes"]["snn"]["synaptic_ops"] > 0
    assert run_reference(build(src, weights=path, gates=True))["decisions"] == report["decisions"]
    topo = json.loads(path.with_suffix(".json").read_text())
    del topo["meta"]["motion"]["polarity"]  # 4 channels per line no longer match the 16 input channels
    path.with_suffix(".json").write_text(json.dumps(topo))
    with pytest.raises(FormatError, match="2 delay lines of 4 channels"):
        load_network_file(path)


def test_a_gain_counting_sensor_events_gets_them_from_before_the_gates(tmp_path):
    """With ``InputGain(count="sensor")`` the graph sends the binned events from before the gates to the
    network's count channel; gated events then cost no ops downstream (the gain does not make up for them)."""
    from runtime.engine.gain import InputGain

    def net_file(count):
        rng = np.random.default_rng(0)
        topo = topology([60e3, 80e3, 100e3, 200e3, 200e3], bin_us=20_000, delays_us=(0, 40_000),
                        meta={"decision": {"p_on": 0.6, "p_off": 0.35, "none_bias": 1.0, "beta": 1.0}},
                        gates=default_gates({"spatial": {"rel_threshold": 3.0}}),
                        input_gain=InputGain(4000.0, 200_000.0, 20_000, 0.5, 8.0, count=count))
        arrays = {
            "conv1.weight": rng.normal(0.05, 0.35, (8, 4, 5, 5)), "conv2.weight": rng.normal(0.05, 0.3, (16, 8, 3, 3)),
            "conv3.weight": rng.normal(0.05, 0.3, (32, 16, 3, 3)), "hidden.weight": rng.normal(0, 0.15, (128, 512)),
            "hidden.recurrent_weight": rng.normal(0, 0.05, (128, 128)), "out.weight": rng.normal(0.05, 0.3, (9, 128)),
        }
        save_network(topo, tmp_path / count, arrays)
        return tmp_path / count

    src = ArraySource(sweep_events(128, 128), dvs_spec(128, 128), name="sweep")
    sensor = net_file("sensor")
    g = build(src, weights=sensor, gates=True)
    assert list(g.nodes) == ["input", "orient", "crop", "bin", "spatial_gate", "temporal_gate", "line0", "delay1",
                             "line1", "gain_count", "snn", "decide"]
    assert g.nodes["snn"].inputs == ("line0", "line1", "gain_count") and g.nodes["gain_count"].inputs == ("bin",)
    on = run(g)
    assert run_reference(build(src, weights=sensor, gates=True))["decisions"] == on["decisions"]
    off = run(build(src, weights=sensor, gates=False))
    assert on["ops"]["gated_events"] > 0
    saved = 1 - on["nodes"]["snn"]["synaptic_ops"] / off["nodes"]["snn"]["synaptic_ops"]
    inp = net_file("input")  # the gain counting the network's own input makes up for part of the drops
    saved_input = 1 - run(build(src, weights=inp, gates=True))["nodes"]["snn"]["synaptic_ops"] / run(
        build(src, weights=inp, gates=False))["nodes"]["snn"]["synaptic_ops"]
    assert saved > saved_input and saved > 0.05
    for r in (on, off):  # the count channel carries every binned event, gated or not
        assert r["nodes"]["gain_count"]["events_out"] == r["nodes"]["bin"]["events_out"] > 0
