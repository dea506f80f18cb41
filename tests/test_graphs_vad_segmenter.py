"""The VAD segmenter sink: onsets, hangover, closed-form fall time, end of stream, score track, packet invariance."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphs.vad_segmenter import FRAME_US, SpeechSegmenter, read_scores
from runtime.events import SPIKE_EVENT
from runtime.spec import spike_spec
from runtime.testing import check_packet_invariance, cut_at, run_stage

SPEC = spike_spec((4,))


def _spikes(times_us, addr=0):
    ev = np.zeros(len(times_us), SPIKE_EVENT)
    ev["t"] = np.sort(np.asarray(times_us, np.int64))
    ev["addr"] = addr
    return ev


def _burst(start_us, end_us, period_us=5000, per_time=2):
    return [t for t in range(start_us, end_us, period_us) for _ in range(per_time)]


def _run(seg, events, t_end_us):
    return run_stage(seg, SPEC, cut_at(events, [], t_end_us=t_end_us))


def test_one_burst_gives_one_segment_with_hangover():
    seg = SpeechSegmenter(tau_us=40_000, y_scale=4.0, on=0.5, off=0.3, hangover_us=200_000, onset_lead_us=40_000)
    ev = _spikes(_burst(500_000, 1_000_000))
    out, state, _ = _run(seg, ev, 3_000_000)
    segs = seg.result(state)["segments"]
    assert len(segs) == 1
    s = segs[0]
    # onset: the trace reaches y_on = 4 ln 2 = 2.77 at the second spike time (2 + 2·e^(-1/8) = 3.76)
    assert s["decided_us"] == 505_000 and s["start_us"] == 465_000 and s["label"] == "speech"
    # end: the trace after the last spikes falls below y_off = -4 ln 0.7 in closed form, plus the hangover
    y_last = 0.0
    for t in range(500_000, 1_000_000, 5000):
        y_last = y_last * math.exp(-5000 / 40_000) + 2
    fall = 995_000 + math.ceil(40_000 * math.log(y_last / (-4 * math.log(0.7))))
    assert s["end_us"] == fall + 200_000
    assert list(out["label"]) == [1, 0] and out["t"][0] == 505_000 and out["onset"][1] == s["end_us"]


def test_short_pause_is_bridged_long_pause_splits():
    seg = SpeechSegmenter(hangover_us=150_000)
    ev = _spikes(_burst(0, 300_000) + _burst(400_000, 600_000) + _burst(1_200_000, 1_400_000))
    _, state, _ = _run(seg, ev, 2_000_000)
    segs = seg.result(state)["segments"]
    assert len(segs) == 2
    assert segs[0]["end_us"] < segs[1]["start_us"] and segs[0]["end_us"] > 600_000
    assert segs[1]["start_us"] >= segs[0]["end_us"]


def test_weak_activity_never_opens():
    seg = SpeechSegmenter(on=0.5)
    ev = _spikes(list(range(0, 1_000_000, 100_000)))  # isolated spikes: score 1 - e^(-1/4) = 0.22 < 0.5
    _, state, out = _run(seg, ev, 1_000_000)
    assert seg.result(state)["segments"] == [] and out == []


def test_end_of_stream_closes_at_last_processed_sample(tmp_path):
    path = tmp_path / "scores.csv"
    seg = SpeechSegmenter(scores_path=str(path))
    ev = _spikes(_burst(100_000, 800_000))
    _, state, _ = _run(seg, ev, 800_001)
    segs = seg.result(state)["segments"]
    assert len(segs) == 1 and segs[0]["end_us"] == 800_001
    t, s = read_scores(path)
    assert t.size == 80 and np.array_equal(t, np.arange(80) * FRAME_US)
    assert s[5] == 0 and s[50] > 0.5  # nothing before the burst; high inside


def test_score_track_is_the_trace_at_frame_ends():
    seg = SpeechSegmenter(tau_us=40_000, y_scale=4.0)
    ev = _spikes([12_000, 12_000, 12_000])
    _, state, _ = _run(seg, ev, 50_000)
    s = seg.scores(state)
    assert s.size == 5 and s[0] == 0.0
    for k in range(1, 5):
        assert s[k] == pytest.approx(1 - math.exp(-3 * math.exp(-((k + 1) * FRAME_US - 12_000) / 40_000) / 4), rel=1e-6)


@given(st.lists(st.integers(0, 400), min_size=0, max_size=20), st.integers(0, 2**31))
def test_packet_invariance(cuts, seed):
    rng = np.random.default_rng(seed)
    times = np.concatenate([rng.integers(a, a + 300_000, rng.integers(5, 60)) for a in (0, 500_000, 1_500_000)])
    ev = _spikes(times, addr=0)
    ev["addr"] = rng.integers(0, 4, ev.size)
    seg = SpeechSegmenter(hangover_us=100_000)
    check_packet_invariance(seg, SPEC, ev, cuts)
    whole = _run(seg, ev, int(ev["t"][-1]) + 1)[1]
    pieces = run_stage(seg, SPEC, cut_at(ev, cuts))[1]
    assert seg.result(whole)["segments"] == seg.result(pieces)["segments"]
    np.testing.assert_array_equal(seg.scores(whole), seg.scores(pieces))


def test_bad_config_and_input():
    with pytest.raises(ValueError, match="off ≤ on"):
        SpeechSegmenter(on=0.2, off=0.4)
    from runtime.spec import audio_spec

    with pytest.raises(TypeError, match="readout's spike stream"):
        SpeechSegmenter().init(audio_spec(16))


def test_integrator_readout_weights_spikes_and_counts_its_ops():
    w = (1.5, -2.0, 0.5, 0.0)
    seg = SpeechSegmenter(tau_us=50_000, on=0.5, off=0.3, hangover_us=100_000, onset_lead_us=0,
                          readout_weights=w, bias=-2.0)
    ev = _spikes([100_000, 100_000, 120_000, 140_000, 140_000, 600_000])
    ev["addr"] = [0, 0, 2, 1, 1, 0]
    _, state, _ = _run(seg, ev, 1_000_000)
    # 3.0 at 100 ms → sigmoid(1.0) = 0.73 ≥ on: opens; two inhibitory spikes at 140 ms pull it below off at once,
    # so it ends 100 ms (the hangover) later; one spike at 600 ms gives sigmoid(-0.5) < on: no new segment
    segs = seg.result(state)["segments"]
    assert segs == [{"start_us": 100_000, "end_us": 240_000, "decided_us": 100_000, "label": "speech"}]
    assert seg.counters(state)["synaptic_ops"] == 6
    s = seg.scores(state)
    y12 = 3.0 * math.exp(-20_000 / 50_000) + 0.5
    assert s[12] == pytest.approx(1 / (1 + math.exp(-(y12 * math.exp(-10_000 / 50_000) - 2.0))), rel=1e-6)
    assert s[0] == pytest.approx(1 / (1 + math.exp(2.0)), rel=1e-6)  # silence: sigmoid(bias)


@given(st.lists(st.integers(0, 300), max_size=15), st.integers(0, 2**31))
def test_integrator_readout_packet_invariance(cuts, seed):
    rng = np.random.default_rng(seed)
    times = np.concatenate([rng.integers(a, a + 300_000, rng.integers(5, 60)) for a in (0, 500_000, 1_500_000)])
    ev = _spikes(times)
    ev["addr"] = rng.integers(0, 4, ev.size)
    seg = SpeechSegmenter(hangover_us=50_000, readout_weights=(1.0, 0.8, -0.5, 0.3), bias=-1.5)
    check_packet_invariance(seg, SPEC, ev, cuts)
    whole = _run(seg, ev, int(ev["t"][-1]) + 1)[1]
    pieces = run_stage(seg, SPEC, cut_at(ev, cuts))[1]
    assert seg.result(whole)["segments"] == seg.result(pieces)["segments"]


def test_integrator_readout_config_errors():
    with pytest.raises(ValueError, match="sigmoid"):
        SpeechSegmenter(readout_weights=(1.0,), bias=0.0, off=0.3)
    with pytest.raises(ValueError, match="readout weights for a spike stream"):
        SpeechSegmenter(readout_weights=(1.0, 2.0), bias=-3.0).init(SPEC)
