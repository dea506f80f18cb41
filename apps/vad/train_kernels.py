"""numba kernels for training the VAD network: the time-stepped forward pass of a chain of spiking Linear layers
and its backward pass (BPTT with a surrogate gradient), used by ``apps.vad.model.SnnVadFunction``.

Model, one step per 1 ms bin (the engine's event-driven model when every input event of a bin shares one
timestamp, as the front end's do, and recurrent spikes come back one bin later). Layer l (neurons h):

    v = a_l · v + in_l(t) · W_l + [s_l(t-1) · R_l]      LIF; in_0 = the input counts, in_l = s_(l-1)(t)
    reset "zero":      s = [v ≥ th_l];               v = 0 where s
    reset "subtract":  s = floor(v / th_l) if v ≥ th_l else 0;  v -= s · th_l
    reset "none":      a leaky integrator without spikes (only as the last layer: the readout the sink runs)
    y = ay · y + Σ_k s_last,k(t)   with a spiking last layer: the trace of its spikes
    y = Σ_k v_last,k(t)            with a leaky-integrator last layer: its potential (the score's logit)

Backward: ds/dv is the fast-sigmoid surrogate 1 / (1 + slope·|v - th|)²; the reset is treated as a constant, so
dv_after/dv_before = 1 - s for reset to zero (the path to the next bin is cut where the neuron fired) and 1 for
subtraction. Layer parameters travel as flat arrays with offsets (numba takes no lists of arrays). The slow
reference twin is plain PyTorch autograd in ``tests/test_apps_vad_model.py``.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["snn_forward", "snn_backward"]

# columns of the per-layer description array ``desc`` (int64)
L_IN, L_OUT, L_W, L_REC, L_R, L_V, L_RESET = range(7)
# columns of the per-layer float array ``fpar``
F_A, F_TH = range(2)


@njit(cache=True, nogil=True)
def _spike(v, th, subtract):
    if subtract == 2:
        return 0.0
    if v < th:
        return 0.0
    if subtract:
        return np.floor(v / th)
    return 1.0


@njit(cache=True, nogil=True)
def snn_forward(x, desc, fpar, w, ay, v_out, s_out, y_out):
    """x: (B, T, I) input counts. Writes v before reset and s for every neuron (B, T, N) at the layer's offset
    ``desc[l, L_V]``, and the trace y (B, T). Returns the synaptic ops a clock-free engine would perform."""
    n_b, n_t, n_i = x.shape
    n_l = desc.shape[0]
    n_all = v_out.shape[2]
    ops = 0
    v = np.zeros(n_all)
    cur = np.zeros(n_all)
    for b in range(n_b):
        v[:] = 0.0
        y = 0.0
        for t in range(n_t):
            tot = 0.0
            for li in range(n_l):
                n_in = desc[li, L_IN]
                n_out = desc[li, L_OUT]
                wo = desc[li, L_W]
                vo = desc[li, L_V]
                a = fpar[li, F_A]
                th = fpar[li, F_TH]
                mode = desc[li, L_RESET]
                for h in range(n_out):
                    cur[vo + h] = a * v[vo + h]
                for i in range(n_in):
                    if li == 0:
                        c = x[b, t, i]
                    else:
                        c = s_out[b, t, desc[li - 1, L_V] + i]
                    if c != 0.0:
                        ops += n_out
                        base = wo + i * n_out
                        for h in range(n_out):
                            cur[vo + h] += c * w[base + h]
                if desc[li, L_REC] == 1 and t > 0:
                    ro = desc[li, L_R]
                    for i in range(n_out):
                        c = s_out[b, t - 1, vo + i]
                        if c != 0.0:
                            ops += n_out
                            base = ro + i * n_out
                            for h in range(n_out):
                                cur[vo + h] += c * w[base + h]
                for h in range(n_out):
                    vv = cur[vo + h]
                    v_out[b, t, vo + h] = vv
                    s = _spike(vv, th, mode)
                    s_out[b, t, vo + h] = s
                    if s == 0.0:
                        v[vo + h] = vv
                    elif mode == 1:
                        v[vo + h] = vv - s * th
                    else:
                        v[vo + h] = 0.0
                    if li == n_l - 1:
                        tot += vv if mode == 2 else s
            if desc[n_l - 1, L_RESET] == 2:
                y = tot
            else:
                y = ay * y + tot
            y_out[b, t] = y
    return ops


@njit(cache=True, nogil=True)
def snn_backward(x, desc, fpar, w, ay, slope, v_out, s_out, gy, g_rate, gw):
    """Accumulates dL/dw into ``gw`` (same layout as ``w``) given dL/dy (B, T) and a constant dL/ds ``g_rate``
    for every neuron of the hidden layers (all but the last)."""
    n_b, n_t, n_i = x.shape
    n_l = desc.shape[0]
    n_all = v_out.shape[2]
    gv = np.zeros(n_all)
    gv_next = np.zeros(n_all)
    li_readout = desc[n_l - 1, L_RESET] == 2
    for b in range(n_b):
        gv_next[:] = 0.0
        gacc = 0.0
        for t in range(n_t - 1, -1, -1):
            gacc = gy[b, t] if li_readout else gy[b, t] + ay * gacc
            for li in range(n_l - 1, -1, -1):
                n_out = desc[li, L_OUT]
                vo = desc[li, L_V]
                th = fpar[li, F_TH]
                a = fpar[li, F_A]
                mode = desc[li, L_RESET]
                for h in range(n_out):
                    if li == n_l - 1:
                        g = gacc
                    else:
                        g = g_rate
                        nxt = li + 1
                        n2 = desc[nxt, L_OUT]
                        base = desc[nxt, L_W] + h * n2
                        vo2 = desc[nxt, L_V]
                        for j in range(n2):
                            g += gv[vo2 + j] * w[base + j]
                    if desc[li, L_REC] == 1:
                        base = desc[li, L_R] + h * n_out
                        for j in range(n_out):
                            g += gv_next[vo + j] * w[base + j]
                    vv = v_out[b, t, vo + h]
                    if mode == 2:  # leaky integrator: the potential itself is the output
                        gv[vo + h] = g + a * gv_next[vo + h]
                        continue
                    u = 1.0 + slope * abs(vv - th)
                    keep = 1.0 if mode == 1 else 1.0 - s_out[b, t, vo + h]
                    gv[vo + h] = g / (u * u) + a * keep * gv_next[vo + h]
            for li in range(n_l):
                n_in = desc[li, L_IN]
                n_out = desc[li, L_OUT]
                wo = desc[li, L_W]
                vo = desc[li, L_V]
                for i in range(n_in):
                    if li == 0:
                        c = x[b, t, i]
                    else:
                        c = s_out[b, t, desc[li - 1, L_V] + i]
                    if c != 0.0:
                        base = wo + i * n_out
                        for h in range(n_out):
                            gw[base + h] += c * gv[vo + h]
                if desc[li, L_REC] == 1 and t > 0:
                    ro = desc[li, L_R]
                    for i in range(n_out):
                        c = s_out[b, t - 1, vo + i]
                        if c != 0.0:
                            base = ro + i * n_out
                            for h in range(n_out):
                                gw[base + h] += c * gv[vo + h]
            for k in range(n_all):
                gv_next[k] = gv[k]
    return 0
