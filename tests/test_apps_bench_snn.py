"""Smoke test of the snn bench suite's pieces on tiny inputs: consistent numbers, not speed."""

from __future__ import annotations

import numpy as np

from apps.bench import snn
from runtime.packet import packetize
from runtime.spec import dvs_spec


def test_first_layer_counts_the_expected_fan_out():
    ev = snn.dvs_like_stream(3000, duration_us=50_000, seed=3)
    net = snn.first_layer("frame", 20_000.0)
    wall, state, n_out = snn.run_packets(net, dvs_spec(128, 128), list(packetize(ev, 512, 1000)))
    x, y = ev["x"].astype(int), ev["y"].astype(int)
    rows = np.minimum(y + 2, 127) - np.maximum(y - 2, 0) + 1  # 5×5 kernel, padding 2: taps inside the 128×128 map
    cols = np.minimum(x + 2, 127) - np.maximum(x - 2, 0) + 1
    c = net.counters(state)
    assert c["synaptic_ops"] == int((rows * cols * 8).sum())
    assert c["spikes"] == n_out > 0
    assert wall > 0


def test_conv_net_runs_and_gated_variant_saves_ops():
    ev = snn.dvs_like_stream(6000, 64, 48, duration_us=100_000, seed=4)
    spec = dvs_spec(64, 48)
    packets = list(packetize(ev, 1024, 1000))
    off = snn.conv_net(64, 48)
    on = snn.conv_net(64, 48, gated=True, events=ev)
    _, s_off, _ = snn.run_packets(off, spec, packets)
    _, s_on, _ = snn.run_packets(on, spec, packets)
    c_off, c_on = off.counters(s_off), on.counters(s_on)
    assert c_off["synaptic_ops"] > 0 and c_on["gated_events"] > 0
    assert c_on["synaptic_ops"] < c_off["synaptic_ops"]
    assert off.dense_macs_per_bin(spec) > c_off["synaptic_ops"] / 100  # per 1 ms bin vs the whole 100 ms run


def test_per_layer_breakdown_follows_the_spikes_through_the_layers():
    ev = snn.dvs_like_stream(4000, 64, 48, duration_us=60_000, seed=5)
    spec = dvs_spec(64, 48)
    packets = list(packetize(ev, 1024, 1000))
    net = snn.conv_net(64, 48)
    _, state, n_out = snn.run_packets(net, spec, packets)
    layers = snn.per_layer(net, spec, packets)
    c = net.counters(state)
    assert list(layers) == ["conv1", "conv2", "conv3", "conv4"]
    assert layers["conv1"]["events_in"] == 4000
    for prev, name in zip(["conv1", "conv2", "conv3"], ["conv2", "conv3", "conv4"]):
        assert layers[name]["events_in"] == layers[prev]["spikes_out"] == c[f"spikes.{prev}"]
    assert all(layers[k]["synaptic_ops"] == c[f"synaptic_ops.{k}"] for k in layers)
    assert layers["conv4"]["spikes_out"] == n_out
    # timed as the median of several runs, each from a fresh state: the same counts, not three runs' worth
    again = snn.per_layer(net, spec, packets, repeats=3)
    assert all({k2: again[k][k2] for k2 in ("events_in", "synaptic_ops", "spikes_out")}
               == {k2: layers[k][k2] for k2 in ("events_in", "synaptic_ops", "spikes_out")} for k in layers)
