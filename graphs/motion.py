"""Motion-direction stage: each spike of a (C, H, W) map re-addressed to the direction its edge is moving.

A retina's direction-selective cells, done the event-driven way: every pixel remembers when it last fired; a new
event looks at its neighbours (within ``radius``) that fired between ``min_age_us`` and ``window_us`` before it,
and the average step from them to its own pixel is the local edge motion. The event leaves on channel
``k`` of ``n_dir`` (sector ``k`` centred on angle ``2πk / n_dir``, angle 0 = +x, growing towards +y: clockwise as
seen in the image), at its pixel and time. Events without ``min_support`` such neighbours (isolated noise, the
first touch of an edge) are dropped and counted as ``filtered_events``.

Polarity does not enter the direction: a bright hand moving right and a dark hand moving right give the same
directions, so the network downstream learns motion, not contrast. With ``polarity=1`` the event's polarity picks
one of two banks of direction channels (channel ``k + n_dir · p``): a hand growing towards the camera turns its
whole outline one polarity, while a moving hand has a leading and a trailing edge of opposite polarities. The
gesture network sees these channels instead of ON/OFF
(``graphs.gesture``; its training applies the same kernel to the same events, after augmentation).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from runtime.errors import GraphError
from runtime.events import SPIKE_EVENT
from runtime.packet import Packet
from runtime.spec import StreamSpec, spike_spec

from .motion_kernels import motion_directions

__all__ = ["MotionDirections", "MotionState", "directions_of"]


@dataclass(frozen=True)
class MotionDirections:
    """The stage (settings are saved in the gesture network file's ``meta.motion``)."""

    n_dir: int = 8
    radius: int = 2
    window_us: int = 150_000
    min_age_us: int = 2_000
    min_support: int = 2
    polarity: int = 0  # 1: directions × ON/OFF (2 · n_dir channels)

    def __post_init__(self):
        if not 2 <= int(self.n_dir) <= 64:
            raise ValueError(f"MotionDirections.n_dir: expected 2..64 direction channels, got {self.n_dir}")
        if not 1 <= int(self.radius) <= 8:
            raise ValueError(f"MotionDirections.radius: expected 1..8 px, got {self.radius}")
        if not 0 <= int(self.min_age_us) < int(self.window_us):
            raise ValueError(f"MotionDirections: expected 0 ≤ min_age_us < window_us, got {self.min_age_us} and "
                             f"{self.window_us}")
        if int(self.min_support) < 1:
            raise ValueError(f"MotionDirections.min_support: expected ≥ 1 neighbour, got {self.min_support}")
        if int(self.polarity) not in (0, 1):
            raise ValueError(f"MotionDirections.polarity: expected 0 or 1, got {self.polarity}")

    @property
    def channels(self) -> int:
        """Output channels: the directions, twice (OFF bank, ON bank) with ``polarity``."""
        return int(self.n_dir) * (2 if int(self.polarity) else 1)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "MotionDirections":
        known = {"n_dir", "radius", "window_us", "min_age_us", "min_support", "polarity"}
        extra = set(d) - known
        if extra:
            raise ValueError(f"motion settings: unknown field(s) {sorted(extra)}; expected some of {sorted(known)}")
        return cls(**{k: int(v) for k, v in d.items()})

    def to_dict(self) -> dict[str, int]:
        d = {"n_dir": int(self.n_dir), "radius": int(self.radius), "window_us": int(self.window_us),
             "min_age_us": int(self.min_age_us), "min_support": int(self.min_support)}
        if int(self.polarity):  # absent = 0: files written before the field load unchanged
            d["polarity"] = 1
        return d

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "spike" or len(spec.shape) != 3:
            raise GraphError(f"MotionDirections: expects a (C, H, W) spike stream, got {spec.describe()}")
        if spec.shape[1] != spec.shape[2]:
            raise GraphError(f"MotionDirections: expects a square map, got {spec.shape[1]}×{spec.shape[2]}")
        if int(self.polarity) and spec.shape[0] != 2:
            raise GraphError(f"MotionDirections(polarity=1): expects ON/OFF channels (2, H, W), got {spec.describe()}")
        return spike_spec((self.channels, int(spec.shape[1]), int(spec.shape[2])))

    def init(self, spec: StreamSpec) -> "MotionState":
        self.out_spec(spec)
        _, h, w = (int(s) for s in spec.shape)
        return MotionState(np.full(h * w, np.iinfo(np.int64).min // 2, np.int64), w)

    def step(self, state: "MotionState", packet: Packet) -> tuple["MotionState", list[Packet]]:
        ev = packet.events
        if ev.shape[0] == 0:
            return state, [packet.derive(np.zeros(0, SPIKE_EVENT))]
        pos = (ev["addr"] % (state.side * state.side)).astype(np.int64)
        t = np.ascontiguousarray(ev["t"], np.int64)
        d = np.empty(t.shape[0], np.int32)
        state.looks += motion_directions(t, pos, state.last_t, state.side, int(self.radius), int(self.window_us),
                                         int(self.min_age_us), int(self.n_dir), int(self.min_support), d)
        keep = d >= 0
        out = np.empty(int(keep.sum()), SPIKE_EVENT)
        out["t"] = t[keep]
        out["addr"] = _out_addr(self, d, ev["addr"], pos, keep, state.side)
        state.dropped += int(t.shape[0] - out.shape[0])
        return state, [packet.derive(out)]

    def finish(self, state: "MotionState") -> list[Packet]:
        return []

    def counters(self, state: "MotionState") -> dict[str, int]:
        # neighbour look-ups are the stage's work: reported with the other front-end work, never as synaptic ops
        return {"frontend_macs": int(state.looks), "filtered_events": int(state.dropped)}


@dataclass
class MotionState:
    last_t: np.ndarray
    side: int
    looks: int = 0
    dropped: int = 0


def directions_of(stage: MotionDirections, t_us: np.ndarray, addr: np.ndarray, side: int
                  ) -> tuple[np.ndarray, np.ndarray]:
    """(t, addr) of a whole sorted stream through the stage with a fresh state (what the graph computes packet
    by packet; the training code uses it on augmented clips)."""
    t = np.ascontiguousarray(t_us, np.int64)
    pos = (np.asarray(addr, np.int64) % (side * side))
    last = np.full(side * side, np.iinfo(np.int64).min // 2, np.int64)
    d = np.empty(t.shape[0], np.int32)
    motion_directions(t, np.ascontiguousarray(pos), last, side, int(stage.radius), int(stage.window_us),
                      int(stage.min_age_us), int(stage.n_dir), int(stage.min_support), d)
    keep = d >= 0
    return t[keep], _out_addr(stage, d, addr, pos, keep, side).astype(np.int32)


def _out_addr(stage: MotionDirections, d: np.ndarray, addr: np.ndarray, pos: np.ndarray, keep: np.ndarray,
              side: int) -> np.ndarray:
    """Output addresses of the kept events: direction channel (in the event's polarity bank with ``polarity``) at
    the event's pixel; the input addresses are only read when the polarity is kept."""
    ch = d[keep].astype(np.int64)
    if int(stage.polarity):
        ch += int(stage.n_dir) * (np.asarray(addr, np.int64)[keep] // (side * side))
    return ch * (side * side) + pos[keep]
