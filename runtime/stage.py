"""The three kinds of node a graph is made of, as protocols. None of them sees trio.

A **stage** is a frozen config with explicit state:

    state = stage.init(spec_in)                 # all mutable state is made here (arrays, counters)
    state, out = stage.step(state, packet)      # plain synchronous code; ``out`` is a list of Packets
    out = stage.finish(state)                   # end of stream: flush what is pending
    stage.out_spec(spec_in) -> StreamSpec       # what the stage emits
    stage.counters(state) -> {key: int}         # cumulative counters (see COUNTER_KEYS)

A **sink** is a stage whose outputs leave the graph (they are what latency is measured on) and which adds
``result(state) -> dict`` to the report (``decisions``, ``segments``...).

A **source** opens into an iterator of packets: ``source.open() -> OpenSource``.
"""

from __future__ import annotations

from typing import Any, Iterator, Mapping, Protocol, runtime_checkable

from .packet import Packet
from .spec import StreamSpec

__all__ = ["COUNTER_KEYS", "Stage", "Sink", "Source", "OpenSource"]

COUNTER_KEYS = (
    "synaptic_ops",  # accumulates of a weight into a neuron state actually performed
    "neuron_updates",  # neuron state updates (decay + threshold test) actually performed
    "spikes",  # spikes emitted
    "gated_events",  # events dropped by attention gates
    "gated_ops_saved",  # direct fan-out synaptic ops the dropped events would have cost
    "gate_ops",  # the gates' own scoring work
    "frontend_macs",  # audio filterbank / emulator multiply-accumulates
    "filtered_events",  # events removed by event filters (denoise, refractory, crop...)
)


@runtime_checkable
class Stage(Protocol):
    def out_spec(self, spec: StreamSpec) -> StreamSpec: ...

    def init(self, spec: StreamSpec) -> Any: ...

    def step(self, state: Any, packet: Packet) -> tuple[Any, list[Packet]]: ...

    def finish(self, state: Any) -> list[Packet]: ...


@runtime_checkable
class Sink(Stage, Protocol):
    def result(self, state: Any) -> Mapping[str, Any]: ...


class OpenSource(Protocol):
    spec: StreamSpec
    blocking: bool  # True when next() can wait on hardware: the executor then calls it in a worker thread

    def __iter__(self) -> Iterator[Packet]: ...

    def __next__(self) -> Packet: ...

    def close(self) -> None: ...

    def info(self) -> Mapping[str, Any]: ...


@runtime_checkable
class Source(Protocol):
    def open(self) -> OpenSource: ...
