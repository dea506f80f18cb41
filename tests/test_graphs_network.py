"""Network files: JSON topology + npz weights, round trips, loader errors."""

from __future__ import annotations

import json

import numpy as np
import pytest

from graphs.network import (
    load_network, network_from_state_dict, network_to_topology, read_topology, save_network,
)
from runtime import dvs_spec, make_dvs_events
from runtime.engine import (
    ChannelGate, Conv2d, Flatten, InputGain, Linear, Network, Neuron, SpatialGate, SumPool2d, TemporalGate,
)
from runtime.errors import FormatError
from runtime.testing import cut_at, run_stage


def full_network(rng) -> Network:
    layers = [
        Conv2d("conv1", rng.normal(size=(4, 2, 3, 3)), (2, 2), (1, 1), Neuron(1.0, 20_000.0, "subtract", 500),
               delay_us=3, channel_gate=ChannelGate(30_000.0, rng.normal(size=4), rng.normal(size=4))),
        SumPool2d("pool1", (2, 2)),
        SumPool2d("pool2", (2, 2), (1, 1), neuron=Neuron(2.0, reset="zero")),
        Flatten("flat"),
        Linear("fc", rng.normal(size=(6, 4 * 3 * 3)), Neuron(1.5, 5_000.0),
               recurrent_weight=rng.normal(-0.3, 0.3, size=(6, 6)), recurrent_delay_us=2000),
        Linear("out", rng.normal(size=(3, 6)), Neuron(1.0)),
    ]
    gates = (SpatialGate(4, 10_000.0, 1.0, 0.5, tile_weight=rng.uniform(size=(4, 4))), TemporalGate(3000, 2, 0.5, 20))
    return Network(layers, (2, 16, 16), "demo", "frame", gates, ("a", "b", "c"), meta={"accuracy": 0.5},
                   input_gain=InputGain(30_000.0, 40_000.0, 5_000, 0.25, 4.0))


def test_round_trip_preserves_topology_weights_and_behaviour(tmp_path):
    rng = np.random.default_rng(30)
    net = full_network(rng)
    jpath, npath = save_network(net, tmp_path / "demo")
    assert jpath.name == "demo.json" and npath.name == "demo.npz"
    topo = json.loads(jpath.read_text())
    assert topo["format"] == "clockless.snn" and topo["version"] == 1
    assert [d["type"] for d in topo["layers"]] == ["conv2d", "sumpool2d", "sumpool2d", "flatten", "linear", "linear"]
    assert topo["layers"][1]["neuron"] is None and topo["layers"][0]["neuron"]["model"] == "lif"
    assert topo["input_gain"] == {"ref_rate_hz": 30_000.0, "tau_us": 40_000.0, "window_us": 5000, "min_gain": 0.25,
                                  "max_gain": 4.0, "count": "input"}
    back = load_network(tmp_path / "demo.json")
    assert back.input_gain == net.input_gain
    assert back.shapes == net.shapes and back.labels == ("a", "b", "c") and back.meta["accuracy"] == 0.5
    for a, b in zip(net.layers, back.layers):
        assert type(a) is type(b) and a.name == b.name
        if hasattr(a, "weight"):
            np.testing.assert_array_equal(a.weight, b.weight)
    t = np.sort(rng.integers(0, 100_000, 3000))
    ev = make_dvs_events(rng.integers(0, 16, 3000), rng.integers(0, 16, 3000), t, rng.integers(0, 2, 3000))
    out_a, sa, _ = run_stage(net, dvs_spec(16, 16), cut_at(ev, []))
    out_b, sb, _ = run_stage(back, dvs_spec(16, 16), cut_at(ev, []))
    assert np.array_equal(out_a, out_b)
    assert net.counters(sa) == back.counters(sb)
    assert load_network(tmp_path / "demo").name == load_network(tmp_path / "demo.npz").name == "demo"


def test_state_dict_with_layers_prefix_loads():
    rng = np.random.default_rng(31)
    net = full_network(rng)
    topo, arrays = network_to_topology(net)
    sd = {f"layers.{k}" if not k.startswith("input_gates") else k: v for k, v in arrays.items()}
    back = network_from_state_dict(topo, sd)
    np.testing.assert_array_equal(back.layer("fc").recurrent_weight, net.layer("fc").recurrent_weight)


def test_defaults_are_filled_in(tmp_path):
    topo = {"input": {"shape": [10]}, "layers": [{"name": "l", "type": "linear", "in_features": 10,
                                                   "out_features": 2}]}
    save_network(topo, tmp_path / "min", {"l.weight": np.ones((2, 10))})
    t = read_topology(tmp_path / "min")
    assert t["decay"] == "frame" and t["bin_us"] == 1000
    assert t["layers"][0]["neuron"] == {"model": "iaf", "threshold": 1.0, "tau_us": None, "reset": "subtract",
                                        "refractory_us": 0}
    assert load_network(tmp_path / "min").layer("l").neuron.tau_us is None


@pytest.mark.parametrize("mutate, message", [
    (lambda t: t.update(format="other"), "field 'format' must be 'clockless.snn'"),
    (lambda t: t.update(version=7), "field 'version' is 7"),
    (lambda t: t.pop("input"), "missing field 'input'"),
    (lambda t: t["layers"][0].update(type="conv3d"), "field 'type' must be conv2d, linear"),
    (lambda t: t["layers"][0].pop("in_features"), "missing field 'in_features'"),
    (lambda t: t["layers"][0].update(neuron={"model": "hh"}), "'model' must be 'iaf' or 'lif'"),
    (lambda t: t["layers"][0].update(neuron={"model": "lif"}), "missing field 'tau_us'"),
    (lambda t: t["layers"][0].update(in_features=11), r"array 'l.weight' has shape \(2, 10\), expected \(2, 11\)"),
    (lambda t: t["layers"].append({"name": "l", "type": "flatten"}), "layer name 'l' is used twice"),
    (lambda t: t.update(input_gain={"ref_rate_hz": 100, "tau_us": 0}), "field 'input_gain': .*'tau_us'"),
    (lambda t: t.update(input_gain={"ref_rate_hz": 100, "window": 5}), "field 'input_gain': .*window"),
])
def test_bad_files_raise_format_errors_naming_the_field(tmp_path, mutate, message):
    topo = {"input": {"shape": [10]}, "layers": [{"name": "l", "type": "linear", "in_features": 10,
                                                   "out_features": 2}]}
    mutate(topo)
    (tmp_path / "bad.json").write_text(json.dumps(topo))
    np.savez(tmp_path / "bad.npz", **{"l.weight": np.ones((2, 10), np.float32)})
    with pytest.raises(FormatError, match=message):
        load_network(tmp_path / "bad")


def test_missing_and_corrupt_files(tmp_path):
    with pytest.raises(FormatError, match="network topology file not found"):
        load_network(tmp_path / "nothing")
    (tmp_path / "x.json").write_text("{not json")
    with pytest.raises(FormatError, match="not valid JSON"):
        load_network(tmp_path / "x")
    (tmp_path / "y.json").write_text(json.dumps({"input": {"shape": [2]}, "layers": [
        {"name": "l", "type": "linear", "in_features": 2, "out_features": 1}]}))
    with pytest.raises(FormatError, match="network weights file not found"):
        load_network(tmp_path / "y")
    (tmp_path / "y.npz").write_bytes(b"garbage")
    with pytest.raises(FormatError, match="not a readable .npz"):
        load_network(tmp_path / "y")
    with pytest.raises(FormatError, match="missing array 'l.weight'"):
        network_from_state_dict(json.loads((tmp_path / "y.json").read_text()), {})
