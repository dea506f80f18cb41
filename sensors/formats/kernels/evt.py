"""Prophesee EVT 2.0 / 2.1 / 3.0 word decoders.

Each decoder is resumable: it decodes words from ``start`` until the input ends or the output buffer (``outb``: a
packed ``DVS_EVENT`` array seen as uint8) cannot take the next word's events, keeps its decoding state in a small int64 array ``state`` between calls, and returns
``(next_word, n_events, n_triggers, status, status_word)``. ``status`` is 0 (fine), ``BAD_TYPE`` (a reserved word
type at ``status_word``). Order and bounds are checked on the fly: ``state[S_DISORDER]`` / ``state[S_OUTSIDE]`` turn
1 when an event went back in time or fell outside ``width × height``; the reader then rescans that chunk to name the
event. Time is int64 µs; the fixed-width counters are unwrapped (``state[S_WRAPS]``).
"""

from __future__ import annotations

import numba as nb
import numpy as np

from .memory import DVS_RECORD_BYTES, load_u16, load_u32, put_dvs

__all__ = [
    "BAD_TYPE",
    "S_LAST_T",
    "S_WRAPS",
    "S_HELD",
    "S_DISORDER",
    "S_OUTSIDE",
    "STATE_SIZE",
    "new_state",
    "evt2_decode",
    "evt21_decode",
    "evt3_decode",
]

BAD_TYPE = 1

# state slots shared by all three decoders
S_LAST_T = 0  # latest event time emitted (µs), for the order check
S_WRAPS = 1  # counter wraps unwrapped so far
S_HELD = 2  # time-base backward steps held (EVT 3.0)
S_DISORDER = 3  # 1 once an event went back in time in the current chunk
S_OUTSIDE = 4  # 1 once an event fell outside the sensor in the current chunk
S_TIME_BASE = 5  # EVT 2.x: unwrapped TIME_HIGH << 6; EVT 3.0: current (held) time
S_TH_RAW = 6  # raw TIME_HIGH of the last time word (-1 before the first)
S_Y = 8  # EVT 3.0: current row
S_X = 9  # EVT 3.0: vector base column
S_POL = 10  # EVT 3.0: vector polarity
STATE_SIZE = 12


def new_state() -> np.ndarray:
    state = np.zeros(STATE_SIZE, dtype=np.int64)
    state[S_LAST_T] = np.iinfo(np.int64).min
    state[S_TH_RAW] = -1
    return state


@nb.njit(cache=True, nogil=True)
def evt2_decode(words, start, outb, trig_t, trig_id, trig_p, state, width, height):
    """EVT 2.0: 32-bit words; CD_OFF 0x0 / CD_ON 0x1 (t low 6 bits, x 11, y 11), TIME_HIGH 0x8 (28 bits),
    EXT_TRIGGER 0xA, OTHERS 0xE and CONTINUED 0xF (ignored); anything else is reserved."""
    cap = outb.shape[0] // DVS_RECORD_BYTES
    tcap = trig_t.shape[0]
    n = words.shape[0]
    k = 0
    ntrig = 0
    base = state[S_TIME_BASE]
    th_raw = state[S_TH_RAW]
    wraps = state[S_WRAPS]
    last_t = state[S_LAST_T]
    disorder = state[S_DISORDER]
    x_max = 0
    y_max = 0
    i = start
    status = 0
    # The hot path is the CD branch: checks are folded into a flag and maxima (no branch per event).
    while i < n:
        w = load_u32(words, i)  # 0 <= i < n
        typ = w >> 28
        if typ <= 1:
            if k >= cap:
                break
            x = (w >> 11) & 0x7FF
            y = w & 0x7FF
            t = base | ((w >> 22) & 0x3F)
            disorder |= t < last_t
            last_t = t
            x_max = max(x_max, x)
            y_max = max(y_max, y)
            put_dvs(outb, k, x | (y << 16), t, typ)  # 0 <= k < cap
            k += 1
        elif typ == 8:
            th = w & 0xFFFFFFF
            if th_raw >= 0 and th_raw - th > (1 << 27):
                wraps += 1
            th_raw = th
            base = ((wraps << 28) + th) << 6
        elif typ == 0xA:
            if ntrig >= tcap:
                break
            trig_t[ntrig] = base | ((w >> 22) & 0x3F)
            trig_id[ntrig] = (w >> 8) & 0x1F
            trig_p[ntrig] = (w & 1) == 1
            ntrig += 1
        elif typ != 0xE and typ != 0xF:
            status = BAD_TYPE
            break
        i += 1
    state[S_TIME_BASE] = base
    state[S_TH_RAW] = th_raw
    state[S_WRAPS] = wraps
    state[S_LAST_T] = last_t
    state[S_DISORDER] = disorder
    if x_max >= width or y_max >= height:
        state[S_OUTSIDE] = 1
    return i, k, ntrig, status, i


