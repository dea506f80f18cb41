"""The motion-direction stage: kernel against a slow twin, directions of moving edges, order and packet
invariance, counters, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from graphs.motion import MotionDirections, directions_of
from runtime.errors import GraphError
from runtime.events import SPIKE_EVENT
from runtime.spec import dvs_spec, spike_spec
from runtime.testing import check_packet_invariance, cut_at, run_stage

SIDE = 16


def _slow_directions(stage: MotionDirections, t, pos, side):
    """Plain Python: per timestamp group, read the last times from before the group, then write them."""
    last = {}
    out = []
    i = 0
    while i < len(t):
        j = i
        while j < len(t) and t[j] == t[i]:
            j += 1
        for k in range(i, j):
            y, x = divmod(int(pos[k]), side)
            vx = vy = 0.0
            support = 0
            ry = min(stage.radius, y, side - 1 - y)  # a centred window, cut symmetrically at the borders
            rx = min(stage.radius, x, side - 1 - x)
            for yy in range(y - ry, y + ry + 1):
                for xx in range(x - rx, x + rx + 1):
                    if (yy, xx) == (y, x) or (yy, xx) not in last:
                        continue
                    age = int(t[k]) - last[(yy, xx)]
                    if stage.min_age_us <= age <= stage.window_us:
                        vx += x - xx
                        vy += y - yy
                        support += 1
            if support >= stage.min_support and (vx, vy) != (0.0, 0.0):
                ang = math.atan2(vy, vx) % (2 * math.pi)
                out.append(int(math.floor(ang / (2 * math.pi) * stage.n_dir + 0.5)) % stage.n_dir)
            else:
                out.append(-1)
        for k in range(i, j):
            last[divmod(int(pos[k]), side)] = int(t[k])
        i = j
    return np.array(out, np.int64)


def _random_stream(seed, n=600, side=SIDE, channels=2):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 400_000, n)) // 1000 * 1000  # many equal timestamps
    addr = rng.integers(0, channels * side * side, n)
    ev = np.empty(n, SPIKE_EVENT)
    ev["t"], ev["addr"] = t, addr
    return ev


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("stage", [MotionDirections(), MotionDirections(4, radius=1, window_us=50_000, min_support=1),
                                   MotionDirections(16, radius=3, min_age_us=0)])
def test_kernel_matches_the_slow_twin(stage, seed):
    ev = _random_stream(seed)
    pos = ev["addr"] % (SIDE * SIDE)
    want = _slow_directions(stage, ev["t"], pos, SIDE)
    t, addr = directions_of(stage, ev["t"], ev["addr"], SIDE)
    keep = want >= 0
    assert keep.sum() > 50 and (~keep).sum() > 0  # both outcomes exercised
    assert np.array_equal(t, ev["t"][keep])
    assert np.array_equal(addr, want[keep] * SIDE * SIDE + pos[keep])


def _edge(direction: str, side=SIDE, step_us=10_000):
    """A straight edge sweeping across the map (one row/column per step), both polarities mixed."""
    ts, addrs = [], []
    for k in range(side):
        for j in range(side):
            x, y = {"right": (k, j), "left": (side - 1 - k, j), "down": (j, k), "up": (j, side - 1 - k)}[direction]
            ts.append(k * step_us)
            addrs.append((k + j) % 2 * side * side + y * side + x)
    return np.array(ts, np.int64), np.array(addrs, np.int64)


@pytest.mark.parametrize("direction,channel", [("right", 0), ("down", 2), ("left", 4), ("up", 6)])
def test_moving_edges_land_on_their_direction_channel(direction, channel):
    t, addr = _edge(direction)
    t_out, addr_out = directions_of(MotionDirections(8), t, addr, SIDE)
    ch = addr_out // (SIDE * SIDE)
    assert t_out.shape[0] >= 0.8 * (t.shape[0] - SIDE)  # all but the first column/row (nothing before it)
    assert np.all(ch == channel)  # image orientation: +y is down, so "down" is a quarter turn clockwise of "right"


def test_polarity_does_not_change_the_direction():
    t, addr = _edge("right")
    on_only = addr % (SIDE * SIDE)
    off_only = on_only + SIDE * SIDE
    a = directions_of(MotionDirections(8), t, on_only, SIDE)[1]
    b = directions_of(MotionDirections(8), t, off_only, SIDE)[1]
    assert np.array_equal(a, b) and a.shape[0] > 0


def test_polarity_banks_keep_the_direction_and_add_the_polarity():
    """polarity=1: the same events pass and keep their direction and pixel; OFF events (channel 1 of the input)
    land in the second bank. The stage's packets equal the whole-stream function; the setting round-trips."""
    ev = _random_stream(11)
    plain = directions_of(MotionDirections(8), ev["t"], ev["addr"], SIDE)
    split = directions_of(MotionDirections(8, polarity=1), ev["t"], ev["addr"], SIDE)
    hw = SIDE * SIDE
    assert np.array_equal(plain[0], split[0]) and np.array_equal(split[1] % (8 * hw), plain[1])
    bank = split[1] // (8 * hw)
    assert set(np.unique(bank)) == {0, 1}
    t, addr = _edge("right")
    ch0, ch1 = addr % hw, addr % hw + hw  # the same edge as input channel 0 only, then channel 1 only
    a = directions_of(MotionDirections(8, polarity=1), t, ch0, SIDE)[1]
    b = directions_of(MotionDirections(8, polarity=1), t, ch1, SIDE)[1]
    assert a.shape[0] > 0 and np.all(a // hw == 0) and np.array_equal(b, a + 8 * hw)  # "right" is channel 0
    stage = MotionDirections(8, polarity=1)
    cut = int(np.searchsorted(ev["t"], ev["t"][ev.shape[0] // 2], side="right"))  # between two timestamps
    out, _, _ = run_stage(stage, spike_spec((2, SIDE, SIDE)), cut_at(ev, [cut], t_end_us=500_000))
    assert np.array_equal(out["addr"], split[1])
    assert stage.out_spec(spike_spec((2, SIDE, SIDE))).shape == (16, SIDE, SIDE)
    assert MotionDirections.from_dict(stage.to_dict()) == stage and "polarity" not in MotionDirections().to_dict()
    with pytest.raises(GraphError, match="ON/OFF"):
        stage.out_spec(spike_spec((3, SIDE, SIDE)))
    with pytest.raises(ValueError, match="polarity"):
        MotionDirections(polarity=2)


def test_simultaneous_events_in_any_order_give_the_same_output():
    ev = _random_stream(5)
    rng = np.random.default_rng(0)
    shuffled = ev.copy()
    for t in np.unique(ev["t"]):  # permute within each timestamp
        idx = np.flatnonzero(ev["t"] == t)
        shuffled[idx] = ev[rng.permutation(idx)]
    a = directions_of(MotionDirections(), ev["t"], ev["addr"], SIDE)
    b = directions_of(MotionDirections(), shuffled["t"], shuffled["addr"], SIDE)
    key = lambda r: np.lexsort((r[1], r[0]))  # noqa: E731
    assert np.array_equal(a[0][key(a)], b[0][key(b)]) and np.array_equal(a[1][key(a)], b[1][key(b)])


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), cuts=st.lists(st.integers(1, 299), max_size=6))
def test_packet_invariance(seed, cuts):
    ev = _random_stream(seed, n=300)
    check_packet_invariance(MotionDirections(), spike_spec((2, SIDE, SIDE)), ev, cuts)


def test_stage_counts_its_work_and_drops_and_equals_the_whole_stream_function():
    ev = _random_stream(9)
    stage = MotionDirections()
    out, state, _ = run_stage(stage, spike_spec((2, SIDE, SIDE)), cut_at(ev, [ev.shape[0] // 3, 2 * ev.shape[0] // 3], t_end_us=500_000))
    t, addr = directions_of(stage, ev["t"], ev["addr"], SIDE)
    assert np.array_equal(out["t"], t) and np.array_equal(out["addr"], addr)
    c = stage.counters(state)
    assert c["filtered_events"] == ev.shape[0] - out.shape[0] > 0
    assert 0 < c["frontend_macs"] <= ev.shape[0] * 24  # at most 5×5 - 1 look-ups per event
    assert stage.out_spec(spike_spec((2, SIDE, SIDE))).shape == (8, SIDE, SIDE)


def test_bad_settings_and_streams_are_clear_errors():
    with pytest.raises(ValueError, match="n_dir"):
        MotionDirections(1)
    with pytest.raises(ValueError, match="min_age_us < window_us"):
        MotionDirections(window_us=1000, min_age_us=2000)
    with pytest.raises(ValueError, match="unknown field"):
        MotionDirections.from_dict({"n_dir": 8, "speed": 3})
    with pytest.raises(GraphError, match="spike stream"):
        MotionDirections().out_spec(dvs_spec(32, 32))
    with pytest.raises(GraphError, match="square"):
        MotionDirections().out_spec(spike_spec((2, 16, 32)))
    assert MotionDirections.from_dict(MotionDirections(4, radius=3).to_dict()) == MotionDirections(4, radius=3)
