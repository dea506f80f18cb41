"""The peers suite: clockless and the clock-driven peers (snnTorch, Sinabs, a torch loop) built from the same
weights must compute the same spikes where time binning cannot differ, and clockless's counted ops must equal
the ops the network's wiring implies. No timing is asserted anywhere."""

from __future__ import annotations

import numpy as np
import pytest

from apps.bench import peers as P
from runtime.events import DVS_EVENT

SIZE = 16


def _eighths(rng, shape, lo, hi):
    """Weights that are multiples of 1/8: sums of them are exact in float32 and float64 alike."""
    return (rng.integers(int(lo * 8), int(hi * 8) + 1, shape) / 8.0).astype(np.float32)


def _iaf(nonnegative: bool, theta1=1.0, theta2=2.0, seed=0):
    cfg = P.NetConfig(theta1=theta1, theta2=theta2, tau_us=None, size=SIZE)
    rng = np.random.default_rng(seed)
    lo = 0.0 if nonnegative else -0.5
    w1 = _eighths(rng, (8, 2, 3, 3), lo, 0.75)
    w2 = _eighths(rng, (16, 8, 3, 3), lo, 0.5)
    return cfg, w1, w2


def _stream(rate_hz=60_000, duration_us=20_000, seed=5):
    return P.texture_stream(rate_hz, duration_us, seed=seed, size=SIZE)


def _sorted_rows(bins_addr):
    b, a = bins_addr
    order = np.lexsort((a, b))
    return b[order], a[order]


def _assert_same_spikes(engine_layer, peer_layer, what):
    eb, ea = _sorted_rows(engine_layer)
    pb, pa = _sorted_rows(peer_layer)
    assert eb.shape == pb.shape, f"{what}: {eb.shape[0]} spikes in clockless, {pb.shape[0]} in the peer"
    assert np.array_equal(eb, pb) and np.array_equal(ea, pa), f"{what}: spike (bin, neuron) rows differ"


def _max_per_bin_neuron(layer):
    b, a = layer
    if b.shape[0] == 0:
        return 0
    return int(np.unique(b * (a.max() + 1) + a, return_counts=True)[1].max())


@pytest.mark.parametrize("name", ["torch", "sinabs"])
def test_bin_aligned_iaf_with_signed_weights_gives_identical_spikes(name):
    cfg, w1, w2 = _iaf(nonnegative=False)
    ev = P.bin_aligned(_stream(rate_hz=120_000))
    n_bins = 20
    eng = P.engine_layer_spikes(P.engine_network(w1, w2, cfg), ev, n_bins * P.BIN_US)
    assert len(eng[0][0]) > 50 and len(eng[1][0]) > 50, "the test stream must make both layers spike"
    run = P.run_peer(P.make_peer(name, w1, w2, cfg), ev, 0, n_bins, record=True)
    for i in range(2):
        _assert_same_spikes(eng[i], run.records[i], f"{name} layer {i + 1}")
        assert run.spikes[i] == len(eng[i][0])


def test_snntorch_matches_where_no_neuron_fires_twice_in_a_bin():
    # snnTorch emits at most one spike per neuron per step and fires on v > θ (the engine and Sinabs on v ≥ θ):
    # with thresholds no sum of 1/8 steps can equal, and every (bin, neuron) count ≤ 1, it must agree exactly
    cfg, w1, w2 = _iaf(nonnegative=False, theta1=2 + 1 / 1024, theta2=3 + 1 / 1024)
    ev = P.bin_aligned(_stream(rate_hz=6_000, duration_us=40_000, seed=7))
    eng = P.engine_layer_spikes(P.engine_network(w1, w2, cfg), ev, 40 * P.BIN_US)
    assert len(eng[0][0]) > 100 and len(eng[1][0]) > 100
    assert max(_max_per_bin_neuron(layer) for layer in eng) == 1, "precondition: the stream is too dense"
    run = P.run_peer(P.make_peer("snntorch", w1, w2, cfg), ev, 0, 40, record=True)
    for i in range(2):
        _assert_same_spikes(eng[i], run.records[i], f"snnTorch layer {i + 1}")


@pytest.mark.parametrize("name", ["torch", "sinabs"])
def test_raw_times_agree_per_bin_when_order_cannot_matter(name):
    # IAF with non-negative weights: the spikes a bin ends with do not depend on when inside it inputs came, so
    # the engine (threshold at every µs timestamp) and a 1 ms clock must agree per (bin, neuron) exactly
    cfg, w1, w2 = _iaf(nonnegative=True, theta1=2.0, theta2=4.0)
    ev = _stream(rate_hz=60_000, seed=11)
    assert np.unique(ev["t"]).shape[0] > 5 * 20, "timestamps must spread inside the bins"
    eng = P.engine_layer_spikes(P.engine_network(w1, w2, cfg), ev, 20 * P.BIN_US)
    run = P.run_peer(P.make_peer(name, w1, w2, cfg), ev, 0, 20, record=True)
    assert len(eng[1][0]) > 20
    for i in range(2):
        _assert_same_spikes(eng[i], run.records[i], f"{name} layer {i + 1}")