@nb.njit(cache=True, nogil=True)
def evt21_decode(words, start, outb, trig_t, trig_id, trig_p, state, width, height, swap_halves):
    """EVT 2.1: 64-bit words; EVT_NEG 0x0 / EVT_POS 0x1 carry t low 6 bits, a 32-aligned x, y and a 32-bit valid
    mask (bit i = pixel x + i); TIME_HIGH 0x8 (28 bits), EXT_TRIGGER 0xA, OTHERS 0xE, CONTINUED 0xF.
    ``swap_halves`` is for the legacy IMX636 byte order (high 32-bit half first)."""
    cap = outb.shape[0] // DVS_RECORD_BYTES
    n = words.shape[0]
    k = 0
    ntrig = 0
    base = state[S_TIME_BASE]
    th_raw = state[S_TH_RAW]
    wraps = state[S_WRAPS]
    last_t = state[S_LAST_T]
    disorder = state[S_DISORDER]
    outside = state[S_OUTSIDE]
    i = start
    status = 0
    while i < n:
        w = np.uint64(words[i])
        if swap_halves:
            w = (w << np.uint64(32)) | (w >> np.uint64(32))
        typ = np.int64(w >> np.uint64(60))
        if typ <= 1:
            if k + 32 > cap:
                break
            t = base | np.int64((w >> np.uint64(54)) & np.uint64(0x3F))
            x0 = np.int64((w >> np.uint64(43)) & np.uint64(0x7FF))
            y = np.int64((w >> np.uint64(32)) & np.uint64(0x7FF))
            valid = np.int64(w & np.uint64(0xFFFFFFFF))
            if valid != 0:
                if t < last_t:
                    disorder = 1
                last_t = t
                if y >= height:
                    outside = 1
                yy = y << 16
                top = 31
                while (valid >> top) & 1 == 0:
                    top -= 1
                if x0 + top >= width:
                    outside = 1
                b = 0
                while valid != 0:  # lowest set bit first: pixels come out in increasing x
                    if valid & 1:
                        put_dvs(outb, k, (x0 + b) | yy, t, typ)  # k < cap - 32 checked above
                        k += 1
                    valid >>= 1
                    b += 1
        elif typ == 8:
            th = np.int64((w >> np.uint64(32)) & np.uint64(0xFFFFFFF))
            if th_raw >= 0 and th_raw - th > (1 << 27):
                wraps += 1
            th_raw = th
            base = ((wraps << 28) + th) << 6
        elif typ == 0xA:
            if ntrig >= trig_t.shape[0]:
                break
            trig_t[ntrig] = base | np.int64((w >> np.uint64(54)) & np.uint64(0x3F))
            trig_id[ntrig] = np.int64((w >> np.uint64(40)) & np.uint64(0x1F))
            trig_p[ntrig] = ((w >> np.uint64(32)) & np.uint64(1)) == np.uint64(1)
            ntrig += 1
        elif typ != 0xE and typ != 0xF:
            status = BAD_TYPE
            break
        i += 1
    state[S_TIME_BASE] = base
    state[S_TH_RAW] = th_raw
    state[S_WRAPS] = wraps
    state[S_LAST_T] = last_t
    state[S_DISORDER] = disorder
    state[S_OUTSIDE] = outside
    return i, k, ntrig, status, i


