"""Record: a pass-through stage / sink that writes its stream to a file while a graph runs."""

from __future__ import annotations

import gc
import threading
import time

import numpy as np
import pytest

import aedat
from runtime.errors import NodeError
from runtime.events import make_dvs_events
from runtime.executor import run
from runtime.graph import Graph
from runtime.packet import Packet
from runtime.reference import run_reference
from runtime.sources import ArraySource
from runtime.spec import dvs_spec
from runtime.stages import CountSink
from runtime.testing import cut_at, run_stage
from sensors.filters import EventRangeError
from sensors.record import Record
from sensors.udp import UdpSource, send_events


def stream(n=5000, w=64, h=48, seed=0):
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, 400_000, n))
    return make_dvs_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n).astype(bool))


def read_back(path):
    if path.suffix == ".aedat4":
        parts = [p["events"] for p in aedat.Decoder(str(path))]
        raw = np.concatenate(parts)
        return make_dvs_events(raw["x"], raw["y"], raw["t"], raw["on"])
    if path.suffix == ".npz":
        with np.load(path) as z:
            return z["events"]
    if path.suffix == ".h5":
        import h5py

        with h5py.File(path) as f:
            return make_dvs_events(*(f["events"][k][:] for k in "xytp"))
    return np.load(path)


@pytest.mark.parametrize("ext", ["npy", "npz", "h5", "aedat4"])
@pytest.mark.parametrize("executor", ["reference", "trio"])
def test_record_passes_through_and_writes_everything(tmp_path, ext, executor):
    ev = stream()
    spec = dvs_spec(64, 48)
    path = tmp_path / f"rec.{ext}"
    g = Graph("rec")
    src = g.source("file", ArraySource(ev, spec, max_events=300))
    rec = g.stage("record", Record(path), src)
    g.sink("count", CountSink(), rec)
    report = (run_reference(g) if executor == "reference" else run(g, keep_outputs=True))
    passed = np.concatenate([p.events for p in report["_outputs"]["count"]])
    np.testing.assert_array_equal(passed, ev)
    np.testing.assert_array_equal(read_back(path), ev)


def test_record_as_a_sink_on_a_branch(tmp_path):
    ev = stream(seed=1)
    spec = dvs_spec(64, 48)
    g = Graph("branch")
    src = g.source("file", ArraySource(ev, spec, max_events=500))
    g.sink("record", Record(tmp_path / "b.aedat4"), src)
    g.sink("count", CountSink(), src)
    report = run(g)
    np.testing.assert_array_equal(read_back(tmp_path / "b.aedat4"), ev)
    text = repr(report)
    assert str(tmp_path / "b.aedat4") in text and str(len(ev)) in text  # result() reaches the report


def test_result_and_close_are_idempotent(tmp_path):
    ev = stream(200)
    stage = Record(tmp_path / "r.npy")
    out, state, _ = run_stage(stage, dvs_spec(64, 48), cut_at(ev, [50, 120]))
    np.testing.assert_array_equal(out, ev)
    stage.close(state)  # already closed by finish
    res = stage.result(state)
    assert res == {"recorded": str(tmp_path / "r.npy"), "format": "npy", "events": 200,
                   "t_first_us": int(ev["t"][0]), "t_last_us": int(ev["t"][-1])}


def test_a_write_error_closes_the_file_first(tmp_path):
    spec = dvs_spec(8, 8)
    good = make_dvs_events([1, 2], [1, 2], [10, 20], True)
    bad = make_dvs_events([9], [1], [30], True)  # outside the 8×8 sensor
    stage = Record(tmp_path / "e.aedat4")
    state = stage.init(spec)
    state, _ = stage.step(state, cut_at(good, [])[0])
    with pytest.raises(EventRangeError, match=r"e\.aedat4: field 'x' = 9 at event 2"):
        stage.step(state, Packet(bad, 31))
    assert state.writer.closed
    np.testing.assert_array_equal(read_back(tmp_path / "e.aedat4"), good)


class _Boom:
    """A stage that fails on its third packet."""

    def out_spec(self, spec):
        return spec

    def init(self, spec):
        return {"n": 0}

    def step(self, state, packet):
        state["n"] += 1
        if state["n"] == 3:
            raise RuntimeError("boom")
        return state, [packet]

    def finish(self, state):
        return []

    def result(self, state):
        return {}


def test_a_failure_elsewhere_still_leaves_a_readable_file(tmp_path):
    ev = stream(40_000, seed=2)
    spec = dvs_spec(64, 48)
    path = tmp_path / "f.npy"
    g = Graph("fail")
    src = g.source("file", ArraySource(ev, spec, max_events=500, max_span_us=None))
    rec = g.stage("record", Record(path, flush_interval_s=0.0), src)
    g.sink("boom", _Boom(), rec)
    with pytest.raises(NodeError, match="node 'boom' failed"):
        run(g)
    gc.collect()  # the graph's state is gone: the writer's finalizer has closed the file
    got = np.load(path)
    assert 1000 <= len(got) < len(ev)  # the packets recorded before the failure, not the whole stream
    np.testing.assert_array_equal(got, ev[: len(got)])


def test_live_udp_stream_recorded_while_running(tmp_path):
    """The `live --record` path: a UDP source in the executor's worker thread, recorded to AEDAT 4.0."""
    ev = stream(4000, 128, 128, seed=3)
    udp = UdpSource(128, 128, port=0, host="127.0.0.1", heartbeat_us=20_000, end_after_idle_s=0.5)
    opened = udp.open()
    port = opened.port
    opened.close()  # the graph opens its own; reuse the free port it found
    udp = UdpSource(128, 128, port=port, host="127.0.0.1", heartbeat_us=20_000, end_after_idle_s=0.5)
    g = Graph("live")
    src = g.source("udp", udp)
    rec = g.stage("record", Record(tmp_path / "live.aedat4"), src)
    g.sink("count", CountSink(), rec)

    def sender():
        time.sleep(0.3)
        send_events(ev, ("127.0.0.1", port), timestamps=True, speed=2.0)

    th = threading.Thread(target=sender, daemon=True)
    th.start()
    run(g)
    th.join()
    np.testing.assert_array_equal(read_back(tmp_path / "live.aedat4"), ev)
