"""InputGain: the first layer's input weighted by the recent input rate, against a slow reference, in packets of
any size, and matching the trainer's binned filter on a steady stream."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime import SPIKE_EVENT, spike_spec
from runtime.engine import Conv2d, InputGain, Linear, Network, Neuron
from runtime.testing import check_packet_invariance, cut_at, run_stage


def spikes_of(t, a):
    ev = np.empty(len(t), SPIKE_EVENT)
    ev["t"] = t
    ev["addr"] = a
    return ev


def reference_gains(t_us, gain: InputGain) -> np.ndarray:
    """Slow twin: the trace walked event by event (equal times enter together), the gain read after each group."""
    k = gain.rate_per_trace_hz
    trace, t_last = gain.ref_rate_hz / k, 0
    out = np.empty(len(t_us))
    i = 0
    while i < len(t_us):
        j = i
        while j < len(t_us) and t_us[j] == t_us[i]:
            j += 1
        trace = trace * math.exp(-(t_us[i] - t_last) / gain.tau_us) + (j - i)
        t_last = t_us[i]
        out[i:j] = min(max(gain.ref_rate_hz / (k * trace), gain.min_gain), gain.max_gain)
        i = j
    return out


def stream(seed=0):
    """A burst, a silence and a trickle: the gain goes below 1, recovers, then climbs towards its maximum."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.concatenate([rng.integers(0, 100_000, 12_000), rng.integers(900_000, 2_000_000, 40)]))
    return t.astype(np.int64), rng.integers(0, 4, t.shape[0]).astype(np.int32)


GAIN = InputGain(ref_rate_hz=8000.0, tau_us=300_000.0, min_gain=0.25, max_gain=6.0)
BIN_US = 50_000  # the trainer's bin


def test_potential_is_the_sum_of_weights_times_the_reference_gain():
    t, a = stream()
    w = np.array([[1.0, -2.0, 0.5, 3.0]])
    net = Network((Linear("fc", w, Neuron(1e12)),), (4,), input_gain=GAIN)  # IAF, never fires
    _, state, _ = run_stage(net, spike_spec((4,)), cut_at(spikes_of(t, a), [], t_end_us=int(t[-1]) + 1))
    gains = reference_gains(t, GAIN)
    expected = float(np.sum(w[0, a] * gains))
    got = float(net.potentials(state, "fc", int(t[-1]))[0])
    assert got == pytest.approx(expected, rel=1e-9)
    assert gains.min() == GAIN.min_gain and gains.max() == GAIN.max_gain  # both clips reached by this stream
    without = Network((Linear("fc", w, Neuron(1e12)),), (4,))
    _, s0, _ = run_stage(without, spike_spec((4,)), cut_at(spikes_of(t, a), [], t_end_us=int(t[-1]) + 1))
    assert float(without.potentials(s0, "fc", int(t[-1]))[0]) == pytest.approx(float(np.sum(w[0, a])), rel=1e-9)


def test_gain_on_a_spiking_conv_layer_is_packet_invariant():
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 400_000, 4000)).astype(np.int64)
    a = rng.integers(0, 2 * 8 * 8, t.shape[0]).astype(np.int32)
    net = Network((Conv2d("c1", rng.normal(0.4, 0.5, (4, 2, 3, 3)), (1, 1), (1, 1), Neuron(2.0, 20_000.0)),),
                  (2, 8, 8), input_gain=GAIN)
    ev = spikes_of(t, a)
    for cuts in ([1, 2, 3], list(range(0, 4000, 97)), [2000]):
        check_packet_invariance(net, spike_spec((2, 8, 8)), ev, cuts)
    whole, _, _ = run_stage(net, spike_spec((2, 8, 8)), cut_at(ev, []))
    plain, _, _ = run_stage(Network(net.layers, net.input_shape), spike_spec((2, 8, 8)), cut_at(ev, []))
    assert whole.shape[0] > 100 and whole.shape[0] != plain.shape[0]  # it spikes, and the gain changes what


def test_steady_stream_gain_matches_the_trainers_binned_filter():
    """At a steady rate the event-time trace and the per-bin filter r[k] = λ r[k-1] + (1-λ) N[k] agree."""
    rate_hz = 2000.0
    t = np.arange(0, 3_000_000, int(1e6 / rate_hz), dtype=np.int64)
    g_event = reference_gains(t, GAIN)[-1]
    lam = math.exp(-BIN_US / GAIN.tau_us)
    r = GAIN.ref_rate_hz * BIN_US * 1e-6
    for _ in range(60):
        r = lam * r + (1 - lam) * rate_hz * BIN_US * 1e-6
    g_bins = min(max(GAIN.ref_rate_hz * BIN_US * 1e-6 / r, GAIN.min_gain), GAIN.max_gain)
    assert g_event == pytest.approx(g_bins, rel=0.05)
    assert g_event == pytest.approx(4.0, rel=0.05)  # 8000 / 2000


def test_bad_settings_and_a_recurrent_first_layer_are_refused():
    with pytest.raises(ValueError, match="tau_us"):
        InputGain(1000.0, tau_us=0.0)
    with pytest.raises(ValueError, match="min_gain"):
        InputGain(1000.0, min_gain=4.0, max_gain=2.0)
    rec = Linear("fc", np.ones((3, 4)), Neuron(1.0), recurrent_weight=np.zeros((3, 3)), recurrent_delay_us=1000)
    with pytest.raises(ValueError, match="input_gain needs a first layer"):
        Network((rec,), (4,), input_gain=GAIN)
