"""The early-decision sink: thresholds with hysteresis, onsets, `none` never emitted, packet invariance."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from graphs.gesture import LABELS
from graphs.gesture_decision import DecisionConfig, DecisionCore, GestureDecision, clip_answer, decide_counts
from runtime.events import SPIKE_EVENT
from runtime.spec import spike_spec
from runtime.testing import check_packet_invariance, cut_at, run_stage

SPEC = spike_spec((len(LABELS),))
NONE = LABELS.index("none")


def _spikes(pairs) -> np.ndarray:
    """[(t_us, label index), ...] → sorted SPIKE_EVENT array."""
    ev = np.array(sorted(pairs), dtype=[("t", "<i8"), ("addr", "<i4")]).astype(SPIKE_EVENT)
    return ev


def _run(events, config=DecisionConfig(), t_end=None):
    sink = GestureDecision(LABELS, config)
    out, state, _ = run_stage(sink, SPEC, cut_at(events, [], t_end_us=t_end))
    return out, sink.result(state)["decisions"], state


def _reference(events, cfg: DecisionConfig):
    """Slow, obviously-correct twin: recompute every trace from all past spikes at each spike time."""
    t = events["t"]
    prior = np.zeros(len(LABELS))
    prior[NONE] = cfg.none_bias
    active = np.zeros(len(LABELS), bool)
    last = np.zeros(len(LABELS))  # score of each label's last decision (for rises)
    fresh = np.zeros(len(LABELS), bool)  # released since its onset
    out = []
    times = sorted(set(t.tolist()))
    onset = np.zeros(len(LABELS), np.int64)
    prev = None
    for now in times:
        def trace(at):
            # the spikes before `at` since the output's last silence longer than silence_us (none: cleared)
            stamps = sorted(set(t[t < at].tolist())) + [at]
            start = stamps[0]
            for a, b in zip(stamps, stamps[1:]):
                if b - a > cfg.silence_us:
                    start = b
            e = np.zeros(len(LABELS))
            for ev in events:
                if start <= ev["t"] < at:
                    e[ev["addr"]] += math.exp(-(at - ev["t"]) / cfg.tau_us)
            return e

        def conf(e):
            z = np.exp(cfg.beta * e + prior - (cfg.beta * e + prior).max())
            return z / z.sum()

        before = trace(now)
        if prev is not None:
            released = active & (conf(before) < cfg.p_off)
            active &= ~released
            fresh |= released
        counts = np.bincount(events["addr"][t == now], minlength=len(LABELS))
        recent = events["addr"][(t < now) & (t >= now - cfg.onset_gap_us)]  # spikes within the gap before now
        quiet = np.bincount(recent, minlength=len(LABELS)) == 0
        starting = ((before < cfg.onset_level) | fresh | quiet) & (counts > 0)
        onset[starting] = now
        fresh &= ~starting
        p = conf(before + counts)
        released = active & (p < cfg.p_off)
        active &= ~released
        fresh |= released
        for c in range(len(LABELS)):
            new = not active[c] and p[c] >= cfg.p_on
            rose = active[c] and cfg.rise > 0 and p[c] >= last[c] + cfg.rise
            if c != NONE and (new or rose):
                active[c] = True
                last[c] = p[c]
                out.append((now, LABELS[c], p[c], int(onset[c])))
        prev = now
    return out


def test_a_burst_of_one_label_gives_one_decision_with_its_onset():
    ev = _spikes([(100_000 + 10_000 * i, 4) for i in range(12)])  # circle_cw spikes every 10 ms
    out, dec, _ = _run(ev)
    assert len(dec) == 1
    d = dec[0]
    assert d["label"] == "circle_cw" and d["onset_us"] == 100_000 and 0.7 <= d["score"] <= 1.0
    assert d["t_us"] > d["onset_us"]  # it takes a few spikes of evidence
    assert out.shape[0] == 1 and out["label"][0] == 4 and out["t"][0] == d["t_us"]


def test_hysteresis_no_flicker_while_evidence_hovers_near_the_threshold():
    cfg = DecisionConfig(tau_us=100_000, beta=1.0, none_bias=2.0, p_on=0.7, p_off=0.45)
    # steady 1 spike per 30 ms keeps label 0 around the on threshold for 2 s
    ev = _spikes([(20_000 + 30_000 * i, 0) for i in range(70)])
    _, dec, _ = _run(ev, cfg)
    assert [d["label"] for d in dec] == ["swipe_left"]


def test_a_label_is_emitted_again_after_its_evidence_fell_away():
    first = [(100_000 + 10_000 * i, 1) for i in range(10)]
    second = [(3_000_000 + 10_000 * i, 1) for i in range(10)]
    _, dec, _ = _run(_spikes(first + second))
    assert [d["label"] for d in dec] == ["swipe_right", "swipe_right"]
    assert dec[1]["onset_us"] == 3_000_000


def test_none_is_never_emitted_and_silences_gestures():
    ev = _spikes([(10_000 * i, NONE) for i in range(1, 100)] + [(500_000, 2), (510_000, 2)])
    _, dec, state = _run(ev)
    assert dec == []
    assert state.core.current()[0] == "none"


def test_clip_answer_is_the_highest_score_or_none():
    assert clip_answer([]) == "none"
    assert clip_answer([{"label": "zoom_in", "score": 0.71}, {"label": "zoom_out", "score": 0.93},
                        {"label": "swipe_up", "score": 0.8}]) == "zoom_out"


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, len(LABELS) - 1)), min_size=1, max_size=60),
       st.floats(0.5, 3.0), st.floats(0.0, 3.0))
def test_sink_matches_its_slow_reference(pairs, beta, bias):
    cfg = DecisionConfig(tau_us=50_000, beta=beta, none_bias=bias, p_on=0.6, p_off=0.4)
    ev = _spikes([(t * 1_000, a) for t, a in pairs])
    _, dec, _ = _run(ev, cfg)
    ref = _reference(ev, cfg)
    assert [(d["t_us"], d["label"], d["onset_us"]) for d in dec] == [(r[0], r[1], r[3]) for r in ref]
    assert np.allclose([d["score"] for d in dec], [r[2] for r in ref], atol=1e-5)


@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, len(LABELS) - 1)), min_size=2, max_size=80),
       st.lists(st.integers(0, 80), max_size=10))
def test_packet_invariance(pairs, cuts):
    ev = _spikes([(t * 1_000, a) for t, a in pairs])
    check_packet_invariance(GestureDecision(LABELS, DecisionConfig(p_on=0.55, p_off=0.3)), SPEC, ev, cuts)


def test_binned_view_uses_the_same_rule():
    counts = np.zeros((50, len(LABELS)))
    counts[10:20, 6] = 1  # zoom_in, one spike per 20 ms bin
    dec = decide_counts(counts, 20_000, LABELS, DecisionConfig())
    assert [d["label"] for d in dec] == ["zoom_in"]
    assert dec[0]["onset_us"] == 11 * 20_000 - 1
    core = DecisionCore(DecisionConfig(), LABELS, NONE)
    manual = [core.update((k + 1) * 20_000 - 1, counts[k]) for k in range(10, 20)]
    assert [m for m in manual if m][0][0][0] == dec[0]["t_us"]


def test_errors_name_the_problem():
    with pytest.raises(ValueError, match="DecisionConfig.rise"):
        DecisionConfig(rise=1.0)
    with pytest.raises(ValueError, match="0 < p_off < p_on"):
        DecisionConfig(p_on=0.5, p_off=0.6)
    with pytest.raises(ValueError, match="9 neurons"):
        GestureDecision(LABELS).out_spec(spike_spec((4,)))
    sink = GestureDecision(LABELS)
    state = sink.init(SPEC)
    with pytest.raises(ValueError, match="address 12"):
        sink.step(state, cut_at(_spikes([(5, 12)]), [])[0])


def test_a_rise_re_emits_the_active_label_as_its_confidence_grows():
    cfg = DecisionConfig(tau_us=400_000, beta=0.5, none_bias=1.0, p_on=0.4, p_off=0.15, rise=0.1)
    ev = _spikes([(100_000 + 20_000 * i, 4) for i in range(30)])  # circle_cw, steadily
    _, dec, _ = _run(ev, cfg)
    assert len(dec) >= 3 and {d["label"] for d in dec} == {"circle_cw"}
    assert {d["onset_us"] for d in dec} == {100_000}  # one gesture, growing more certain
    scores = [d["score"] for d in dec]
    assert all(b >= a + 0.1 for a, b in zip(scores, scores[1:]))
    _, plain, _ = _run(ev, replace(cfg, rise=0.0))
    assert len(plain) == 1 and plain[0]["t_us"] == dec[0]["t_us"]


@given(st.lists(st.tuples(st.integers(0, 400), st.integers(0, len(LABELS) - 1)), min_size=1, max_size=60),
       st.floats(0.5, 3.0), st.floats(0.0, 3.0), st.sampled_from([0.02, 0.05, 0.1]),
       st.sampled_from([20_000.0, 60_000.0, 500_000.0]), st.sampled_from([20_000.0, 60_000.0, 500_000.0]))
def test_sink_with_rise_matches_its_slow_reference(pairs, beta, bias, rise, gap_us, silence_us):
    # gaps and silences of 20 and 60 ms restart onsets and clear the evidence often within the 400 ms of spikes
    cfg = DecisionConfig(tau_us=50_000, beta=beta, none_bias=bias, p_on=0.5, p_off=0.3, rise=rise, onset_gap_us=gap_us,
                         silence_us=silence_us)
    ev = _spikes([(t * 1_000, a) for t, a in pairs])
    _, dec, _ = _run(ev, cfg)
    ref = _reference(ev, cfg)
    assert [(d["t_us"], d["label"], d["onset_us"]) for d in dec] == [(r[0], r[1], r[3]) for r in ref]
    assert np.allclose([d["score"] for d in dec], [r[2] for r in ref], atol=1e-5)


def test_a_gesture_repeated_after_a_release_gets_its_own_onset_even_with_a_long_trace():
    # (no gap rule here: the release alone must start the second onset)
    cfg = DecisionConfig(tau_us=800_000, beta=0.5, none_bias=1.0, p_on=0.5, p_off=0.3, onset_gap_us=10_000_000)
    first = [(100_000 + 10_000 * i, 1) for i in range(12)]
    second = [(2_000_000 + 10_000 * i, 1) for i in range(12)]  # the first trace is still above onset_level
    ev = _spikes(first + second)
    _, dec, _ = _run(ev, cfg)
    assert [d["label"] for d in dec] == ["swipe_right", "swipe_right"]
    assert [d["onset_us"] for d in dec] == [100_000, 2_000_000]
    e = sum(math.exp(-(2_000_000 - t) / cfg.tau_us) for t, _ in first)
    assert e > cfg.onset_level  # without the release rule the second onset would still be 100 ms


def test_a_gesture_that_stray_spikes_touched_earlier_gets_its_onset_after_their_gap():
    """A few circle_cw spikes during a swipe (never decided, so never released; with a long trace still above
    onset_level), then 0.8 s without any, then the circle itself: its onset is the circle's first spike, not the
    strays' (the built-in demo's second gesture was reported with its onset 1.8 s too early)."""
    cfg = DecisionConfig(tau_us=1_600_000, beta=0.5, none_bias=1.0, p_on=0.5, p_off=0.3)
    swipe = [(100_000 + 10_000 * i, 1) for i in range(30)]
    strays = [(150_000, 4), (300_000, 4), (420_000, 4)]
    circle = [(1_220_000 + 10_000 * i, 4) for i in range(30)]
    ev = _spikes(swipe + strays + circle)
    _, dec, _ = _run(ev, cfg)
    assert [d["label"] for d in dec] == ["swipe_right", "circle_cw"]
    assert dec[1]["onset_us"] == 1_220_000
    ref = _reference(ev, cfg)
    assert [(d["t_us"], d["label"], d["onset_us"]) for d in dec] == [(r[0], r[1], r[3]) for r in ref]
    e = sum(math.exp(-(1_220_000 - t) / cfg.tau_us) for t, _ in strays)
    assert e > cfg.onset_level  # the trace rule alone would keep the strays' onset
    # with a gap and a silence longer than the pause, the onset is the first stray's
    _, dec_long, _ = _run(ev, DecisionConfig(**{**cfg.to_dict(), "onset_gap_us": 900_000.0, "silence_us": 900_000.0}))
    assert dec_long[1]["onset_us"] == 150_000


def test_a_silence_clears_the_evidence_so_the_next_gesture_is_not_outvoted():
    """A long swipe_right, 0.6 s in which the network's output is silent, then a short swipe_left. After the
    silence all evidence is cleared and swipe_left is decided from its own spikes alone (the score they give from
    zero). Without the clearing (a silence longer than the pause), or when one stray `none` spike breaks the
    silence, swipe_right's leftover outvotes it and it is not decided."""
    cfg = DecisionConfig(tau_us=1_600_000, beta=0.5, none_bias=1.0, p_on=0.5, p_off=0.3)
    first = [(100_000 + 10_000 * i, 1) for i in range(30)]  # until 0.39 s
    second = [(990_000 + 10_000 * i, 0) for i in range(6)]
    _, dec, _ = _run(_spikes(first + second), cfg)
    assert [d["label"] for d in dec] == ["swipe_right", "swipe_left"]
    alone_dec = _run(_spikes(second), cfg)[1]
    assert dec[1]["score"] == pytest.approx(alone_dec[0]["score"]) and dec[1]["t_us"] == alone_dec[0]["t_us"]
    _, kept, _ = _run(_spikes(first + second), replace(cfg, silence_us=700_000))
    assert [d["label"] for d in kept] == ["swipe_right"]
    _, broken, _ = _run(_spikes(first + second + [(700_000, NONE)]), cfg)
    assert [d["label"] for d in broken] == ["swipe_right"]
