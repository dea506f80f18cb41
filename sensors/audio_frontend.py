"""Spiking audio front end: PCM samples in, AUDIO_EVENT spikes (t, channel, polarity) out.

Model, per channel c of ``channels`` log-spaced between ``f_lo_hz`` and ``f_hi_hz``:

1. band-pass biquad (RBJ band-pass, 0 dB peak gain, quality ``q``) on every sample;
2. squaring rectifier: the squared output is summed over each frame of ``frame_us`` (1 ms by default; frame k =
   samples whose time lies in [k·frame_us, (k+1)·frame_us) from the first sample), giving the frame's mean power;
3. envelope: one-pole smoothing of the frame power with time constant ``tau_env_us``, clamped from below to
   the energy floor ``floor_db`` (dB of mean-square power, full-scale square wave = 0 dB);
4. optional noise floor (``noise_tau_us`` > 0), per channel: a valley follower of a slow envelope (the envelope
   smoothed again with time constant ``noise_smooth_us``; 0 = the envelope itself) that falls with it at once and
   rises toward it with time constant ``noise_tau_us``, by at most ``noise_rise_db_per_s`` (0 = no cap); it starts
   at the channel's first frame. The envelope is clamped to this floor plus ``noise_margin_db``, so a steady
   background (fan, tap, traffic) stops producing events while speech above it still does. Following the slow
   envelope keeps the floor near the noise's mean instead of its deepest dips (narrow bands of noise fluctuate
   by many dB from frame to frame), and the capped rise keeps a long stretch of speech from lifting it;
5. delta modulation of the envelope on a log scale: an ON event each time it rises ``delta_db`` above the level
   of the channel's last event, an OFF event each time it falls ``delta_db`` below it (at most
   ``max_events_per_frame`` per channel and frame). Events carry the time of the frame's last sample.

Silence (envelope under the floor in every channel) produces no events at all, so nothing downstream runs.
Channels whose centre frequency is above 0.45 × the sample rate are switched off (no work, no events): an 8 kHz
stream uses only the channels below 3.6 kHz. Output is identical however the audio is cut into packets, because
frames are fixed in stream time and all state lives in ``FrontEndState``.

Work is counted as ``frontend_macs``: 4 multiply-accumulates per active channel and sample (3 in the biquad, 1 in
the squaring accumulator) and 2 per active channel and frame (smoothing, threshold scaling), plus 2 per active
channel and frame with the noise floor on, 1 more for its slow envelope and 1 more for its rise cap.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from runtime.events import AUDIO_EVENT
from runtime.packet import Packet
from runtime.spec import StreamSpec, audio_spec

from .audio_kernels import (
    MACS_PER_FRAME,
    MACS_PER_FRAME_NOISE,
    MACS_PER_FRAME_RISE,
    MACS_PER_FRAME_SLOW,
    MACS_PER_SAMPLE,
    frontend_block,
)

__all__ = ["PCM_SAMPLE", "pcm_spec", "AudioFrontEnd", "FrontEndState", "center_frequencies", "bandpass_coefs"]

PCM_SAMPLE = np.dtype([("t", "<i8"), ("v", "<f4")])
"""Raw mono audio moving between an audio source and the front end: one record per sample, ``t`` the sample's
time in µs from the first sample (floor(n × 10⁶ / rate)), ``v`` the sample value in [-1, 1]."""

_EMPTY = np.empty(0, AUDIO_EVENT)
_EMPTY.flags.writeable = False
MIN_RATE_HZ = 4000
MAX_RATE_HZ = 384000


def pcm_spec(rate_hz: int, **meta) -> StreamSpec:
    """Spec of a mono PCM sample stream at ``rate_hz`` (the rate travels in ``meta['rate_hz']``)."""
    return StreamSpec("pcm", PCM_SAMPLE, (1,), meta={"rate_hz": int(rate_hz), **meta})


def center_frequencies(channels: int, f_lo_hz: float, f_hi_hz: float) -> np.ndarray:
    """Log-spaced centre frequencies (Hz), lowest first."""
    return np.geomspace(f_lo_hz, f_hi_hz, channels)


def bandpass_coefs(fc_hz: np.ndarray, q: float, rate_hz: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """RBJ band-pass biquads (0 dB peak gain), normalised by a0: (b0, a1, a2, active). b1 = 0 and b2 = -b0."""
    fc = np.asarray(fc_hz, dtype=np.float64)
    active = fc < 0.45 * rate_hz
    w0 = 2.0 * np.pi * np.minimum(fc, 0.45 * rate_hz) / rate_hz
    alpha = np.sin(w0) / (2.0 * q)
    a0 = 1.0 + alpha
    b0 = np.where(active, alpha / a0, 0.0)
    a1 = np.where(active, -2.0 * np.cos(w0) / a0, 0.0)
    a2 = np.where(active, (1.0 - alpha) / a0, 0.0)
    return b0, a1, a2, active


@dataclass
class FrontEndState:
    rate_hz: int
    b0: np.ndarray
    a1: np.ndarray
    a2: np.ndarray
    active: np.ndarray
    beta: float
    floor_pow: float
    ratio: float
    xh: np.ndarray  # x[n-1], x[n-2]
    y1: np.ndarray
    y2: np.ndarray
    acc: np.ndarray
    env: np.ndarray
    ref: np.ndarray
    noise: np.ndarray
    slow: np.ndarray
    gamma: float = 0.0
    kappa: float = 1.0
    rise: float = 0.0
    margin: float = 1.0
    n_samples: int = 0  # samples consumed so far = absolute index of the next sample
    frames: int = 0
    frontend_macs: int = 0
    events: int = 0
    resyncs: int = 0  # packets whose first sample was not the one expected (a live source dropped samples)
    started: bool = False
    n_active: int = 0
    out_t: np.ndarray = field(default_factory=lambda: np.empty(0, np.int64))
    out_x: np.ndarray = field(default_factory=lambda: np.empty(0, np.int16))
    out_p: np.ndarray = field(default_factory=lambda: np.empty(0, np.bool_))


@dataclass(frozen=True)
class AudioFrontEnd:
    """Stage: PCM samples (``pcm_spec``) → AUDIO_EVENT spikes (``audio_spec(channels)``).

    >>> import numpy as np
    >>> from runtime.testing import run_stage, cut_at
    >>> from sensors.audio_frontend import AudioFrontEnd, PCM_SAMPLE, pcm_spec
    >>> rate = 16000
    >>> n = np.arange(rate // 10)
    >>> pcm = np.zeros(n.size, PCM_SAMPLE)
    >>> pcm["t"] = n * 1_000_000 // rate
    >>> pcm["v"] = 0.3 * np.sin(2 * np.pi * 1000 * n / rate)
    >>> events, state, _ = run_stage(AudioFrontEnd(), pcm_spec(rate), cut_at(pcm, [], t_end_us=100_000))
    >>> bool(events.size > 0), state.frontend_macs > 0
    (True, True)
    """

    channels: int = 16
    f_lo_hz: float = 100.0
    f_hi_hz: float = 7000.0
    q: float = 4.0
    tau_env_us: int = 8000
    floor_db: float = -70.0
    delta_db: float = 3.0
    max_events_per_frame: int = 8
    frame_us: int = 1000
    noise_tau_us: int = 0  # 0: no noise-floor tracking
    noise_margin_db: float = 6.0
    noise_smooth_us: int = 0  # 0: the noise floor follows the envelope itself
    noise_rise_db_per_s: float = 0.0  # 0: no cap on how fast the noise floor rises

    def __post_init__(self):
        problems = []
        if not 1 <= self.channels <= 256:
            problems.append(f"channels must be in 1..256, got {self.channels}")
        if not 0 < self.f_lo_hz < self.f_hi_hz:
            problems.append(f"need 0 < f_lo_hz < f_hi_hz, got {self.f_lo_hz}, {self.f_hi_hz}")
        if not self.q > 0:
            problems.append(f"q must be > 0, got {self.q}")
        if not self.tau_env_us > 0:
            problems.append(f"tau_env_us must be > 0, got {self.tau_env_us}")
        if not self.delta_db > 0:
            problems.append(f"delta_db must be > 0, got {self.delta_db}")
        if not 100 <= self.frame_us <= 1_000_000:
            problems.append(f"frame_us must be in 100..1000000 µs, got {self.frame_us}")
        if min(self.noise_tau_us, self.noise_margin_db, self.noise_smooth_us, self.noise_rise_db_per_s) < 0:
            problems.append("noise_tau_us, noise_margin_db, noise_smooth_us and noise_rise_db_per_s must be ≥ 0, got "
                            f"{self.noise_tau_us}, {self.noise_margin_db}, {self.noise_smooth_us}, "
                            f"{self.noise_rise_db_per_s}")
        if not self.max_events_per_frame >= 1:
            problems.append(f"max_events_per_frame must be ≥ 1, got {self.max_events_per_frame}")
        if problems:
            raise ValueError("AudioFrontEnd: " + "; ".join(problems))

    # ---- stage protocol -------------------------------------------------------------------------------------
    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        rate = self._rate(spec)
        fc = center_frequencies(self.channels, self.f_lo_hz, self.f_hi_hz)
        return audio_spec(self.channels, rate_hz=rate, center_hz=tuple(float(f) for f in fc),
                          active=tuple(bool(a) for a in fc < 0.45 * rate))

    def init(self, spec: StreamSpec) -> FrontEndState:
        rate = self._rate(spec)
        fc = center_frequencies(self.channels, self.f_lo_hz, self.f_hi_hz)
        b0, a1, a2, active = bandpass_coefs(fc, self.q, rate)
        c = self.channels
        floor_pow = 10.0 ** (self.floor_db / 10.0)
        state = FrontEndState(
            rate_hz=rate, b0=b0, a1=a1, a2=a2, active=active,
            beta=1.0 - math.exp(-self.frame_us / self.tau_env_us),
            floor_pow=floor_pow, ratio=10.0 ** (self.delta_db / 10.0),
            xh=np.zeros(2), y1=np.zeros(c), y2=np.zeros(c), acc=np.zeros(c), env=np.zeros(c),
            ref=np.full(c, floor_pow), noise=np.full(c, -1.0), slow=np.zeros(c), n_active=int(active.sum()),
            gamma=1.0 - math.exp(-self.frame_us / self.noise_tau_us) if self.noise_tau_us > 0 else 0.0,
            kappa=1.0 - math.exp(-self.frame_us / self.noise_smooth_us) if self.noise_smooth_us > 0 else 1.0,
            rise=10.0 ** (self.noise_rise_db_per_s * self.frame_us / 1e7) if self.noise_rise_db_per_s > 0 else 0.0,
            margin=10.0 ** (self.noise_margin_db / 10.0),
        )
        _warm_up()
        return state

    def step(self, state: FrontEndState, packet: Packet) -> tuple[FrontEndState, list[Packet]]:
        ev = packet.events
        if ev.dtype != PCM_SAMPLE:
            raise TypeError(f"AudioFrontEnd: expected PCM sample packets (dtype {PCM_SAMPLE}), got dtype {ev.dtype}")
        n = ev.shape[0]
        if n == 0:
            return state, [packet.derive(_EMPTY)]
        x = ev["v"]
        if not np.isfinite(x).all():
            bad = int(np.argmax(~np.isfinite(x)))
            raise ValueError(
                f"AudioFrontEnd: field 'v' must be finite; sample at t={int(ev['t'][bad])} µs is {x[bad]} "
                "(the audio file is corrupt or was decoded with the wrong format)"
            )
        expected_t = state.n_samples * 1_000_000 // state.rate_hz
        t0 = int(ev["t"][0])
        if t0 != expected_t:
            # a replay window that starts late, or a live source that dropped samples: continue from the sample
            # this packet says it starts at, so frames stay on the stream's frame grid
            state.n_samples = -((-t0 * state.rate_hz) // 1_000_000)
            state.resyncs += int(state.started)
        state.started = True
        return state, [packet.derive(self._run(state, np.ascontiguousarray(x, dtype=np.float32)))]

    def finish(self, state: FrontEndState) -> list[Packet]:
        return []  # a partial last frame is dropped: it never closed

    def counters(self, state: FrontEndState) -> dict[str, int]:
        return {"frontend_macs": int(state.frontend_macs)}

    def dense_macs_per_bin(self, spec: StreamSpec) -> int:
        rate = self._rate(spec)
        active = int((center_frequencies(self.channels, self.f_lo_hz, self.f_hi_hz) < 0.45 * rate).sum())
        return active * (MACS_PER_SAMPLE * rate // 1000) + active * self._macs_per_frame() * 1000 // self.frame_us

    # ---- direct use (training, bench) -----------------------------------------------------------------------
    def run_array(self, samples: np.ndarray, rate_hz: int) -> tuple[np.ndarray, FrontEndState]:
        """All events of a whole mono signal at once (same result as streaming it through ``step``)."""
        state = self.init(pcm_spec(rate_hz))
        x = np.ascontiguousarray(samples, dtype=np.float32)
        if x.ndim != 1:
            raise ValueError(f"AudioFrontEnd.run_array: expected mono samples (1-D), got shape {x.shape}")
        if not np.isfinite(x).all():
            raise ValueError("AudioFrontEnd.run_array: samples must be finite")
        return self._run(state, x), state

    def _run(self, state: FrontEndState, x: np.ndarray) -> np.ndarray:
        n = x.shape[0]
        n0 = state.n_samples
        per = state.rate_hz * self.frame_us
        frames_max = (n + n0) * 1_000_000 // per - n0 * 1_000_000 // per + 1
        cap = frames_max * self.channels * self.max_events_per_frame
        if state.out_t.shape[0] < cap:  # output buffers are reused across packets
            state.out_t = np.empty(cap, np.int64)
            state.out_x = np.empty(cap, np.int16)
            state.out_p = np.empty(cap, np.bool_)
        out_t, out_x, out_p = state.out_t, state.out_x, state.out_p
        ne, frames = frontend_block(
            x, n0, state.rate_hz, self.frame_us, state.b0, state.a1, state.a2, state.active, state.beta, state.floor_pow,
            state.gamma, state.kappa, state.rise, state.margin, state.ratio, self.max_events_per_frame, state.xh,
            state.y1, state.y2, state.acc, state.env, state.ref, state.slow, state.noise, out_t, out_x, out_p,
        )
        n_active = state.n_active
        state.n_samples = n0 + n
        state.frames += frames
        state.frontend_macs += n_active * (MACS_PER_SAMPLE * n + self._macs_per_frame() * frames)
        state.events += ne
        if ne == 0:
            return _EMPTY
        events = np.empty(ne, AUDIO_EVENT)
        events["t"] = out_t[:ne]
        events["x"] = out_x[:ne]
        events["p"] = out_p[:ne]
        events.flags.writeable = False
        return events

    def _macs_per_frame(self) -> int:
        if self.noise_tau_us <= 0:
            return MACS_PER_FRAME
        return (MACS_PER_FRAME + MACS_PER_FRAME_NOISE + (MACS_PER_FRAME_SLOW if self.noise_smooth_us > 0 else 0)
                + (MACS_PER_FRAME_RISE if self.noise_rise_db_per_s > 0 else 0))

    @staticmethod
    def _rate(spec: StreamSpec) -> int:
        if spec.kind != "pcm" or spec.dtype != PCM_SAMPLE:
            raise TypeError(
                f"AudioFrontEnd: input stream must be PCM samples (kind 'pcm', dtype {PCM_SAMPLE}); got "
                f"{spec.describe()} with dtype {spec.dtype} (put an audio source before the front end)"
            )
        rate = spec.meta.get("rate_hz")
        if not isinstance(rate, (int, np.integer)) or not MIN_RATE_HZ <= rate <= MAX_RATE_HZ:
            raise ValueError(
                f"AudioFrontEnd: input spec meta 'rate_hz' must be an integer in {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, "
                f"got {rate!r}"
            )
        return int(rate)


def _warm_up() -> None:
    """Compile (or load from cache) the kernel on tiny inputs, so no real packet pays for it."""
    c = 2
    z = np.zeros(c)
    frontend_block(
        np.zeros(20, np.float32), 0, 16000, 1000, z.copy(), z.copy(), z.copy(), np.ones(c, np.bool_), 0.1, 1e-7,
        0.01, 0.5, 1.01, 4.0, 2.0, 4, np.zeros(2), z.copy(), z.copy(), z.copy(), z.copy(), np.full(c, 1e-7), z.copy(),
        np.full(c, -1.0),
        np.empty(64, np.int64), np.empty(64, np.int16), np.empty(64, np.bool_),
    )
