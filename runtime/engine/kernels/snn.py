"""numba kernels of the event-driven network: one call runs a whole chain of layers over one packet.

Everything is passed as flat arrays (see ``runtime/engine/network.py`` for how they are built):

* ``desc[l, D_*]`` int64 layer descriptors; ``fpar[l, F_*]`` float parameters;
* ``W`` all weights in scatter order: conv ``[c, ky, kx, o]``, linear ``[i, o]``, recurrent ``[from, to]``; conv
  layers also have their weights in row order (``conv_row_weights``) at ``D_ROW_OFF``, so that the taps of one
  kernel row that an event reaches are one contiguous run of neurons times one contiguous run of weights;
* ``u`` neuron states of all layers, each layer channel-last ``(H, W, C)`` so one kernel tap touches C
  contiguous neurons. In ``DECAY_FRAME`` mode ``u = v · exp((t - tref) / tau)`` (time-invariant frame, one exp
  per distinct input timestamp, renormalised when the frame grows past ``exp(RENORM)``); in ``DECAY_EXP`` /
  ``DECAY_LUT`` mode ``u = v`` at the neuron's own last update time ``tl`` (one exp / one table read per neuron
  touched); IAF has no decay;
* ``ru`` refractory-until times; ``scratch`` rows hold the spiking neurons of a group;
* ``counters[l, C_*]`` cumulative operation counts.

Events with equal timestamps form a group: the kernel integrates all of them, then tests every target (a neuron
reached twice is tested twice, harmlessly: after firing it is below threshold). The first layer sorts each
group's addresses, so results do not depend on the order of simultaneous input events (merged sources interleave
them as their packets arrive); deeper layers add their input in the order the layer above emitted it, which that
layer's sorted input already fixes (sorting there cost about a tenth of a dense stream's time).

The entry points release the GIL, so ``runtime.engine.pipeline`` can run two halves of a network in two threads.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# layer descriptor columns
D_TYPE, D_IN_C, D_IN_H, D_IN_W, D_OUT_C, D_OUT_H, D_OUT_W = 0, 1, 2, 3, 4, 5, 6
D_KH, D_KW, D_SH, D_SW, D_PH, D_PW = 7, 8, 9, 10, 11, 12
D_W_OFF, D_U_OFF, D_N, D_REC, D_REC_OFF, D_REC_DELAY, D_DELAY = 13, 14, 15, 16, 17, 18, 19
D_RESET, D_REFR, D_DECAY, D_CG, D_CG_OFF, D_LUT_OFF, D_LUT_LEN = 20, 21, 22, 23, 24, 25, 26
D_ROW_OFF, D_ROW_TAPS = 27, 28  # conv: the same weights in row order (see conv_row_weights)
D_DIV_HW, D_DIV_W = 29, 30  # conv: multipliers for a // (in_h·in_w) and pos // in_w (see div_magic; 0: divide)
D_GAIN, D_GAIN_WIN = 31, 32  # 1: input events weighted by the input gain (runtime.engine.gain), 2: the same with
# the running count kept by the caller (in lstate); its window, µs
D_COLS = 33
# float parameter columns
F_THETA, F_TAU, F_CG_TAU = 0, 1, 2
F_GAIN_REF, F_GAIN_KEEP, F_GAIN_MIN, F_GAIN_MAX = 3, 4, 5, 6  # input gain: ref count per window, λ, clip range
F_COLS = 7
# per-layer float state columns
S_TREF, S_CG_TREF, S_CG_SUM, S_RUNAWAY = 0, 1, 2, 3
S_GAIN_R, S_GAIN_WIN, S_GAIN_N = 4, 5, 6  # input gain: running count of the closed windows, open window, its count
S_COLS = 7
MAX_SPIKES = 1 << 25  # spikes one layer may emit from one packet before the network is declared unstable
# layer types
T_CONV, T_LINEAR, T_POOL, T_POOL_ADDR = 0, 1, 2, 3
# decay modes
DECAY_NONE, DECAY_FRAME, DECAY_EXP, DECAY_LUT = 0, 1, 2, 3
# counter columns
C_OPS, C_UPDATES, C_SPIKES, C_GATED, C_SAVED, C_GATE_OPS = 0, 1, 2, 3, 4, 5
C_COLS = 6

DIV_SHIFT = 42  # n // d == (n · div_magic(d, n_max)) >> DIV_SHIFT for 0 ≤ n ≤ n_max
ROW_PACK = 1 << 32  # _row_add: hits · ROW_PACK + Σ offsets, exact while the offsets sum below ROW_PACK ...
ROW_PACK_MAX = 1 << 16  # ... which rows up to this many neurons guarantee (Σ m < n² / 2 ≤ 2^31)
RENORM = 30.0  # renormalise a frame when (t - tref) / tau exceeds this (exp(30) ≈ 1e13: far from overflow)
NO_TIME = np.iinfo(np.int64).max
ERR_NONE = -1
ERR_RUNAWAY = -2  # extra[0] when a layer ran away (see S_RUNAWAY)


@njit(cache=True)
def _grow_i8(a, need):
    n = max(need, 2 * a.shape[0] + 64)
    b = np.empty(n, dtype=np.int64)
    b[: a.shape[0]] = a
    return b


@njit(cache=True)
def _grow_i4(a, need):
    n = max(need, 2 * a.shape[0] + 64)
    b = np.empty(n, dtype=np.int32)
    b[: a.shape[0]] = a
    return b


@njit(cache=True, inline="always")
def _segments(desc, l, a, seg_base, seg_woff, seg_cnt):
    """Targets of input address ``a`` in layer ``l`` as runs: neurons seg_base[s] + k, weights W[seg_woff[s] + k],
    k < seg_cnt[s] (neuron indices are local to the layer, channel-last)."""
    typ = desc[l, D_TYPE]
    if typ == T_LINEAR:
        n_out = desc[l, D_OUT_C]
        seg_base[0] = 0
        seg_woff[0] = desc[l, D_W_OFF] + a * n_out
        seg_cnt[0] = n_out
        return 1
    in_w = desc[l, D_IN_W]
    in_hw = desc[l, D_IN_H] * in_w
    c = a // in_hw
    pos = a - c * in_hw
    y = pos // in_w
    x = pos - y * in_w
    kh = desc[l, D_KH]
    kw = desc[l, D_KW]
    sh = desc[l, D_SH]
    sw = desc[l, D_SW]
    oh = desc[l, D_OUT_H]
    ow = desc[l, D_OUT_W]
    oc = desc[l, D_OUT_C]
    w_off = desc[l, D_W_OFF]
    # output row oy takes input row y through tap ky = y + ph - oy·sh: walk the taps that land on a row
    ny = y + desc[l, D_PH]
    nx = x + desc[l, D_PW]
    ky0 = ny % sh
    kx0 = nx % sw
    oy = ny // sh
    ns = 0
    for ky in range(ky0, kh, sh):
        if oy < 0:
            break
        if oy < oh:
            ox = nx // sw
            for kx in range(kx0, kw, sw):
                if ox < 0:
                    break
                if ox < ow:
                    if typ == T_CONV:
                        seg_base[ns] = (oy * ow + ox) * oc
                        seg_woff[ns] = w_off + ((c * kh + ky) * kw + kx) * oc
                        seg_cnt[ns] = oc
                    else:  # pooling: one neuron, weight 1 (W[D_W_OFF] holds 1.0)
                        seg_base[ns] = (oy * ow + ox) * oc + c
                        seg_woff[ns] = w_off
                        seg_cnt[ns] = 1
                    ns += 1
                ox -= 1
        oy -= 1
    return ns


@njit(cache=True)
def fanout_count(desc, l, a, seg_base, seg_woff, seg_cnt):
    """Synaptic ops one event at address ``a`` would cost in layer ``l`` (refractory ignored). Through an
    addressing-only pool, the ops of the pooled events in the layer after it."""
    if l >= desc.shape[0]:
        return 0
    ns = _segments(desc, l, a, seg_base, seg_woff, seg_cnt)
    if desc[l, D_TYPE] != T_POOL_ADDR:
        total = 0
        for s in range(ns):
            total += seg_cnt[s]
        return total
    if l + 1 >= desc.shape[0]:
        return 0
    oc = desc[l, D_OUT_C]
    ohw = desc[l, D_OUT_H] * desc[l, D_OUT_W]
    addrs = np.empty(ns, dtype=np.int64)
    for s in range(ns):
        m = seg_base[s]
        addrs[s] = (m % oc) * ohw + m // oc
    total = 0
    for s in range(ns):
        ns2 = _segments(desc, l + 1, addrs[s], seg_base, seg_woff, seg_cnt)
        for s2 in range(ns2):
            total += seg_cnt[s2]
    return total


@njit(cache=True, inline="always")
def _sort_small(buf, lo, hi):
    # insertion sort in place of buf[lo:hi]: groups of simultaneous events are usually tiny
    for i in range(lo + 1, hi):
        v = buf[i]
        j = i - 1
        while j >= lo and buf[j] > v:
            buf[j + 1] = buf[j]
            j -= 1
        buf[j + 1] = v


@njit(cache=True, inline="always")
def _radix_pass(src, s0, dst, d0, n, shift, cnt):
    """dst[d0:d0+n] = src[s0:s0+n] stably ordered by byte ``shift // 8`` of each key."""
    cnt[:] = 0
    for i in range(s0, s0 + n):
        cnt[(src[i] >> shift) & 255] += 1
    total = 0
    for b in range(256):
        c = cnt[b]
        cnt[b] = total
        total += c
    for i in range(s0, s0 + n):
        d = (src[i] >> shift) & 255
        dst[d0 + cnt[d]] = src[i]
        cnt[d] += 1


