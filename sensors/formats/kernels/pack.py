"""Pack event columns into packed ``DVS_EVENT`` records in one pass (numpy's field-by-field assignment into
13-byte records is several times slower)."""

from __future__ import annotations

import numba as nb

from .memory import put_dvs

__all__ = ["pack_dvs"]


@nb.njit(cache=True, nogil=True)
def pack_dvs(x, y, t, p, outb):
    """Records ``0..n`` of ``outb`` (a DVS_EVENT array seen as uint8, at least ``13 n`` bytes) from int32 ``x``,
    ``y``, int64 ``t`` and bool ``p``. A coordinate outside int16 is written as -1, which the bounds check
    reports as outside the sensor."""
    n = t.shape[0]
    if outb.shape[0] < 13 * n or x.shape[0] < n or y.shape[0] < n or p.shape[0] < n:
        return -1
    for i in range(n):
        xv = x[i]
        yv = y[i]
        if xv < -32768 or xv > 32767:
            xv = -1
        if yv < -32768 or yv > 32767:
            yv = -1
        put_dvs(outb, i, (xv & 0xFFFF) | ((yv & 0xFFFF) << 16), t[i], p[i])
    return n
