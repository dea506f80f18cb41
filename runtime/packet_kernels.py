"""numba kernels for packet checks on the hot path (one pass, no temporaries)."""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["first_descent"]


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


first_descent(np.zeros(2, dtype=np.int64))  # compile (or load from cache) at import, never on a first packet
