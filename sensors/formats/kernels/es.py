"""Event Stream (``.es``) byte decoder, DVS and ATIS types: a resumable byte state machine."""

from __future__ import annotations

import numba as nb
import numpy as np

__all__ = ["ES_STATE_SIZE", "es_decode"]

ES_STATE_SIZE = 6  # [phase 0-4, t, polarity (-1 = not a polarity event), x, y, 0]


@nb.njit(cache=True, nogil=True)
def es_decode(data, start, out, state, atis, height):
    """Decode bytes ``data[start:]`` into ``out`` until it is full; returns (next byte, events written).

    DVS: a byte ``0xFF`` adds 127 µs, ``0xFE`` is a reset marker (ignored), any other byte adds ``byte >> 1`` µs and
    carries the polarity in bit 0, followed by x and y as little-endian u16. ATIS: a byte with its top six bits set
    adds ``63 * (byte & 3)`` µs, any other adds ``byte >> 2``; bits 0-1 are OFF 00, ON 10, exposure 01/11 (dropped).
    The file's y axis points up: y is written as ``height - 1 - y`` (image orientation, as faery does); a row at
    or beyond ``height`` (or a column beyond int16) is written as -1 for the reader's bounds check to report.
    """
    phase = state[0]
    t = state[1]
    pol = state[2]
    x = state[3]
    y = state[4]
    cap = out.shape[0]
    k = 0
    i = start
    n = data.shape[0]
    while i < n:
        b = np.int64(data[i])
        if phase == 0:
            if atis:
                if (b & 0xFC) == 0xFC:
                    t += 63 * (b & 3)
                else:
                    if k >= cap:
                        break
                    t += b >> 2
                    pol = -1 if (b & 1) == 1 else (b >> 1) & 1
                    phase = 1
            else:
                if b == 0xFF:
                    t += 127
                elif b != 0xFE:
                    if k >= cap:
                        break
                    t += b >> 1
                    pol = b & 1
                    phase = 1
        elif phase == 1:
            x = b
            phase = 2
        elif phase == 2:
            x |= b << 8
            phase = 3
        elif phase == 3:
            y = b
            phase = 4
        else:
            y |= b << 8
            phase = 0
            if pol >= 0:
                e = out[k]
                # a coordinate outside the sensor becomes -1, which the reader's bounds check reports
                e.x = x if x < 32768 else -1
                e.y = height - 1 - y if y < height else -1
                e.t = t
                e.p = pol == 1
                k += 1
        i += 1
    state[0] = phase
    state[1] = t
    state[2] = pol
    state[3] = x
    state[4] = y
    return i, k
