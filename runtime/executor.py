"""Run a graph on trio: one task per source and one per chain of stages, bounded channels between them.

This module is the only code that receives from and sends to channels; stages never see trio.

* Edges are bounded memory channels. ``block`` edges are lossless (the producer waits); ``drop_newest`` /
  ``drop_oldest`` edges never make the producer wait and count every dropped packet and event.
* A linear run of stages (each with one input, fed by a stage with one consumer, on a ``block`` edge) is fused
  into one task: the packet goes through every stage in one call, with no channel hop (``fuse=False`` runs one
  task per node; ``clockless bench runtime`` measures both).
* Channel operations try the non-blocking form first: a trio checkpoint costs 6–10 µs, a ``send_nowait`` under
  1 µs, so tasks yield only when a buffer is full or empty. A step holds the event loop for as long as it runs,
  so packet size (``max_events``/``max_span_us`` of the source) bounds how long other tasks can be delayed.
* Paced replay (``speed`` set) sleeps on trio's clock, so tests run it in virtual time with ``MockClock``.
  Optional heartbeats (``heartbeat_us``) send watermark-only packets through long silences so windows can close;
  they cost wakeups, never operations.
* Shutdown: sources end → channels close in order → every stage's ``finish`` flushes → sinks' results are read.
  An exception in any node cancels the rest and is raised as ``NodeError`` naming the node and the packet's time
  range, with the original exception as its cause. Ctrl-C raises ``RunInterrupted`` carrying a partial report
  (sinks are finished first, so an open speech segment is closed at the last processed sample).
"""

from __future__ import annotations

import datetime as _dt
import time
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from typing import Any, Callable

import trio

from .errors import ClocklessError, NodeError
from .graph import Graph
from .merge import Merge
from .metrics import EdgeStats, LatencyRecorder
from .node import SourceRunner, StageRunner, finish_chain, run_chain
from .packet import Packet, _frozen_empty
from .report import build_report, write_json