@nb.njit(cache=True, nogil=True)
def evt3_decode(words, start, outb, trig_t, trig_id, trig_p, state, width, height):
    """EVT 3.0: 16-bit words. ADDR_Y 0x0 (row), ADDR_X 0x2 (one event), VECT_BASE_X 0x3, VECT_12 0x4, VECT_8 0x5
    (vectors of events from the base column, which then advances), TIME_LOW 0x6 / TIME_HIGH 0x8 (12 bits each of
    a 24-bit µs counter; a new TIME_HIGH clears the low part), EXT_TRIGGER 0xA, CONTINUED 0x7/0xF and OTHERS 0xE
    (ignored). Time never goes back: a time word behind the latest time is held at it and counted, unless it is
    more than half the counter range behind, which is a wrap."""
    cap = outb.shape[0] // DVS_RECORD_BYTES
    n = words.shape[0]
    k = 0
    ntrig = 0
    t = state[S_TIME_BASE]
    th_raw = state[S_TH_RAW]
    wraps = state[S_WRAPS]
    held = state[S_HELD]
    y = state[S_Y]
    xb = state[S_X]
    pol = state[S_POL]
    hi = (wraps << 24) + (max(th_raw, 0) << 12)  # the time base of the current TIME_HIGH
    x_max = 0
    y_max = 0
    i = start
    status = 0
    while i < n:
        w = load_u16(words, i)  # 0 <= i < n
        typ = w >> 12
        if typ == 0x2:
            if k >= cap:
                break
            x = w & 0x7FF
            x_max = max(x_max, x)
            put_dvs(outb, k, x | (y << 16), t, (w >> 11) & 1)  # 0 <= k < cap
            k += 1
        elif typ == 0x0:
            y = w & 0x7FF
            y_max = max(y_max, y)
        elif typ == 0x6:
            if th_raw < 0:
                th_raw = 0
            cand = hi + (w & 0xFFF)
            if cand >= t:
                t = cand
            elif t - cand > (1 << 23):
                wraps += 1
                hi += 1 << 24
                t = cand + (1 << 24)
            else:
                held += 1
        elif typ == 0x8:
            th = w & 0xFFF
            if th != th_raw:
                # a new high part starts its low part at 0; TIME_HIGH repeated unchanged changes nothing
                th_raw = th
                hi = (wraps << 24) + (th << 12)
                if hi >= t:
                    t = hi
                elif t - hi > (1 << 23):
                    wraps += 1
                    hi += 1 << 24
                    t = hi
                else:
                    held += 1
        elif typ == 0x4 or typ == 0x5:
            if k + 12 > cap:
                break
            if typ == 0x4:
                valid = w & 0xFFF
                span = 12
            else:
                valid = w & 0xFF
                span = 8
            if valid != 0:
                top = 11
                while (valid >> top) & 1 == 0:
                    top -= 1
                x_max = max(x_max, xb + top)  # the last column the vector reaches, checked once
                yy = y << 16
                for b in range(span):
                    if (valid >> b) & 1:
                        put_dvs(outb, k, (xb + b) | yy, t, pol)  # k + 12 <= cap checked above
                        k += 1
            xb += span
        elif typ == 0x3:
            xb = w & 0x7FF
            pol = (w >> 11) & 1
        elif typ == 0xA:
            if ntrig >= trig_t.shape[0]:
                break
            trig_t[ntrig] = t
            trig_id[ntrig] = (w >> 8) & 0xF
            trig_p[ntrig] = (w & 1) == 1
            ntrig += 1
        elif typ != 0x7 and typ != 0xE and typ != 0xF:
            status = BAD_TYPE
            break
        i += 1
    state[S_TIME_BASE] = t
    state[S_TH_RAW] = th_raw
    state[S_WRAPS] = wraps
    state[S_HELD] = held
    state[S_Y] = y
    state[S_X] = xb
    state[S_POL] = pol
    state[S_LAST_T] = t
    if x_max >= width or y_max >= height:
        state[S_OUTSIDE] = 1
    return i, k, ntrig, status, i