@njit(cache=True)
def sort_group(buf, lo, hi):
    """Sorts the non-negative keys buf[lo:hi] in place (the addresses of a group of simultaneous events).
    Up to 32 keys by insertion; more by least-significant-byte radix passes up to the largest key's top byte:
    a group of hundreds of events (a 1 ms-resolution recording) costs a few linear passes instead of the n log n
    unpredictable branches of a comparison sort."""
    n = hi - lo
    if n <= 32:
        _sort_small(buf, lo, hi)
        return
    kmax = 0
    for i in range(lo, hi):
        kmax = max(kmax, np.int64(buf[i]))
    tmp = np.empty(n, dtype=buf.dtype)
    cnt = np.empty(256, dtype=np.int64)
    shift = 0
    in_tmp = False
    while shift == 0 or (kmax >> shift) > 0:
        if in_tmp:
            _radix_pass(tmp, 0, buf, lo, n, shift, cnt)
        else:
            _radix_pass(buf, lo, tmp, 0, n, shift, cnt)
        in_tmp = not in_tmp
        shift += 8
    if in_tmp:
        buf[lo:hi] = tmp


@njit(cache=True, inline="always")
def _decay_to(u, tl, n, t, tau, mode, lut, lut_off, lut_len):
    dt = t - tl[n]
    if dt > 0:
        if mode == DECAY_LUT and dt < lut_len:
            u[n] *= lut[lut_off + dt]
        else:
            u[n] *= math.exp(-dt / tau)
    tl[n] = t


