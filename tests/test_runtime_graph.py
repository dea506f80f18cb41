"""Graph building and validation: every error names the nodes and says how to fix it."""

import numpy as np
import pytest

from runtime.errors import GraphError
from runtime.events import make_dvs_events
from runtime.executor import run
from runtime.graph import Graph
from runtime.sources import ArraySource
from runtime.spec import dvs_spec
from runtime.stages import CountSink, Identity

EV = make_dvs_events([1, 2], [1, 2], [0, 5], [1, 0])


def _src(w=32, h=32):
    return ArraySource(EV, dvs_spec(w, h))


def test_duplicate_names():
    g = Graph("g")
    g.source("a", _src())
    with pytest.raises(GraphError, match="duplicate node name 'a'"):
        g.stage("a", Identity(), "a")


def test_unknown_input_lists_known_nodes():
    g = Graph("g")
    g.source("cam", _src())
    g.sink("out", CountSink(), "camera")
    with pytest.raises(GraphError, match=r"sink 'out' takes input 'camera', which is not a node \(known: cam, out\)"):
        g.validate()


def test_cycle_is_reported_with_its_path():
    g = Graph("g")
    g.source("src", _src())
    g.stage("a", Identity(), "src", "b")
    g.stage("b", Identity(), "a")
    g.sink("out", CountSink(), "b")
    with pytest.raises(GraphError, match=r"has a cycle: .*a -> b -> a|has a cycle: .*b -> a -> b"):
        g.validate()


def test_unconnected_output():
    g = Graph("g")
    s = g.source("src", _src())
    g.stage("dangling", Identity(), s)
    g.sink("out", CountSink(), s)
    with pytest.raises(GraphError, match="output of stage 'dangling' is not connected"):
        g.validate()


def test_no_sink_and_sink_as_input():
    g = Graph("g")
    s = g.source("src", _src())
    g.stage("x", Identity(), s)
    with pytest.raises(GraphError, match="not connected|no sink"):
        g.validate()
    g2 = Graph("g2")
    s = g2.source("src", _src())
    k = g2.sink("k", CountSink(), s)
    g2.sink("k2", CountSink(), k)
    with pytest.raises(GraphError, match="takes input from sink 'k'"):
        g2.validate()


def test_fan_in_geometry_mismatch_is_caught_before_running():
    g = Graph("g")
    a = g.source("left", _src(32, 32))
    b = g.source("right", _src(64, 48))
    g.sink("out", CountSink(), a, b)
    with pytest.raises(GraphError, match=r"merges 'left' \(dvs\[32, 32, 2\]\) with 'right' \(dvs\[64, 48, 2\]\)"):
        run(g)


def test_bad_policy_and_non_stage():
    g = Graph("g")
    s = g.source("src", _src())
    with pytest.raises(GraphError, match="edge policy 'lossy'"):
        g.stage("x", Identity(), s, policy="lossy")
    with pytest.raises(GraphError, match="lacks init"):
        g.stage("y", object(), s)
    with pytest.raises(GraphError, match="must have an open"):
        g.source("z", np.zeros(3))


def test_describe_and_mermaid_show_the_topology():
    g = Graph("demo")
    s = g.source("src", _src())
    a = g.stage("a", Identity(), s)
    b = g.stage("b", Identity(), s, policy="drop_oldest")
    g.sink("out", CountSink(), a, b)
    text = g.describe()
    assert "sink   out" in text and "<- a, b" in text and "[drop_oldest]" in text
    mer = g.mermaid()
    assert mer.startswith("flowchart LR")
    assert "n_src --> n_a" in mer and "n_src -->|drop_oldest| n_b" in mer and "n_b --> n_out" in mer
