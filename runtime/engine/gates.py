"""Causal attention gates after the Speck chip's dynamic computing (Yao et al., Nat. Commun. 15:4464, 2024).

Scores use only the past and the present (all events of the current timestamp, or of the current window once it
has closed); dropped events are counted with the synaptic ops they would have cost; the gates' own work is
``gate_ops``. Each gate is a stage of its own (for any DVS or spike stream) and can also sit at the input of a
``Network`` (``Network(..., input_gates=(SpatialGate(...), TemporalGate(...)))``), where the ops saved are the
exact fan-out of the first layer. The channel gate lives inside the network: ``runtime.engine.layers.ChannelGate``.

* ``TemporalGate``: the stream is cut into windows ``[k·W, (k+1)·W)``; a window is kept whole or dropped whole
  once it has closed, from its event count against an absolute floor and the running mean of past windows.
  It holds events back until their window closes: it adds up to ``window_us`` of latency (the bench measures it).
* ``SpatialGate``: running activity per tile (``tile_px`` × ``tile_px`` pixels, exact exponential decay
  ``tau_us``, one exp per distinct timestamp); an event is kept when its tile's (weighted) activity reaches an
  absolute floor and ``rel_threshold`` × the mean tile activity. No events are held back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ..packet import Packet
from ..spec import StreamSpec
from .kernels import gates as gk
from .kernels import snn as sk

__all__ = ["TemporalGate", "SpatialGate", "GateState", "grid_of"]


def grid_of(spec_or_shape) -> tuple[int, int, int]:
    """(C, H, W) addressing grid of a DVS spec (tonic's (W, H, 2)), a spike spec or a shape."""
    if isinstance(spec_or_shape, StreamSpec):
        if spec_or_shape.kind == "dvs":
            w, h, p = spec_or_shape.shape
            return int(p), int(h), int(w)
        if spec_or_shape.kind == "audio":
            ch, p = spec_or_shape.shape
            return int(p), 1, int(ch)
        shape = spec_or_shape.shape
    else:
        shape = tuple(spec_or_shape)
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 2:
        return int(shape[0]), 1, int(shape[1])
    if len(shape) == 1:
        return 1, 1, int(shape[0])
    raise ValueError(f"gate: cannot address a stream of shape {shape}; expected (C, H, W), (C, N) or (N,)")


@dataclass
class GateState:
    """Mutable state of one gate (inside a Network or as a stage)."""

    kind: str
    ist: np.ndarray  # int64 scalars
    fst: np.ndarray  # float64 scalars
    act: np.ndarray  # spatial: tile traces
    tile_w: np.ndarray
    grid: tuple[int, int, int]
    pending_t: np.ndarray  # temporal: events held until their window closes
    pending: np.ndarray | None = None  # payload held with them (records or addresses)
    wm_out: int | None = None
    wm_in: int | None = None
    events_in: int = 0
    gated_events: int = 0
    gated_ops_saved: int = 0
    gate_ops: int = 0
    hold_us_sum: int = 0  # Σ (decision time − event time) over the events let through (temporal)
    hold_us_max: int = 0
    spec: StreamSpec | None = None


def _cat(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Concatenate two arrays of one dtype (np.concatenate is slow on structured dtypes)."""
    out = np.empty(a.shape[0] + b.shape[0], dtype=a.dtype)
    out[: a.shape[0]] = a
    out[a.shape[0]:] = b
    return out


def _encode_for_gate(events: np.ndarray, spec: StreamSpec, grid) -> tuple[np.ndarray, np.ndarray]:
    c, h, w = grid
    if spec.kind == "dvs":
        t, a, bad = sk.encode_dvs(events["x"], events["y"], events["p"], events["t"], w, h)
    elif spec.kind == "audio":
        t, a, bad = sk.encode_audio(events["x"], events["p"], events["t"], w)
    elif spec.kind == "spike":
        t, a, bad = sk.encode_flat(events["addr"], events["t"], c * h * w)
    else:
        raise ValueError(f"gate: cannot gate a '{spec.kind}' stream; expected dvs, audio or spike events")
    if bad >= 0:
        raise ValueError(f"gate: event {bad} lies outside the stream's geometry {spec.describe()}: {events[bad]}")
    return t, a


class _GateStage:
    """Stage protocol shared by both gates: events are filtered record by record."""

    fanout_ops: int

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        grid_of(spec)
        return spec

    def step(self, state: GateState, packet: Packet):
        spec = state.spec
        t, a = _encode_for_gate(packet.events, spec, state.grid)
        keep_t, kept, wm, dropped = self.apply(state, t, packet.events, packet.t_end_us, a=a)
        state.gated_ops_saved += int(dropped.shape[0]) * int(self.fanout_ops)
        if kept.flags.writeable:
            kept.flags.writeable = False
        return state, [Packet(kept, wm)]

    def finish(self, state: GateState):
        if self.kind != "temporal" or state.pending_t.shape[0] == 0:
            return []
        keep_t, kept, wm, dropped = self.apply(state, np.empty(0, np.int64), state.pending[:0], state.wm_in,
                                               final=True)
        state.gated_ops_saved += int(dropped.shape[0]) * int(self.fanout_ops)
        if kept.flags.writeable:
            kept.flags.writeable = False
        return [Packet(kept, int(state.wm_in))]

    def counters(self, state: GateState) -> dict:
        return {"gated_events": state.gated_events, "gated_ops_saved": state.gated_ops_saved,
                "gate_ops": state.gate_ops}


@dataclass(frozen=True)
class TemporalGate(_GateStage):
    """Drop whole low-salience windows: keep window k when its count ``n ≥ min_events`` and
    ``n ≥ rel_threshold · ema`` (``ema``: running mean count of the windows before it, time constant
    ``ema_windows`` windows). ``fanout_ops``: ops one event costs downstream, for ``gated_ops_saved`` when used as
    a stand-alone stage (a Network computes them exactly)."""

    window_us: int = 2000
    min_events: int = 2
    rel_threshold: float = 0.0
    ema_windows: float = 50.0
    fanout_ops: int = 0

    kind = "temporal"

    def __post_init__(self):
        if int(self.window_us) != self.window_us or self.window_us < 1:
            raise ValueError(f"TemporalGate: window_us must be an int ≥ 1, got {self.window_us}")
        if self.min_events < 0 or self.rel_threshold < 0:
            raise ValueError("TemporalGate: min_events and rel_threshold must be ≥ 0, got "
                             f"{self.min_events}, {self.rel_threshold}")
        if not self.ema_windows >= 1:
            raise ValueError(f"TemporalGate: ema_windows must be ≥ 1, got {self.ema_windows}")

    def init(self, spec: StreamSpec) -> GateState:
        state = self.make_state(grid_of(spec))
        state.spec = spec
        state.pending = np.empty(0, dtype=spec.dtype)
        return state

    def make_state(self, grid) -> GateState:
        st = GateState("temporal", np.array([-1], np.int64), np.zeros(3), np.zeros(0), np.zeros(0), grid,
                       np.empty(0, np.int64))
        gk.temporal_gate(np.empty(0, np.int64), 0, False, 1, 1, 0.0, 0.5, np.array([-1], np.int64),
                         np.zeros(3), np.zeros(0, np.bool_))
        return st

    def apply(self, state: GateState, t: np.ndarray, payload: np.ndarray, wm: int, *, a=None, final=False):
        """Feed events (times ``t``, any ``payload`` array aligned with them) up to watermark ``wm``.

        Returns (times, payload, output watermark, dropped payload) of the windows decided now."""
        n_new = t.shape[0]
        if state.pending_t.shape[0]:
            t = _cat(state.pending_t, t)
            payload = _cat(state.pending, payload)
        state.events_in += n_new
        state.wm_in = int(wm)
        wm_out = int(wm) if final else (int(wm) // self.window_us) * self.window_us
        if state.wm_out is not None:
            wm_out = max(wm_out, state.wm_out)
        state.wm_out = wm_out
        keep = np.empty(t.shape[0], dtype=np.bool_)
        beta = 1.0 - 1.0 / float(self.ema_windows)
        k, kept, ops = gk.temporal_gate(t, int(wm), final, int(self.window_us), int(self.min_events),
                                        float(self.rel_threshold), beta, state.ist, state.fst, keep)
        state.gate_ops += int(ops)
        state.hold_us_sum = int(state.fst[1])
        state.hold_us_max = int(state.fst[2])
        state.pending_t = t[k:]
        state.pending = payload[k:]
        if kept == k:  # every decided window kept (the usual case): no masks to apply
            return t[:k], payload[:k], wm_out, payload[:0]
        keep = keep[:k]
        dropped = payload[:k][~keep]
        state.gated_events += int(k - kept)
        return t[:k][keep], payload[:k][keep], wm_out, dropped

    @staticmethod
    def calibrate(t_us: np.ndarray, keep_fraction: float, window_us: int = 2000, ema_windows: float = 50.0
                  ) -> "TemporalGate":
        """A gate whose absolute floor keeps about ``keep_fraction`` of the events of the sample stream ``t_us``
        (the quietest windows go first)."""
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"TemporalGate.calibrate: keep_fraction must be in (0, 1], got {keep_fraction}")
        t_us = np.asarray(t_us, np.int64)
        if t_us.shape[0] == 0:
            return TemporalGate(window_us, 0, 0.0, ema_windows)
        _, counts = np.unique(t_us // window_us, return_counts=True)
        counts = np.sort(counts)
        dropped_cum = np.concatenate([[0], np.cumsum(counts)])  # events dropped with floor = counts[i]
        budget = (1.0 - keep_fraction) * t_us.shape[0]
        i = int(np.searchsorted(dropped_cum, budget, side="right")) - 1
        floor = int(counts[i]) if i < counts.shape[0] else int(counts[-1]) + 1
        return TemporalGate(window_us, floor, 0.0, ema_windows)


@dataclass(frozen=True, eq=False)
class SpatialGate(_GateStage):
    """Drop events in low-activity tiles: keep an event when its tile's activity (events, exponentially decayed
    with ``tau_us``, times ``tile_weight``) is ≥ ``min_activity`` and ≥ ``rel_threshold`` × the mean tile
    activity. ``tile_weight``: learned or calibrated per-tile prior, shape (tiles_y, tiles_x), default ones."""

    tile_px: int = 8
    tau_us: float = 20_000.0
    min_activity: float = 1.0
    rel_threshold: float = 0.5
    tile_weight: np.ndarray | None = None
    fanout_ops: int = 0

    kind = "spatial"

    def __post_init__(self):
        if int(self.tile_px) != self.tile_px or self.tile_px < 1:
            raise ValueError(f"SpatialGate: tile_px must be an int ≥ 1, got {self.tile_px}")
        if not (self.tau_us > 0 and math.isfinite(self.tau_us)):
            raise ValueError(f"SpatialGate: tau_us must be > 0, got {self.tau_us}")
        if self.min_activity < 0 or self.rel_threshold < 0:
            raise ValueError("SpatialGate: min_activity and rel_threshold must be ≥ 0")
        if self.tile_weight is not None:
            w = np.array(self.tile_weight, dtype=np.float64)
            if w.ndim != 2 or not np.all(np.isfinite(w)):
                raise ValueError(f"SpatialGate: tile_weight must be a finite 2-D array, got shape {w.shape}")
            w.flags.writeable = False
            object.__setattr__(self, "tile_weight", w)

    def tiles(self, grid) -> tuple[int, int]:
        _, h, w = grid
        return -(-h // self.tile_px), -(-w // self.tile_px)

    def init(self, spec: StreamSpec) -> GateState:
        state = self.make_state(grid_of(spec))
        state.spec = spec
        return state

    def make_state(self, grid) -> GateState:
        ty, tx = self.tiles(grid)
        if self.tile_weight is None:
            tw = np.ones(ty * tx)
        else:
            if self.tile_weight.shape != (ty, tx):
                raise ValueError(f"SpatialGate: tile_weight has shape {self.tile_weight.shape}, the input's tiles "
                                 f"of {self.tile_px} px form a ({ty}, {tx}) grid")
            tw = np.ascontiguousarray(self.tile_weight.reshape(-1))
        st = GateState("spatial", np.zeros(1, np.int64), np.zeros(2), np.zeros(ty * tx), tw, grid,
                       np.empty(0, np.int64))
        z = np.empty(0, np.int64)
        gk.tiles_of(np.empty(0, np.int32), 1, 1, 1, 1)
        gk.spatial_gate(z, z, 1.0, 0.0, 0.0, np.ones(1), np.zeros(1), np.zeros(2), np.zeros(0, np.bool_))
        return st

    def apply(self, state: GateState, t: np.ndarray, payload: np.ndarray, wm: int, *, a=None, final=False):
        """Filter events (times ``t``, flat addresses ``a`` over the grid, ``payload`` aligned with them).

        Returns (times, payload, watermark, dropped payload)."""
        if a is None:
            a = payload
        _, h, w = state.grid
        tile = gk.tiles_of(a, h, w, int(self.tile_px), -(-w // self.tile_px))
        keep = np.empty(t.shape[0], dtype=np.bool_)
        kept, ops = gk.spatial_gate(t, tile, float(self.tau_us), float(self.min_activity), float(self.rel_threshold),
                                    state.tile_w, state.act, state.fst, keep)
        n = t.shape[0]
        state.events_in += n
        state.gate_ops += int(ops)
        state.wm_in = state.wm_out = int(wm)
        if kept == n:
            return t, payload, int(wm), payload[:0]
        state.gated_events += int(n - kept)
        return t[keep], payload[keep], int(wm), payload[~keep]

    def calibrate(self, spec_or_shape, t_us: np.ndarray, addr: np.ndarray, keep_fraction: float,
                  iters: int = 30) -> "SpatialGate":
        """This gate with ``rel_threshold`` set (by bisection on a sample stream: sorted times ``t_us`` and flat
        addresses ``addr`` over the grid) so that about ``keep_fraction`` of the events pass."""
        if not 0 < keep_fraction <= 1:
            raise ValueError(f"SpatialGate.calibrate: keep_fraction must be in (0, 1], got {keep_fraction}")
        grid = grid_of(spec_or_shape)
        t_us = np.ascontiguousarray(t_us, np.int64)
        addr = np.ascontiguousarray(addr, np.int32)

        def kept(rel: float) -> float:
            g = replace(self, rel_threshold=rel)
            st = g.make_state(grid)
            kt, _, _, _ = g.apply(st, t_us, addr, int(t_us[-1]) + 1 if t_us.shape[0] else 0)
            return kt.shape[0] / max(1, t_us.shape[0])

        lo, hi = 0.0, 1.0
        while kept(hi) > keep_fraction and hi < 1e6:
            hi *= 2
        for _ in range(iters):
            mid = 0.5 * (lo + hi)
            if kept(mid) > keep_fraction:
                lo = mid
            else:
                hi = mid
        return replace(self, rel_threshold=lo)
