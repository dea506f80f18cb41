"""numba kernels of the spiking audio front end (see ``sensors.audio_frontend`` for the model).

Kernels take arrays and scalars only. Every kernel has a slow reference twin in
``tests/test_sensors_audio_frontend.py`` and a test comparing the two.
"""

from __future__ import annotations

import numpy as np
from numba import njit

__all__ = ["frontend_block", "MACS_PER_SAMPLE", "MACS_PER_FRAME", "MACS_PER_FRAME_NOISE", "MACS_PER_FRAME_SLOW",
           "MACS_PER_FRAME_RISE"]

MACS_PER_SAMPLE = 4  # per active channel: band-pass biquad (3 multiplies) + squared output accumulated (1)
MACS_PER_FRAME = 2  # per active channel and frame: envelope smoothing (1) + delta threshold scaling (1)
MACS_PER_FRAME_NOISE = 2  # with noise-floor tracking: its rise (1) and the margin scaling (1)
MACS_PER_FRAME_SLOW = 1  # the floor follows a slower envelope: its smoothing (1)
MACS_PER_FRAME_RISE = 1  # the floor's rise is capped in dB per second: the cap's scaling (1)


@njit(cache=True, nogil=True)
def frontend_block(
    x,  # float32[n] samples of this block
    n0,  # absolute index of x[0] in the stream
    rate_hz,  # integer sample rate
    frame_us,  # frame length in µs of stream time
    b0,  # float64[C] band-pass gain (b1 = 0, b2 = -b0)
    a1,  # float64[C]
    a2,  # float64[C]
    active,  # bool[C] channels below Nyquist; inactive ones cost nothing and never fire
    beta,  # envelope smoothing factor per frame
    floor_pow,  # mean-square power floor: envelopes below it are clamped to it
    gamma,  # noise-floor rise per frame (0: no noise-floor tracking)
    kappa,  # smoothing per frame of the slow envelope the noise floor follows (1: the envelope itself)
    rise,  # the noise floor rises by at most this factor per frame (0: no cap)
    margin,  # the clamp level is max(floor_pow, noise floor × margin)
    ratio,  # delta threshold as a power ratio (> 1)
    max_per_frame,  # at most this many events per channel and frame
    xh,  # float64[2] state: x[n-1], x[n-2]
    y1,  # float64[C] state: y[n-1]
    y2,  # float64[C] state: y[n-2]
    acc,  # float64[C] state: sum of y^2 in the open frame
    env,  # float64[C] state: smoothed frame power
    ref,  # float64[C] state: level of the last event (delta modulator reference)
    slow,  # float64[C] state: slow envelope (what the noise floor follows)
    noise,  # float64[C] state: noise floor (valley follower of the slow envelope); < 0 before the first frame
    out_t,  # int64[cap] events out
    out_x,  # int16[cap]
    out_p,  # bool[cap]
):
    """Run one block; returns (events written, frames closed). States are updated in place.

    A frame is ``frame_us`` of stream time: sample n belongs to frame floor(n * 10⁶ / (rate_hz * frame_us)). When
    a frame's last
    sample has been filtered, each active channel's mean power updates its envelope, and the delta modulator
    emits ON events while the envelope exceeds ref * ratio (ref *= ratio each) and OFF events while it is below
    ref / ratio, at the time of that last sample. Envelopes are clamped to ``floor_pow``, so silence never fires,
    and (when ``gamma`` > 0) to the channel's noise floor × ``margin``: the noise floor follows a slow envelope
    (the envelope smoothed again by ``kappa`` per frame) down at once and up by ``gamma`` of the gap per frame,
    at most by the factor ``rise`` per frame, so a steady background stops producing events.
    """
    n_ch = b0.shape[0]
    ne = 0
    frames = 0
    x1 = xh[0]
    x2 = xh[1]
    for i in range(x.shape[0]):
        n = n0 + i
        xi = np.float64(x[i])
        d = xi - x2
        for c in range(n_ch):
            if not active[c]:
                continue
            y = b0[c] * d - a1[c] * y1[c] - a2[c] * y2[c]
            y2[c] = y1[c]
            y1[c] = y
            acc[c] += y * y
        x2 = x1
        x1 = xi
        # the frame closes at its last sample: the next sample starts a new frame
        per = rate_hz * frame_us
        if ((n + 1) * 1000000) // per != (n * 1000000) // per:
            frames += 1
            k = (n * 1000000) // per
            first = (k * per + 999999) // 1000000  # first sample of frame k
            length = n + 1 - first
            t = (n * 1000000) // rate_hz
            for c in range(n_ch):
                if not active[c]:
                    continue
                power = acc[c] / length
                acc[c] = 0.0
                e = env[c] + beta * (power - env[c])
                env[c] = e
                if gamma > 0.0:
                    nf = noise[c]
                    if nf < 0.0:  # the channel's first frame: the floor starts at the background heard first
                        slow[c] = e
                        nf = e
                    prev = nf
                    sl = slow[c] + kappa * (e - slow[c])
                    slow[c] = sl
                    if sl < nf:
                        nf = sl
                    else:
                        nf = nf + gamma * (sl - nf)
                        if rise > 0.0 and nf > prev * rise:
                            nf = prev * rise
                    noise[c] = nf
                    lo = nf * margin
                    if lo > floor_pow:
                        if e < lo:
                            e = lo
                    elif e < floor_pow:
                        e = floor_pow
                elif e < floor_pow:
                    e = floor_pow
                r = ref[c]
                m = 0
                while m < max_per_frame and e >= r * ratio:
                    r = r * ratio
                    out_t[ne] = t
                    out_x[ne] = c
                    out_p[ne] = True
                    ne += 1
                    m += 1
                while m < max_per_frame and e * ratio <= r:
                    r = r / ratio
                    out_t[ne] = t
                    out_x[ne] = c
                    out_p[ne] = False
                    ne += 1
                    m += 1
                ref[c] = r
    xh[0] = x1
    xh[1] = x2
    return ne, frames
