"""The synchronous reference executor: no trio, no threads, one node at a time in topological order.

It runs the same runners as the trio executor, so the two must give identical sink outputs and counters; the
tests check that on every graph they build. Slow and memory-hungry on purpose (it keeps every packet).
"""

from __future__ import annotations

import datetime as _dt
import time
from typing import Any

from .executor import Run
from .graph import Graph
from .merge import Merge
from .node import finish_chain, run_chain
from .packet import Packet

__all__ = ["run_reference"]


def run_reference(graph: Graph, *, keep_outputs: bool = True, seed: int | None = None) -> dict:
    r = Run(graph, keep_outputs=keep_outputs, seed=seed)
    opened: dict[str, Any] = {}
    try:
        for name, node in graph.nodes.items():
            if node.kind == "source":
                opened[name] = node.obj.open()
        r.prepare(opened)
        r.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        r.wall_start_ns = time.perf_counter_ns()
        streams: dict[str, list[Packet]] = {}
        for name in graph.validate():
            node = graph.nodes[name]
            if node.kind == "source":
                runner = r.sources[name]
                packets = []
                while (p := runner.next_packet()) is not None:
                    packet = runner.admit(p)
                    r.latency.release.add(packet.t_end_us, time.perf_counter_ns())
                    packets.append(packet)
                streams[name] = packets
                continue
            runner = r.stages[name]
            if len(node.inputs) == 1:
                incoming = streams[node.inputs[0]]
            else:
                merge = Merge(len(node.inputs), runner.spec_in.dtype)
                incoming = []
                for port, inp in enumerate(node.inputs):
                    for p in streams[inp]:
                        incoming.extend(merge.push(port, p))
                    incoming.extend(merge.close(port))
            outs: list[Packet] = []
            for p in incoming:
                outs.extend(run_chain([runner], p))
            outs.extend(finish_chain([runner]))
            if node.kind == "sink":
                r.emit_sink(name, outs)
            streams[name] = outs
        r.wall_end_ns = time.perf_counter_ns()
    finally:
        for o in opened.values():
            o.close()
        r.close_unfinished()
    report = r.report()
    if keep_outputs:
        report["_outputs"] = r.outputs
    return report
