"""The gesture network's PyTorch model: the same spikes as the event-driven engine and as the project's generic
PyTorch mirror (apps.training.torch_snn) on the same weights; its fused LIF scan has the gradients of plain
autograd."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from apps.gesture.model import GestureSNN, ModelConfig, _LIFScan, delay_lines, spike_fn, to_arrays
from apps.training.torch_snn import SNN
from graphs.gesture import INPUT_PX, topology
from graphs.network import network_from_topology
from runtime.events import SPIKE_EVENT
from runtime.spec import spike_spec
from runtime.testing import cut_at, run_stage

CFG = ModelConfig(c1=4, c2=8, c3=8, hidden=16, bin_us=10_000, delays_bins=(0, 3))
POOLED = ModelConfig(c1=4, c2=8, c3=8, hidden=16, bin_us=10_000, delays_bins=(0, 3), pool=2)
T = 30


def _model(seed=0, gain=1.5, cfg=CFG):
    torch.manual_seed(seed)
    m = GestureSNN(cfg)
    with torch.no_grad():
        for p in (m.conv1.weight, m.conv2.weight, m.conv3.weight, m.fc1.weight, m.fc2.weight):
            p.mul_(gain)
    return m


def _events(seed=0, n=3000):
    rng = np.random.default_rng(seed)
    # a blob wandering over the input, plus noise, on the training bins' boundaries
    k = np.sort(rng.integers(0, T, n))
    cx = 8 + 16 * k / T
    x = np.clip(np.round(cx + rng.normal(0, 3, n)), 0, INPUT_PX - 1).astype(np.int64)
    y = np.clip(np.round(16 + rng.normal(0, 4, n)), 0, INPUT_PX - 1).astype(np.int64)
    p = rng.integers(0, 2, n)
    ev = np.empty(n, SPIKE_EVENT)
    ev["t"] = k * CFG.bin_us
    ev["addr"] = p * INPUT_PX * INPUT_PX + y * INPUT_PX + x
    return ev


def _dense(ev):
    x = np.zeros((T, 1, 2 * INPUT_PX * INPUT_PX), np.float32)
    np.add.at(x, (ev["t"] // CFG.bin_us, 0, ev["addr"]), 1)
    return torch.from_numpy(x.reshape(T, 1, 2, INPUT_PX, INPUT_PX))


def _topology(m):
    arrays = to_arrays(m)
    taus = arrays.pop("tau_us")
    delays = [d * CFG.bin_us for d in CFG.delays_bins]
    return topology(taus, bin_us=CFG.bin_us, channels=(CFG.c1, CFG.c2, CFG.c3), hidden=CFG.hidden, gates=(),
                    delays_us=delays, pool=m.cfg.pool,
                    channel_gates={n: m.cfg.gate_tau_us for n in m.cfg.channel_gates}), arrays


def _with_delay_lines(ev):
    """What the graph's delay lines feed the network: every spike again d later on channels 2k, 2k+1."""
    parts = []
    for k, d in enumerate(CFG.delays_bins):
        e = ev.copy()
        e["t"] += d * CFG.bin_us
        e["addr"] += k * 2 * INPUT_PX * INPUT_PX
        parts.append(e)
    out = np.concatenate(parts)
    return out[np.argsort(out["t"], kind="stable")]


