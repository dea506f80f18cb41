"""A network split in two halves that run at the same time: the first half on the newest packet in the caller's
thread while a worker thread runs the second half on earlier ones (the kernels release the GIL).

On a two-core machine a deep network over a dense stream (a Gen3 sensor's bursts) gets up to about twice the
throughput; its output is exactly that of the two halves run one after the other (``Network.split_at``: the
unsplit network's up to float rounding), a few packets later. A hand-off to another thread costs about 40 µs
(a queue round trip on this machine), so the first half's output is collected over consecutive packets until it
holds ``batch_events`` spikes, and handed over then; a packet whose first half emits fewer than ``min_events``
spikes is too sparse to gain anything and runs its second half in the caller's thread (after everything handed
over or collected before it, keeping the order): slow streams cost what they cost unsplit.

    net = PipelinedNetwork(conv_net, split=2)   # conv1, conv2 | conv3, conv4
    state = net.init(spec)
    state, out = net.step(state, packet)        # spikes of earlier dense packets, or of this sparse one
    out += net.finish(state)                    # everything still in flight
"""

from __future__ import annotations

import queue
import threading
import weakref
from dataclasses import dataclass, field
from typing import Any

from runtime.packet import Packet
from runtime.spec import StreamSpec

from .network import Network, NetworkState

__all__ = ["PipelinedNetwork", "PipelineState", "balanced_split"]

_STOP = object()


def balanced_split(network: Network, layer_ns: list[float]) -> int:
    """The split (layers in the first half) whose larger half costs least, from measured per-layer costs
    (``layer_ns[i]``: time of layer i per network input event, e.g. from the bench's per-layer stages)."""
    n = len(network.layers)
    if len(layer_ns) != n:
        raise ValueError(f"balanced_split: {len(layer_ns)} layer costs for the {n} layers of '{network.name}'")
    best, best_k = float("inf"), 0
    for k in range(1, n):
        try:
            network.split_at(k)
        except ValueError:
            continue
        cost = max(sum(layer_ns[:k]), sum(layer_ns[k:]))
        if cost < best:
            best, best_k = cost, k
    if best_k == 0:
        raise ValueError(f"balanced_split: network '{network.name}' has no split with neurons on both sides")
    return best_k


def _run_back(back: Network, back_state: NetworkState, packets: list[Packet]) -> list[Packet]:
    out: list[Packet] = []
    for p in packets:
        _, o = back.step(back_state, p)
        out.extend(o)
    return out


class _Worker:
    """One thread running the second half on the jobs it is handed, one at a time, answering each."""

    def __init__(self, back: Network, back_state: NetworkState):
        self.jobs: queue.SimpleQueue = queue.SimpleQueue()
        self.answers: queue.SimpleQueue = queue.SimpleQueue()
        self.thread = threading.Thread(target=self._loop, args=(back, back_state), name=f"{back.name}-worker",
                                       daemon=True)
        self.thread.start()

    def _loop(self, back: Network, back_state: NetworkState) -> None:
        while True:
            job = self.jobs.get()
            if job is _STOP:
                return
            try:
                self.answers.put((True, _run_back(back, back_state, job)))
            except BaseException as exc:  # handed to the caller, which raises it as its own
                self.answers.put((False, exc))

    def stop(self) -> None:
        self.jobs.put(_STOP)


@dataclass
class PipelineState:
    front: NetworkState
    back: NetworkState
    worker: _Worker | None = None
    pending: bool = False  # the worker holds a job whose answer has not been collected
    held: list = field(default_factory=list)  # first-half output of dense packets not handed over yet
    held_events: int = 0
    held_packets: int = 0
    handed_off: int = 0  # input packets whose second half ran in the worker
    inline: int = 0  # packets whose second half ran in the caller's thread
    finished: bool = False
    _finalizer: Any = field(default=None, repr=False)


@dataclass(frozen=True, eq=False)
class PipelinedNetwork:
    """Stage: ``network`` as two halves in two threads (see the module docstring). ``split``: layers in the
    first half (default: half the layers, rounded up)."""

    network: Network
    split: int | None = None
    min_events: int = 256
    batch_events: int = 2048

    def __post_init__(self):
        if not isinstance(self.network, Network):
            raise TypeError(f"PipelinedNetwork: expected a Network, got {self.network!r}")
        k = self.split if self.split is not None else (len(self.network.layers) + 1) // 2
        if self.min_events < 0 or self.batch_events < 0:
            raise ValueError(f"PipelinedNetwork: min_events and batch_events must be ≥ 0, got {self.min_events}, "
                             f"{self.batch_events}")
        front, back = self.network.split_at(int(k))
        object.__setattr__(self, "split", int(k))
        object.__setattr__(self, "front", front)
        object.__setattr__(self, "back", back)

    # the Network attributes graphs and reports read
    @property
    def name(self) -> str:
        return self.network.name

    @property
    def labels(self) -> tuple:
        return self.network.labels

    @property
    def layers(self) -> tuple:
        return self.network.layers

    @property
    def delay_us(self) -> int:
        return self.network.delay_us

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        return self.network.out_spec(spec)

    def init(self, spec: StreamSpec) -> PipelineState:
        fs = self.front.init(spec)
        return PipelineState(fs, self.back.init(self.front.out_spec(spec)))

    def step(self, state: PipelineState, packet: Packet) -> tuple[PipelineState, list[Packet]]:
        if state.finished:
            raise RuntimeError(f"network '{self.name}': step after finish (use a new state for a new stream)")
        _, mid = self.front.step(state.front, packet)
        n = sum(p.events.shape[0] for p in mid)
        if n >= self.min_events:
            state.held.extend(mid)
            state.held_events += n
            state.held_packets += 1
            if state.held_events < self.batch_events:
                return state, []
            out = self._collect(state)
            if state.worker is None:
                state.worker = _Worker(self.back, state.back)
                state._finalizer = weakref.finalize(state, state.worker.stop)
            state.worker.jobs.put(state.held)
            state.pending = True
            state.handed_off += state.held_packets
            state.held, state.held_events, state.held_packets = [], 0, 0
            return state, out
        out = self._collect(state)
        out.extend(self._flush_inline(state, mid))
        state.inline += 1
        return state, out

    def _flush_inline(self, state: PipelineState, more: list[Packet]) -> list[Packet]:
        """The held packets, then ``more``, through the second half in this thread."""
        state.inline += state.held_packets
        packets = state.held + more
        state.held, state.held_events, state.held_packets = [], 0, 0
        return _run_back(self.back, state.back, packets)

    def finish(self, state: PipelineState) -> list[Packet]:
        if state.finished:
            return []
        out = self._collect(state)
        state.finished = True
        if state._finalizer is not None:
            state._finalizer()  # stops the worker
        out.extend(self._flush_inline(state, self.front.finish(state.front)))
        out.extend(self.back.finish(state.back))
        return out

    def _collect(self, state: PipelineState) -> list[Packet]:
        if not state.pending:
            return []
        ok, answer = state.worker.answers.get()
        state.pending = False
        if not ok:
            state.finished = True
            state._finalizer()
            raise answer
        return answer

    def counters(self, state: PipelineState) -> dict[str, int]:
        a = self.front.counters(state.front)
        out = dict(a)
        for k, v in self.back.counters(state.back).items():
            out[k] = out.get(k, 0) + v if k in a and "." not in k else v
        out["pipelined_packets"] = state.handed_off
        return out

    def dense_macs_per_bin(self, spec: StreamSpec | None = None) -> int:
        return self.network.dense_macs_per_bin(spec)
