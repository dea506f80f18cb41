"""numba kernels for packet checks on the hot path (one pass, no temporaries)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["first_descent", "cut_points"]


@numba.njit(cache=True, nogil=True)
def _first_descent(t: np.ndarray) -> int:
    for i in range(1, t.shape[0]):
        if t[i] < t[i - 1]:
            return i
    return -1


def first_descent(t: np.ndarray) -> int:
    """Index of the first element smaller than its predecessor, or -1 when ``t`` never decreases."""
    if t.dtype != np.int64:
        t = t.astype(np.int64)
    return int(_first_descent(t))


@numba.njit(cache=True, nogil=True)
def _cut_points(t: np.ndarray, max_events: int, max_span_us: int) -> np.ndarray:
    n = t.shape[0]
    ends = np.empty(n, dtype=np.int64)
    k = 0
    start = 0
    while start < n:
        end = min(start + max_events, n)
        if max_span_us > 0:
            limit = t[start] + max_span_us
            j = start + 1
            while j < end and t[j] < limit:
                j += 1
            end = j
        if end < n and t[end] == t[end - 1]:
            run_start = end - 1
            while run_start > start and t[run_start - 1] == t[end]:
                run_start -= 1
            if run_start > start:
                end = run_start
            else:
                while end < n and t[end] == t[end - 1]:
                    end += 1
        ends[k] = end
        k += 1
        start = end
    return ends[:k]


def cut_points(t: np.ndarray, max_events: int, max_span_us: int | None) -> np.ndarray:
    """Greedy packet ends: ≤ max_events events and a span < max_span_us, never inside a run of equal t."""
    return _cut_points(np.ascontiguousarray(t, dtype=np.int64), int(max_events), int(max_span_us or 0))


cut_points(np.zeros(3, dtype=np.int64), 2, 5)
first_descent(np.zeros(2, dtype=np.int64))  # compile (or load from cache) at import, never on a first packet
