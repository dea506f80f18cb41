"""Attention gates: causality, counts (dropped events, ops saved, gate ops), packet invariance, calibration."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import SPIKE_EVENT, dvs_spec, make_dvs_events, spike_spec
from runtime.engine import Conv2d, Network, Neuron, SpatialGate, TemporalGate
from runtime.engine.dense import bin_addresses, bins_to_spikes, run_dense
from runtime.testing import check_packet_invariance, cut_at, run_stage


def bursty_stream(rng, n_noise=1500, n_burst=3000, width=32, height=32, t_max=200_000):
    """Sparse noise everywhere plus a dense burst of activity in one corner between 60 and 90 ms."""
    t = np.concatenate([rng.integers(0, t_max, n_noise), rng.integers(60_000, 90_000, n_burst)])
    x = np.concatenate([rng.integers(0, width, n_noise), rng.integers(0, 8, n_burst)])
    y = np.concatenate([rng.integers(0, height, n_noise), rng.integers(0, 8, n_burst)])
    p = rng.integers(0, 2, t.shape[0])
    order = np.argsort(t, kind="stable")
    return make_dvs_events(x[order], y[order], t[order], p[order])


def test_temporal_gate_drops_quiet_windows_keeps_the_burst():
    rng = np.random.default_rng(20)
    ev = bursty_stream(rng)
    gate = TemporalGate(window_us=2000, min_events=40)
    out, state, packets = run_stage(gate, dvs_spec(32, 32), cut_at(ev, np.arange(100, len(ev), 250)))
    burst = (ev["t"] >= 60_000) & (ev["t"] < 90_000)
    assert np.all((out["t"] >= 60_000) & (out["t"] < 90_000))  # noise: ~15 events per window
    assert out.shape[0] >= 0.95 * burst.sum()
    c = gate.counters(state)
    assert c["gated_events"] == len(ev) - len(out)
    assert c["gate_ops"] >= len(ev)
    assert state.hold_us_max <= 2000


def test_temporal_gate_is_causal_future_events_do_not_change_past_decisions():
    rng = np.random.default_rng(21)
    ev = bursty_stream(rng)
    gate = TemporalGate(window_us=1000, min_events=2, rel_threshold=1.2, ema_windows=20)
    full, _, _ = run_stage(gate, dvs_spec(32, 32), cut_at(ev, []))
    half = ev[ev["t"] < 100_000]
    part, _, _ = run_stage(gate, dvs_spec(32, 32), cut_at(half, [], t_end_us=100_000))
    assert np.array_equal(full[full["t"] < 100_000], part)


def test_spatial_gate_keeps_the_active_tile_and_is_causal():
    rng = np.random.default_rng(22)
    ev = bursty_stream(rng)
    gate = SpatialGate(tile_px=8, tau_us=5000.0, min_activity=2.0, rel_threshold=2.0)
    out, state, _ = run_stage(gate, dvs_spec(32, 32), cut_at(ev, []))
    in_corner = (out["x"] < 8) & (out["y"] < 8)
    assert in_corner.mean() > 0.95
    assert gate.counters(state)["gated_events"] == len(ev) - len(out) > 1000
    assert gate.counters(state)["gate_ops"] == 2 * len(ev)
    half = ev[ev["t"] < 75_000]
    part, _, _ = run_stage(gate, dvs_spec(32, 32), cut_at(half, [], t_end_us=75_000))
    assert np.array_equal(out[out["t"] < 75_000], part)


@settings(max_examples=20)
@given(cuts=st.lists(st.integers(1, 4499), max_size=30))
def test_gates_are_packet_invariant(cuts):
    rng = np.random.default_rng(23)
    ev = bursty_stream(rng)
    check_packet_invariance(TemporalGate(1500, 3, 1.0, 10.0), dvs_spec(32, 32), ev, cuts)
    check_packet_invariance(SpatialGate(4, 3000.0, 1.5, 1.0), dvs_spec(32, 32), ev, cuts)
    net = Network([Conv2d("c", np.full((2, 2, 3, 3), 0.4), padding=(1, 1), neuron=Neuron(1.0, 4000.0))], (2, 32, 32),
                  input_gates=(SpatialGate(8, 5000.0, 1.0, 1.5), TemporalGate(2000, 4)))
    check_packet_invariance(net, dvs_spec(32, 32), ev, cuts)


def test_network_input_gates_count_exact_ops_saved_and_match_gate_off_difference():
    rng = np.random.default_rng(24)
    ev = bursty_stream(rng)
    conv = Conv2d("c", np.full((4, 2, 5, 5), 0.1), padding=(2, 2), neuron=Neuron(1.0, 4000.0))
    off = Network([conv], (2, 32, 32))
    on = Network([conv], (2, 32, 32), input_gates=(SpatialGate(8, 5000.0, 2.0, 2.0), TemporalGate(2000, 5)))
    _, s_off, _ = run_stage(off, dvs_spec(32, 32), cut_at(ev, []))
    _, s_on, _ = run_stage(on, dvs_spec(32, 32), cut_at(ev, []))
    c_on, c_off = on.counters(s_on), off.counters(s_off)
    assert c_on["gated_events"] > 1000
    # single-layer network: the ops saved are exactly the ops the gated run did not do
    assert c_on["synaptic_ops"] + c_on["gated_ops_saved"] == c_off["synaptic_ops"]
    assert c_on["gated_events.spatial"] + c_on["gated_events.temporal"] == c_on["gated_events"]
    assert c_on["gate_ops"] == c_on["gate_ops.spatial"] + c_on["gate_ops.temporal"] > 0


def test_gated_network_matches_dense_reference_on_bin_boundaries():
    rng = np.random.default_rng(25)
    counts = np.zeros((60, 2, 16, 16))
    counts[:, :, :8, :8] = rng.poisson(0.3, (60, 2, 8, 8))
    counts[:, :, 8:, :] = rng.poisson(0.02, (60, 2, 8, 16))
    counts[20:30] += rng.poisson(0.2, (10, 2, 16, 16))
    gates = (SpatialGate(8, 3000.0, 1.0, 1.0), TemporalGate(2000, 30, 1.0, 10.0))
    net = Network([Conv2d("c", rng.integers(0, 3, (3, 2, 3, 3)).astype(float), padding=(1, 1),
                          neuron=Neuron(3.0))], (2, 16, 16), input_gates=gates)
    t, a = bins_to_spikes(counts, 1000)
    ev = np.empty(len(t), SPIKE_EVENT)
    ev["t"], ev["addr"] = t, a
    out, state, _ = run_stage(net, spike_spec((2, 16, 16)), cut_at(ev, [], t_end_us=60_000))
    dense = run_dense(net, counts, 1000)
    np.testing.assert_array_equal(bin_addresses(out["t"], out["addr"], net.out_shape, 1000, 60), dense.output)
    c = net.counters(state)
    assert c["gated_events.spatial"] == dense.gated["spatial"] > 0
    assert c["gated_events.temporal"] == dense.gated["temporal"] > 0


def test_calibration_hits_the_keep_fraction():
    rng = np.random.default_rng(26)
    ev = bursty_stream(rng)
    tg = TemporalGate.calibrate(ev["t"], keep_fraction=0.7, window_us=2000)
    out, _, _ = run_stage(tg, dvs_spec(32, 32), cut_at(ev, []))
    assert 0.6 <= len(out) / len(ev) <= 0.8
    a = (ev["p"].astype(np.int64) * 1024 + ev["y"] * 32 + ev["x"]).astype(np.int32)
    sg = SpatialGate(8, 5000.0, 0.0, 0.0).calibrate(dvs_spec(32, 32), ev["t"], a, keep_fraction=0.5)
    out, _, _ = run_stage(sg, dvs_spec(32, 32), cut_at(ev, []))
    assert 0.45 <= len(out) / len(ev) <= 0.55
    weighted = dataclasses.replace(sg, tile_weight=np.where(np.arange(16).reshape(4, 4) == 0, 0.0, 1.0))
    out, _, _ = run_stage(weighted, dvs_spec(32, 32), cut_at(ev, []))
    assert not np.any((out["x"] < 8) & (out["y"] < 8))  # a zero tile weight masks its tile


def test_gate_config_errors():
    with pytest.raises(ValueError, match="window_us must be an int"):
        TemporalGate(window_us=0)
    with pytest.raises(ValueError, match="tile_weight has shape"):
        SpatialGate(8, tile_weight=np.ones((3, 3))).init(dvs_spec(32, 32))
    with pytest.raises(ValueError, match="keep_fraction"):
        TemporalGate.calibrate(np.arange(10), 0.0)