__all__ = ["run", "run_async", "RunInterrupted", "Run"]


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run; ``report`` holds what was measured up to then."""

    def __init__(self, report: dict):
        super().__init__("run interrupted")
        self.report = report


@dataclass
class _OutEdge:
    send: Any
    policy: str
    stats: EdgeStats
    drain: Any = None  # a receive clone, for drop_oldest


@dataclass
class Run:
    """Everything one execution builds: runners, statistics, latency; lives outside trio so Ctrl-C keeps it."""

    graph: Graph
    speed: float | None = None
    heartbeat_us: int | None = None
    fuse: bool = True
    keep_outputs: bool = False
    on_output: Callable[[str, Packet], None] | None = None
    seed: int | None = None
    sources: dict[str, SourceRunner] = field(default_factory=dict)
    stages: dict[str, StageRunner] = field(default_factory=dict)
    latency: LatencyRecorder = field(default_factory=LatencyRecorder)
    outputs: dict[str, list[Packet]] = field(default_factory=dict)
    started_at: str = ""
    wall_start_ns: int = 0
    wall_end_ns: int = 0
    interrupted: bool = False

    # ---- setup (sync) -----------------------------------------------------------------------------------------
    def prepare(self, opened: dict[str, Any]) -> None:
        g = self.graph
        self.sources = {name: SourceRunner(name, o) for name, o in opened.items()}
        spec_in, spec_out = g.resolve_specs({n: r.spec for n, r in self.sources.items()})
        for name in g.validate():
            node = g.nodes[name]
            if node.kind != "source":
                self.stages[name] = StageRunner(name, node.kind, node.obj, spec_in[name], spec_out[name], len(node.inputs))
                if node.kind == "sink" and self.keep_outputs:
                    self.outputs[name] = []

    def chains(self) -> list[list[str]]:
        """Group stage nodes into fused chains (each chain runs in one task)."""
        g = self.graph
        order = [n for n in g.validate() if g.nodes[n].kind != "source"]
        chain_of: dict[str, list[str]] = {}
        chains: list[list[str]] = []
        for name in order:
            node = g.nodes[name]
            if self.fuse and len(node.inputs) == 1 and node.edge.policy == "block":
                up = g.nodes[node.inputs[0]]
                if up.kind == "stage" and len(g.consumers(up.name)) == 1 and up.name in chain_of:
                    chain = chain_of[up.name]
                    if chain[-1] == up.name:
                        chain.append(name)
                        chain_of[name] = chain
                        continue
            chain = [name]
            chains.append(chain)
            chain_of[name] = chain
        return chains

    def report(self) -> dict:
        end = self.wall_end_ns or time.perf_counter_ns()
        wall_s = (end - self.wall_start_ns) / 1e9 if self.wall_start_ns else 0.0
        live = any(r.live for r in self.sources.values())
        return build_report(
            graph_name=self.graph.name,
            sources=list(self.sources.values()),
            stages=self.stages,
            latency=self.latency,
            wall_s=wall_s,
            speed=self.speed,
            interrupted=self.interrupted,
            seed=self.seed,
            started_at=self.started_at,
            live=live,
        )

    def emit_sink(self, name: str, outs: list[Packet]) -> None:
        now = time.perf_counter_ns()
        for o in outs:
            if o.events.shape[0]:
                self.latency.record(o.events["t"], now)
            if self.keep_outputs:
                self.outputs[name].append(o)
            if self.on_output is not None:
                self.on_output(name, o)

    # ---- tasks ------------------------------------------------------------------------------------------------
    async def main(self, task_status=trio.TASK_STATUS_IGNORED) -> None:
        g = self.graph
        g.validate()
        opened: dict[str, Any] = {}
        try:
            for name, node in g.nodes.items():
                if node.kind == "source":
                    # opening can block (camera, socket, file header): keep the event loop free
                    opened[name] = await trio.to_thread.run_sync(node.obj.open)
            self.prepare(opened)  # stages' init compiles kernels here, before any data flows
            task_status.started()
            await self._run_tasks()
        finally:
            for o in opened.values():
                o.close()
            self.close_unfinished()

    def close_unfinished(self) -> None:
        """Give stages that hold resources (open files) their optional ``close(state)`` after a failed run."""
        for runner in self.stages.values():
            close = getattr(runner.obj, "close", None)
            if not runner.finished and close is not None:
                close(runner.state)

    async def _run_tasks(self) -> None:
        g = self.graph
        chains = self.chains()
        head_of = {c[0]: c for c in chains}
        # one channel per edge from a producer (source or chain tail) to a chain head's input port
        out_edges: dict[str, list[_OutEdge]] = {n: [] for n in list(self.sources) + [c[-1] for c in chains]}
        in_chans: dict[str, list[Any]] = {c[0]: [] for c in chains}
        for head, chain in head_of.items():
            node = g.nodes[head]
            for port, inp in enumerate(node.inputs):
                send, recv = trio.open_memory_channel(node.edge.capacity)
                stats = self.stages[head].stats.edges_in[port]
                drain = recv.clone() if node.edge.policy == "drop_oldest" else None
                out_edges[inp].append(_OutEdge(send, node.edge.policy, stats, drain))
                in_chans[head].append((recv, stats))
        self.started_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
        self.wall_start_ns = time.perf_counter_ns()
        try:
            async with trio.open_nursery() as nursery:
                for name, runner in self.sources.items():
                    nursery.start_soon(self._source_task, runner, out_edges[name])
                for chain in chains:
                    runners = [self.stages[n] for n in chain]
                    nursery.start_soon(self._chain_task, runners, in_chans[chain[0]], out_edges.get(chain[-1], []))
        finally:
            self.wall_end_ns = time.perf_counter_ns()

    async def _send(self, edge: _OutEdge, packet: Packet) -> bool:
        """Send on one edge by its policy; return True when the task had to wait."""
        st = edge.stats
        waited = False
        try:
            edge.send.send_nowait(packet)
        except trio.WouldBlock:
            if edge.policy == "block":
                await edge.send.send(packet)
                waited = True
            elif edge.policy == "drop_newest":
                st.dropped_packets += 1
                st.dropped_events += packet.events.shape[0]
                return False
            else:
                while True:
                    try:
                        old = edge.drain.receive_nowait()
                        st.received_packets += 1
                        st.dropped_packets += 1
                        st.dropped_events += old.events.shape[0]
                    except trio.WouldBlock:
                        pass
                    try:
                        edge.send.send_nowait(packet)
                        break
                    except trio.WouldBlock:
                        continue
        st.sent_packets += 1
        q = st.sent_packets - st.received_packets
        if q > st.high_water:
            st.high_water = q
        return waited

    async def _source_task(self, runner: SourceRunner, edges: list[_OutEdge]) -> None:
        async with AsyncExitStack() as stack:
            for e in edges:
                await stack.enter_async_context(e.send)
            paced = self.speed is not None and not runner.live
            # lossy edges never make the source wait, so it must yield by itself now and then
            yield_every = 16 if any(e.policy != "block" for e in edges) else 64
            anchor_trio = 0.0
            t0: int | None = None
            last_sent_wm: int | None = None
            final_wm: int | None = None
            n = 0
            is_clock = runner is next(iter(self.sources.values()))
            while True:
                if runner.blocking:
                    packet = await trio.to_thread.run_sync(runner.next_packet, abandon_on_cancel=True)
                else:
                    packet = runner.next_packet()
                if packet is None:
                    break
                packet = runner.admit(packet)
                ev_t = packet.events["t"]
                if paced:
                    first_t = int(ev_t[0]) if ev_t.shape[0] else packet.t_end_us
                    due_t = int(ev_t[-1]) if ev_t.shape[0] else packet.t_end_us
                    if t0 is None:
                        t0 = first_t
                        anchor_trio = trio.current_time()
                        if is_clock:
                            self.latency.anchor(t0, time.perf_counter_ns(), self.speed)
                    if self.heartbeat_us and last_sent_wm is not None:
                        hb = last_sent_wm + self.heartbeat_us
                        while hb <= first_t:
                            await trio.sleep_until(anchor_trio + (hb - t0) / 1e6 / self.speed)
                            beat = Packet(_frozen_empty(runner.spec.dtype), hb)
                            runner.stats.packets_out += 1
                            runner.stats.wakeups += 1
                            for e in edges:
                                await self._send(e, beat)
                            last_sent_wm = hb
                            hb += self.heartbeat_us
                    await trio.sleep_until(anchor_trio + (due_t - t0) / 1e6 / self.speed)
                    if ev_t.shape[0] and packet.t_end_us > due_t + 1:
                        # in real time the future is unknown: hold back the file's look-ahead watermark
                        final_wm = packet.t_end_us
                        packet = Packet(packet.events, due_t + 1)
                elif is_clock and runner.t_clock == "perf_counter_us" and self.latency.start_ns is None:
                    # a live source stamping events with perf_counter µs: each event was due at its own time
                    self.latency.anchor(0, 0, 1.0)
                elif is_clock and self.latency.start_ns is None:
                    self.latency.release.add(packet.t_end_us, time.perf_counter_ns())
                waited = False
                for e in edges:
                    waited |= await self._send(e, packet)
                last_sent_wm = packet.t_end_us
                n += 1
                if not waited and not paced and not runner.blocking and n % yield_every == 0:
                    # a file source that never meets a full buffer would otherwise never let others run
                    await trio.lowlevel.checkpoint()
            if paced and final_wm is not None and (last_sent_wm is None or final_wm > last_sent_wm):
                for e in edges:
                    await self._send(e, Packet(_frozen_empty(runner.spec.dtype), final_wm))

    async def _chain_task(self, chain: list[StageRunner], inputs: list, edges: list[_OutEdge]) -> None:
        tail = chain[-1]
        is_sink = tail.kind == "sink"
        async with AsyncExitStack() as stack:
            for e in edges:
                await stack.enter_async_context(e.send)
            for recv, _ in inputs:
                await stack.enter_async_context(recv)
            if len(inputs) == 1:
                recv, st = inputs[0]
                while True:
                    try:
                        packet = recv.receive_nowait()
                    except trio.WouldBlock:
                        try:
                            packet = await recv.receive()
                        except trio.EndOfChannel:
                            break
                    except trio.EndOfChannel:
                        break
                    st.received_packets += 1
                    await self._deliver(chain, run_chain(chain, packet), edges, is_sink)
            else:
                merge = Merge(len(inputs), chain[0].spec_in.dtype)
                send_m, recv_m = trio.open_memory_channel(len(inputs))

                async def forward(port: int, recv, st, send_m) -> None:
                    async with send_m:
                        async for packet in recv:
                            st.received_packets += 1
                            await send_m.send((port, packet))
                        await send_m.send((port, None))

                async with trio.open_nursery() as nursery:
                    async with send_m:
                        for port, (recv, st) in enumerate(inputs):
                            nursery.start_soon(forward, port, recv, st, send_m.clone())
                    async with recv_m:
                        async for port, packet in recv_m:
                            merged = merge.close(port) if packet is None else merge.push(port, packet)
                            for m in merged:
                                await self._deliver(chain, run_chain(chain, m), edges, is_sink)
            await self._deliver(chain, finish_chain(chain), edges, is_sink)

    async def _deliver(self, chain, outs: list[Packet], edges: list[_OutEdge], is_sink: bool) -> None:
        if is_sink:
            if outs:
                self.emit_sink(chain[-1].name, outs)
            return
        for o in outs:
            for e in edges:
                await self._send(e, o)


def _unwrap(exc: BaseException) -> BaseException:
    """Pick the most informative exception out of trio's exception groups."""
    while isinstance(exc, BaseExceptionGroup):
        inner = list(exc.exceptions)
        for kind in (KeyboardInterrupt, NodeError, ClocklessError):
            hit = next((e for e in _leaves(exc) if isinstance(e, kind)), None)
            if hit is not None:
                return hit
        exc = inner[0]
    return exc


