"""The PyTorch mirror: same spikes as the dense reference and the event-driven engine, gradients, export."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.training.torch_snn import SNN, bin_events, spike_fn
from graphs.network import load_network
from runtime import SPIKE_EVENT, spike_spec
from runtime.engine.dense import bin_addresses, bins_to_spikes, run_dense
from runtime.testing import cut_at, run_stage

TOPO = {
    "name": "mirror-test",
    "input": {"shape": [2, 12, 12]},
    "bin_us": 1000,
    "input_gates": [{"type": "spatial", "tile_px": 4, "tau_us": 3000, "min_activity": 0.5, "rel_threshold": 0.5,
                     "tile_weight": True},
                    {"type": "temporal", "window_us": 2000, "min_events": 3}],
    "layers": [
        {"name": "c1", "type": "conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1,
         "neuron": {"model": "lif", "tau_us": 5000, "threshold": 1.0, "refractory_us": 2000},
         "channel_gate": {"tau_us": 8000}},
        {"name": "p1", "type": "sumpool2d", "kernel_size": 2, "neuron": None},
        {"name": "c2", "type": "conv2d", "in_channels": 4, "out_channels": 6, "kernel_size": 3, "stride": 2,
         "delay_us": 1000, "neuron": {"model": "iaf", "threshold": 1.5, "reset": "zero"}},
        {"name": "f", "type": "flatten"},
        {"name": "out", "type": "linear", "in_features": 24, "out_features": 3, "recurrent": True,
         "neuron": {"model": "lif", "tau_us": 10000}},
    ],
}


def make_model():
    model = SNN(TOPO, seed=0, init_gain=2.5)
    with torch.no_grad():
        model.layers["c1"].gate_weight.fill_(1.0)
        model.layers["c1"].gate_bias.fill_(-0.6)
        model.layers["out"].recurrent_weight.mul_(0.5)
        model.tile_weight[1, 1] = 0.0
    return model


def test_torch_dense_and_engine_give_the_same_spikes(tmp_path):
    model = make_model()
    rng = np.random.default_rng(40)
    x = (rng.random((60, 1, 2, 12, 12)) < 0.12).astype(np.float32)
    with torch.no_grad():
        rec = model(torch.from_numpy(x), record=True)
    model.export(tmp_path / "m", meta={"note": "test"})
    net = load_network(tmp_path / "m")
    assert net.meta["note"] == "test"
    dense = run_dense(net, x[:, 0], 1000)
    for name in ("c1", "p1", "c2", "out"):
        np.testing.assert_array_equal(rec[name][:, 0].numpy(), dense.spikes[name], err_msg=name)
    assert float(rec["gated"]["spatial"]) == dense.gated["spatial"] > 0
    assert float(rec["gated"]["c1"]) == dense.gated["c1"] > 0
    t, a = bins_to_spikes(x[:, 0], 1000)
    ev = np.empty(len(t), SPIKE_EVENT)
    ev["t"], ev["addr"] = t, a
    out, state, _ = run_stage(net, spike_spec((2, 12, 12)), cut_at(ev, [], t_end_us=60_000))
    np.testing.assert_array_equal(bin_addresses(out["t"], out["addr"], (3,), 1000, 60), rec["output"][:, 0].numpy())
    assert rec["output"].sum() > 0
    assert net.counters(state)["spikes.out"] == len(out)  # (one more than torch: c2 delays into t = 60 ms)


def test_chunked_forward_with_state_equals_one_call():
    model = make_model()
    x = (torch.rand(40, 2, 2, 12, 12, generator=torch.Generator().manual_seed(1)) < 0.15).float()
    with torch.no_grad():
        whole = model(x)
        from apps.training.torch_snn import LayerState

        st = LayerState()
        parts = torch.cat([model(x[:14], state=st), model(x[14:], state=st)])
    torch.testing.assert_close(whole, parts)


def test_gradients_reach_weights_and_gate_parameters():
    model = make_model()
    x = (torch.rand(30, 3, 2, 12, 12, generator=torch.Generator().manual_seed(2)) < 0.2).float()
    out = model(x)
    loss = ((out.sum(0) - torch.tensor([3.0, 0.0, 1.0])) ** 2).mean()
    loss.backward()
    for name in ("layers.c1.weight", "layers.c2.weight", "layers.out.weight", "layers.out.recurrent_weight",
                 "layers.c1.gate_bias"):
        g = dict(model.named_parameters())[name].grad
        assert g is not None and torch.isfinite(g).all() and g.abs().sum() > 0, name


def test_spike_fn_forward_and_surrogate():
    v = torch.tensor([0.5, 1.0, 2.7, -3.0], requires_grad=True)
    s = spike_fn(v, 1.0, multi=True)
    assert s.tolist() == [0.0, 1.0, 2.0, 0.0]
    s.sum().backward()
    assert v.grad[1] == pytest.approx(1.0) and 0 < v.grad[0] < 1 and v.grad[3] > 0
    assert spike_fn(torch.tensor([2.7]), 1.0, multi=False).tolist() == [1.0]


def test_bin_events_and_shape_errors():
    counts = bin_events(np.array([0, 999, 1000, 2500]), np.array([1, 1, 0, 3]), (4,), 1000)
    assert counts.tolist() == [[0, 2, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]]
    model = SNN({"input": {"shape": [4]}, "layers": [{"name": "l", "type": "linear", "in_features": 4,
                                                      "out_features": 2}]}, seed=0)
    with pytest.raises(ValueError, match=r"input has shape \(5,\) per sample, network expects \(4,\)"):
        model(torch.zeros(3, 1, 5))
    with pytest.raises(ValueError, match="not a multiple of bin_us"):
        SNN({"input": {"shape": [4]}, "bin_us": 1000, "layers": [
            {"name": "l", "type": "linear", "in_features": 4, "out_features": 2, "delay_us": 500}]})
