"""Bench plots: the Probe records the real event path without changing it, the windowed series add up, silence
costs nothing, and the three PNGs are written. No timing is asserted."""

from __future__ import annotations

import numpy as np
import pytest

from apps.bench import peers as P
from apps.bench import plots as PL
from runtime.executor import run
from runtime.graph import Graph
from runtime.sources import ArraySource
from runtime.spec import dvs_spec
from runtime.stages import CollectSink

SIZE = 16


def _net():
    cfg = P.NetConfig(size=SIZE)
    return P.engine_network(*P.make_weights(cfg), cfg)


def _graph(net, events, stage, t_end_us):
    g = Graph("probe")
    s = g.source("src", ArraySource(events, dvs_spec(SIZE, SIZE), max_events=256, max_span_us=1000,
                                    t_end_us=t_end_us))
    s = g.stage("snn", stage, s)
    g.sink("out", CollectSink(), s)
    return g


def test_probe_records_every_packet_and_changes_nothing():
    net = _net()
    ev = P.bursty_stream(200_000, rate_hz=100_000, on_ms=30, off_ms=40, size=SIZE)
    plain = run(_graph(net, ev, net, 200_000), keep_outputs=True)
    tl = PL.Timeline()
    probed = run(_graph(net, ev, PL.Probe(net, tl), 200_000), keep_outputs=True)

    def spikes(rep):
        return np.concatenate([p.events for p in rep["_outputs"]["out"]])

    assert np.array_equal(spikes(plain), spikes(probed))
    assert probed["nodes"]["snn"]["synaptic_ops"] == plain["nodes"]["snn"]["synaptic_ops"] > 0
    a = tl.arrays()
    assert a["events_in"].shape[0] == probed["nodes"]["snn"]["packets_in"]
    assert a["events_in"].sum() == ev.shape[0]
    assert a["synaptic_ops"].sum() == probed["nodes"]["snn"]["synaptic_ops"]
    assert a["spikes_out"].sum() == spikes(probed).shape[0]
    assert np.all(np.diff(a["t_end_us"]) >= 0) and np.all(np.diff(a["wall_ns"]) >= 0)
    assert np.all(a["busy_ns"] >= 0)
    # the probe forwards counters and the dense-equivalent cost
    assert probed["ops"]["dense_macs_equivalent"] == plain["ops"]["dense_macs_equivalent"] > 0


def _timeline(rows):
    tl = PL.Timeline()
    for r in rows:
        tl.add(*r)
    return tl.arrays()


def test_window_series_sums_by_stream_and_wall_time():
    # (wall_ns, busy_ns, t_end_us, t_first_us, events_in, synaptic_ops, spikes_out)
    a = _timeline([
        (1_000_000, 100, 1_000, 0, 10, 720, 1),
        (2_000_000, 200, 2_000, 1_000, 5, 360, 0),
        (35_000_000, 300, 31_000, 30_500, 2, 144, 2),
    ])
    s = PL.window_series(a, 10_000, by="stream")
    assert s["t_s"].tolist() == [0.0, 0.01, 0.02, 0.03]
    assert s["events"].tolist() == [15, 0, 0, 2]
    assert s["synaptic_ops"].tolist() == [1080, 0, 0, 144]
    assert s["packets"].tolist() == [2, 0, 0, 1]
    assert s["busy_s"][0] == pytest.approx(300e-9)
    w = PL.window_series(a, 10_000, by="wall")
    assert w["packets"].tolist() == [2, 0, 0, 1]  # 0 and 1 ms after the first step, then 34 ms
    assert w["spikes"].tolist() == [1, 0, 0, 2]
    with pytest.raises(ValueError, match="window_us"):
        PL.window_series(a, 0)
    with pytest.raises(ValueError, match="by must be"):
        PL.window_series(a, 1000, by="cpu")
    assert PL.window_series(PL.Timeline().arrays())["events"].shape == (0,)


def _png_size(path):
    import matplotlib.image as mpimg

    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return mpimg.imread(path).shape


def test_plot_functions_write_pngs(tmp_path):
    rng = np.random.default_rng(0)
    a = _timeline([(i * 1_000_000, 50_000, (i + 1) * 1000, i * 1000, int(n), int(n) * 80, 0)
                   for i, n in enumerate(rng.integers(0, 3, 200) * 50)])
    p1 = PL.latency_histogram(rng.lognormal(10, 1, 5000).astype(np.int64), tmp_path / "lat.png")
    p2 = PL.ops_per_event_plot(a, tmp_path / "ops.png", dense_macs_per_bin=1000)
    p3 = PL.rate_vs_compute_plot(a, tmp_path / "sub" / "timeline.png")
    p4 = PL.latency_histogram(np.empty(0, np.int64), tmp_path / "empty.png")
    for p in (p1, p2, p3, p4):
        h, w = _png_size(p)[:2]
        assert h > 100 and w > 100


def test_paced_bursty_run_writes_three_plots_and_silence_costs_nothing(tmp_path):
    out = PL.write_engine_plots(_net(), tmp_path, duration_us=400_000, rate_hz=50_000, prefix="t")
    assert set(out["paths"]) == {"latency_histogram", "ops_per_event", "rate_vs_compute"}
    for p in out["paths"].values():
        assert _png_size(tmp_path / p.split("/")[-1])[0] > 100
    assert out["latency_us"]["kind"] == "latency" and out["latency_us"]["count"] > 0
    # 150 ms bursts, 250 ms silences: most wall-clock windows saw no packet at all
    assert out["idle_windows"] >= 10
    assert out["windows"] >= 35