def test_lif_peers_agree_with_engine_on_bin_starts():
    # LIF: the engine decays exactly in float64, the peers by β per step in float32; on bin starts only rounding
    # near threshold could differ (and snnTorch's one spike per step where the engine emits several)
    cfg = P.NetConfig(size=SIZE)
    w1, w2 = P.make_weights(cfg)
    ev = P.bin_aligned(_stream(rate_hz=30_000, seed=3))
    eng = P.engine_layer_spikes(P.engine_network(w1, w2, cfg), ev, 20 * P.BIN_US)
    assert len(eng[0][0]) > 200 and len(eng[1][0]) > 200
    for name, least in (("torch", 0.999), ("sinabs", 0.999), ("snntorch", 0.95)):
        run = P.run_peer(P.make_peer(name, w1, w2, cfg), ev, 0, 20, record=True)
        for i in range(2):
            a = P.spike_agreement(eng[i], run.records[i])
            assert a["agreement"] >= least, (name, i, a)


def _taps(y, x, size):
    """Output positions a 3×3, padding-1 convolution input at (y, x) reaches."""
    ny = np.minimum(y + 1, size - 1) - np.maximum(y - 1, 0) + 1
    nx = np.minimum(x + 1, size - 1) - np.maximum(x - 1, 0) + 1
    return ny * nx


def _expected_ops(ev, layer1_addr):
    """Synaptic ops the wiring implies: every input event reaches its taps × 8 channels, every layer-1 spike its
    taps × 16 channels."""
    c, rest = np.divmod(np.asarray(layer1_addr, np.int64), SIZE * SIZE)
    sy, sx = np.divmod(rest, SIZE)
    first = int(_taps(ev["y"].astype(np.int64), ev["x"].astype(np.int64), SIZE).sum()) * 8
    return first + int(_taps(sy, sx, SIZE).sum()) * 16


def test_counted_ops_equal_the_wiring():
    cfg, w1, w2 = _iaf(nonnegative=False)
    net = P.engine_network(w1, w2, cfg)
    ev = _stream(rate_hz=100_000, seed=13)
    # bin-aligned: layer-1 spikes taken from an independent implementation (the torch loop)
    aligned = P.bin_aligned(ev)
    counted = P.run_engine(net, aligned, 20 * P.BIN_US)
    peer = P.run_peer(P.make_peer("torch", w1, w2, cfg), aligned, 0, 20, record=True)
    assert peer.spikes[0] > 50
    assert counted["synaptic_ops"] == _expected_ops(aligned, peer.records[0][1])
    assert counted["spikes"] == peer.spikes
    # raw times: the executor's counter equals the wiring of the spikes the engine emitted
    counted = P.run_engine(net, ev, 20 * P.BIN_US)
    layers = P.engine_layer_spikes(net, ev, 20 * P.BIN_US)
    assert counted["synaptic_ops"] == _expected_ops(ev, layers[0][1])
    assert counted["dense_macs"] == 20 * (SIZE * SIZE * 8 * 18 + SIZE * SIZE * 16 * 72)


