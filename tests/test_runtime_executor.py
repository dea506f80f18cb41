"""The trio executor: equivalence with the reference executor, edge policies, errors, cancellation, pacing,
latency, and the absence of any clock in the graph."""

from __future__ import annotations

import signal
import threading
import time
from dataclasses import dataclass

import numpy as np
import pytest
import trio
import trio.testing
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.errors import NodeError, StreamOrderError
from runtime.events import DVS_EVENT, make_dvs_events
from runtime.executor import RunInterrupted, run
from runtime.graph import Graph
from runtime.packet import Packet, concat_events, packetize
from runtime.reference import run_reference
from runtime.sources import ArraySource, IterSource, OpenIter
from runtime.spec import dvs_spec
from runtime.stages import CollectSink, CountSink, Delay, Identity
from runtime.testing import cut_at

SPEC = dvs_spec(64, 48)


def _stream(n=5000, seed=0, t_max=200_000):
    rng = np.random.default_rng(seed)
    return make_dvs_events(rng.integers(0, 64, n), rng.integers(0, 48, n), np.sort(rng.integers(0, t_max, n)), rng.integers(0, 2, n))


@dataclass(frozen=True)
class OnOnly:
    """Keeps ON events and counts one 'synaptic op' per kept event, so counters can be compared."""

    def out_spec(self, spec):
        return spec

    def init(self, spec):
        return {"ops": 0}

    def step(self, state, packet):
        ev = packet.events[packet.events["p"]]
        state["ops"] += int(ev.shape[0])
        return state, [packet.derive(ev)]

    def finish(self, state):
        return []

    def counters(self, state):
        return {"synaptic_ops": state["ops"]}


@dataclass(frozen=True)
class Sleepy:
    """A slow stage: sleeps (really) on every packet."""

    seconds: float

    def out_spec(self, spec):
        return spec

    def init(self, spec):
        return None

    def step(self, state, packet):
        time.sleep(self.seconds)
        return state, [packet]

    def finish(self, state):
        return []


@dataclass(frozen=True)
class Boom:
    at_t_us: int

    def out_spec(self, spec):
        return spec

    def init(self, spec):
        return None

    def step(self, state, packet):
        if packet.events.shape[0] and packet.events["t"][-1] >= self.at_t_us:
            raise ValueError("kernel blew up")
        return state, [packet]

    def finish(self, state):
        return []


def _graph(events, *, cuts=None, max_events=64):
    g = Graph("equiv")
    if cuts is None:
        src = g.source("src", ArraySource(events, SPEC, max_events=max_events, max_span_us=None))
    else:
        src = g.source("src", IterSource(SPEC, lambda: cut_at(events, cuts)))
    a = g.stage("on", OnOnly(), src)
    b = g.stage("delay", Delay(7), a)
    c = g.stage("id", Identity(), src)  # fan-out from src
    m = g.stage("merge", Identity(), b, c)  # fan-in
    g.sink("out", CollectSink(), m)
    g.sink("count", CountSink(), a)
    return g


def _sink_events(report, name):
    return concat_events(report["_outputs"][name], DVS_EVENT)


def test_trio_equals_reference_fused_and_unfused():
    ev = _stream()
    ref = run_reference(_graph(ev))
    for fuse in (True, False):
        rep = run(_graph(ev), fuse=fuse, keep_outputs=True)
        for sink in ("out", "count"):
            assert np.array_equal(_sink_events(rep, sink), _sink_events(ref, sink))
        assert rep["ops"]["synaptic_ops"] == ref["ops"]["synaptic_ops"] == int(ev["p"].sum())
        assert rep["nodes"]["out"]["events_in"] == ref["nodes"]["out"]["events_in"] == ev.shape[0] + int(ev["p"].sum())


def test_fan_in_ties_keep_port_order():
    ev = _stream(200, t_max=50)  # many equal timestamps
    out = _sink_events(run(_graph(ev), keep_outputs=True), "out")
    assert np.all(np.diff(out["t"]) >= 0)
    # at equal t, events from port 0 (the delayed ON branch) come before port 1 (the identity branch)
    delayed_on = ev[ev["p"]].copy()
    delayed_on["t"] += 7
    expected = np.concatenate([delayed_on, ev])
    expected = expected[np.argsort(expected["t"], kind="stable")]
    assert np.array_equal(out, expected)


@settings(max_examples=25)
@given(st.lists(st.integers(1, 5000), max_size=30))
def test_whole_graph_is_packetization_invariant(cuts):
    ev = _stream(2000, seed=3, t_max=20_000)
    baseline = _sink_events(run_reference(_graph(ev, cuts=[])), "out")
    allowed = set((np.flatnonzero(np.diff(ev["t"])) + 1).tolist())
    rep = run(_graph(ev, cuts=[c for c in cuts if c in allowed]), keep_outputs=True)
    assert np.array_equal(_sink_events(rep, "out"), baseline)


