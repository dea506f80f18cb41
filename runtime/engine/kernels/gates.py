"""numba kernels of the causal attention gates (temporal windows, spatial tiles)."""

from __future__ import annotations

import math

import numpy as np
from numba import njit

RENORM = 30.0


@njit(cache=True, nogil=True)
def temporal_gate(t, wm, final, window_us, min_events, rel, beta, wst, fst, keep):
    """Decide every window ``[k·W, (k+1)·W)`` that the watermark ``wm`` has closed (all of them if ``final``).

    A window is kept when its event count ``n ≥ min_events`` and ``n ≥ rel · ema``, ``ema`` being the running
    mean of the counts of the windows before it (empty windows included: ``ema ← beta·ema + (1-beta)·n``).
    ``wst[0]`` is the next window not yet folded into ``ema`` (-1 before the first event), ``fst[0]`` the ema,
    ``fst[1]``/``fst[2]`` the sum/max over kept events of the stream time they were held (decision − t).
    Writes ``keep[:k]`` for the first ``k`` events (those in closed windows); returns (k, kept, gate_ops)."""
    n = t.shape[0]
    i = 0
    ops = 0
    kept = 0
    while i < n:
        k = t[i] // window_us
        end = (k + 1) * window_us
        if end > wm and not final:
            break
        j = i
        while j < n and t[j] < end:
            j += 1
        cnt = j - i
        if wst[0] >= 0 and k > wst[0]:
            fst[0] *= beta ** (k - wst[0])
        ok = cnt >= min_events and cnt >= rel * fst[0]
        decided = end if end < wm else wm
        for e in range(i, j):
            keep[e] = ok
            if ok:
                hold = decided - t[e]
                fst[1] += hold
                if hold > fst[2]:
                    fst[2] = hold
        if ok:
            kept += cnt
        fst[0] = beta * fst[0] + (1.0 - beta) * cnt
        wst[0] = k + 1
        ops += cnt + 2  # one count per event, one comparison and one ema update per window
        i = j
    return i, kept, ops


@njit(cache=True, nogil=True)
def tiles_of(a, height, width, tile_px, tiles_x):
    """Tile index of each flat address over (C, height, width) (channels share tiles)."""
    n = a.shape[0]
    out = np.empty(n, dtype=np.int64)
    hw = height * width
    for i in range(n):
        pos = a[i] % hw
        y = pos // width
        x = pos - y * width
        out[i] = (y // tile_px) * tiles_x + x // tile_px
    return out


@njit(cache=True, nogil=True)
def spatial_gate(t, tile, tau_us, min_activity, rel, tile_w, act, fst, keep):
    """Per-tile running activity (exact exponential decay, time-invariant frame) and the keep decision.

    For each group of simultaneous events all tile traces are updated first; an event is kept when its tile's
    ``w·a ≥ min_activity`` and ``w·a ≥ rel · mean(a)``. ``fst = [tref, sum of traces]``. Returns (kept, gate_ops)."""
    n = t.shape[0]
    n_tiles = act.shape[0]
    i = 0
    ops = 0
    kept = 0
    while i < n:
        tg = t[i]
        j = i
        while j < n and t[j] == tg:
            j += 1
        x = (tg - fst[0]) / tau_us
        if x > RENORM:
            f = math.exp(-x)
            for k in range(n_tiles):
                act[k] *= f
            fst[1] *= f
            fst[0] = tg
            x = 0.0
        g = math.exp(x)
        for e in range(i, j):
            act[tile[e]] += g
            fst[1] += g
        floor_g = min_activity * g
        rel_g = rel * fst[1] / n_tiles
        for e in range(i, j):
            s = tile_w[tile[e]] * act[tile[e]]
            keep[e] = s >= floor_g and s >= rel_g
            kept += keep[e]
        ops += 2 * (j - i)
        i = j
    return kept, ops
