"""numba kernels of the event filters (``sensors/filters.py``). Columns and scalars in, keep-masks out.

Each kernel has a slow, obviously-correct twin in ``tests/test_sensors_filters.py``. State arrays (last times,
counts) belong to the calling stage and are updated in place: they are the stage's own state, never an input
packet's arrays.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = [
    "NEVER_US",
    "background_activity_kernel",
    "refractory_kernel",
    "count_pixels_kernel",
    "warm_up",
]

NEVER_US = np.int64(-(2**62))  # "no event yet": far enough back that t - NEVER_US never overflows for real t


@numba.njit(cache=True, nogil=True)
def background_activity_kernel(x, y, t, last_us, window_us, keep):
    """Keep an event when one of its 8 neighbours fired in the half-open window (t - window_us, t].

    ``last_us[x, y]`` holds the latest time each pixel fired (every input event counts, kept or not). Events with
    equal ``t`` are simultaneous and see each other: each run of equal timestamps is first written into
    ``last_us``, then tested, so the result does not depend on the order inside the run. An event's own pixel
    is not its neighbour. Returns the number of events dropped.
    """
    n = t.shape[0]
    width = last_us.shape[0]
    height = last_us.shape[1]
    dropped = 0
    start = 0
    while start < n:
        stop = start + 1
        while stop < n and t[stop] == t[start]:
            stop += 1
        now = t[start]
        for i in range(start, stop):
            last_us[x[i], y[i]] = now
        oldest = now - window_us  # a neighbour must have fired strictly after this
        for i in range(start, stop):
            xi = np.int64(x[i])
            yi = np.int64(y[i])
            ok = False
            for dx in range(-1, 2):
                nx = xi + dx
                if nx < 0 or nx >= width:
                    continue
                for dy in range(-1, 2):
                    if dx == 0 and dy == 0:
                        continue
                    ny = yi + dy
                    if ny < 0 or ny >= height:
                        continue
                    if last_us[nx, ny] > oldest:
                        ok = True
                        break
                if ok:
                    break
            keep[i] = ok
            if not ok:
                dropped += 1
        start = stop
    return dropped


@numba.njit(cache=True, nogil=True)
def refractory_kernel(x, y, t, last_pass_us, period_us, keep):
    """Keep an event when its pixel's last *kept* event is at least ``period_us`` earlier.

    Among simultaneous events at one pixel the first in stream order is kept (the others are 0 µs after it).
    Returns the number of events dropped.
    """
    n = t.shape[0]
    dropped = 0
    for i in range(n):
        xi = x[i]
        yi = y[i]
        if t[i] - last_pass_us[xi, yi] >= period_us:
            last_pass_us[xi, yi] = t[i]
            keep[i] = True
        else:
            keep[i] = False
            dropped += 1
    return dropped


@numba.njit(cache=True, nogil=True)
def count_pixels_kernel(x, y, counts):
    """``counts[x, y] += 1`` for every event (hot-pixel calibration)."""
    for i in range(x.shape[0]):
        counts[x[i], y[i]] += 1


def warm_up() -> None:
    """Compile every kernel for the column layout the stages pass (strided int16/int64 views of DVS events)."""
    from runtime.events import DVS_EVENT

    ev = np.zeros(2, dtype=DVS_EVENT)
    ev["x"] = (0, 1)
    ev["t"] = (0, 1)
    x, y, t = ev["x"], ev["y"], ev["t"]
    keep = np.empty(2, dtype=np.bool_)
    last = np.full((2, 2), NEVER_US, dtype=np.int64)
    background_activity_kernel(x, y, t, last, np.int64(1), keep)
    refractory_kernel(x, y, t, last, np.int64(1), keep)
    count_pixels_kernel(x, y, np.zeros((2, 2), dtype=np.int64))
