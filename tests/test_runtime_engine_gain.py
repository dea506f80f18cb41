"""InputGain: the first layer's input weighted by the recent input rate, against a slow reference, in packets of
any size, and equal to the trainer's per-bin gains."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime import SPIKE_EVENT, spike_spec
from runtime.engine import Conv2d, InputGain, Linear, Network, Neuron
from runtime.engine.gates import TemporalGate
from runtime.testing import check_packet_invariance, cut_at, run_stage


def spikes_of(t, a):
    ev = np.empty(len(t), SPIKE_EVENT)
    ev["t"] = t
    ev["addr"] = a
    return ev


def reference_gains(t_us, gain: InputGain, t_query=None) -> np.ndarray:
    """Slow twin: count the events of every window, then walk the windows with the trainer's per-bin filter; an
    event's gain comes from the running count of the windows before its own. ``t_query``: read the gains at these
    times instead (a gain whose counts come from other events than the ones it weights)."""
    t_query = np.asarray(t_us if t_query is None else t_query)
    win_q = t_query // gain.window_us
    counts = np.bincount(np.asarray(t_us) // gain.window_us, minlength=int(win_q.max()) + 1)
    ref, lam = gain.ref_rate_hz * gain.window_us * 1e-6, math.exp(-gain.window_us / gain.tau_us)
    r, per_window = ref, []
    for n in counts:
        per_window.append(min(max(ref / r, gain.min_gain), gain.max_gain))
        r = lam * r + (1 - lam) * n
    return np.array(per_window)[win_q]


def stream(seed=0):
    """A burst, a silence and a trickle: the gain goes below 1, recovers, then climbs towards its maximum."""
    rng = np.random.default_rng(seed)
    t = np.sort(np.concatenate([rng.integers(0, 300_000, 30_000), rng.integers(900_000, 4_000_000, 60)]))
    return t.astype(np.int64), rng.integers(0, 4, t.shape[0]).astype(np.int32)


GAIN = InputGain(ref_rate_hz=8000.0, tau_us=300_000.0, window_us=50_000, min_gain=0.25, max_gain=6.0)


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


def test_gain_equals_the_trainers_per_bin_gain():
    """The trainer (apps.gesture.model.input_gain) bins the same events at window_us and gets the same gains."""
    torch = pytest.importorskip("torch")  # the 'train' extra; installed on CI
    from apps.gesture.model import ModelConfig, input_gain

    t, a = stream(5)
    n_bins = int(t[-1]) // GAIN.window_us + 1
    x = torch.zeros((n_bins, 1, 1, 1, 4))
    np.add.at(x.numpy(), (t // GAIN.window_us, 0, 0, 0, a), 1.0)
    cfg = ModelConfig(bin_us=GAIN.window_us, gain_ref=GAIN.ref_rate_hz * GAIN.window_us * 1e-6,
                      gain_tau_us=GAIN.tau_us, gain_min=GAIN.min_gain, gain_max=GAIN.max_gain)
    per_bin = input_gain(x, cfg)[:, 0].numpy()
    np.testing.assert_allclose(reference_gains(t, GAIN), per_bin[t // GAIN.window_us], rtol=1e-5)
    rate_hz = 2000.0  # and a steady stream settles at ref / rate
    steady = np.arange(0, 3_000_000, int(1e6 / rate_hz), dtype=np.int64)
    assert reference_gains(steady, GAIN)[-1] == pytest.approx(4.0, rel=0.01)


def test_bad_settings_and_a_recurrent_first_layer_are_refused():
    with pytest.raises(ValueError, match="tau_us"):
        InputGain(1000.0, tau_us=0.0)
    with pytest.raises(ValueError, match="min_gain"):
        InputGain(1000.0, min_gain=4.0, max_gain=2.0)
    rec = Linear("fc", np.ones((3, 4)), Neuron(1.0), recurrent_weight=np.zeros((3, 3)), recurrent_delay_us=1000)
    with pytest.raises(ValueError, match="input_gain needs a first layer"):
        Network((rec,), (4,), input_gain=GAIN)


# ---- a gain that counts the sensor's events (a count-only channel) instead of the network's own input

SENSOR_GAIN = InputGain(ref_rate_hz=8000.0, tau_us=300_000.0, window_us=50_000, min_gain=0.25, max_gain=6.0,
                        count="sensor")


def counted_stream(seed=0):
    """The sensor's stream (a burst, a silence, a trickle) on the count channel (addresses 4..7 of a (2, 1, 4)
    stream), and what a gate let through of it (every 7th event, plus a few after the burst) on channel 0."""
    t, a = stream(seed)
    kept = np.zeros(t.shape[0], bool)
    kept[::7] = True
    ev = np.sort(np.concatenate([spikes_of(t, a + 4), spikes_of(t[kept], a[kept])]), order="t", kind="stable")
    return ev, t, t[kept], a[kept]


def test_a_gain_counting_sensor_events_is_set_by_the_count_channel_alone():
    ev, t_all, t_kept, a_kept = counted_stream()
    conv = Conv2d("c1", np.ones((1, 1, 1, 1)), (1, 1), (0, 0), Neuron(1e12))  # IAF, never fires: Σ of the gains
    net = Network((conv,), (1, 1, 4), input_gain=SENSOR_GAIN)
    out, state, _ = run_stage(net, spike_spec((2, 1, 4)), cut_at(ev, [], t_end_us=int(t_all[-1]) + 1))
    expected = np.zeros(4)
    np.add.at(expected, a_kept, reference_gains(t_all, SENSOR_GAIN, t_kept))
    got = net.potentials(state, "c1", int(t_all[-1])).reshape(-1)
    np.testing.assert_allclose(got, expected, rtol=1e-9)
    g = reference_gains(t_all, SENSOR_GAIN, t_kept)
    assert g.min() == SENSOR_GAIN.min_gain and g.max() > 2.0  # the burst damps, the trickle amplifies
    # the count channel costs nothing: one synaptic op per kept event only
    assert net.counters(state)["synaptic_ops"] == t_kept.shape[0]


def test_a_counted_gain_equals_the_input_gain_when_the_count_channel_repeats_the_input():
    rng = np.random.default_rng(4)
    t = np.sort(rng.integers(0, 600_000, 5000)).astype(np.int64)
    t[2000:2600] = t[2000]  # a run of equal timestamps
    a = rng.integers(0, 2 * 8 * 8, t.shape[0]).astype(np.int32)
    weight = rng.normal(0.4, 0.5, (4, 2, 3, 3))
    plain = Network((Conv2d("c1", weight, (1, 1), (1, 1), Neuron(2.0, 20_000.0)),), (2, 8, 8),
                    input_gain=InputGain(8000.0, 300_000.0, 50_000, 0.25, 6.0))
    counted = Network(plain.layers, (2, 8, 8), input_gain=SENSOR_GAIN)
    # the count channel of a (2, 8, 8) input is channel 2 of a (3, 8, 8) stream
    ev = np.sort(np.concatenate([spikes_of(t, a), spikes_of(t, 2 * 64 + a % 64)]), order="t", kind="stable")
    want, s_plain, _ = run_stage(plain, spike_spec((2, 8, 8)), cut_at(spikes_of(t, a), []))
    got, s_counted, _ = run_stage(counted, spike_spec((3, 8, 8)), cut_at(ev, []))
    assert want.shape[0] > 100
    np.testing.assert_array_equal(got, want)
    assert counted.counters(s_counted)["synaptic_ops"] == plain.counters(s_plain)["synaptic_ops"]
    for cuts in ([1, 2, 3], list(range(0, ev.shape[0], 97)), [5000], list(range(0, ev.shape[0], 1500))):
        check_packet_invariance(counted, spike_spec((3, 8, 8)), ev, cuts)


def test_a_counted_gain_refuses_a_stream_without_the_count_channel():
    net = Network((Conv2d("c1", np.ones((1, 2, 1, 1)), (1, 1), (0, 0), Neuron(1.0)),), (2, 8, 8),
                  input_gain=SENSOR_GAIN)
    with pytest.raises(ValueError, match=r"takes a \(3, 8, 8\) spike stream"):
        net.out_spec(spike_spec((2, 8, 8)))
    with pytest.raises(ValueError, match="count"):
        InputGain(1000.0, count="output")
    with pytest.raises(ValueError, match=r"needs a \(C, H, W\) input"):
        Network((Linear("fc", np.ones((3, 4)), Neuron(1.0)),), (4,), input_gain=SENSOR_GAIN)
    gated = Network(net.layers, (2, 8, 8), input_gain=SENSOR_GAIN, input_gates=(TemporalGate(10_000, 4),))
    with pytest.raises(ValueError, match="must run as stages before it"):
        gated.out_spec(spike_spec((3, 8, 8)))


def test_a_counted_gain_equals_the_trainers_gain_on_sensor_counts():
    """The trainer's sensor_counts path (per-bin totals of the events before the gates) gives the same gains."""
    torch = pytest.importorskip("torch")  # the 'train' extra; installed on CI
    from apps.gesture.model import ModelConfig, input_gain

    _, t_all, t_kept, _ = counted_stream(2)
    n_bins = int(t_all[-1]) // SENSOR_GAIN.window_us + 1
    counts = torch.from_numpy(np.bincount(t_all // SENSOR_GAIN.window_us, minlength=n_bins).astype(np.float32))
    cfg = ModelConfig(bin_us=SENSOR_GAIN.window_us, gain_ref=SENSOR_GAIN.ref_per_window, gain_count="sensor",
                      gain_tau_us=SENSOR_GAIN.tau_us, gain_min=SENSOR_GAIN.min_gain, gain_max=SENSOR_GAIN.max_gain)
    per_bin = input_gain(counts[:, None], cfg)[:, 0].numpy()
    np.testing.assert_allclose(reference_gains(t_all, SENSOR_GAIN, t_kept), per_bin[t_kept // SENSOR_GAIN.window_us],
                               rtol=1e-5)


def test_training_gain_can_start_from_another_state():
    """--gain-start-spread: each sample's running count starts at start · gain_ref, so the first bin's gain is
    clip(1 / start) and the count then relaxes towards the input as it does from the reference."""
    torch = pytest.importorskip("torch")
    from apps.gesture.model import ModelConfig, input_gain

    cfg = ModelConfig(bin_us=50_000, gain_ref=400.0, gain_tau_us=500_000.0, gain_min=0.5, gain_max=8.0)
    x = torch.zeros((4, 3)) + 400.0  # (T, B) totals at the reference rate
    start = torch.tensor([1.0, 0.25, 16.0])
    g = input_gain(x, cfg, start).numpy()
    np.testing.assert_allclose(g[0], [1.0, 4.0, 0.5], rtol=1e-6)
    lam = math.exp(-50_000 / 500_000)
    r1 = lam * 400.0 * start.numpy() + (1 - lam) * 400.0
    np.testing.assert_allclose(g[1], np.clip(400.0 / r1, 0.5, 8.0), rtol=1e-5)
    np.testing.assert_allclose(input_gain(x, cfg, torch.ones(3)).numpy(), input_gain(x, cfg).numpy())
    with pytest.raises(ValueError, match="start must have shape"):
        input_gain(x, cfg, torch.ones(2))
