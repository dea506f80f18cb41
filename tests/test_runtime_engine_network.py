"""The Network stage: dense equivalence, exact decay, packetization invariance, event-time rules, counters."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime import SPIKE_EVENT, Packet, audio_spec, dvs_spec, make_dvs_events, spike_spec
from runtime.engine import ChannelGate, Conv2d, Flatten, Linear, Network, Neuron, SumPool2d
from runtime.engine.dense import bin_addresses, bins_to_spikes, run_dense
from runtime.testing import check_packet_invariance, cut_at, run_stage, valid_cuts

BIN = 1000


def spikes_of(t, a):
    ev = np.empty(len(t), SPIKE_EVENT)
    ev["t"] = t
    ev["addr"] = a
    return ev


def conv_net(rng, neuron_a, neuron_b, *, signed=True, decay="frame"):
    lo = -1 if signed else 0
    layers = [
        Conv2d("conv1", rng.integers(lo, 3, (4, 2, 3, 3)).astype(float), (1, 1), (1, 1), neuron_a),
        SumPool2d("pool1", (2, 2)),
        Conv2d("conv2", rng.integers(lo, 3, (6, 4, 3, 3)).astype(float), (2, 2), (0, 0), neuron_b),
        Flatten("flat"),
        Linear("fc", rng.integers(lo, 3, (5, 6 * 3 * 3)).astype(float), neuron_b),
    ]
    return Network(layers, (2, 16, 16), decay=decay)


def run_engine(net, counts, bin_us=BIN, spec=None):
    t, a = bins_to_spikes(counts, bin_us)
    spec = spec or spike_spec(net.input_shape)
    out, state, _ = run_stage(net, spec, cut_at(spikes_of(t, a), [], t_end_us=counts.shape[0] * bin_us))
    return out, state


def per_bin(net, out, n_bins, bin_us=BIN):
    return bin_addresses(out["t"], out["addr"], net.out_shape, bin_us, n_bins)


def test_iaf_spike_counts_match_dense_reference_exactly_with_signed_weights():
    rng = np.random.default_rng(10)
    net = conv_net(rng, Neuron(4.0), Neuron(3.0, reset="zero", refractory_us=2000))
    counts = rng.poisson(0.15, (60, 2, 16, 16)).astype(float)
    out, state = run_engine(net, counts)
    dense = run_dense(net, counts, BIN)
    np.testing.assert_array_equal(per_bin(net, out, 60), dense.output)
    assert dense.output.sum() > 10, "the test network must spike"
    c = net.counters(state)
    for name in ("conv1", "pool1", "conv2", "fc"):
        assert c[f"spikes.{name}"] == dense.spikes[name].sum()
    # IAF potentials are sums of integers: exact
    np.testing.assert_array_equal(net.potentials(state, "conv2", 60 * BIN), dense.potentials["conv2"])


def test_lif_potentials_and_spikes_match_dense_reference(capsys):
    rng = np.random.default_rng(11)
    rel = 1e-5
    net = conv_net(rng, Neuron(2.5, 4000.0), Neuron(2.0, 7000.0), signed=True)
    net = dataclasses.replace(net, layers=tuple(
        dataclasses.replace(l, weight=l.weight * rng.uniform(0.6, 1.4, l.weight.shape)) if hasattr(l, "weight") else l
        for l in net.layers))
    counts = rng.poisson(0.2, (80, 2, 16, 16)).astype(float)
    out, state = run_engine(net, counts)
    dense = run_dense(net, counts, BIN)
    t_last = 79 * BIN  # dense potentials are those after the last bin, whose events came at its start
    near = 0
    for name in ("conv1", "conv2", "fc"):
        v_engine = net.potentials(state, name, t_last)
        v_dense = dense.potentials[name]
        np.testing.assert_allclose(v_engine, v_dense, rtol=rel, atol=rel * net.layer(name).neuron.threshold)
    eng = per_bin(net, out, 80)
    mismatch = np.argwhere(eng != dense.output)
    near = len(mismatch)
    print(f"LIF dense equivalence: {near} of {eng.size} output (bin, neuron) counts differ")
    assert near <= 0.001 * eng.size
    assert dense.output.sum() > 10
    np.testing.assert_array_equal(
        np.array([net.counters(state)[f"spikes.{n}"] for n in ("conv1", "conv2")]),
        np.array([dense.spikes[n].sum() for n in ("conv1", "conv2")]))


@pytest.mark.parametrize("decay", ["frame", "exp", "lut"])
def test_exact_decay_matches_closed_form_trace(decay):
    """One LIF neuron never reaching threshold: v(t) = Σ w_i exp(-(t - t_i) / τ) at arbitrary event times."""
    tau = 2500.0
    net = Network([Linear("n", np.array([[0.3, -0.2, 0.05]]), Neuron(1e9, tau))], (3,), decay=decay)
    rng = np.random.default_rng(12)
    t = np.sort(rng.integers(0, 400_000, 300))  # 160 τ: the time-invariant frame is renormalised several times
    a = rng.integers(0, 3, 300)
    state = net.init(spike_spec((3,)))
    w = net.layer("n").weight[0].astype(np.float64)  # weights are stored as float32
    for chunk in np.array_split(np.arange(300), 7):
        ev = spikes_of(t[chunk], a[chunk])
        ev.flags.writeable = False
        wm = int(t[chunk][-1]) + 1
        state, _ = net.step(state, Packet(ev, wm))
        closed = sum(w[a[i]] * math.exp(-(wm - t[i]) / tau) for i in range(chunk[-1] + 1))
        assert net.potentials(state, "n", wm)[0] == pytest.approx(closed, rel=1e-9, abs=1e-15)


def test_decay_modes_agree():
    rng = np.random.default_rng(13)
    base = conv_net(rng, Neuron(1.5, 3000.0), Neuron(1.0, 5000.0, refractory_us=1500))
    base = dataclasses.replace(base, layers=tuple(
        dataclasses.replace(l, weight=l.weight * 0.7) if hasattr(l, "weight") else l for l in base.layers))
    t = np.sort(rng.integers(0, 50_000, 3000))
    a = rng.integers(0, 512, 3000)
    outs = []
    for decay in ("frame", "exp", "lut"):
        net = dataclasses.replace(base, decay=decay)
        out, _, _ = run_stage(net, spike_spec((2, 16, 16)), cut_at(spikes_of(t, a), []))
        outs.append(out)
    assert outs[0].shape[0] > 0
    assert np.array_equal(outs[0], outs[1]) and np.array_equal(outs[0], outs[2])


def _invariance_net(rng):
    return Network([
        Conv2d("c", rng.normal(0.4, 0.5, (3, 2, 3, 3)), (1, 1), (1, 1), Neuron(1.0, 2000.0, refractory_us=300),
               delay_us=5, channel_gate=ChannelGate.relative(3, 0.8, 3000.0)),
        SumPool2d("p", (2, 2), neuron=Neuron(1.0, 4000.0)),
        Flatten(),
        Linear("r", rng.normal(0.3, 0.5, (4, 3 * 4 * 4)), Neuron(1.0, 3000.0),
               recurrent_weight=rng.normal(-0.1, 0.3, (4, 4)), recurrent_delay_us=250),
    ], (2, 8, 8))


@settings(max_examples=25)
@given(cuts=st.lists(st.integers(1, 1999), max_size=40), seed=st.integers(0, 3))
def test_packet_invariance_every_layer_kind(cuts, seed):
    rng = np.random.default_rng(seed)
    net = _invariance_net(rng)
    t = np.sort(rng.integers(0, 30_000, 2000))
    ev = make_dvs_events(rng.integers(0, 8, 2000), rng.integers(0, 8, 2000), t, rng.integers(0, 2, 2000))
    check_packet_invariance(net, dvs_spec(8, 8), ev, cuts)
    for single in net.split():  # per-layer stages too
        spec = dvs_spec(8, 8) if single.input_shape == (2, 8, 8) else spike_spec(single.input_shape)
        if spec.kind == "dvs":
            check_packet_invariance(single, spec, ev, cuts)


def test_per_layer_stages_chain_equals_fused_network():
    rng = np.random.default_rng(14)
    net = _invariance_net(rng)
    t = np.sort(rng.integers(0, 30_000, 3000))
    ev = make_dvs_events(rng.integers(0, 8, 3000), rng.integers(0, 8, 3000), t, rng.integers(0, 2, 3000))
    cuts = valid_cuts(t)[::97]
    fused, _, _ = run_stage(net, dvs_spec(8, 8), cut_at(ev, cuts, t_end_us=30_000))
    packets = cut_at(ev, cuts, t_end_us=30_000)
    spec = dvs_spec(8, 8)
    for stage in net.split():
        _, _, packets = run_stage(stage, spec, packets)
        spec = stage.out_spec(spec)
    chained = np.concatenate([p.events for p in packets])
    assert fused.shape[0] > 20
    assert np.array_equal(fused, chained)


def test_order_of_simultaneous_events_does_not_matter():
    rng = np.random.default_rng(15)
    net = Network([Linear("a", rng.normal(0.3, 0.7, (20, 30)), Neuron(1.0, 3000.0)),
                   Linear("b", rng.normal(0.3, 0.7, (6, 20)), Neuron(1.0, 3000.0))], (30,))
    t = np.repeat(np.arange(0, 40_000, 1000), 25)
    a = rng.integers(0, 30, t.shape[0])
    ref, _, _ = run_stage(net, spike_spec((30,)), cut_at(spikes_of(t, a), []))
    for _ in range(3):
        perm = np.concatenate([rng.permutation(np.flatnonzero(t == k)) for k in np.unique(t)])
        out, _, _ = run_stage(net, spike_spec((30,)), cut_at(spikes_of(t[perm], a[perm]), []))
        assert np.array_equal(out, ref)
    assert ref.shape[0] > 0


def test_output_time_and_watermark_carry_the_delay():
    net = Network([Linear("a", np.ones((1, 1)), Neuron(1.0), delay_us=30),
                   Linear("b", np.ones((2, 1)), Neuron(1.0), delay_us=12)], (1,))
    state = net.init(spike_spec((1,)))
    ev = spikes_of([100, 250], [0, 0])
    ev.flags.writeable = False
    state, out = net.step(state, Packet(ev, 300))
    assert out[0].t_end_us == 342
    assert out[0].events["t"].tolist() == [142, 142, 292, 292]
    assert out[0].events["addr"].tolist() == [0, 1, 0, 1]
    state, out = net.step(state, Packet(np.empty(0, SPIKE_EVENT), 400))
    assert out[0].t_end_us == 442 and out[0].events.shape[0] == 0
    assert net.counters(state)["synaptic_ops"] == 2 + 4


def test_no_input_no_compute():
    rng = np.random.default_rng(16)
    net = conv_net(rng, Neuron(1.0, 2000.0), Neuron(1.0, 2000.0))
    state = net.init(spike_spec((2, 16, 16)))
    for wm in range(1000, 1_000_000, 1000):
        state, out = net.step(state, Packet(np.empty(0, SPIKE_EVENT), wm))
    c = net.counters(state)
    assert c["synaptic_ops"] == c["neuron_updates"] == c["spikes"] == 0
    assert out[0].t_end_us == 999_000


def test_counters_and_dense_macs():
    rng = np.random.default_rng(17)
    net = conv_net(rng, Neuron(1.0), Neuron(1.0))
    # conv1: 4·16·16 outputs × 2·3·3; pool: 4·8·8 × 4; conv2: 6·3·3 × 4·3·3; fc: 5 × 54
    assert net.dense_macs_per_bin(spike_spec((2, 16, 16))) == 4 * 256 * 18 + 4 * 64 * 4 + 54 * 36 + 5 * 54
    state = net.init(spike_spec((2, 16, 16)))
    ev = spikes_of([10], [1 * 256 + 5 * 16 + 0])  # polarity 1, y=5, x=0: left border, 2 of 3 columns
    ev.flags.writeable = False
    state, _ = net.step(state, Packet(ev, 11))
    c = net.counters(state)
    assert c["synaptic_ops.conv1"] == 3 * 2 * 4
    assert set(c) >= {"synaptic_ops", "neuron_updates", "spikes", "gated_events", "gated_ops_saved", "gate_ops"}


def test_channel_gate_drops_spikes_and_counts_saved_ops():
    rng = np.random.default_rng(18)
    w1 = np.abs(rng.normal(0.6, 0.2, (4, 2, 3, 3)))
    w1[3] *= 0.15  # a quiet channel
    gate = ChannelGate(5000.0, np.ones(4), np.full(4, -0.5))
    layers = [Conv2d("c", w1, padding=(1, 1), neuron=Neuron(1.0, 5000.0), channel_gate=gate),
              Conv2d("d", rng.normal(0.3, 0.3, (2, 4, 3, 3)), neuron=Neuron(1.0))]
    net = Network(layers, (2, 10, 10))
    off = Network([dataclasses.replace(layers[0], channel_gate=None), layers[1]], (2, 10, 10))
    t = np.sort(rng.integers(0, 50_000, 4000))
    ev = spikes_of(t, rng.integers(0, 200, 4000))
    _, s_on, _ = run_stage(net, spike_spec((2, 10, 10)), cut_at(ev, []))
    _, s_off, _ = run_stage(off, spike_spec((2, 10, 10)), cut_at(ev, []))
    on, offc = net.counters(s_on), off.counters(s_off)
    assert on["gated_events"] > 0
    assert on["spikes.c"] == offc["spikes.c"]  # the gate drops spikes after the neurons fired
    assert on["synaptic_ops.d"] == offc["synaptic_ops.d"] - on["gated_ops_saved"]
    assert on["gate_ops"] == 2 * on["spikes.c"]
    d = run_dense(net, bin_addresses(t // BIN * BIN, ev["addr"], (2, 10, 10), BIN, 50), BIN)
    assert d.gated["c"] > 0


def test_dvs_and_audio_inputs_are_addressed_by_polarity():
    net = Network([Linear("a", np.eye(2 * 3 * 4)[:, :], Neuron(1.0))], (2 * 3 * 4,))
    with pytest.raises(ValueError, match=r"input shape is \(24,\), but the DVS stream"):
        net.out_spec(dvs_spec(4, 3))
    net = Network([Flatten(), Linear("a", np.eye(24), Neuron(1.0))], (2, 3, 4))
    ev = make_dvs_events([3, 0], [2, 1], [5, 6], [True, False])
    out, _, _ = run_stage(net, dvs_spec(4, 3), cut_at(ev, []))
    assert out["addr"].tolist() == [12 + 2 * 4 + 3, 1 * 4 + 0]
    from runtime import AUDIO_EVENT

    aev = np.zeros(2, AUDIO_EVENT)
    aev["t"], aev["x"], aev["p"] = [1, 2], [4, 0], [True, False]
    with pytest.raises(ValueError, match="expects a flat input"):
        Network([Linear("a", np.eye(10), Neuron(1.0))], (2, 5))
    anet = Network([Flatten(), Linear("a", np.eye(10), Neuron(1.0))], (2, 5))
    out, _, _ = run_stage(anet, audio_spec(5), cut_at(aev, []))
    assert out["addr"].tolist() == [9, 0]
    with pytest.raises(ValueError, match=r"expects audio events of 5 channels .* has 32 channels"):
        anet.out_spec(audio_spec(32))
    flat = Network([Linear("a", np.eye(10), Neuron(1.0))], (10,))
    with pytest.raises(ValueError, match=r"expects audio events of 5 channels .* has 16 channels"):
        flat.out_spec(audio_spec(16))


def test_bad_input_gets_a_clear_error():
    net = Network([Flatten(), Linear("a", np.eye(24), Neuron(1.0))], (2, 3, 4), name="tiny")
    ev = make_dvs_events([4], [0], [5], [True])  # x = 4 is outside a 4-pixel-wide sensor
    with pytest.raises(ValueError, match=r"network 'tiny': input event 0 lies outside the input shape"):
        run_stage(net, dvs_spec(4, 3), cut_at(ev, []))
    with pytest.raises(ValueError, match="conv2d.*expects input shape"):
        Network([Conv2d("c", np.ones((1, 1, 1, 1)))], (5,))
    with pytest.raises(ValueError, match="layer name 'a' is used twice"):
        Network([Linear("a", np.ones((3, 3))), Linear("a", np.ones((3, 3)))], (3,))
    with pytest.raises(ValueError, match="threshold must be"):
        Neuron(threshold=0.0)


def test_runaway_recurrent_excitation_raises_instead_of_exhausting_memory():
    net = Network([Linear("r", np.ones((2, 1)), Neuron(1.0), recurrent_weight=np.full((2, 2), 3.0),
                          recurrent_delay_us=1)], (1,), name="loop")
    state = net.init(spike_spec((1,)))
    ev = spikes_of([0], [0])
    ev.flags.writeable = False
    with pytest.raises(RuntimeError, match="network 'loop': layer 'r' emitted over .* runaway excitation"):
        net.step(state, Packet(ev, 10_000))


def test_time_going_back_is_refused():
    net = Network([Linear("a", np.ones((1, 1)), Neuron(1.0, 1000.0))], (1,), name="fwd")
    state = net.init(spike_spec((1,)))
    ev = spikes_of([500], [0])
    ev.flags.writeable = False
    state, _ = net.step(state, Packet(ev, 1000))
    from runtime.errors import StreamOrderError

    with pytest.raises(StreamOrderError, match=r"network 'fwd': packet starting at t=500 µs .* after watermark 1000"):
        net.step(state, Packet(ev, 1000))


def test_float32_state_matches_dense_reference_within_tolerance():
    rng = np.random.default_rng(19)
    net = conv_net(rng, Neuron(2.5, 4000.0), Neuron(2.0, 7000.0))
    net = dataclasses.replace(net, state_dtype="float32", layers=tuple(
        dataclasses.replace(l, weight=l.weight * rng.uniform(0.6, 1.4, l.weight.shape)) if hasattr(l, "weight") else l
        for l in net.layers))
    counts = rng.poisson(0.2, (60, 2, 16, 16)).astype(float)
    out, state = run_engine(net, counts)
    dense = run_dense(net, counts, BIN)
    for name in ("conv1",):  # deeper layers also see the rare spikes that rounding flipped upstream
        # float32 rounding accumulates over the hundreds of updates a neuron gets: ~1e-4 of the threshold
        np.testing.assert_allclose(net.potentials(state, name, 59 * BIN), dense.potentials[name], rtol=1e-3,
                                   atol=1e-3 * net.layer(name).neuron.threshold)
    differ = int((per_bin(net, out, 60) != dense.output).sum())
    print(f"float32 state: {differ} output (bin, neuron) counts differ from the float64 dense reference")
    assert differ <= 0.02 * dense.output.size and dense.output.sum() > 10
    flips = sum(int(net.counters(state)[f"spikes.{n}"] != dense.spikes[n].sum()) for n in ("conv1", "conv2"))
    print(f"float32 state: {flips} of 2 hidden layers with a different total spike count")


def test_network_in_a_graph_trio_executor_reference_and_per_layer_stages_agree():
    from runtime.executor import run
    from runtime.graph import Graph
    from runtime.reference import run_reference
    from runtime.sources import ArraySource
    from runtime.stages import CollectSink

    rng = np.random.default_rng(21)
    net = _invariance_net(rng)
    t = np.sort(rng.integers(0, 40_000, 3000))
    ev = make_dvs_events(rng.integers(0, 8, 3000), rng.integers(0, 8, 3000), t, rng.integers(0, 2, 3000))
    expected, state, _ = run_stage(net, dvs_spec(8, 8), cut_at(ev, []))

    def graph(split: bool) -> Graph:
        g = Graph("snn-test")
        x = g.source("src", ArraySource(ev, dvs_spec(8, 8), max_events=200, max_span_us=1000))
        for i, stage in enumerate(net.split() if split else [net]):
            x = g.stage(f"snn{i}", stage, x)
        g.sink("out", CollectSink(), x)
        return g

    for split in (False, True):
        for report in (run(graph(split), keep_outputs=True), run_reference(graph(split))):
            got = np.concatenate([p.events for p in report["_outputs"]["out"] if p.events.shape[0]])
            assert np.array_equal(got, expected)
            assert report["ops"]["synaptic_ops"] == net.counters(state)["synaptic_ops"]
    assert expected.shape[0] > 20
