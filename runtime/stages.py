"""Small generic stages and sinks that need no sensor or network code."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .packet import Packet
from .spec import StreamSpec

__all__ = ["Identity", "Delay", "CollectSink", "CountSink"]


@dataclass(frozen=True)
class Identity:
    """Passes packets through unchanged (the runtime benchmark's stage)."""

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        return spec

    def init(self, spec: StreamSpec) -> None:
        return None

    def step(self, state: None, packet: Packet) -> tuple[None, list[Packet]]:
        return state, [packet]

    def finish(self, state: None) -> list[Packet]:
        return []


@dataclass(frozen=True)
class Delay:
    """Shifts every event later by ``delay_us``; its output watermark is the input watermark + ``delay_us``."""

    delay_us: int

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if self.delay_us < 0:
            raise ValueError(f"Delay.delay_us must be ≥ 0, got {self.delay_us}")
        return spec

    def init(self, spec: StreamSpec) -> None:
        return None

    def step(self, state: None, packet: Packet) -> tuple[None, list[Packet]]:
        ev = packet.events.copy()
        ev["t"] += self.delay_us
        return state, [packet.derive(ev, self.delay_us)]

    def finish(self, state: None) -> list[Packet]:
        return []


@dataclass
class _CountState:
    events: int = 0
    packets: int = 0
    t_last_us: int | None = None


@dataclass(frozen=True)
class CountSink:
    """Counts what reaches it and re-emits it, so latency is measured on every event at the end of the graph."""

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        return spec

    def init(self, spec: StreamSpec) -> _CountState:
        return _CountState()

    def step(self, state: _CountState, packet: Packet) -> tuple[_CountState, list[Packet]]:
        n = packet.events.shape[0]
        state.events += n
        state.packets += 1
        if n:
            state.t_last_us = int(packet.events["t"][-1])
        return state, [packet] if n else []

    def finish(self, state: _CountState) -> list[Packet]:
        return []

    def result(self, state: _CountState) -> dict[str, Any]:
        return {"events": state.events, "packets": state.packets, "t_last_us": state.t_last_us}


@dataclass(frozen=True)
class CollectSink(CountSink):
    """Like CountSink, and keeps every event (tests compare executors with it)."""

    def init(self, spec: StreamSpec) -> Any:
        s = _CountState()
        s.chunks = []  # type: ignore[attr-defined]
        s.dtype = spec.dtype  # type: ignore[attr-defined]
        return s

    def step(self, state, packet):
        if packet.events.shape[0]:
            state.chunks.append(packet.events)
        return super().step(state, packet)

    def events(self, state) -> np.ndarray:
        return np.concatenate(state.chunks) if state.chunks else np.empty(0, dtype=state.dtype)