def test_block_never_drops_under_a_slow_sink():
    ev = _stream(2000)
    g = Graph("slow")
    s = g.source("src", ArraySource(ev, SPEC, max_events=16, max_span_us=None))
    s = g.stage("slow", Sleepy(0.0005), s, capacity=2)
    g.sink("out", CountSink(), s, capacity=2)
    rep = run(g, fuse=False)
    assert rep["nodes"]["out"]["events_in"] == ev.shape[0]
    assert all(n["drops"] == 0 for n in rep["nodes"].values())
    # packets sent but not yet taken: the buffer (2) plus at most one handed straight to a waiting receiver
    assert 1 <= rep["nodes"]["out"]["queue_high_water"] <= 3


@pytest.mark.parametrize("policy", ["drop_newest", "drop_oldest"])
def test_drop_counts_exactly(policy):
    ev = _stream(4000)
    g = Graph("lossy")
    s = g.source("src", ArraySource(ev, SPEC, max_events=8, max_span_us=None))
    g.sink("out", _SlowCount(0.0003), s, policy=policy, capacity=2)
    rep = run(g)
    node = rep["nodes"]["out"]
    assert node["drops"] > 0
    assert node["events_in"] + node["drops"] == ev.shape[0] == rep["input"]["events"]


@dataclass(frozen=True)
class _SlowCount(CountSink):
    seconds: float = 0.0

    def step(self, state, packet):
        time.sleep(self.seconds)
        return super().step(state, packet)


def test_exception_in_a_node_stops_the_graph_with_a_named_error():
    ev = _stream(20_000, t_max=1_000_000)
    g = Graph("fails")
    s = g.source("src", ArraySource(ev, SPEC, max_events=256, max_span_us=None))
    s = g.stage("boom", Boom(500_000), s)
    g.sink("out", CountSink(), s)
    t0 = time.monotonic()
    with pytest.raises(NodeError, match=r"node 'boom' failed on packet t=\[\d+, \d+\] µs: ValueError: kernel blew up") as info:
        run(g)
    assert time.monotonic() - t0 < 10
    assert isinstance(info.value.__cause__, ValueError)
    assert info.value.t_last_us >= 500_000 > info.value.t_first_us - 10_000


def test_source_out_of_order_is_a_clear_error():
    ev = _stream(100)
    bad = [Packet(ev[:50].copy(), int(ev["t"][49]) + 1), Packet(ev[:50].copy(), int(ev["t"][49]) + 2)]
    g = Graph("order")
    g.sink("out", CountSink(), g.source("cam", IterSource(SPEC, lambda: bad)))
    with pytest.raises(StreamOrderError, match="source 'cam': event at t=.* arrived after watermark"):
        run(g)


@dataclass(frozen=True)
class _Interrupting(CountSink):
    after_events: int = 1000

    def step(self, state, packet):
        state, out = super().step(state, packet)
        if state.events >= self.after_events and not getattr(state, "fired", False):
            state.fired = True
            signal.raise_signal(signal.SIGINT)
        return state, out


@dataclass(frozen=True)
class _ClosingSink(_Interrupting):
    def finish(self, state):
        state.closed = True
        return []

    def result(self, state):
        return {"closed": getattr(state, "closed", False), "events": state.events}


def test_ctrl_c_gives_a_partial_report_and_finishes_sinks():
    ev = _stream(50_000, t_max=5_000_000)

    def packets():
        # Like a camera: a blocking source whose worker thread is usually inside next() when Ctrl-C lands, so the
        # run abandons that thread and closes the source under it.
        for p in packetize(ev, max_events=64, max_span_us=None):
            if int(p.events["t"][0]) > int(ev["t"][2000]):
                time.sleep(0.002)
            yield p

    g = Graph("interrupt")
    s = g.source("src", IterSource(SPEC, packets, blocking=True))
    g.sink("out", _ClosingSink(after_events=2000), s)
    # A shell starts background jobs with SIGINT ignored, and Python then installs no Ctrl-C handler (nor does trio):
    # give the test the disposition of a terminal session.
    old = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with pytest.raises(RunInterrupted) as info:
            run(g)
    finally:
        signal.signal(signal.SIGINT, old)
    rep = info.value.report
    assert rep["interrupted"] is True
    assert rep["results"]["out"]["closed"] is True
    assert 2000 <= rep["results"]["out"]["events"] < ev.shape[0]