@njit(cache=True, inline="always")
def _fire(u, n, thr, reset):
    """Spikes a neuron whose potential reached ``thr``; returns how many (multi-spike for subtract)."""
    if reset == 0:
        if u[n] < 1.5 * thr:  # the usual case: u / thr < 2, one spike, and no division needed to know it
            u[n] -= thr
            return 1
        q = u[n] / thr
        if q > 1e9:  # absurd potentials: emit enough spikes for the runaway guard to stop the network
            q = 1e9
        k = int(q)
        if k < 1:
            k = 1
        u[n] -= k * thr
        if u[n] >= thr:  # rounding in the division
            u[n] -= thr
            k += 1
        return k
    u[n] = 0.0
    return 1


@njit(cache=True, inline="always")
def _row_add(u, W, us, ws, n, g, thr):
    """u[us:us+n] += W[ws:ws+n] · g; returns (how many of them are now at ``thr`` or above, as stored in u, and
    the sum of their offsets: with one hit, the common case when there is any, that is where it is, no scan).
    Slices and counts instead of a max: indices the compiler knows are ≥ 0 and no ordered float reduction, so
    the loop vectorises (each neuron gets exactly the operations of a scalar loop)."""
    ub = u[us:us + n]
    wb = W[ws:ws + n]
    if n <= ROW_PACK_MAX:  # count and offsets in one integer: one reduction per row instead of two
        acc = 0
        for m in range(n):
            ub[m] = ub[m] + wb[m] * g
            acc += (ub[m] >= thr) * (ROW_PACK + m)
        return acc >> 32, acc & (ROW_PACK - 1)
    hits = 0
    at = 0
    for m in range(n):
        ub[m] = ub[m] + wb[m] * g
        h = ub[m] >= thr
        hits += h
        at += m * h
    return hits, at


@njit(cache=True, inline="always")
def _accumulate_one(u, W, tl, ru, seg_base, seg_woff, seg_cnt, ns, uoff, g, thr, t, refr, mode, tau, lut, lut_off,
                    lut_len, spk_n, n_spk):
    """One event alone at its timestamp: its targets are distinct, so accumulate and test in one pass.
    Appends the neurons that reached threshold to spk_n; returns (n_spk, ops)."""
    ops = 0
    if refr == 0 and (mode == DECAY_NONE or mode == DECAY_FRAME):
        for s in range(ns):
            base = uoff + seg_base[s]
            cnt = seg_cnt[s]
            hits, at = _row_add(u, W, base, seg_woff[s], cnt, g, thr)
            if hits == 1:
                spk_n[n_spk] = base + at
                n_spk += 1
            elif hits > 0:  # spikes are rare: look for them after
                for k in range(cnt):
                    if u[base + k] >= thr:
                        spk_n[n_spk] = base + k
                        n_spk += 1
            ops += cnt
    else:
        for s in range(ns):
            base = uoff + seg_base[s]
            woff = seg_woff[s]
            for k in range(seg_cnt[s]):
                n = base + k
                if refr > 0 and ru[n] > t:
                    continue
                if mode == DECAY_EXP or mode == DECAY_LUT:
                    _decay_to(u, tl, n, t, tau, mode, lut, lut_off, lut_len)
                xv = u[n] + W[woff + k] * g
                u[n] = xv
                ops += 1
                if xv >= thr:
                    spk_n[n_spk] = n
                    n_spk += 1
    return n_spk, ops


_DEBRUIJN = np.uint64(0x03F79D71B4CB0A89)
_DEBRUIJN_POS = np.array([0, 1, 48, 2, 57, 49, 28, 3, 61, 58, 50, 42, 38, 29, 17, 4, 62, 55, 59, 36, 53, 51, 43, 22, 45, 39,
                          33, 30, 24, 18, 12, 5, 63, 47, 56, 27, 60, 41, 37, 16, 54, 35, 52, 21, 44, 32, 23, 11, 46, 26, 40,
                          15, 34, 20, 31, 10, 25, 14, 19, 9, 13, 8, 7, 6], dtype=np.int64)


@njit(cache=True, inline="always")
def _push_hits(u, us, n, thr, spk_n, n_spk):
    """Appends ``us + m`` for each ``u[us + m] >= thr``, m < n ≤ 64, in ascending m: one vectorised pass builds a
    bit mask, then each set bit is found by a de Bruijn multiply (the lowest set bit's position)."""
    ub = u[us:us + n]
    mask = np.uint64(0)
    for m in range(n):
        mask |= np.uint64(ub[m] >= thr) << np.uint64(m)
    while mask != 0:
        low = mask & (~mask + np.uint64(1))
        spk_n[n_spk] = us + _DEBRUIJN_POS[(low * _DEBRUIJN) >> np.uint64(58)]
        n_spk += 1
        mask ^= low
    return n_spk