def _leaves(exc: BaseException):
    if isinstance(exc, BaseExceptionGroup):
        for e in exc.exceptions:
            yield from _leaves(e)
    else:
        yield exc


async def run_async(graph: Graph, **options: Any) -> dict:
    """Run ``graph`` inside an existing trio program; returns the report (see ``run`` for options)."""
    r = Run(graph, **options)
    await r.main()
    return r.report()


def run(
    graph: Graph,
    *,
    speed: float | None = None,
    heartbeat_us: int | None = None,
    fuse: bool = True,
    keep_outputs: bool = False,
    on_output: Callable[[str, Packet], None] | None = None,
    seed: int | None = None,
    json_path: str | None = None,
    clock: Any = None,
) -> dict:
    """Run ``graph`` to the end of its sources and return the report (a dict, see ``runtime.report``).

    ``speed``: None = as fast as possible; 1.0 = real time; any factor otherwise. ``keep_outputs`` keeps every
    packet each sink emitted in ``report["_outputs"]`` (for tests). ``clock``: a trio clock (tests pass
    ``trio.testing.MockClock(autojump_threshold=0)`` to replay in virtual time).
    """
    r = Run(graph, speed=speed, heartbeat_us=heartbeat_us, fuse=fuse, keep_outputs=keep_outputs,
            on_output=on_output, seed=seed)
    try:
        trio.run(r.main, clock=clock)
    except BaseException as raw:
        exc = _unwrap(raw)
        if isinstance(exc, KeyboardInterrupt):
            r.interrupted = True
            r.wall_end_ns = r.wall_end_ns or time.perf_counter_ns()
            for runner in r.stages.values():
                if runner.kind == "sink" and not runner.finished:
                    r.emit_sink(runner.name, runner.finish())
            report = r.report()
            if json_path:
                write_json(report, json_path)
            raise RunInterrupted(report) from None
        if exc is not raw:
            raise exc from exc.__cause__
        raise
    report = r.report()
    if keep_outputs:
        report["_outputs"] = r.outputs
        report["_latency_ns"] = r.latency.samples_ns()
    if json_path:
        write_json({k: v for k, v in report.items() if not k.startswith("_")}, json_path)
    return report
