"""The same network, clock-driven: plain numpy over time bins (the reference and the baseline).

Bin ``k`` stands for stream time ``k · bin_us``: every input event of the bin is taken to arrive at the bin's
start, so a stream whose events all lie on bin boundaries gives the event-driven engine and this reference the
same spikes. Per bin and layer: ``v ← v · exp(-bin_us / tau)`` (LIF), add the input current of the bin (inputs to
refractory neurons are dropped), test the threshold, reset; spikes leave in the same bin (plus ``delay_us`` /
``bin_us`` bins). Also converts events to bins and back.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .gates import SpatialGate, TemporalGate, grid_of
from .layers import Conv2d, Flatten, Linear
from .network import Network

__all__ = ["DenseResult", "run_dense", "bin_addresses", "bins_to_spikes", "dense_conv2d", "dense_sumpool2d"]


@dataclass
class DenseResult:
    spikes: dict  # layer name -> (T, *shape) spike counts (after the layer's channel gate)
    potentials: dict  # layer name -> (*shape) potentials after the last bin
    output: np.ndarray  # last layer's spikes (T, *shape)
    gated: dict  # gate name -> number of events / spikes dropped
    macs: int  # multiply-accumulates performed (dense: every output × fan-in per bin)


def dense_conv2d(x: np.ndarray, w: np.ndarray, stride, padding) -> np.ndarray:
    """Cross-correlation of ``x`` (C, H, W) with ``w`` (O, C, kh, kw), as torch.nn.functional.conv2d."""
    ph, pw = padding
    xp = np.pad(x, ((0, 0), (ph, ph), (pw, pw)))
    win = sliding_window_view(xp, w.shape[2:], axis=(1, 2))[:, :: stride[0], :: stride[1]]  # C, OH, OW, kh, kw
    return np.einsum("chwij,ocij->ohw", win, w, optimize=True)


def dense_sumpool2d(x: np.ndarray, kernel, stride) -> np.ndarray:
    win = sliding_window_view(x, tuple(kernel), axis=(1, 2))[:, :: stride[0], :: stride[1]]
    return win.sum(axis=(3, 4))


def _spatial_keep(g: SpatialGate, x: np.ndarray, act: np.ndarray, decay: float) -> np.ndarray:
    c, h, w = x.shape
    ty, tx = -(-h // g.tile_px), -(-w // g.tile_px)
    xp = np.zeros((c, ty * g.tile_px, tx * g.tile_px))
    xp[:, :h, :w] = x
    counts = xp.reshape(c, ty, g.tile_px, tx, g.tile_px).sum(axis=(0, 2, 4)).reshape(-1)
    act *= decay
    act += counts
    tw = np.ones(ty * tx) if g.tile_weight is None else g.tile_weight.reshape(-1)
    score = tw * act
    keep = (score >= g.min_activity) & (score >= g.rel_threshold * act.sum() / act.shape[0])
    mask = np.repeat(np.repeat(keep.reshape(ty, tx), g.tile_px, 0), g.tile_px, 1)[:h, :w]
    return mask


def run_dense(net: Network, counts: np.ndarray, bin_us: int = 1000) -> DenseResult:
    """Run ``net`` clock-driven over input spike counts ``(T, *net.input_shape)`` at ``bin_us`` per bin."""
    counts = np.asarray(counts, dtype=np.float64)
    if counts.shape[1:] != net.input_shape:
        raise ValueError(f"run_dense: counts have shape {counts.shape[1:]} per bin, network input is {net.input_shape}")
    n_bins = counts.shape[0]
    gated = {}
    # input gates (bins must tile the temporal gate's windows)
    x_all = counts.copy()
    for g in net.input_gates:
        if isinstance(g, SpatialGate):
            grid = grid_of(net.input_shape)
            act = np.zeros((-(-grid[1] // g.tile_px)) * (-(-grid[2] // g.tile_px)))
            decay = math.exp(-bin_us / g.tau_us)
            dropped = 0
            for k in range(n_bins):
                xk = x_all[k].reshape(grid)
                m = _spatial_keep(g, xk, act, decay)
                dropped += int(xk[:, ~m].sum())
                x_all[k] = (xk * m).reshape(x_all.shape[1:])
            gated["spatial"] = dropped
        elif isinstance(g, TemporalGate):
            if g.window_us % bin_us:
                raise ValueError(f"run_dense: TemporalGate window {g.window_us} µs is not a multiple of {bin_us} µs")
            wb = g.window_us // bin_us
            beta = 1.0 - 1.0 / g.ema_windows
            ema = 0.0
            dropped = 0
            for k0 in range(0, n_bins, wb):
                n = x_all[k0: k0 + wb].sum()
                ok = n >= g.min_events and n >= g.rel_threshold * ema
                if not ok:
                    dropped += int(n)
                    x_all[k0: k0 + wb] = 0
                ema = beta * ema + (1 - beta) * n
            gated["temporal"] = dropped
    spikes, potentials = {}, {}
    macs = 0
    shapes = net.shapes
    cur = x_all
    for layer, s_in, s_out in zip(net.layers, shapes[:-1], shapes[1:]):
        if isinstance(layer, Flatten):
            cur = cur.reshape(n_bins, *s_out)
            continue
        n_out = int(np.prod(s_out))
        macs += n_bins * n_out * layer.fan_in(s_in)
        out = np.zeros((n_bins, *s_out))
        neuron = layer.neuron
        if neuron is None:  # addressing-only pool
            for k in range(n_bins):
                out[k] = dense_sumpool2d(cur[k], layer.kernel_size, layer.stride)
        else:
            v = np.zeros(s_out)
            refr = np.zeros(s_out, dtype=np.int64)
            m_bins = max(0, math.ceil(neuron.refractory_us / bin_us) - 1)
            alpha = 1.0 if neuron.tau_us is None else math.exp(-bin_us / neuron.tau_us)
            theta = neuron.threshold
            for k in range(n_bins):
                xk = cur[k]
                if isinstance(layer, Conv2d):
                    cur_in = dense_conv2d(xk, layer.weight.astype(np.float64), layer.stride, layer.padding)
                elif isinstance(layer, Linear):
                    cur_in = layer.weight.astype(np.float64) @ xk
                    if layer.recurrent_weight is not None:
                        d = layer.recurrent_delay_us // bin_us
                        if layer.recurrent_delay_us % bin_us or d < 1:
                            raise ValueError(f"run_dense: layer '{layer.name}' recurrent delay "
                                             f"{layer.recurrent_delay_us} µs is not a multiple of {bin_us} µs")
                        if k - d >= 0:
                            cur_in = cur_in + layer.recurrent_weight.astype(np.float64) @ out[k - d]
                else:
                    cur_in = dense_sumpool2d(xk, layer.kernel_size, layer.stride)
                blocked = refr > 0
                refr = np.maximum(refr - 1, 0)
                v = v * alpha + np.where(blocked, 0.0, cur_in)
                if neuron.reset == "subtract":
                    s = np.where(v >= theta, np.floor(v / theta), 0.0)
                    v = v - s * theta
                    fix = v >= theta  # rounding of the division, as the engine does
                    s = s + fix
                    v = v - fix * theta
                else:
                    s = (v >= theta).astype(np.float64)
                    v = np.where(s > 0, 0.0, v)
                refr = np.where(s > 0, m_bins, refr)
                out[k] = s
            potentials[layer.name] = v
        if layer.delay_us:
            d = layer.delay_us // bin_us
            if layer.delay_us % bin_us:
                raise ValueError(f"run_dense: layer '{layer.name}' delay {layer.delay_us} µs is not a multiple of "
                                 f"{bin_us} µs")
            shifted = np.zeros_like(out)
            shifted[d:] = out[: n_bins - d]
            out_delayed = shifted
        else:
            out_delayed = out
        gate = layer.channel_gate
        if gate is not None:
            beta = math.exp(-bin_us / gate.tau_us)
            r = np.zeros(s_out[0])
            dropped = 0
            gated_out = out_delayed.copy()
            for k in range(n_bins):
                per_c = out[k].reshape(s_out[0], -1).sum(axis=1)  # gate scores at the spike time
                r = r * beta + per_c
                if per_c.sum() == 0:
                    continue
                score = gate.weight * r / (r.sum() / r.shape[0]) + gate.bias
                drop = score < 0
                kd = k + (layer.delay_us // bin_us)
                if kd < n_bins:
                    dropped += int(gated_out[kd][drop].sum())
                    gated_out[kd][drop] = 0
            gated[layer.name] = dropped
            out_delayed = gated_out
        spikes[layer.name] = out_delayed
        cur = out_delayed
    return DenseResult(spikes, potentials, cur, gated, int(macs))


def bin_addresses(t_us: np.ndarray, addr: np.ndarray, shape, bin_us: int, n_bins: int | None = None,
                  t0_us: int = 0) -> np.ndarray:
    """Spike counts ``(T, *shape)`` of events (times, flat addresses) in bins ``[t0 + k·bin_us, ...)``."""
    t_us = np.asarray(t_us, np.int64)
    k = (t_us - t0_us) // bin_us
    if n_bins is None:
        n_bins = int(k.max()) + 1 if k.shape[0] else 0
    size = int(np.prod(shape))
    ok = (k >= 0) & (k < n_bins)
    flat = np.bincount(k[ok] * size + np.asarray(addr, np.int64)[ok], minlength=n_bins * size)
    return flat.reshape(n_bins, *shape).astype(np.float64)


def bins_to_spikes(counts: np.ndarray, bin_us: int, t0_us: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Events on bin boundaries from integer counts ``(T, *shape)``: (times, flat addresses), sorted by time."""
    c = np.asarray(counts).reshape(counts.shape[0], -1).astype(np.int64)
    kk, aa = np.nonzero(c)
    reps = c[kk, aa]
    t = np.repeat(t0_us + kk * bin_us, reps)
    a = np.repeat(aa, reps)
    return t.astype(np.int64), a.astype(np.int32)
