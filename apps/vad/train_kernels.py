"""numba kernels for training the VAD network: the time-stepped forward pass and its backward pass (BPTT with a
surrogate gradient), used by ``apps.vad.model.SnnVadFunction`` as a PyTorch autograd function.

Model, one step per 1 ms bin (the engine's event-driven model when every input event of a bin shares one
timestamp, as the front end's do, and recurrent spikes come back one bin later):

    v1 = a1 · v1 + x_t · W1 + s1_{t-1} · R        hidden LIF, reset to zero (one spike per test at most, so
    s1 = [v1 ≥ th1];  v1 = 0 where s1                 recurrent excitation can never run away)
    v2 = a2 · v2 + s1 · W2                          readout LIF population, reset to zero
    s2 = [v2 ≥ th2];  v2 = 0 where s2
    y  = ay · y + Σ_k s2_k                          speech trace (the segmenter's score is 1 - exp(-y / y_scale))

Backward: ds/dv is replaced by the fast-sigmoid surrogate 1 / (1 + slope·|v - th|)², and the reset is treated as a
constant: dv_after/dv_before = 1 - s (the membrane's path to the next bin is cut where it spiked). Weight layouts are (in, out). The slow reference twin is plain PyTorch autograd
in ``tests/test_apps_vad_model.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["snn_forward", "snn_backward"]


@njit(cache=True, nogil=True)
def _spikes(v, th):
    return 1.0 if v >= th else 0.0


@njit(cache=True, nogil=True)
def snn_forward(x, w1, r, w2, a1, a2, ay, th1, th2, v1_out, s1_out, v2_out, y_out):
    """x: (B, T, I) input event counts; writes v1 (before reset), s1, v2 (before reset), y. Returns synaptic ops."""
    n_b, n_t, n_i = x.shape
    n_h = w1.shape[1]
    n_k = w2.shape[1]
    ops = 0
    v1 = np.zeros(n_h)
    v2 = np.zeros(n_k)
    cur = np.zeros(n_h)
    for b in range(n_b):
        v1[:] = 0.0
        v2[:] = 0.0
        y = 0.0
        for t in range(n_t):
            for h in range(n_h):
                cur[h] = a1 * v1[h]
            for i in range(n_i):
                c = x[b, t, i]
                if c != 0.0:
                    ops += n_h
                    for h in range(n_h):
                        cur[h] += c * w1[i, h]
            if t > 0:
                for i in range(n_h):
                    c = s1_out[b, t - 1, i]
                    if c != 0.0:
                        ops += n_h
                        for h in range(n_h):
                            cur[h] += c * r[i, h]
            for k in range(n_k):
                v2[k] = a2 * v2[k]
            for h in range(n_h):
                v = cur[h]
                v1_out[b, t, h] = v
                s = _spikes(v, th1)
                s1_out[b, t, h] = s
                v1[h] = 0.0 if s != 0.0 else v
                if s != 0.0:
                    ops += n_k
                    for k in range(n_k):
                        v2[k] += s * w2[h, k]
            tot = 0.0
            for k in range(n_k):
                v = v2[k]
                v2_out[b, t, k] = v
                s = _spikes(v, th2)
                v2[k] = 0.0 if s != 0.0 else v
                tot += s
            y = ay * y + tot
            y_out[b, t] = y
    return ops


@njit(cache=True, nogil=True)
def snn_backward(x, w1, r, w2, a1, a2, ay, th1, th2, slope, v1, s1, v2, gy, g_s1, gw1, gr, gw2):
    """Accumulates dL/dW1, dL/dR, dL/dW2 into gw1, gr, gw2 given dL/dy (B, T) and a constant dL/ds1 ``g_s1``."""
    n_b, n_t, n_i = x.shape
    n_h = w1.shape[1]
    n_k = w2.shape[1]
    gv1 = np.zeros(n_h)
    gv1_next = np.zeros(n_h)
    gv2 = np.zeros(n_k)
    gv2_next = np.zeros(n_k)
    for b in range(n_b):
        gv1_next[:] = 0.0
        gv2_next[:] = 0.0
        gacc = 0.0
        for t in range(n_t - 1, -1, -1):
            gacc = gy[b, t] + ay * gacc
            for k in range(n_k):
                u = 1.0 + slope * abs(v2[b, t, k] - th2)
                keep = 1.0 - _spikes(v2[b, t, k], th2)  # the reset cuts the path to the next bin
                gv2[k] = gacc / (u * u) + a2 * keep * gv2_next[k]
            for h in range(n_h):
                g = g_s1
                for k in range(n_k):
                    g += gv2[k] * w2[h, k]
                for j in range(n_h):
                    g += gv1_next[j] * r[h, j]
                u = 1.0 + slope * abs(v1[b, t, h] - th1)
                gv1[h] = g / (u * u) + a1 * (1.0 - s1[b, t, h]) * gv1_next[h]
            for h in range(n_h):
                c = s1[b, t, h]
                if c != 0.0:
                    for k in range(n_k):
                        gw2[h, k] += c * gv2[k]
            if t > 0:
                for i in range(n_h):
                    c = s1[b, t - 1, i]
                    if c != 0.0:
                        for h in range(n_h):
                            gr[i, h] += c * gv1[h]
            for i in range(n_i):
                c = x[b, t, i]
                if c != 0.0:
                    for h in range(n_h):
                        gw1[i, h] += c * gv1[h]
            for h in range(n_h):
                gv1_next[h] = gv1[h]
            for k in range(n_k):
                gv2_next[k] = gv2[k]
    return 0
