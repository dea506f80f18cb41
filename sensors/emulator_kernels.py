"""numba kernels of the DVS pixel model (see ``sensors.emulator`` for the model and its parameters).

Every kernel takes flat arrays and scalars only. State arrays are float32 (memory traffic is what a frame costs);
arithmetic is float64 after explicit casts and roundings, so the slow reference twins in
``tests/test_sensors_emulator.py`` reproduce the kernels bit for bit.

A frame is two passes: ``frame_update`` is a lean loop over every pixel (filter, leak, threshold test) that lists
the few pixels that crossed; ``frame_crossings`` makes their events. Keeping the event code out of the per-pixel
loop roughly halves the cost of a frame.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from runtime.events import DVS_EVENT

__all__ = ["frame_update", "frame_crossings", "sort_by_time", "warm_up"]


@njit(cache=True, nogil=True, inline="always")
def _crossing_time(level, r0, us_per_unit, t_prev_us, dt_us):
    """Time in (t_prev, t_prev + dt] at which a change growing linearly from r0 reaches level, the change
    taking ``us_per_unit`` µs per log unit (dt / slope; 0 when the change does not move: the crossing is at the
    end of the interval). One multiplication per event; the division is made once per pixel."""
    off = (level - r0) * us_per_unit if us_per_unit != 0.0 else np.float64(dt_us)
    if off < 0.0:
        off = 0.0
    elif off > dt_us:
        off = np.float64(dt_us)
    t = t_prev_us + int(math.floor(off + 0.5))
    if t <= t_prev_us:
        t = t_prev_us + 1
    return t


_BLOCK = 1024  # pixels per block of pass 1: its scratch columns stay in L1


@njit(cache=True, nogil=True, inline="always")
def _update_block(log_new, eps, lp, base, th_on, th_off, leak, lp_old, flags, use_lowpass, use_leak):
    """Pass 1 on one block, branch-free so that it vectorises (the table look-ups are done before, apart).
    ``use_lowpass`` / ``use_leak`` are constants at every call site, so each combination compiles lean."""
    for j in range(lp.shape[0]):
        lp0 = lp[j]
        lp_old[j] = lp0
        if use_lowpass:
            lp1 = np.float32(np.float64(lp0) + np.float64(eps[j]) * (np.float64(log_new[j]) - np.float64(lp0)))
        else:
            lp1 = log_new[j]
        if use_leak:  # without leak, base only moves on events: no read of leak[], no write here
            b = np.float32(np.float64(base[j]) - np.float64(leak[j]))
            base[j] = b
        else:
            b = base[j]
        d = np.float64(lp1) - np.float64(b)
        flags[j] = (d >= np.float64(th_on[j])) | (d <= -np.float64(th_off[j]))
        lp[j] = lp1


@njit(cache=True, nogil=True)
def frame_update(
    frame, log_lut, eps_lut, log_values, eps_values, use_lut, use_lowpass, lp, base, th_on, th_off, use_leak, leak,
    cand_idx, cand_lp0,
):
    """Pass 1 over every pixel: low-pass, leak, and the list of pixels whose change reached a threshold.

    ``use_lut``: the frame is flat uint8 and the lin-log value and low-pass gain come from 256-entry tables;
    otherwise they are given per pixel in ``log_values`` / ``eps_values`` (float frames). ``lp`` and ``base``
    are float32 quantities: the new values are rounded before the test, so pass 2 sees exactly what was tested.
    Returns the number of candidate pixels written to ``cand_idx`` (pixel) and ``cand_lp0`` (previous ``lp``).

    Runs block by block: table look-ups into L1 scratch columns (gathers do not vectorise), the arithmetic as a
    branch-free vector loop that flags the crossing pixels, then a scan of the flags eight at a time (most
    pixels do not cross). The arithmetic is the same, operation for operation, as a plain per-pixel loop.
    """
    npx = lp.shape[0]
    B = _BLOCK
    lv = np.empty(B, np.float32)
    ev = np.empty(B, np.float32)
    lp_old = np.empty(B, np.float32)
    flags = np.zeros(B, np.uint8)
    flags8 = flags.view(np.uint64)
    m = 0
    s = 0
    while s < npx:
        e = min(npx, s + B)
        nb = e - s
        if use_lut:
            for j in range(nb):
                v = frame[s + j]
                lv[j] = log_lut[v]
                ev[j] = eps_lut[v]
            log_new = lv[:nb]
            eps = ev[:nb]
        else:
            log_new = log_values[s:e]
            eps = eps_values[s:e]
        lp_b, base_b, on_b, off_b, leak_b = lp[s:e], base[s:e], th_on[s:e], th_off[s:e], leak[s:e] if use_leak else leak
        if use_lowpass:
            if use_leak:
                _update_block(log_new, eps, lp_b, base_b, on_b, off_b, leak_b, lp_old, flags, True, True)
            else:
                _update_block(log_new, eps, lp_b, base_b, on_b, off_b, leak_b, lp_old, flags, True, False)
        elif use_leak:
            _update_block(log_new, eps, lp_b, base_b, on_b, off_b, leak_b, lp_old, flags, False, True)
        else:
            _update_block(log_new, eps, lp_b, base_b, on_b, off_b, leak_b, lp_old, flags, False, False)
        for w in range((nb + 7) // 8):
            if flags8[w] != 0:
                for j in range(8 * w, min(8 * w + 8, nb)):  # branch-free: write always, advance on a flag
                    cand_idx[m] = s + j
                    cand_lp0[m] = lp_old[j]
                    m += flags[j]
        s = e
    return m


@njit(cache=True, nogil=True)
def frame_crossings(
    cand_idx, cand_lp0, n_cand, start, lp, base, th_on, th_off, use_leak, leak, t_prev_us, dt_us, refractory_us,
    t_last, width, out_x, out_y, out_t, out_p, counts,
):
    """Pass 2 over the candidates ``start..n_cand``: their events, ``base`` moved by the crossings made.

    Between the frames the change ``lp - base`` moves linearly: the filtered signal ramps from ``lp0`` to ``lp``
    while the memorized level leaks down by ``leak``; crossing ``q`` (of ``k``) is timed where the change reaches
    ``q`` thresholds, so leak events in a still scene are spread in time instead of landing on frame times.

    Stops before a candidate whose events do not fit in the output columns, leaving its state untouched, and
    returns ``(n_written, next_candidate)`` so the caller grows its buffers and resumes there. When ``counts`` is
    not empty, the histogram of ``t - t_prev_us`` for ``sort_by_time`` is built here, while the times are hot.
    """
    histogram = counts.shape[0] > 0
    n = 0
    capacity = out_x.shape[0]
    for j in range(start, n_cand):
        i = cand_idx[j]
        lp0 = np.float64(cand_lp0[j])
        lp1 = np.float64(lp[i])
        b = np.float64(base[i])
        d = lp1 - b
        ton = np.float64(th_on[i])
        toff = np.float64(th_off[i])
        if d >= ton:
            th = ton
            sign = 1.0
            k = int(d / ton)
        else:
            th = toff
            sign = -1.0
            k = int(-d / toff)
        leak_i = np.float64(leak[i]) if use_leak else 0.0
        r0 = lp0 - (b + leak_i)  # the change at the previous frame (base before this interval's leak)
        slope = (lp1 - lp0) + leak_i
        us_per_unit = dt_us / slope if slope != 0.0 else 0.0
        y = i // width
        x = i - y * width
        # Events are written past n but only kept (n advanced, state changed) when all of them fit.
        t_free = t_last[i] + refractory_us
        w = n
        for q in range(1, k + 1):
            t = _crossing_time(sign * q * th, r0, us_per_unit, t_prev_us, dt_us)
            if t >= t_free:
                if w == capacity:
                    return n, j
                out_x[w] = x
                out_y[w] = y
                out_t[w] = t
                out_p[w] = sign > 0.0
                w += 1
                t_free = t + refractory_us
        if w > n:
            t_last[i] = out_t[w - 1]
            if histogram:
                for e in range(n, w):
                    counts[out_t[e] - t_prev_us] += 1
            n = w
        # The memorized level follows every crossing, emitted or held in refractory (the pixel is in reset).
        base[i] = b + sign * k * th
    return n, n_cand


@njit(cache=True, nogil=True)
def sort_by_time(x, y, t, p, t_lo, span, counts, n_counted, out):
    """Stable counting sort of events with t in [t_lo, t_lo + span) into ``out``, a DVS_EVENT array. O(n + span).

    ``counts[k]`` (length ``span + 1``) already holds how many of the first ``n_counted`` events have
    ``t = t_lo + k - 1``; the rest are counted here. ``counts`` is used up (turned into positions).
    ``out`` is the one record array a kernel here takes: its four field views are strided, and storing each
    event's four fields into one 13-byte record at once is about twice as fast as four scattered stores.
    """
    n = t.shape[0]
    for i in range(n_counted, n):
        counts[t[i] - t_lo + 1] += 1
    for k in range(1, span + 1):
        counts[k] += counts[k - 1]
    for i in range(n):
        ti = t[i]
        k = ti - t_lo
        j = counts[k]
        counts[k] = j + 1
        r = out[j]
        r.x = x[i]
        r.y = y[i]
        r.t = ti
        r.p = p[i]


def warm_up() -> None:
    """Compile (or load from cache) every kernel on tiny inputs, so no real frame pays for compilation."""
    npx = 4
    f32 = np.zeros(npx, dtype=np.float32)
    th = np.full(npx, 0.2, dtype=np.float32)
    t_last = np.full(npx, -(1 << 60), dtype=np.int64)
    ox, oy = np.zeros(8, np.int16), np.zeros(8, np.int16)
    ot, op = np.zeros(8, np.int64), np.zeros(8, np.bool_)
    lut = np.zeros(256, dtype=np.float32)
    cand_idx, cand_lp0 = np.zeros(npx, np.int32), np.zeros(npx, np.float32)
    for use_lut in (True, False):
        frame_update(np.zeros(npx, np.uint8), lut, lut, f32, f32, use_lut, True, f32.copy(), f32.copy(), th, th,
                     True, f32, cand_idx, cand_lp0)
    counts = np.zeros(12, np.int32)
    frame_crossings(cand_idx, cand_lp0, 0, 0, f32.copy(), f32.copy(), th, th, True, f32, 0, 10, 0, t_last.copy(), 2,
                    ox, oy, ot, op, counts)
    sort_by_time(ox[:1], oy[:1], ot[:1] + 1, op[:1], 1, 1, counts[:2], 0, np.zeros(1, dtype=DVS_EVENT))
