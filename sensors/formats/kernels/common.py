"""Kernels shared by every reader: order and bounds scans, order repair, fixed-width timestamp unwrapping."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["first_disorder", "first_out_of_bounds", "check_chunk", "repair_chunk_order", "unwrap_u32"]


@nb.njit(cache=True, nogil=True)
def first_disorder(t, last):
    """Index of the first ``t[i]`` below the one before it (``last`` before ``t[0]``); -1 when sorted."""
    prev = last
    for i in range(t.shape[0]):
        if t[i] < prev:
            return i
        prev = t[i]
    return -1


@nb.njit(cache=True, nogil=True)
def first_out_of_bounds(v, limit):
    """Index of the first value outside ``[0, limit)``; -1 when all are inside."""
    for i in range(v.shape[0]):
        if v[i] < 0 or v[i] >= limit:
            return i
    return -1


@nb.njit(cache=True, nogil=True)
def check_chunk(t, x, y, last, width, height):
    """One pass over a chunk: (index of the first time going back or -1, index of the first event outside
    ``[0, width) × [0, height)`` or -1). The loop only flags; the exact indices are found after it, if needed."""
    prev = last
    bad_t = False
    bad_xy = False
    for i in range(t.shape[0]):
        bad_t |= t[i] < prev
        prev = t[i]
        bad_xy |= (x[i] < 0) | (x[i] >= width) | (y[i] < 0) | (y[i] >= height)
    i_t = first_disorder(t, last) if bad_t else -1
    i_xy = -1
    if bad_xy:
        a = first_out_of_bounds(x, width)
        b = first_out_of_bounds(y, height)
        i_xy = a if b < 0 or (0 <= a < b) else b
    return i_t, i_xy


@nb.njit(cache=True, nogil=True)
def repair_chunk_order(t_stream, t_sorted, last):
    """Count events of ``t_stream`` earlier than an event before them; clamp sorted times below ``last`` up to it.

    ``t_sorted`` (written in place) is the chunk after a stable sort. Events earlier than ``last`` (the end of the
    previous chunk, already emitted) cannot move before it any more: they are held at ``last``.
    """
    moved = 0
    running = last
    for i in range(t_stream.shape[0]):
        if t_stream[i] < running:
            moved += 1
        elif t_stream[i] > running:
            running = t_stream[i]
    for i in range(t_sorted.shape[0]):
        if t_sorted[i] < last:
            t_sorted[i] = last
        else:
            break
    return moved


@nb.njit(cache=True, nogil=True)
def unwrap_u32(raw, out, state):
    """Unwrap 32-bit counter values ``raw`` into int64 ``out``; a backward step of more than half the range is a
    wrap. ``state`` = [last raw value or -1, wraps so far]; returns the number of wraps found in this call."""
    last = state[0]
    wraps = state[1]
    found = 0
    for i in range(raw.shape[0]):
        r = np.int64(raw[i])
        if last >= 0 and last - r > 2147483648:
            wraps += 1
            found += 1
        last = r
        out[i] = (wraps << 32) + r
    state[0] = last
    state[1] = wraps
    return found