def test_paced_replay_runs_in_virtual_time():
    ev = _stream(300, t_max=100_000_000)  # 100 s of stream
    clock = trio.testing.MockClock(autojump_threshold=0)
    g = Graph("paced")
    g.sink("out", CountSink(), g.source("src", ArraySource(ev, SPEC, max_events=16, max_span_us=None)))
    t0 = time.monotonic()
    rep = run(g, speed=2.0, clock=clock)
    assert time.monotonic() - t0 < 5
    expected = (int(ev["t"][-1]) - int(ev["t"][0])) / 1e6 / 2.0
    assert clock.current_time() == pytest.approx(expected, abs=1e-3)
    assert rep["nodes"]["out"]["events_in"] == 300


def test_silence_costs_no_operations_and_only_heartbeat_wakeups():
    # two bursts 1000 s apart (virtual time), heartbeats every 100 s
    burst = _stream(50, t_max=1000)
    later = burst.copy()
    later["t"] += 1_000_000_000
    ev = np.concatenate([burst, later])
    clock = trio.testing.MockClock(autojump_threshold=0)
    g = Graph("idle")
    s = g.source("src", ArraySource(ev, SPEC, max_events=4096, max_span_us=1000))
    s = g.stage("on", OnOnly(), s)
    g.sink("out", CountSink(), s)
    rep = run(g, speed=1.0, heartbeat_us=100_000_000, clock=clock)
    data_packets = rep["nodes"]["src"]["packets_out"]
    heartbeats = 9  # watermarks at 100 s … 900 s, all before the second burst starts at 1000 s
    assert rep["nodes"]["on"]["wakeups"] == data_packets
    assert data_packets == 2 + heartbeats
    assert rep["ops"]["synaptic_ops"] == int(ev["p"].sum())


def test_latency_measures_a_known_delay():
    n = 15
    ev = make_dvs_events(np.zeros(n), np.zeros(n), np.arange(n) * 50_000, np.ones(n))  # one event per 50 ms
    g = Graph("latency")
    s = g.source("src", ArraySource(ev, SPEC, max_events=1, max_span_us=None))
    s = g.stage("slow", Sleepy(0.02), s)
    g.sink("out", CountSink(), s)
    rep = run(g, speed=1.0)
    lat = rep["latency_us"]
    assert lat["kind"] == "latency" and lat["count"] == n
    assert lat["p50"] >= 20_000  # every output waited at least the stage's 20 ms
    assert lat["p50"] < 20_000 + 15_000  # and not much more at this low rate


def test_report_has_the_contract_keys(tmp_path):
    import json

    ev = _stream(500)
    path = tmp_path / "r.json"
    run(_graph(ev), json_path=str(path))
    rep = json.loads(path.read_text())
    for key in ("schema_version", "provenance", "input", "wall_s", "events_per_s", "realtime_factor", "latency_us",
                "ops", "nodes", "decisions", "segments"):
        assert key in rep
    assert set(rep["provenance"]) >= {"clockless_version", "git_sha", "python", "machine", "started_at", "seed"}
    assert set(rep["input"]) >= {"source", "events", "duration_us", "sensor_size"}
    assert set(rep["latency_us"]) >= {"p50", "p90", "p99", "max", "count"}
    assert set(rep["ops"]) == {"synaptic_ops", "neuron_updates", "ops_per_event", "dense_macs_equivalent",
                               "gated_events", "gate_ops", "frontend_macs", "energy_uj_estimate"}
    for node in rep["nodes"].values():
        assert set(node) >= {"events_in", "events_out", "synaptic_ops", "busy_s", "wakeups", "drops"}
    assert rep["input"]["events"] == 500
    assert rep["ops"]["ops_per_event"] == pytest.approx(rep["ops"]["synaptic_ops"] / 500, abs=1e-3)


def test_closing_a_blocking_source_while_a_thread_is_inside_next_waits_for_that_call():
    entered, release, closed = threading.Event(), threading.Event(), []

    def camera():
        try:
            while True:
                entered.set()
                release.wait()
                yield Packet(np.empty(0, DVS_EVENT), 1)
        finally:
            closed.append("generator")

    src = OpenIter(SPEC, camera(), blocking=True, on_close=lambda: closed.append("device"))
    got = []
    worker = threading.Thread(target=lambda: got.append(next(src)))
    worker.start()
    entered.wait(5)
    src.close()  # the generator is executing in the worker: closing it now would raise
    assert closed == []
    release.set()
    worker.join(5)
    assert len(got) == 1 and got[0].t_end_us == 1
    assert closed == ["generator", "device"]
    src.close()  # already closed: nothing more happens
    assert closed == ["generator", "device"]
