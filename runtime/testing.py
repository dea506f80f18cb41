"""Helpers for testing stages: run one synchronously, and check packetization invariance.

Every stage in clockless must give the same concatenated output however its input stream is cut into packets
(respecting the equal-timestamp rule). ``check_packet_invariance`` is the property check each component's tests
call (with hypothesis choosing the cuts).
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from .packet import Packet, concat_events
from .spec import StreamSpec

__all__ = ["run_stage", "cut_at", "valid_cuts", "check_packet_invariance"]


def run_stage(stage: Any, spec: StreamSpec, packets: Sequence[Packet]) -> tuple[np.ndarray, Any, list[Packet]]:
    """Run ``stage`` over ``packets`` then ``finish``; return (all output events, final state, output packets).

    Also checks the stage's output obeys the packet rules (sorted, below its watermark, watermarks monotone).
    """
    out_spec = stage.out_spec(spec)
    state = stage.init(spec)
    outs: list[Packet] = []
    for p in packets:
        state, o = stage.step(state, p)
        outs.extend(o)
    outs.extend(stage.finish(state))
    _check_stream(outs, type(stage).__name__)
    return concat_events(outs, out_spec.dtype), state, outs


def _check_stream(packets: Sequence[Packet], who: str) -> None:
    last_wm = None
    for p in packets:
        if p.events.flags.writeable:
            raise AssertionError(f"{who}: emitted a writeable event array")
        t = p.events["t"]
        if t.shape[0]:
            if np.any(np.diff(t) < 0):
                raise AssertionError(f"{who}: emitted unsorted events")
            if t[-1] >= p.t_end_us:
                raise AssertionError(f"{who}: event t={t[-1]} not below watermark {p.t_end_us}")
            if last_wm is not None and t[0] < last_wm:
                raise AssertionError(f"{who}: event t={t[0]} before previous watermark {last_wm}")
        if last_wm is not None and p.t_end_us < last_wm:
            raise AssertionError(f"{who}: watermark went back {last_wm} -> {p.t_end_us}")
        last_wm = p.t_end_us


def valid_cuts(t: np.ndarray) -> np.ndarray:
    """Indices where a packet boundary is allowed (not inside a run of equal timestamps)."""
    return np.flatnonzero(np.diff(t) != 0) + 1


def cut_at(events: np.ndarray, cuts: Sequence[int], t_end_us: int | None = None) -> list[Packet]:
    """Cut ``events`` at the given indices (must be valid cuts) into read-only packets with exact watermarks."""
    bounds = [0, *sorted(set(int(c) for c in cuts if 0 < c < len(events))), len(events)]
    t = events["t"]
    final = int(t[-1]) + 1 if t_end_us is None and len(events) else (t_end_us or 0)
    packets = []
    for a, b in zip(bounds[:-1], bounds[1:]):
        ev = np.array(events[a:b])
        ev.flags.writeable = False
        packets.append(Packet(ev, int(t[b]) if b < len(events) else final))
    return packets


def check_packet_invariance(
    make_stage: Any, spec: StreamSpec, events: np.ndarray, cuts: Sequence[int], *, compare=None
) -> None:
    """Assert the stage's output is the same for ``events`` in one packet and cut at ``cuts``.

    ``make_stage`` is a stage (frozen config) or a zero-argument factory. ``compare(a, b)`` overrides exact
    equality of the output event arrays (e.g. for float fields).
    """
    stage = make_stage() if callable(make_stage) and not hasattr(make_stage, "step") else make_stage
    whole, _, _ = run_stage(stage, spec, cut_at(events, []))
    allowed = set(valid_cuts(events["t"]).tolist())
    pieces, _, _ = run_stage(stage, spec, cut_at(events, [c for c in cuts if c in allowed]))
    if compare is not None:
        compare(whole, pieces)
        return
    if whole.shape != pieces.shape or not np.array_equal(whole, pieces):
        raise AssertionError(
            f"{type(stage).__name__}: output differs with packet cuts {sorted(allowed & set(cuts))[:10]}...: "
            f"{whole.shape[0]} events in one packet vs {pieces.shape[0]} when cut"
        )
