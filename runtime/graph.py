"""Graphs: named sources, stages and sinks, wired top to bottom.

    g = Graph("demo")
    ev = g.source("file", ArraySource(events, spec))
    ev = g.stage("refractory", Refractory(period_us=1_000), ev)
    g.sink("count", CountSink(), ev)

Each method returns the node's name, which later nodes take as input. Fan-out: use a name as input several times.
Fan-in: give several inputs (merged by timestamp; ties keep the order the inputs are listed in).
Static checks (duplicate/unknown names, cycles, unconnected outputs) run in ``validate``; stream checks (dtype and
geometry of every edge) run in ``resolve_specs`` once the sources are open.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import GraphError
from .spec import StreamSpec

__all__ = ["Graph", "Node", "EdgePolicy", "POLICIES"]

POLICIES = ("block", "drop_newest", "drop_oldest")


@dataclass(frozen=True)
class EdgePolicy:
    """What an edge does when its bounded buffer is full: ``block`` (lossless, the producer waits) or drop."""

    policy: str = "block"
    capacity: int = 16


@dataclass
class Node:
    name: str
    kind: str  # "source" | "stage" | "sink"
    obj: Any
    inputs: tuple[str, ...] = ()
    edge: EdgePolicy = field(default_factory=EdgePolicy)


class Graph:
    def __init__(self, name: str):
        self.name = name
        self.nodes: dict[str, Node] = {}

    # ---- building -------------------------------------------------------------------------------------------
    def source(self, name: str, source: Any) -> str:
        if not hasattr(source, "open"):
            raise GraphError(
                f"graph '{self.name}': source '{name}' must have an open() method (the Source protocol), "
                f"got {type(source).__name__}"
            )
        return self._add(Node(name, "source", source))

    def stage(self, name: str, stage: Any, *inputs: str, policy: str = "block", capacity: int = 16) -> str:
        return self._add(Node(name, "stage", stage, tuple(inputs), self._edge(name, policy, capacity)))

    def sink(self, name: str, sink: Any, *inputs: str, policy: str = "block", capacity: int = 16) -> str:
        return self._add(Node(name, "sink", sink, tuple(inputs), self._edge(name, policy, capacity)))

    def _edge(self, name: str, policy: str, capacity: int) -> EdgePolicy:
        if policy not in POLICIES:
            raise GraphError(f"graph '{self.name}': node '{name}' has edge policy {policy!r}; expected one of {POLICIES}")
        if capacity < 1:
            raise GraphError(f"graph '{self.name}': node '{name}' needs an edge capacity ≥ 1, got {capacity}")
        return EdgePolicy(policy, capacity)

    def _add(self, node: Node) -> str:
        if not isinstance(node.name, str) or not node.name:
            raise GraphError(f"graph '{self.name}': node names must be non-empty strings, got {node.name!r}")
        if node.name in self.nodes:
            raise GraphError(
                f"graph '{self.name}': duplicate node name '{node.name}' "
                f"(already a {self.nodes[node.name].kind}); give each node a unique name"
            )
        if node.kind != "source":
            for m in ("init", "step", "finish", "out_spec"):
                if not callable(getattr(node.obj, m, None)):
                    raise GraphError(
                        f"graph '{self.name}': {node.kind} '{node.name}' ({type(node.obj).__name__}) lacks {m}(); "
                        "stages need out_spec, init, step and finish"
                    )
            if node.kind == "sink" and not callable(getattr(node.obj, "result", None)):
                raise GraphError(
                    f"graph '{self.name}': sink '{node.name}' ({type(node.obj).__name__}) lacks result(state)"
                )
        self.nodes[node.name] = node
        return node.name

    # ---- checks -----------------------------------------------------------------------------------------------
    def consumers(self, name: str) -> list[str]:
        return [n.name for n in self.nodes.values() if name in n.inputs]

    def validate(self) -> list[str]:
        """Check names, wiring and acyclicity; return the nodes in topological order."""
        if not self.nodes:
            raise GraphError(f"graph '{self.name}' is empty; add a source, stages and a sink")
        for node in self.nodes.values():
            if node.kind != "source" and not node.inputs:
                raise GraphError(
                    f"graph '{self.name}': {node.kind} '{node.name}' has no input; pass the name of an upstream node"
                )
            for inp in node.inputs:
                if inp not in self.nodes:
                    known = ", ".join(self.nodes)
                    raise GraphError(
                        f"graph '{self.name}': {node.kind} '{node.name}' takes input '{inp}', which is not a node "
                        f"(known: {known})"
                    )
                if self.nodes[inp].kind == "sink":
                    raise GraphError(
                        f"graph '{self.name}': {node.kind} '{node.name}' takes input from sink '{inp}'; "
                        "sinks have no outputs (make it a stage)"
                    )
            if len(set(node.inputs)) != len(node.inputs):
                raise GraphError(f"graph '{self.name}': node '{node.name}' lists the same input twice: {node.inputs}")
        for node in self.nodes.values():
            if node.kind != "sink" and not self.consumers(node.name):
                raise GraphError(
                    f"graph '{self.name}': the output of {node.kind} '{node.name}' is not connected; "
                    "connect it to a stage or sink, or remove it"
                )
        if not any(n.kind == "sink" for n in self.nodes.values()):
            raise GraphError(f"graph '{self.name}' has no sink; add one with g.sink(...)")
        return self._topo_order()

    def _topo_order(self) -> list[str]:
        order: list[str] = []
        state: dict[str, int] = {}  # 1 = visiting, 2 = done

        def visit(name: str, path: list[str]) -> None:
            s = state.get(name)
            if s == 2:
                return
            if s == 1:
                cycle = path[path.index(name):] + [name]
                raise GraphError(f"graph '{self.name}' has a cycle: {' -> '.join(cycle)}; graphs must be acyclic")
            state[name] = 1
            for inp in self.nodes[name].inputs:
                visit(inp, path + [name])
            state[name] = 2
            order.append(name)

        for name in self.nodes:
            visit(name, [])
        return order

    def resolve_specs(self, source_specs: dict[str, StreamSpec]) -> tuple[dict[str, StreamSpec], dict[str, StreamSpec]]:
        """Propagate stream specs; return (input spec per non-source node, output spec per node)."""
        order = self.validate()
        out: dict[str, StreamSpec] = {}
        inp: dict[str, StreamSpec] = {}
        for name in order:
            node = self.nodes[name]
            if node.kind == "source":
                out[name] = source_specs[name]
                continue
            specs = [out[i] for i in node.inputs]
            first = specs[0]
            for other_name, other in zip(node.inputs[1:], specs[1:]):
                if other.dtype != first.dtype or other.shape != first.shape or other.kind != first.kind:
                    raise GraphError(
                        f"graph '{self.name}': {node.kind} '{name}' merges '{node.inputs[0]}' ({first.describe()}) "
                        f"with '{other_name}' ({other.describe()}); fan-in needs the same event type and geometry "
                        "(insert a crop/downsample or conversion stage)"
                    )
            inp[name] = first
            try:
                out[name] = node.obj.out_spec(first)
            except GraphError:
                raise
            except (ValueError, TypeError, KeyError) as exc:
                raise GraphError(
                    f"graph '{self.name}': {node.kind} '{name}' ({type(node.obj).__name__}) cannot take the stream "
                    f"from {', '.join(node.inputs)} ({first.describe()}): {exc}"
                ) from exc
        return inp, out

    # ---- display ----------------------------------------------------------------------------------------------
    def describe(self) -> str:
        lines = [f"graph {self.name}"]
        for name in self._topo_order():
            node = self.nodes[name]
            src = "" if not node.inputs else " <- " + ", ".join(node.inputs)
            policy = "" if node.kind == "source" or node.edge.policy == "block" else f" [{node.edge.policy}]"
            lines.append(f"  {node.kind:<6} {name:<16} {type(node.obj).__name__}{src}{policy}")
        return "\n".join(lines)

    def mermaid(self) -> str:
        shapes = {"source": ("([", "])"), "stage": ("[", "]"), "sink": ("[[", "]]")}
        lines = ["flowchart LR"]
        for name in self._topo_order():
            node = self.nodes[name]
            a, b = shapes[node.kind]
            lines.append(f'  {_mid(name)}{a}"{name}: {type(node.obj).__name__}"{b}')
        for name in self._topo_order():
            node = self.nodes[name]
            for inp in node.inputs:
                label = "" if node.edge.policy == "block" else f"|{node.edge.policy}|"
                lines.append(f"  {_mid(inp)} -->{label} {_mid(name)}")
        return "\n".join(lines)


def _mid(name: str) -> str:
    return "n_" + "".join(c if c.isalnum() else "_" for c in name)
