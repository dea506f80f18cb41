"""numba kernel of the motion-direction stage (``graphs.motion``): arrays and numbers only."""

from __future__ import annotations

import math

import numba
import numpy as np

__all__ = ["motion_directions"]


@numba.njit(cache=True, nogil=True)
def motion_directions(t: np.ndarray, pos: np.ndarray, last_t: np.ndarray, side: int, radius: int, window_us: int,
                      min_age_us: int, n_dir: int, min_support: int, out_dir: np.ndarray) -> int:
    """Direction channel of each event (``-1``: not enough recent neighbours), from the pixels' last event times.

    ``pos[i]`` is the pixel ``y·side + x`` of event ``i``; ``last_t`` (one int64 per pixel, updated in place) is the
    time of the latest event at each pixel. An event's motion vector points from the neighbours (within
    ``radius``, fewer near a border so the window stays centred) that fired ``min_age_us`` … ``window_us`` before it towards its own pixel: an edge moves from the
    pixels it left towards the ones it reaches. Its angle, quantised to ``n_dir`` sectors (sector 0 centred on
    +x, counting towards +y, i.e. clockwise in the image), is the channel. All events of one timestamp read
    ``last_t`` as it was before that timestamp, then write it, so their order does not matter.
    Returns the neighbour look-ups done (the stage's work)."""
    n = t.shape[0]
    looks = 0
    start = 0
    two_pi = 2.0 * math.pi
    while start < n:
        stop = start + 1
        while stop < n and t[stop] == t[start]:
            stop += 1
        now = t[start]
        for i in range(start, stop):
            p = pos[i]
            y = p // side
            x = p - y * side
            # a window cut by the border would tilt every vector away from it: keep it symmetric instead
            ry = min(radius, y, side - 1 - y)
            rx = min(radius, x, side - 1 - x)
            vx = 0.0
            vy = 0.0
            support = 0
            for dy in range(-ry, ry + 1):
                row = (y + dy) * side
                for dx in range(-rx, rx + 1):
                    xx = x + dx
                    if dx == 0 and dy == 0:
                        continue
                    looks += 1
                    age = now - last_t[row + xx]
                    if age >= min_age_us and age <= window_us:
                        vx -= dx
                        vy -= dy
                        support += 1
            if support >= min_support and (vx != 0.0 or vy != 0.0):
                ang = math.atan2(vy, vx)
                if ang < 0.0:
                    ang += two_pi
                out_dir[i] = int(math.floor(ang / two_pi * n_dir + 0.5)) % n_dir
            else:
                out_dir[i] = -1
        for i in range(start, stop):
            last_t[pos[i]] = now
        start = stop
    return looks