def conv_row_weights(weight: np.ndarray, stride_w: int) -> tuple[np.ndarray, int]:
    """Conv weights ``(O, C, KH, KW)`` in row order for ``_conv_walk``: ``[c, ky, r, pos, o]`` where ``r`` is the
    column phase ``kx % stride_w`` and ``pos = taps - 1 - kx // stride_w`` (taps = ⌈KW / stride_w⌉, unused slots
    0). An input event reaches, in one kernel row, the taps ``kx = r, r + sw, ...`` at output columns ``ox0,
    ox0 - 1, ...``: stored reversed, they sit in the same ascending order as those neurons (channel-last), so a
    row is one contiguous loop that the compiler vectorises. Returns (flat weights, taps)."""
    o, c, kh, kw = weight.shape
    sw = int(stride_w)
    taps = -(-kw // sw)
    out = np.zeros((c, kh, sw, taps, o), np.float64)
    for kx in range(kw):
        out[:, :, kx % sw, taps - 1 - kx // sw, :] = weight[:, :, :, kx].transpose(1, 2, 0)
    return out.ravel(), taps


def div_magic(d: int, n_max: int) -> int:
    """Multiplier ``m`` with ``n // d == (n · m) >> DIV_SHIFT`` for every 0 ≤ n ≤ n_max, or 0 where none fits in
    int64 arithmetic. m = ⌈2^S / d⌉ = (2^S + e) / d with 0 ≤ e < d, so n·m / 2^S = n / d + n·e / (d·2^S): the
    error stays below 1/d, too small to reach the next integer, when n_max · d ≤ 2^S."""
    d, n_max = int(d), int(n_max)
    if d < 1 or n_max < 0:
        raise ValueError(f"div_magic: divisor must be ≥ 1 and n_max ≥ 0, got d={d}, n_max={n_max}")
    m = -(-(1 << DIV_SHIFT) // d)
    if n_max * d > (1 << DIV_SHIFT) or n_max * m >= 1 << 63:
        return 0
    return m


@njit(cache=True, inline="always")
def _udiv(n, d):
    """n // d for n ≥ 0, d ≥ 1: integer division costs tens of cycles, strides are mostly 1 or 2."""
    if d == 1:
        return n
    if d == 2:
        return n >> 1
    return n // d


@njit(cache=True, inline="always")
def _first_tap(n, s, o):
    """Along one axis, input position ``n`` (padding added) reaches output ``n // s`` through tap ``n % s``, then
    output - 1 through tap + s, ...: the first (output, tap) of those whose output is below ``o``."""
    q = _udiv(n, s)
    k = n - q * s
    if q >= o:
        skip = q - o + 1
        q -= skip
        k += skip * s
    return q, k


@njit(cache=True, inline="always")
def _conv_walk(u, W, desc, l, in_a, e0, e1, uoff, g, thr, spk_n, spk_k, n_spk, what, reset):
    """The hot path: conv layers without refractoriness or per-neuron decay, for the events ``in_a[e0:e1]`` (one
    call per group of simultaneous events: every inlined call with array arguments costs atomic reference
    counts). Walks the kernel taps that land inside the output directly (no target list), one contiguous row of
    taps at a time (row-order weights).
    ``what``: 0 accumulate and list the neurons at threshold (an event alone at its timestamp); 1 accumulate
    and list the neurons at threshold after this update (candidates, in spk_n, possibly more than once; a neuron
    at threshold after its group is one after its last update in the group); 2 test and fire
    every tap (after a group was accumulated). For 0 and 2, taps are listed in the order kx ascending (output
    column descending) and rows in ky ascending, neurons within a tap by channel; 1 lists its candidates in
    memory order within a row, since each is only tested afterwards. Returns (n_spk, ops)."""
    in_w = desc[l, D_IN_W]
    in_hw = desc[l, D_IN_H] * in_w
    m_hw = desc[l, D_DIV_HW]
    m_w = desc[l, D_DIV_W]
    kh = desc[l, D_KH]
    kw = desc[l, D_KW]
    sh = desc[l, D_SH]
    sw = desc[l, D_SW]
    oh = desc[l, D_OUT_H]
    ow = desc[l, D_OUT_W]
    oc = desc[l, D_OUT_C]
    ph = desc[l, D_PH]
    pw = desc[l, D_PW]
    taps = desc[l, D_ROW_TAPS]
    row_off = desc[l, D_ROW_OFF]
    w_step = sh * sw * taps * oc  # from row ky to row ky + sh
    ops = 0
    for e in range(e0, e1):
        a = np.int64(in_a[e])
        # a // in_hw and pos // in_w as a multiply and a shift (see div_magic): a division costs tens of cycles
        c = (a * m_hw) >> DIV_SHIFT if m_hw > 0 else a // in_hw
        pos = a - c * in_hw
        y = (pos * m_w) >> DIV_SHIFT if m_w > 0 else pos // in_w
        x = pos - y * in_w
        ny = y + ph
        nx = x + pw
        # first tap whose output row/column lies inside the layer, and how many taps follow
        oy, ky = _first_tap(ny, sh, oh)
        ox0, kx0 = _first_tap(nx, sw, ow)
        nkx = 0
        if kx0 < kw:
            nkx = min(_udiv(kw - 1 - kx0, sw) + 1, ox0 + 1)
        if nkx <= 0:
            continue
        # row-order weights: phase r = kx0 % sw, taps kx0, kx0 + sw, ... stored reversed from slot pos_lo
        j0 = _udiv(kx0, sw)
        r = kx0 - j0 * sw
        run = nkx * oc
        ox_lo = ox0 - nkx + 1
        w_row = row_off + ((c * kh * sw + r) * taps + taps - j0 - nkx) * oc + ky * sw * taps * oc
        while ky < kh and oy >= 0:
            us = uoff + (oy * ow + ox_lo) * oc
            if what == 0:
                hits, at = _row_add(u, W, us, w_row, run, g, thr)
                if hits <= 1:
                    spk_n[n_spk] = us + at
                    n_spk += hits
                else:  # find them, taps in walk order, until all are found
                    stop = n_spk + hits
                    for j in range(nkx):
                        tb = us + (nkx - 1 - j) * oc
                        for k in range(oc):  # branch-free: write always, advance on a spike
                            spk_n[n_spk] = tb + k
                            n_spk += u[tb + k] >= thr
                        if n_spk == stop:
                            break
            elif what == 1:
                hits, at = _row_add(u, W, us, w_row, run, g, thr)
                if hits <= 1:  # none or one, the usual cases: written either way, kept when one (no branch to guess)
                    if n_spk < spk_n.shape[0]:
                        spk_n[n_spk] = us + at
                    n_spk += hits  # past the end: the caller falls back to testing every tap
                elif n_spk + hits <= spk_n.shape[0]:
                    if run <= 64:  # a bit per tap, then one step per hit: no store per tap, no branch per tap
                        n_spk = _push_hits(u, us, run, thr, spk_n, n_spk)
                    else:
                        for m in range(run):  # branch-free (the order of candidates does not matter)
                            spk_n[n_spk] = us + m
                            n_spk += u[us + m] >= thr
                else:
                    n_spk += hits
            else:
                for j in range(nkx):
                    tb = us + (nkx - 1 - j) * oc
                    for k in range(oc):
                        if u[tb + k] >= thr:
                            spk_n[n_spk] = tb + k
                            spk_k[n_spk] = _fire(u, tb + k, thr, reset)
                            n_spk += 1
            ops += run
            ky += sh
            oy -= 1
            w_row += w_step
    return n_spk, ops


@njit(cache=True)
def _layer(
    l, in_t, in_a, n_in, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut,
    cg_w, cg_b, cg_r, counters, q_t, q_a, seg_base, seg_woff, seg_cnt,
):
    """Run layer ``l`` over its sorted input (and its pending recurrent spikes before ``wm``).

    Sorts each group's addresses in place in ``in_a`` (the caller's own buffer). Returns
    (out_t, out_a, n_out, pending_t, pending_a). No array variable is reassigned inside the group loop (numba
    would then count references on every iteration): buffers grow in the outer loop."""
    typ = desc[l, D_TYPE]
    delay = desc[l, D_DELAY]
    cap = max(64, 2 * n_in)
    out_t = np.empty(cap, dtype=np.int64)
    out_a = np.empty(cap, dtype=np.int32)
    n_out = 0
    oc = desc[l, D_OUT_C]
    ohw = desc[l, D_OUT_H] * desc[l, D_OUT_W]

    if typ == T_POOL_ADDR:  # addressing only: every input spike becomes spikes at its pooled addresses
        kk = desc[l, D_KH] * desc[l, D_KW]
        if n_in * kk > cap:
            out_t = np.empty(n_in * kk, dtype=np.int64)
            out_a = np.empty(n_in * kk, dtype=np.int32)
        for i in range(n_in):
            ns = _segments(desc, l, in_a[i], seg_base, seg_woff, seg_cnt)
            for s in range(ns):
                m = seg_base[s]
                out_t[n_out] = in_t[i] + delay
                out_a[n_out] = (m % oc) * ohw + m // oc
                n_out += 1
        counters[l, C_SPIKES] += n_out
        return out_t, out_a, n_out, q_t, q_a

    uoff = desc[l, D_U_OFF]
    reset = desc[l, D_RESET]
    refr = desc[l, D_REFR]
    mode = desc[l, D_DECAY]
    theta = fpar[l, F_THETA]
    tau = fpar[l, F_TAU]
    lut_off = desc[l, D_LUT_OFF]
    lut_len = desc[l, D_LUT_LEN]
    rec = desc[l, D_REC]
    rec_delay = desc[l, D_REC_DELAY]
    rec_off = desc[l, D_REC_OFF]
    n_neur = desc[l, D_N]
    cg = desc[l, D_CG]
    fast_conv = typ == T_CONV and refr == 0 and (mode == DECAY_NONE or mode == DECAY_FRAME)
    gain_on = desc[l, D_GAIN] >= 1
    gain_counts = desc[l, D_GAIN] == 1  # 2: the caller keeps the running count (a gain counting sensor events)
    cand = scratch[0]
    spk_n = scratch[1]
    spk_k = scratch[2]
    qn = q_t.shape[0]
    if rec == 1:
        pq_t = np.empty(qn + cap, dtype=np.int64)
        pq_a = np.empty(qn + cap, dtype=np.int32)
        pq_t[:qn] = q_t
        pq_a[:qn] = q_a
    else:  # no queue: no allocation (this runs once per layer per packet)
        pq_t = q_t
        pq_a = q_a
    qh = 0
    ops = 0
    updates = 0
    i = 0
    n_spk = 0
    total = 0
    t = 0
    pending = False
    while True:
        if pending:  # a group's spikes did not fit: the buffers were grown below, write them now
            pending = False
            n_out, qn = _write_spikes(spk_n, spk_k, n_spk, uoff, oc, ohw, t, delay, rec, rec_delay, out_t, out_a,
                                      n_out, pq_t, pq_a, qn)
            counters[l, C_SPIKES] += total
            if cg == 1:
                n_out = _channel_gate(l, t, n_out - total, n_out, out_a, desc, fpar, lstate, cg_w, cg_b, cg_r,
                                      counters, seg_base, seg_woff, seg_cnt)
        done = True
        while True:
            ta = in_t[i] if i < n_in else NO_TIME
            tb = pq_t[qh] if (qh < qn and pq_t[qh] < wm) else NO_TIME
            t = ta if ta < tb else tb
            if t == NO_TIME:
                break
            ja = i
            while ja < n_in and in_t[ja] == t:
                ja += 1
            jb = qh
            while jb < qn and pq_t[jb] == t:
                jb += 1
            g = 1.0
            if mode == DECAY_FRAME:
                x = (t - lstate[l, S_TREF]) / tau
                if x > RENORM:
                    f = math.exp(-x)
                    for n in range(uoff, uoff + n_neur):
                        u[n] *= f
                    lstate[l, S_TREF] = t
                    x = 0.0
                g = math.exp(x)
            thr = theta * g
            if gain_on and ja > i:  # close the windows before t, then weight this group by the closed ones
                if gain_counts:
                    win = t // desc[l, D_GAIN_WIN]
                    open_win = lstate[l, S_GAIN_WIN]
                    if win > open_win:
                        keep = fpar[l, F_GAIN_KEEP]
                        r = keep * lstate[l, S_GAIN_R] + (1.0 - keep) * lstate[l, S_GAIN_N]
                        if win > open_win + 1:  # empty windows in between
                            r *= keep ** (win - open_win - 1)
                        lstate[l, S_GAIN_R] = r
                        lstate[l, S_GAIN_N] = 0.0
                        lstate[l, S_GAIN_WIN] = win
                    lstate[l, S_GAIN_N] += ja - i
                gain = fpar[l, F_GAIN_REF] / max(lstate[l, S_GAIN_R], 1e-300)
                g = g * min(max(gain, fpar[l, F_GAIN_MIN]), fpar[l, F_GAIN_MAX])
            n_spk = 0
            fired = False
            if (ja - i) + (jb - qh) == 1:
                if fast_conv and ja > i:
                    n_spk, ops_here = _conv_walk(u, W, desc, l, in_a, i, ja, uoff, g, thr, spk_n, spk_k, n_spk, 0,
                                                 reset)
                    ops += ops_here
                    updates += ops_here
                    ns = -1
                elif ja > i:
                    ns = _segments(desc, l, in_a[i], seg_base, seg_woff, seg_cnt)
                else:
                    seg_base[0] = 0
                    seg_woff[0] = rec_off + pq_a[qh] * n_neur
                    seg_cnt[0] = n_neur
                    ns = 1
                if ns >= 0:
                    n_spk, ops_here = _accumulate_one(u, W, tl, ru, seg_base, seg_woff, seg_cnt, ns, uoff, g, thr, t,
                                                      refr, mode, tau, lut, lut_off, lut_len, spk_n, n_spk)
                    ops += ops_here
                    updates += ops_here
            else:
                # several simultaneous events: integrate all of them, then test every target; a neuron reached
                # twice is tested twice, but after firing it is below threshold. The first layer takes them in
                # address order; deeper layers in the order the layer above emitted them (fixed by its input)
                if ja - i > 1 and l == 0:
                    sort_group(in_a, i, ja)
                if jb - qh > 1:
                    sort_group(pq_a, qh, jb)
                ops_before = ops
                if fast_conv:
                    n_cand, ops_here = _conv_walk(u, W, desc, l, in_a, i, ja, uoff, g, thr, cand, spk_k, 0, 1, reset)
                    ops += ops_here
                    if n_cand <= cand.shape[0]:  # test only the neurons at threshold when last updated
                        for e in range(n_cand):
                            n = cand[e]
                            v = u[n]
                            if v >= thr:  # a neuron listed twice is below threshold once it has fired
                                spk_n[n_spk] = n
                                if reset == 0 and v < 1.5 * thr:  # _fire's usual case, without its array call
                                    u[n] = v - thr
                                    spk_k[n_spk] = 1
                                else:
                                    spk_k[n_spk] = _fire(u, n, thr, reset)
                                n_spk += 1
                    else:
                        n_spk, ops_here = _conv_walk(u, W, desc, l, in_a, i, ja, uoff, g, thr, spk_n, spk_k, n_spk,
                                                     2, reset)
                for phase in range(0 if fast_conv else 2):
                    for e in range(i, ja + (jb - qh)):
                        if e < ja:
                            ns = _segments(desc, l, in_a[e], seg_base, seg_woff, seg_cnt)
                        else:
                            seg_base[0] = 0
                            seg_woff[0] = rec_off + pq_a[qh + e - ja] * n_neur
                            seg_cnt[0] = n_neur
                            ns = 1
                        for s in range(ns):
                            base = uoff + seg_base[s]
                            woff = seg_woff[s]
                            for k in range(seg_cnt[s]):
                                n = base + k
                                if refr > 0 and ru[n] > t:
                                    continue
                                if phase == 0:
                                    if mode == DECAY_EXP or mode == DECAY_LUT:
                                        _decay_to(u, tl, n, t, tau, mode, lut, lut_off, lut_len)
                                    u[n] += W[woff + k] * g
                                    ops += 1
                                elif u[n] >= thr:
                                    spk_n[n_spk] = n
                                    spk_k[n_spk] = _fire(u, n, thr, reset)
                                    n_spk += 1
                                    if refr > 0:
                                        ru[n] = t + refr
                updates += ops - ops_before
                fired = True
            total = 0
            for e in range(n_spk):
                if not fired:
                    n = spk_n[e]
                    spk_k[e] = _fire(u, n, thr, reset)
                    if refr > 0:
                        ru[n] = t + refr
                total += spk_k[e]
            i = ja
            qh = jb
            if n_out + total > out_t.shape[0] or (rec == 1 and qn + total > pq_t.shape[0]):
                pending = True
                done = False
                break
            if total:
                n_out, qn = _write_spikes(spk_n, spk_k, n_spk, uoff, oc, ohw, t, delay, rec, rec_delay, out_t, out_a,
                                          n_out, pq_t, pq_a, qn)
                counters[l, C_SPIKES] += total
                if cg == 1:
                    n_out = _channel_gate(l, t, n_out - total, n_out, out_a, desc, fpar, lstate, cg_w, cg_b, cg_r,
                                          counters, seg_base, seg_woff, seg_cnt)
        if done:
            break
        if n_out + total > MAX_SPIKES or qn + total > MAX_SPIKES:
            lstate[l, S_RUNAWAY] = n_out + total  # the caller raises: runaway excitation would exhaust memory
            break
        out_t = _grow_i8(out_t, n_out + total)
        out_a = _grow_i4(out_a, n_out + total)
        if rec == 1:
            pq_t = _grow_i8(pq_t, qn + total)
            pq_a = _grow_i4(pq_a, qn + total)
    counters[l, C_OPS] += ops
    counters[l, C_UPDATES] += updates
    if rec == 1:
        return out_t, out_a, n_out, pq_t[qh:qn].copy(), pq_a[qh:qn].copy()
    return out_t, out_a, n_out, q_t, q_a


@njit(cache=True, inline="always")
def _write_spikes(spk_n, spk_k, n_spk, uoff, oc, ohw, t, delay, rec, rec_delay, out_t, out_a, n_out, pq_t, pq_a,
                  qn):
    shift = -1  # channel counts are mostly powers of two: a shift and a mask instead of two divisions
    if oc & (oc - 1) == 0:
        shift = 0
        while (1 << shift) < oc:
            shift += 1
    for e in range(n_spk):
        m = spk_n[e] - uoff
        if shift >= 0:
            addr = (m & (oc - 1)) * ohw + (m >> shift)
        else:
            addr = (m % oc) * ohw + m // oc
        for _ in range(spk_k[e]):
            out_t[n_out] = t + delay
            out_a[n_out] = addr
            n_out += 1
            if rec == 1:
                pq_t[qn] = t + rec_delay
                pq_a[qn] = m
                qn += 1
    return n_out, qn


@njit(cache=True)
def _channel_gate(l, t, start, stop, out_a, desc, fpar, lstate, cg_w, cg_b, cg_r, counters, seg_base, seg_woff,
                  seg_cnt):
    """Update channel traces with the spikes out_a[start:stop] (all at time t), then keep only the spikes of
    channels that score ≥ 0. Returns the new end of the kept spikes."""
    oc = desc[l, D_OUT_C]
    ohw = desc[l, D_OUT_H] * desc[l, D_OUT_W]
    off = desc[l, D_CG_OFF]
    tau = fpar[l, F_CG_TAU]
    x = (t - lstate[l, S_CG_TREF]) / tau
    if x > RENORM:
        f = math.exp(-x)
        for c in range(oc):
            cg_r[off + c] *= f
        lstate[l, S_CG_SUM] *= f
        lstate[l, S_CG_TREF] = t
        x = 0.0
    g = math.exp(x)
    for e in range(start, stop):
        c = out_a[e] // ohw
        cg_r[off + c] += g
        lstate[l, S_CG_SUM] += g
    mean = lstate[l, S_CG_SUM] / oc
    kept = start
    gate_ops = stop - start
    for e in range(start, stop):
        a = out_a[e]
        c = a // ohw
        score = cg_w[off + c] * (cg_r[off + c] / mean) + cg_b[off + c]
        gate_ops += 1
        if score >= 0.0:
            out_a[kept] = a
            kept += 1
        else:
            counters[l, C_GATED] += 1
            counters[l, C_SAVED] += fanout_count(desc, l + 1, a, seg_base, seg_woff, seg_cnt)
    counters[l, C_GATE_OPS] += gate_ops
    return kept


@njit(cache=True)
def _chain(
    in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters,
    q_t, q_a, q_start,
):
    """Run every layer over one packet's events (sorted ``in_t``, addresses ``in_a``), watermark ``wm``.

    Returns (out_t, out_a, new_q_t, new_q_a, new_q_start): the last layer's spikes, and the recurrent spikes
    still pending (at or after each layer's watermark)."""
    n_layers = desc.shape[0]
    max_seg = 1
    for l in range(n_layers):
        max_seg = max(max_seg, desc[l, D_KH] * desc[l, D_KW])
    seg_base = np.empty(max_seg, dtype=np.int64)
    seg_woff = np.empty(max_seg, dtype=np.int64)
    seg_cnt = np.empty(max_seg, dtype=np.int64)
    cur_t = in_t
    cur_a = in_a
    n_cur = in_t.shape[0]
    cur_wm = wm
    nq_total = 0
    new_t = np.empty(q_t.shape[0] + 16, dtype=np.int64)
    new_a = np.empty(q_t.shape[0] + 16, dtype=np.int32)
    new_start = np.zeros(n_layers + 1, dtype=np.int64)
    for l in range(n_layers):
        lq_t = q_t[q_start[l]: q_start[l + 1]]
        lq_a = q_a[q_start[l]: q_start[l + 1]]
        o_t, o_a, n_o, p_t, p_a = _layer(
            l, cur_t, cur_a, n_cur, cur_wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut,
            cg_w, cg_b, cg_r, counters, lq_t, lq_a, seg_base, seg_woff, seg_cnt,
        )
        new_start[l] = nq_total
        if desc[l, D_REC] == 1:
            k = p_t.shape[0]
            if nq_total + k > new_t.shape[0]:
                new_t = _grow_i8(new_t, nq_total + k)
                new_a = _grow_i4(new_a, nq_total + k)
            new_t[nq_total: nq_total + k] = p_t
            new_a[nq_total: nq_total + k] = p_a
            nq_total += k
        if lstate[l, S_RUNAWAY] > 0:
            return o_t[:0].copy(), o_a[:0].copy(), new_t[:0].copy(), new_a[:0].copy(), new_start
        cur_t = o_t
        cur_a = o_a
        n_cur = n_o
        cur_wm = cur_wm + desc[l, D_DELAY]
    new_start[n_layers] = nq_total
    return cur_t[:n_cur], cur_a[:n_cur], new_t[:nq_total], new_a[:nq_total], new_start


@njit(cache=True)
def encode_dvs(x, y, p, t, width, height):
    """Flat input addresses ``p·H·W + y·W + x`` and contiguous times; returns (t, addr, index of the first
    event outside the sensor or -1)."""
    n = x.shape[0]
    addr = np.empty(n, dtype=np.int32)
    tt = np.empty(n, dtype=np.int64)
    hw = width * height
    for i in range(n):
        xi = x[i]
        yi = y[i]
        if xi < 0 or xi >= width or yi < 0 or yi >= height:
            return tt, addr, i
        addr[i] = (hw if p[i] else 0) + yi * width + xi
        tt[i] = t[i]
    return tt, addr, -1


@njit(cache=True)
def encode_audio(x, p, t, channels):
    """Flat input addresses ``p·channels + x`` for cochlea events; (t, addr, first bad index or -1)."""
    n = x.shape[0]
    addr = np.empty(n, dtype=np.int32)
    tt = np.empty(n, dtype=np.int64)
    for i in range(n):
        xi = x[i]
        if xi < 0 or xi >= channels:
            return tt, addr, i
        addr[i] = (channels if p[i] else 0) + xi
        tt[i] = t[i]
    return tt, addr, -1


@njit(cache=True)
def encode_flat(a, t, size):
    """Contiguous copies of spike addresses and times; returns (t, addr, index of the first bad address or -1)."""
    n = a.shape[0]
    addr = np.empty(n, dtype=np.int32)
    tt = np.empty(n, dtype=np.int64)
    for i in range(n):
        ai = a[i]
        if ai < 0 or ai >= size:
            return tt, addr, i
        addr[i] = ai
        tt[i] = t[i]
    return tt, addr, -1


@njit(cache=True)
def fanout_sum(desc, l, addrs):
    """Σ of ``fanout_count`` over addresses (the ops that dropped input events would have cost)."""
    max_seg = 1
    for k in range(desc.shape[0]):
        max_seg = max(max_seg, desc[k, D_KH] * desc[k, D_KW])
    seg_base = np.empty(max_seg, dtype=np.int64)
    seg_woff = np.empty(max_seg, dtype=np.int64)
    seg_cnt = np.empty(max_seg, dtype=np.int64)
    total = 0
    for i in range(addrs.shape[0]):
        total += fanout_count(desc, l, addrs[i], seg_base, seg_woff, seg_cnt)
    return total


SPIKE_DTYPE = np.dtype([("t", "<i8"), ("addr", "<i4")])  # == runtime.events.SPIKE_EVENT (kernels import nothing)


@njit(cache=True)
def _pack(out_t, out_a, q_t, q_a, q_start, err):
    """The output spikes as one SPIKE_EVENT array, and [err, q_start..., q_t..., q_a...] as one int64 array:
    returning few arrays keeps the per-packet cost down (numba boxes every returned array)."""
    n = out_t.shape[0]
    ev = np.empty(n, dtype=SPIKE_DTYPE)
    for i in range(n):
        ev[i]["t"] = out_t[i]
        ev[i]["addr"] = out_a[i]
    nl = q_start.shape[0]
    nq = q_t.shape[0]
    extra = np.empty(1 + nl + 2 * nq, dtype=np.int64)
    extra[0] = err
    extra[1: 1 + nl] = q_start
    extra[1 + nl: 1 + nl + nq] = q_t
    extra[1 + nl + nq:] = q_a
    return ev, extra


@njit(cache=True, nogil=True)
def run_encoded(in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t, q_a,
                q_start):
    """One packet of already encoded inputs (times, flat addresses; the addresses are sorted in place within
    equal times). Returns (spikes, extra) as ``_pack``."""
    o_t, o_a, n_t, n_a, n_s = _chain(in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r,
                                     counters, q_t, q_a, q_start)
    runaway = False
    for l in range(desc.shape[0]):
        runaway |= lstate[l, S_RUNAWAY] > 0
    return _pack(o_t, o_a, n_t, n_a, n_s, ERR_RUNAWAY if runaway else -1)


@njit(cache=True, nogil=True)
def run_dvs(events, width, height, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters,
            q_t, q_a, q_start):
    """One packet of DVS events (the packet's DVS_EVENT array itself: one argument instead of four column views
    made in Python, a measurable part of the per-packet cost): encode (``p·H·W + y·W + x``), then run the chain.
    ``extra[0]`` is the index of the first event outside the sensor (nothing was run then) or -1."""
    in_t, in_a, bad = encode_dvs(events["x"], events["y"], events["p"], events["t"], width, height)
    if bad >= 0:
        return _pack(in_t[:0], in_a[:0], q_t, q_a, q_start, bad)
    return run_encoded(in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t,
                       q_a, q_start)


@njit(cache=True, nogil=True)
def run_audio(events, channels, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t,
              q_a, q_start):
    """As ``run_dvs`` for cochlea events (AUDIO_EVENT array; ``p·channels + x``)."""
    in_t, in_a, bad = encode_audio(events["x"], events["p"], events["t"], channels)
    if bad >= 0:
        return _pack(in_t[:0], in_a[:0], q_t, q_a, q_start, bad)
    return run_encoded(in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t,
                       q_a, q_start)


@njit(cache=True, nogil=True)
def run_spikes(events, size, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t, q_a,
               q_start):
    """As ``run_dvs`` for spike events (SPIKE_EVENT array; flat addresses checked against ``size``)."""
    in_t, in_a, bad = encode_flat(events["addr"], events["t"], size)
    if bad >= 0:
        return _pack(in_t[:0], in_a[:0], q_t, q_a, q_start, bad)
    return run_encoded(in_t, in_a, wm, desc, fpar, W, u, tl, ru, scratch, lstate, lut, cg_w, cg_b, cg_r, counters, q_t,
                       q_a, q_start)
