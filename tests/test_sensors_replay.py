"""ReplaySource: packets reproduce the reader's events, window and loop rules, info(), bounded memory, executor."""

from __future__ import annotations

import tracemalloc

import numpy as np
import pytest
import trio.testing

from runtime.events import DVS_EVENT
from runtime.executor import run
from runtime.graph import Graph
from runtime.packet import check_packet, concat_events
from runtime.stages import CountSink
from sensors.formats import open_reader
from sensors.replay import ReplaySource


def _collect(source):
    opened = source.open()
    try:
        packets = list(opened)
    finally:
        opened.close()
    return opened, packets


def _check_packets(packets, max_events, max_span_us):
    last_wm = None
    for p in packets:
        check_packet(p.events, p.t_end_us, where="test", t_min_us=last_wm)
        assert not p.events.flags.writeable
        n = p.events.shape[0]
        if n:
            t = p.events["t"]
            assert n <= max_events or t[0] == t[-1]  # only a run of equal timestamps may exceed the count
            assert int(t[-1]) - int(t[0]) < max_span_us or t[0] == t[-1]
        last_wm = p.t_end_us
    for a, b in zip(packets[:-1], packets[1:]):
        if a.events.shape[0] and b.events.shape[0]:
            assert a.events["t"][-1] != b.events["t"][0]  # equal timestamps never split


@pytest.mark.parametrize("name", ["vision/gen4_expelliarmus_evt3.raw", "vision/dvs128_walking.aedat"])
def test_replay_reproduces_the_reader(shared_data, name):
    src = ReplaySource(shared_data / name, max_events=512, max_span_us=200)
    opened, packets = _collect(src)
    whole = open_reader(shared_data / name).read_all()
    assert np.array_equal(concat_events(packets, DVS_EVENT), whole)
    _check_packets(packets, 512, 200)
    assert packets[-1].t_end_us == int(whole["t"][-1]) + 1
    info = opened.info()
    assert info["format"] == open_reader(shared_data / name).format and info["events"] == whole.shape[0]
    assert info["sensor_size_origin"] in ("header", "camera model in header")
    if name.endswith("evt3.raw"):
        assert info["time_rules"]["time_low_backsteps_held"] > 0


def test_window_and_loop_shift_time_forward(shared_data):
    path = shared_data / "vision" / "dvs128_right_clamp.aedat"
    whole = open_reader(path).read_all()
    t0 = int(whole["t"][0])
    start, dur = 2_000_000, 3_000_000
    window = whole[(whole["t"] >= t0 + start) & (whole["t"] < t0 + start + dur)]
    opened, packets = _collect(ReplaySource(path, start_us=start, duration_us=dur, loop=3))
    got = concat_events(packets, DVS_EVENT)
    assert got.shape[0] == 3 * window.shape[0]
    for k in range(3):
        part = got[k * window.shape[0] : (k + 1) * window.shape[0]]
        assert np.array_equal(part["t"], window["t"] + k * dur)
        assert np.array_equal(part[["x", "y", "p"]], window[["x", "y", "p"]])
    assert np.all(np.diff(got["t"]) >= 0)
    assert packets[-1].t_end_us == t0 + start + 3 * dur
    assert opened.info()["loops_done"] == 3


def test_loop_without_duration_uses_the_recording_span(shared_data):
    path = shared_data / "vision" / "ncars_tonic.dat"
    whole = open_reader(path).read_all()
    span = int(whole["t"][-1] - whole["t"][0]) + 1
    _, packets = _collect(ReplaySource(path, loop=2))
    got = concat_events(packets, DVS_EVENT)
    assert np.array_equal(got["t"][whole.shape[0]:], whole["t"] + span)


def test_empty_window_ends_cleanly(shared_data):
    path = shared_data / "vision" / "ncars_tonic.dat"
    _, packets = _collect(ReplaySource(path, start_us=10**9, duration_us=5, loop=0))
    assert sum(p.events.shape[0] for p in packets) == 0


def test_bad_arguments():
    with pytest.raises(ValueError, match="duration_us must be ≥ 1"):
        ReplaySource("x", duration_us=0)
    with pytest.raises(ValueError, match="loop must be ≥ 0"):
        ReplaySource("x", loop=-1)


def test_replay_memory_stays_bounded_for_a_big_file(tmp_path):
    n = 3_000_000
    ev = np.zeros(n, DVS_EVENT)
    ev["t"] = np.arange(n, dtype=np.int64) // 3
    ev["x"] = np.arange(n) % 64
    path = tmp_path / "big.npy"
    np.save(path, ev)
    del ev
    (tmp_path / "big.json").write_text('{"sensor_size": [64, 64, 2]}')
    tracemalloc.start()
    try:
        opened = ReplaySource(path, max_events=4096).open()
        seen = 0
        for p in opened:
            seen += p.events.shape[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert seen == n
    assert peak < 16 << 20  # the file holds 39 MB of events


def test_through_the_executor_as_fast_as_possible_and_paced(shared_data):
    path = shared_data / "vision" / "gen4_expelliarmus_evt3.raw"
    n = open_reader(path).read_all().shape[0]
    for speed, clock in ((None, None), (1.0, trio.testing.MockClock(autojump_threshold=0))):
        g = Graph("replay")
        s = g.source("file", ReplaySource(path))
        g.sink("count", CountSink(), s)
        report = run(g, speed=speed, clock=clock)
        assert report["input"]["events"] == n
        assert report["input"]["format"] == "evt3"
        assert report["input"]["time_rules"]["time_low_backsteps_held"] > 0