def test_texture_stream_rate_grid_order_and_silence():
    ev = P.texture_stream(200_000, 50_000, seed=1, size=32)
    assert ev.dtype == DVS_EVENT
    assert np.all(np.diff(ev["t"]) >= 0)
    assert ev["x"].min() >= 0 and ev["x"].max() < 32 and ev["y"].max() < 32
    assert abs(ev.shape[0] - 10_000) < 500  # Poisson around rate × duration
    assert 0.3 < ev["p"].mean() < 0.7
    patch = P.texture_stream(200_000, 1_000, seed=1, size=32, patch_px=8)  # the first bin: not yet drifted
    assert patch.shape[0] > 100
    assert patch["y"].min() >= 12 and patch["y"].max() < 20 and patch["x"].min() >= 12 and patch["x"].max() < 20
    with pytest.raises(ValueError, match="patch_px"):
        P.texture_stream(1000, 1000, size=32, patch_px=40)
    b = P.bursty_stream(520_000, rate_hz=200_000, on_ms=100, off_ms=100, size=32)
    bins = np.bincount(b["t"] // 1000)
    assert bins.shape[0] == 500  # two whole periods and a closing burst
    on = (np.arange(500) % 200) < 100
    assert bins[~on].sum() == 0 and bins[on].min() > 0


def test_bin_events_and_alignment_against_a_plain_loop():
    ev = _stream(rate_hz=50_000, duration_us=5_000, seed=2)
    x = P.bin_events(ev, 0, 5, SIZE).numpy()
    ref = np.zeros((5, 2, SIZE, SIZE), np.float32)
    for e in ev:
        ref[e["t"] // 1000, int(e["p"]), e["y"], e["x"]] += 1
    assert np.array_equal(x, ref)
    al = P.bin_aligned(ev, 0)
    assert np.array_equal(al["t"], ev["t"] // 1000 * 1000) and np.array_equal(al["x"], ev["x"])


def test_scale_to_grid_keeps_every_event():
    from runtime.spec import dvs_spec

    ev = np.zeros(3, DVS_EVENT)
    ev["x"] = [0, 320, 639]
    ev["y"] = [0, 240, 479]
    out = P.scale_to_grid(ev, dvs_spec(640, 480), 128)
    assert out["x"].tolist() == [0, 64, 127] and out["y"].tolist() == [0, 48, 95]


def test_spike_agreement_counts_matches_per_bin_and_window():
    a = (np.array([0, 0, 1, 5]), np.array([3, 3, 4, 7]))
    b = (np.array([0, 2, 1, 9]), np.array([3, 3, 4, 7]))
    one = P.spike_agreement(a, b)
    assert one["matched"] == 2 and one["agreement"] == pytest.approx(0.5)
    ten = P.spike_agreement(a, b, window_bins=10)
    assert ten["matched"] == 4 and ten["agreement"] == 1.0
    empty = (np.empty(0, np.int64), np.empty(0, np.int64))
    assert P.spike_agreement(empty, empty)["agreement"] == 1.0
    with pytest.raises(ValueError, match="window_bins"):
        P.spike_agreement(a, b, window_bins=0)


def test_crossover_measured_extrapolated_and_none():
    rates = [1e3, 1e5, 1e7]
    c = P.crossover(rates, [0.1, 1.0, 10.0], [1.0, 1.0, 1.0])
    assert c["kind"] == "measured" and c["rate_hz"] == pytest.approx(1e5)
    c = P.crossover(rates, [0.1, 0.2, 0.5], [1.0, 1.0, 1.0])
    assert c["kind"] == "extrapolated" and c["rate_hz"] == pytest.approx(2e7)
    assert P.crossover(rates, [2.0, 2.0, 2.0], [1.0, 1.0, 1.0])["rate_hz"] is None


def test_unknown_peer_and_bad_stream_are_refused():
    cfg, w1, w2 = _iaf(True)
    with pytest.raises(ValueError, match="unknown peer 'norse'"):
        P.make_peer("norse", w1, w2, cfg)
    with pytest.raises(ValueError, match="duration_us"):
        P.texture_stream(1000, 10)


def test_suite_smoke_on_tiny_settings(shared_data, capsys):
    st = P.Settings(rates=(1e3, 1e6), bins=4, max_events=100_000, min_bins=2, repeats=1, headline_extra_repeats=0, thread_probe_bins=2,
                    thread_probe_repeats=1, agreement_bins=4,
                    recordings=(("vision/dvs128_walking.aedat", 0.02),), plot_duration_us=0,
                    cfg=P.NetConfig(size=SIZE))
    sec = P.run(True, None, data_dir=shared_data, settings=st)
    out = capsys.readouterr().out
    assert "crossover vs" in out and "goal:" in out
    assert [r["rate_hz"] for r in sec["sweep"]] == [1e3, 1e6]
    assert [r["duration_s"] for r in sec["sweep"]] == [0.004, 0.004]
    assert set(sec["sweep"][0]["peers"]) == set(P.PEERS)
    for row in sec["sweep"] + sec["recordings"]:
        c = row["clockless"]
        assert c["synaptic_ops"] >= 8 * row["events"] * 4  # every input event reaches ≥ 4 positions × 8 channels
        assert c["dense_macs"] == row["duration_s"] * 1000 * (SIZE * SIZE * 8 * 18 + SIZE * SIZE * 16 * 72)
        assert c["cpu_s"] is None or c["cpu_s"] > 0  # None: below the start-up cost's variation
        for p in row["peers"].values():
            assert p["wall_s"] > 0 and p["speedup"] > 0 and p["cpu_s"] > 0
    assert sec["recordings"][0]["stream"] == "dvs128_walking.aedat"
    for layers in sec["agreement"]["bin_aligned"].values():
        assert layers[0]["clockless"] > 0
    assert sec["goal"]["fastest_peer"] in P.PEERS
    assert set(sec["threads"]["threads"]) == set(P.PEERS)