def _engine_counts(net, fed, channels):
    """Output spikes of the engine per (bin, label) on the events ``fed`` (delay lines already added), and its
    final state."""
    fed = fed[fed["t"] < T * CFG.bin_us]
    spikes, state, _ = run_stage(net, spike_spec((channels, INPUT_PX, INPUT_PX)),
                                 cut_at(fed, [], t_end_us=T * CFG.bin_us))
    engine = np.zeros((T, 9))
    np.add.at(engine, (spikes["t"] // CFG.bin_us, spikes["addr"]), 1)
    return engine, state


@pytest.mark.parametrize("seed,cfg", [(0, CFG), (1, CFG), (0, POOLED)])
def test_binned_model_equals_event_driven_engine_on_bin_boundaries(seed, cfg):
    m = _model(seed, cfg=cfg)
    ev = _events(seed)
    with torch.no_grad():
        out, rec = m(_dense(ev), record=True)
    topo, arrays = _topology(m)
    net = network_from_topology(topo, arrays)
    engine, state = _engine_counts(net, _with_delay_lines(ev), 2 * len(CFG.delays_bins))
    assert out.sum() > 5  # the check means something only if the network spikes
    assert np.array_equal(engine, out[:, 0].numpy())
    counters = net.counters(state)
    for name, r in zip(("conv1", "conv2", "conv3", "hidden", "out"), rec):
        assert counters[f"spikes.{name}"] == int(r.sum())


@pytest.mark.parametrize("cfg", [CFG, POOLED])
def test_same_spikes_as_the_generic_torch_mirror(cfg):
    m = _model(2, cfg=cfg)
    topo, arrays = _topology(m)
    generic = SNN(topo)
    generic.load_state_dict({f"layers.{k}": torch.from_numpy(v) for k, v in arrays.items()})
    x = _dense(_events(2))
    with torch.no_grad():
        assert torch.equal(m(x), generic(delay_lines(x, CFG.delays_bins)))


def test_fused_lif_scan_has_the_gradients_of_plain_autograd():
    torch.manual_seed(0)
    current = torch.randn(25, 3, 7, dtype=torch.float64, requires_grad=True)
    beta = torch.tensor(0.8, dtype=torch.float64, requires_grad=True)
    w = torch.randn(25, 3, 7, dtype=torch.float64)
    out = _LIFScan.apply(current, beta, 2.0)
    (out * w).sum().backward()
    g_fused, b_fused = current.grad.clone(), beta.grad.clone()
    current.grad = None
    beta.grad = None
    v = torch.zeros(3, 7, dtype=torch.float64)
    ref = []
    for k in range(25):
        v = beta * v + current[k]
        n = spike_fn(v, 2.0)
        v = v - n.detach()
        ref.append(n)
    ref = torch.stack(ref)
    (ref * w).sum().backward()
    assert torch.equal(out, ref) and out.sum() > 0
    assert torch.allclose(g_fused, current.grad) and torch.allclose(b_fused, beta.grad)


def test_surrogate_gradient_is_a_bounded_bump_at_the_threshold():
    x = torch.tensor([-2.0, 0.0, 0.5, 0.99, 1.0, 1.5, 4.0], requires_grad=True)
    spike_fn(x, 2.0).sum().backward()
    g = x.grad
    assert torch.all(g > 0) and torch.all(g <= 1) and g[4] == 1.0
    assert torch.all(torch.diff(g[:5]) > 0) and torch.all(torch.diff(g[4:]) < 0)
    assert torch.equal(spike_fn(torch.tensor([-1.0, 0.3, 1.0, 2.7]), 2.0), torch.tensor([0.0, 0.0, 1.0, 2.0]))


def test_time_constants_round_trip():
    m = GestureSNN(CFG)
    assert np.allclose(m.taus_us(), CFG.tau_init_us, rtol=1e-5)


def test_gain_counting_sensor_events_equals_the_engine_with_a_count_channel():
    """Gates dropped part of the sensor's events: the network sees the rest, its gain counts them all (the
    trainer's sensor_counts, the engine's count channel), on bin boundaries the spikes are the same."""
    from apps.gesture.model import gain_of

    cfg = ModelConfig(c1=4, c2=8, c3=8, hidden=16, bin_us=10_000, delays_bins=(0, 3), gain_ref=500.0,
                      gain_tau_us=40_000.0, gain_count="sensor")
    m = _model(3, gain=2.0, cfg=cfg)
    sensor = _events(3, n=6000)
    kept = sensor[np.random.default_rng(3).random(sensor.shape[0]) < 0.4]  # what the gates let through
    counts = np.bincount(sensor["t"] // CFG.bin_us, minlength=T).astype(np.float32)[:, None]
    with torch.no_grad():
        out = m(_dense(kept), sensor_counts=torch.from_numpy(counts))
        assert not torch.equal(out, m(_dense(kept), sensor_counts=torch.from_numpy(counts * 0.4)))
    topo, arrays = _topology(m)
    topo["input_gain"] = gain_of(cfg).to_dict()
    net = network_from_topology(topo, arrays)
    channels = 2 * len(CFG.delays_bins)
    count_ev = sensor.copy()
    count_ev["addr"] = channels * INPUT_PX * INPUT_PX + count_ev["addr"] % (INPUT_PX * INPUT_PX)
    fed = np.concatenate([_with_delay_lines(kept), count_ev])
    engine, _ = _engine_counts(net, fed[np.argsort(fed["t"], kind="stable")], channels + 1)
    assert out.sum() > 5
    assert np.array_equal(engine, out[:, 0].numpy())


def test_gain_counting_input_events_equals_the_engine():
    """The default gain counts every event that reaches the network, delay lines included: the model (which
    applies conv1 to the input once and shifts each line's part, see GestureSNN._conv1_lines) and the engine
    (which is fed the delayed copies) give the same spikes on bin boundaries."""
    from apps.gesture.model import gain_of

    cfg = ModelConfig(c1=4, c2=8, c3=8, hidden=16, bin_us=10_000, delays_bins=(0, 3), gain_ref=300.0,
                      gain_tau_us=40_000.0, gain_count="input")
    m = _model(4, gain=2.0, cfg=cfg)
    ev = _events(4, n=6000)
    with torch.no_grad():
        out = m(_dense(ev))
        assert not torch.equal(out, _model(4, gain=2.0, cfg=replace(cfg, gain_ref=100.0))(_dense(ev)))
    topo, arrays = _topology(m)
    topo["input_gain"] = gain_of(cfg).to_dict()
    net = network_from_topology(topo, arrays)
    engine, _ = _engine_counts(net, _with_delay_lines(ev), 2 * len(CFG.delays_bins))
    assert out.sum() > 5
    assert np.array_equal(engine, out[:, 0].numpy())


def test_channel_gates_give_the_engines_spikes_on_bin_boundaries():
    """Trained channel gates on conv2 and conv3 (the engine's ChannelGate: running spike count per channel,
    score w·r/mean + b): with gates on, the model's spikes and each layer's kept spikes are the engine's; with
    gates off, the model equals the engine without the gates; the gates drop spikes (so both checks bite)."""
    from graphs.gesture import GestureNet

    cfg = replace(POOLED, channel_gates=("conv2", "conv3"), gate_tau_us=30_000.0)
    m = _model(5, gain=1.6, cfg=cfg)
    rng = np.random.default_rng(5)
    with torch.no_grad():
        for name in cfg.channel_gates:
            m.gate_w[name].copy_(torch.from_numpy(rng.uniform(0.5, 2.0, m.gate_w[name].shape[0])))
            m.gate_b[name].copy_(torch.from_numpy(rng.uniform(-2.2, 0.0, m.gate_b[name].shape[0])))
    ev = _events(5, n=5000)
    topo, arrays = _topology(m)
    assert [d.get("channel_gate") for d in topo["layers"][:3]] == [None, {"tau_us": 30_000.0}, {"tau_us": 30_000.0}]
    topo["meta"]["delays_us"] = [d * CFG.bin_us for d in CFG.delays_bins]
    gated = GestureNet(network_from_topology(topo, arrays), topo["meta"])
    channels = 2 * len(CFG.delays_bins)
    for on in (True, False):
        with torch.no_grad():
            out, rec = m(_dense(ev), record=True, gates_on=torch.tensor([on]))
        engine, state = _engine_counts(gated.network(channel_gates=on), _with_delay_lines(ev), channels)
        assert out.sum() > 5
        assert np.array_equal(engine, out[:, 0].numpy())
        counters = gated.network(channel_gates=on).counters(state)
        for name, r in zip(("conv1", "conv2", "conv3", "hidden", "out"), rec):
            assert counters[f"spikes.{name}"] == int(r.sum())
        for name in cfg.channel_gates:
            s, kept = m.gate_record[name]
            assert counters.get(f"gated_events.{name}", 0) == int(s.sum() - kept.sum())
            assert (counters.get(f"gated_events.{name}", 0) > 0.1 * int(s.sum())) == on
