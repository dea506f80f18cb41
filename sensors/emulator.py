"""Frame-to-event emulator: a DVS pixel model driven by video frames, and a source that runs it live.

The pixel model (parameters and defaults follow v2e, Hu et al. CVPR-W 2021; the code is our own):

1. **Lin-log luminance.** A pixel of intensity ``I`` (digital numbers, 0–255 scale) has log value ``ln I`` above
   ``lin_log_dn`` (20 DN) and the tangent-matched line ``I · ln(lin_log_dn) / lin_log_dn`` below it, so dark pixels
   are not infinitely sensitive. uint8 frames go through a 256-entry lookup table.
2. **Photoreceptor low-pass.** A first-order filter with cutoff ``cutoff_hz`` whose speed grows with intensity
   (``(I + 20) / 275`` of the nominal rate, as in v2e): ``lp += (1 - exp(-dt · 2π f_c · (I + 20)/275)) · (L - lp)``.
   The exact exponential step is stable at any frame interval; ``cutoff_hz = 0`` turns the filter off.
3. **Change detection.** Each pixel remembers a level ``base``. When ``lp - base`` reaches its ON threshold θ_on
   (or falls to -θ_off) it emits ``⌊|lp - base| / θ⌋`` events, moves ``base`` by that many thresholds, and gives
   each event the time at which the change, moving linearly between the two frames, crossed that level. Thresholds are drawn once per pixel from N(θ, ``mismatch_sigma``), clipped at 0.01.
4. **Refractory period.** After an event a pixel emits nothing for ``refractory_us``; crossings in that time still
   move ``base`` (the pixel is held in reset) but give no event.
5. **Leak events.** ``base`` drifts down by ``leak_rate_hz · θ_on`` per second, so a static pixel emits ON events
   at ``leak_rate_hz`` (per-pixel rate factor log-normal with ``leak_spread_decades``, mean 1; phase uniform).
6. **Shot noise.** Per frame interval a Poisson number ``K ~ Poisson(W · H · shot_noise_rate_hz · dt)`` of events
   at uniformly random pixels, times and polarities (half ON, half OFF). Drawing one count per frame rather than a
   random number per pixel is what keeps noise nearly free. Shot-noise events do not reset the pixel (a transient
   photocurrent fluctuation that leaves the memorized level where it was).

Everything random is drawn from one ``numpy.random.Generator`` seeded from ``DvsConfig.seed``: thresholds, leak
factors and phases at ``init``, shot noise per frame. The same frames, timestamps and seed give the same events.

``frontend_macs`` (reported per frame) counts the model's multiply-accumulates: per pixel 1 for the change
``lp - base``, 1 for the low-pass update when ``cutoff_hz > 0``, 1 for the leak when ``leak_rate_hz > 0``, 3 for
the grey conversion of colour input; per emitted event 2 (crossing level and interpolated time). Table look-ups and
comparisons are not counted.

Usage (in memory, e.g. to make training data from rendered frames)::

    emu = DvsEmulator(DvsConfig(seed=1))
    state = emu.init(64, 48)
    state, events = emu.step(state, frame0, 0)        # first frame: sets the levels, no events
    state, events = emu.step(state, frame1, 33_333)   # DVS_EVENT array sorted by t, all in (0, 33_333]
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any, Iterable, Iterator, Mapping, Sequence

import cv2
import numpy as np

from runtime.errors import StreamOrderError
from runtime.events import DVS_EVENT
from runtime.packet import Packet, packetize
from runtime.spec import StreamSpec, dvs_spec

from . import emulator_kernels as K
from .frames import FrameSource

__all__ = [
    "DvsConfig", "DvsState", "DvsEmulator", "emulate_frames", "lin_log", "EmulatorSource", "OpenEmulator", "PRESETS",
]

_T_NEVER = -(1 << 60)
_MAX_COUNTING_SPAN = 1 << 22  # above this many µs between frames, a comparison sort is cheaper than counting


@dataclass(frozen=True)
class DvsConfig:
    """DVS pixel-model parameters (units in the names). Defaults are v2e's defaults with noise on."""

    threshold_on: float = 0.2  # log units (ln)
    threshold_off: float = 0.2
    mismatch_sigma: float = 0.03  # per-pixel threshold spread (log units), drawn once
    cutoff_hz: float = 300.0  # photoreceptor 3 dB cutoff at full intensity; 0 = no filter
    refractory_us: int = 500
    leak_rate_hz: float = 0.01  # leak ON events per pixel per second
    shot_noise_rate_hz: float = 0.001  # shot-noise events (ON + OFF) per pixel per second
    leak_spread_decades: float = 0.1  # log10 standard deviation of the per-pixel leak rate
    lin_log_dn: float = 20.0  # intensity (0–255 scale) below which the response is linear
    seed: int = 0

    def __post_init__(self):
        for name in ("threshold_on", "threshold_off"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"DvsConfig.{name}: expected a positive threshold in log units (e.g. 0.2), got {v!r}")
        for name in ("mismatch_sigma", "cutoff_hz", "leak_rate_hz", "shot_noise_rate_hz", "leak_spread_decades"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v >= 0):
                raise ValueError(f"DvsConfig.{name}: expected a finite value ≥ 0, got {v!r}")
        if not isinstance(self.refractory_us, (int, np.integer)) or self.refractory_us < 0:
            raise ValueError(f"DvsConfig.refractory_us: expected an integer ≥ 0 µs, got {self.refractory_us!r}")
        if not (self.lin_log_dn > 1):
            raise ValueError(f"DvsConfig.lin_log_dn: expected an intensity > 1 DN (v2e uses 20), got {self.lin_log_dn!r}")

    @property
    def noisy(self) -> bool:
        return self.leak_rate_hz > 0 or self.shot_noise_rate_hz > 0

    def with_noise(self, on: bool) -> "DvsConfig":
        """Noise off: no leak, no shot noise (a static scene then emits nothing). Noise on: v2e's default rates
        where the rates are zero, the configured ones otherwise."""
        if not on:
            return replace(self, leak_rate_hz=0.0, shot_noise_rate_hz=0.0)
        if self.noisy:
            return self
        return replace(self, leak_rate_hz=DvsConfig.leak_rate_hz, shot_noise_rate_hz=DvsConfig.shot_noise_rate_hz)

    @classmethod
    def preset(cls, name: str, **overrides) -> "DvsConfig":
        """``clean`` (no noise, ideal photoreceptor), ``default`` (v2e defaults), ``noisy`` (v2e's noisy camera)."""
        if name not in PRESETS:
            raise ValueError(f"DvsConfig.preset: unknown preset {name!r}; expected one of {sorted(PRESETS)}")
        return replace(PRESETS[name], **overrides)


PRESETS: Mapping[str, DvsConfig] = {
    "clean": DvsConfig(cutoff_hz=0.0, refractory_us=0, leak_rate_hz=0.0, shot_noise_rate_hz=0.0),
    "default": DvsConfig(),
    "noisy": DvsConfig(mismatch_sigma=0.05, cutoff_hz=30.0, refractory_us=1000, leak_rate_hz=0.1,
                       shot_noise_rate_hz=5.0),
}


def lin_log(intensity: np.ndarray, lin_log_dn: float = 20.0) -> np.ndarray:
    """Lin-log response (float64) of intensities on the 0–255 scale; negative values are treated as 0."""
    i = np.maximum(np.asarray(intensity, dtype=np.float64), 0.0)
    slope = math.log(lin_log_dn) / lin_log_dn
    with np.errstate(divide="ignore"):
        return np.where(i <= lin_log_dn, i * slope, np.log(np.maximum(i, lin_log_dn)))


def _lowpass_gain(intensity: np.ndarray, cutoff_hz: float, dt_us: int) -> np.ndarray:
    """Fraction of the way the filter moves towards the new value in one frame interval (float64)."""
    rate = 2.0 * math.pi * cutoff_hz * dt_us * 1e-6
    return 1.0 - np.exp(-rate * (np.maximum(np.asarray(intensity, dtype=np.float64), 0.0) + 20.0) / 275.0)


@dataclass
class DvsState:
    """Per-pixel arrays (flat, C order over (H, W)) and counters. ``step`` updates them in place."""

    width: int
    height: int
    th_on: np.ndarray  # float32 log units
    th_off: np.ndarray
    leak_per_s: np.ndarray  # float32: log units per second by which base drifts down
    phase: np.ndarray  # float32 in [0, 1): initial fraction of θ_on already leaked
    lp: np.ndarray  # float32 filtered lin-log value
    base: np.ndarray  # float32 memorized level
    t_last: np.ndarray  # int64 µs of the last event
    rng: np.random.Generator
    log_lut: np.ndarray
    t_prev_us: int | None = None
    frames: int = 0
    events: int = 0
    noise_events: int = 0
    frontend_macs: int = 0
    _eps_lut: np.ndarray | None = None
    _eps_dt_us: int = -1
    _buf: tuple[np.ndarray, ...] = ()
    _cand_idx: np.ndarray | None = None
    _cand_lp0: np.ndarray | None = None
    _leak_dt: np.ndarray | None = None
    _leak_dt_us: int = -1

    @property
    def shape(self) -> tuple[int, int]:
        return (self.height, self.width)


class DvsEmulator:
    """Thin wrapper over the kernels: ``init`` makes the state, ``step`` feeds one frame."""

    def __init__(self, config: DvsConfig | None = None):
        self.config = config if config is not None else DvsConfig()
        K.warm_up()

    def init(self, width: int, height: int) -> DvsState:
        width, height = int(width), int(height)
        if not (0 < width <= 32767 and 0 < height <= 32767):
            raise ValueError(f"DvsEmulator.init: width and height must be in 1..32767 (int16 x/y), got {width}×{height}")
        c = self.config
        npx = width * height
        rng = np.random.default_rng(c.seed)
        # Draw order is fixed (on, off, leak factor, phase) so a seed always gives the same pixels.
        th_on = rng.normal(c.threshold_on, c.mismatch_sigma, npx) if c.mismatch_sigma > 0 else np.full(npx, c.threshold_on)
        th_off = rng.normal(c.threshold_off, c.mismatch_sigma, npx) if c.mismatch_sigma > 0 else np.full(npx, c.threshold_off)
        th_on = np.maximum(th_on, 0.01).astype(np.float32)
        th_off = np.maximum(th_off, 0.01).astype(np.float32)
        s = c.leak_spread_decades * math.log(10.0)
        factor = np.exp(rng.normal(-0.5 * s * s, s, npx)) if s > 0 else np.ones(npx)  # log-normal, mean 1
        phase = rng.random(npx)
        leak_per_s = (c.leak_rate_hz * factor * th_on.astype(np.float64)).astype(np.float32)
        log_lut = lin_log(np.arange(256), c.lin_log_dn).astype(np.float32)
        return DvsState(
            width=width, height=height, th_on=th_on, th_off=th_off, leak_per_s=leak_per_s,
            phase=phase.astype(np.float32), lp=np.zeros(npx, np.float32), base=np.zeros(npx, np.float32),
            t_last=np.full(npx, _T_NEVER, np.int64), rng=rng, log_lut=log_lut,
        )

    def step(self, state: DvsState, frame: np.ndarray, t_us: int) -> tuple[DvsState, np.ndarray]:
        """Feed the frame taken at ``t_us``; return the events in (previous frame's t, t_us], sorted by t.

        The state's arrays are updated in place (no copy per frame) and the same state object is returned.

        ``frame``: uint8 grey (H, W), uint8 BGR (H, W, 3), or float grey/BGR holding linear luminance on the
        0–255 scale (values above 255 are allowed). The first frame sets every pixel's level and gives no events.
        """
        t_us = int(t_us)
        values, colour = self._luminance(state, frame)
        c = self.config
        npx = state.width * state.height
        state.frames += 1
        state.frontend_macs += 3 * npx if colour else 0
        if state.t_prev_us is None:
            log_new = state.log_lut[values] if values.dtype == np.uint8 else lin_log(values, c.lin_log_dn)
            state.lp[:] = log_new
            # With leak on, each pixel starts part-way to its first leak event (uniform phase), as a camera
            # that has been running does; otherwise the first leak events would all come at once.
            state.base[:] = state.lp - (state.phase * state.th_on if c.leak_rate_hz > 0 else 0.0)
            state.t_prev_us = t_us
            return state, np.empty(0, dtype=DVS_EVENT)
        if t_us <= state.t_prev_us:
            raise StreamOrderError(
                f"DvsEmulator.step: frame time t_us={t_us} must be later than the previous frame's "
                f"{state.t_prev_us} µs (frames must come in time order with distinct timestamps)"
            )
        dt_us = t_us - state.t_prev_us
        leak = self._leak(state, dt_us)
        use_lp = c.cutoff_hz > 0
        counting = dt_us <= _MAX_COUNTING_SPAN
        counts = np.zeros(dt_us + 1 if counting else 0, np.int32)
        n = self._run_kernel(state, values, dt_us, leak, use_lp, counts)
        state.frontend_macs += npx * (1 + int(use_lp) + int(c.leak_rate_hz > 0)) + 2 * n
        n_pixel = n  # the crossing kernel counted these in ``counts``
        if c.shot_noise_rate_hz > 0:
            k = self._shot_noise(state, dt_us, n)
            state.noise_events += k
            n += k
        bx, by, bt, bp = state._buf
        x, y, t, p = bx[:n], by[:n], bt[:n], bp[:n]
        events = _sorted_events(x, y, t, p, state.t_prev_us + 1, dt_us, counts if counting else None, n_pixel)
        state.events += events.shape[0]
        state.t_prev_us = t_us
        return state, events

    def counters(self, state: DvsState) -> dict[str, int]:
        return {"frontend_macs": int(state.frontend_macs)}

    # -- internals -------------------------------------------------------------------------------------------

    def _luminance(self, state: DvsState, frame: np.ndarray) -> tuple[np.ndarray, bool]:
        frame = np.asarray(frame)
        h, w = state.height, state.width
        colour = frame.ndim == 3
        if frame.shape[:2] != (h, w) or not (frame.ndim == 2 or (colour and frame.shape[2] == 3)):
            raise ValueError(
                f"DvsEmulator.step: frame shape expected ({h}, {w}) grey or ({h}, {w}, 3) BGR, got {frame.shape}; "
                "resize frames to the emulator's size (FrameSource(size=...) does it)"
            )
        if frame.dtype == np.uint8:
            grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY) if colour else frame
            return np.ascontiguousarray(grey).reshape(-1), colour
        if frame.dtype.kind != "f":
            raise ValueError(f"DvsEmulator.step: frame dtype expected uint8 or float, got {frame.dtype}")
        if colour:
            frame = frame[..., 0] * 0.114 + frame[..., 1] * 0.587 + frame[..., 2] * 0.299
        if not np.isfinite(frame).all():
            raise ValueError("DvsEmulator.step: float frame holds NaN or infinite values")
        return np.ascontiguousarray(frame, dtype=np.float64).reshape(-1), colour

    def _leak(self, state: DvsState, dt_us: int) -> np.ndarray:
        if state._leak_dt_us != dt_us:
            if self.config.leak_rate_hz > 0:
                state._leak_dt = (state.leak_per_s.astype(np.float64) * (dt_us * 1e-6)).astype(np.float32)
            elif state._leak_dt is None:
                state._leak_dt = np.zeros(state.width * state.height, np.float32)
            state._leak_dt_us = dt_us
        return state._leak_dt

    def _run_kernel(self, state: DvsState, values: np.ndarray, dt_us: int, leak: np.ndarray, use_lp: bool,
                    counts: np.ndarray) -> int:
        c = self.config
        npx = values.shape[0]
        if not state._buf:
            state._cand_idx = np.empty(npx, np.int32)
            state._cand_lp0 = np.empty(npx, np.float32)
            cap = max(4096, npx // 8)
            state._buf = (np.empty(cap, np.int16), np.empty(cap, np.int16), np.empty(cap, np.int64),
                          np.empty(cap, np.bool_))
        use_lut = values.dtype == np.uint8
        if use_lut:
            if use_lp and state._eps_dt_us != dt_us:
                state._eps_lut = _lowpass_gain(np.arange(256), c.cutoff_hz, dt_us).astype(np.float32)
                state._eps_dt_us = dt_us
            eps_lut = state._eps_lut if use_lp else state.log_lut  # unused when the filter is off
            log_values = eps_values = np.empty(0, np.float32)
            frame = values
        else:
            log_values = lin_log(values, c.lin_log_dn).astype(np.float32)
            eps_values = (_lowpass_gain(values, c.cutoff_hz, dt_us) if use_lp else np.ones(npx)).astype(np.float32)
            eps_lut = state.log_lut
            frame = np.empty(0, np.uint8)
        n_cand = K.frame_update(
            frame, state.log_lut, eps_lut, log_values, eps_values, use_lut, use_lp, state.lp, state.base,
            state.th_on, state.th_off, c.leak_rate_hz > 0, leak, state._cand_idx, state._cand_lp0,
        )
        n = 0
        start = 0
        while True:
            bx, by, bt, bp = state._buf
            m, start = K.frame_crossings(
                state._cand_idx, state._cand_lp0, n_cand, start, state.lp, state.base, state.th_on, state.th_off,
                c.leak_rate_hz > 0, leak, state.t_prev_us, dt_us, int(c.refractory_us), state.t_last, state.width, bx[n:], by[n:], bt[n:],
                bp[n:], counts,
            )
            n += m
            if start >= n_cand:
                return n
            state._buf = tuple(np.concatenate([b, np.empty_like(b)]) for b in state._buf)

    def _shot_noise(self, state: DvsState, dt_us: int, n: int) -> int:
        """Draw this interval's shot-noise events into the event buffers after the ``n`` pixel events."""
        c = self.config
        npx = state.width * state.height
        k = int(state.rng.poisson(npx * c.shot_noise_rate_hz * dt_us * 1e-6))
        if k == 0:
            return 0
        idx = state.rng.integers(0, npx, k)
        nt = state.t_prev_us + 1 + state.rng.integers(0, dt_us, k)
        npol = state.rng.random(k) < 0.5
        if n + k > state._buf[0].shape[0]:
            state._buf = tuple(np.concatenate([b[:n], np.empty(n + 2 * k, b.dtype)]) for b in state._buf)
        bx, by, bt, bp = state._buf
        y, x = np.divmod(idx, state.width)
        bx[n:n + k] = x
        by[n:n + k] = y
        bt[n:n + k] = nt
        bp[n:n + k] = npol
        return k


def _sorted_events(x, y, t, p, t_lo: int, span: int, counts: np.ndarray | None, n_counted: int) -> np.ndarray:
    """Events as a DVS_EVENT array sorted by t (stable: ties keep pixel order, then noise order).

    ``counts``: the histogram the crossing kernel built for its first ``n_counted`` events (counting sort), or
    None when the frame interval is too long for one (a comparison sort is used then).
    """
    n = t.shape[0]
    out = np.empty(n, dtype=DVS_EVENT)
    if n == 0:
        return out
    if counts is not None:
        K.sort_by_time(x, y, t, p, t_lo, span, counts, n_counted, out)
    else:
        order = np.argsort(t, kind="stable")
        out["x"], out["y"], out["t"], out["p"] = x[order], y[order], t[order], p[order]
    return out


def emulate_frames(
    frames: Iterable[np.ndarray] | np.ndarray, t_us: Sequence[int] | np.ndarray, config: DvsConfig | None = None
) -> np.ndarray:
    """Events of a whole clip (frames[i] taken at t_us[i]), one sorted DVS_EVENT array."""
    t_list = [int(t) for t in np.asarray(t_us).reshape(-1)]
    emu = DvsEmulator(config)
    state = None
    parts = []
    i = -1
    for i, frame in enumerate(frames):
        if i >= len(t_list):
            raise ValueError(f"emulate_frames: more frames than timestamps ({len(t_list)} given in t_us)")
        if state is None:
            frame = np.asarray(frame)
            state = emu.init(frame.shape[1], frame.shape[0])
        state, ev = emu.step(state, frame, t_list[i])
        if ev.shape[0]:
            parts.append(ev)
    if i + 1 != len(t_list):
        raise ValueError(f"emulate_frames: {i + 1} frames but {len(t_list)} timestamps; give one time per frame")
    return np.concatenate(parts) if parts else np.empty(0, dtype=DVS_EVENT)


# -- the live source -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmulatorSource:
    """Source: frames from OpenCV (camera index, video file, stream URL) turned into DVS event packets.

    ``blocking`` is True: ``next()`` waits for frames, so the executor calls it in a worker thread (the kernels
    release the GIL). A frame without events gives no packet; a watermark-only packet is sent once at least
    ``heartbeat_us`` of stream time has passed since the last packet, so idle scenes cost the graph nothing
    but downstream windows still close.
    """

    frames: FrameSource
    config: DvsConfig = field(default_factory=DvsConfig)
    heartbeat_us: int = 100_000
    max_events: int = 4096
    max_span_us: int | None = None
    name: str = "emulator"

    def __post_init__(self):
        if self.heartbeat_us < 1:
            raise ValueError(f"{self.name}: heartbeat_us must be ≥ 1 µs, got {self.heartbeat_us}")
        if self.max_events < 1:
            raise ValueError(f"{self.name}: max_events must be ≥ 1, got {self.max_events}")

    @classmethod
    def camera(cls, index: int = 0, *, size: tuple[int, int] | None = None, **kw) -> "EmulatorSource":
        return cls(FrameSource(int(index), size=size), **kw)

    @classmethod
    def video(cls, path: str, *, size: tuple[int, int] | None = None, fps: float | None = None,
              **kw) -> "EmulatorSource":
        return cls(FrameSource(str(path), size=size, fps=fps), **kw)

    @classmethod
    def url(cls, url: str, *, size: tuple[int, int] | None = None, **kw) -> "EmulatorSource":
        if "://" not in url:
            raise ValueError(f"EmulatorSource.url: expected scheme://..., e.g. rtsp://host/stream, got {url!r}")
        return cls(FrameSource(url, size=size), **kw)

    def open(self) -> "OpenEmulator":
        return OpenEmulator(self)


class OpenEmulator:
    """An opened EmulatorSource: iterates Packets; ``info()`` has frame/event counts and why the stream ended."""

    def __init__(self, source: EmulatorSource):
        self._src = source
        self._emu = DvsEmulator(source.config)  # compiles/loads the kernels before the first frame is read
        self._frames = source.frames.open()
        try:
            self._open_rest(source)
        except BaseException:
            self._frames.close()
            raise

    def _open_rest(self, source: EmulatorSource) -> None:
        w, h = self._frames.width, self._frames.height
        self.spec: StreamSpec = dvs_spec(w, h, source=str(source.frames.source), input_kind=self._frames.kind,
                                         emulator=asdict(source.config))
        self.blocking = True  # next() waits on the grabbing thread: the executor calls it from a worker thread
        self.live = self._frames.live  # camera/stream: arrival timestamps, never paced; video files can be paced
        self._state = self._emu.init(w, h)
        self._it = self._packets()
        self._closed = False

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        return next(self._it)

    def _packets(self) -> Iterator[Packet]:
        src = self._src
        last_wm: int | None = None
        t_us = None
        for frame in self._frames:
            t_us = frame.t_us
            self._state, events = self._emu.step(self._state, frame.image, t_us)
            wm = t_us + 1  # every later frame's events are > t_us
            if events.shape[0]:
                yield from packetize(events, src.max_events, src.max_span_us, t_end_us=wm)
                last_wm = wm
            elif last_wm is None or wm - last_wm >= src.heartbeat_us:
                yield Packet(_frozen_empty(), wm)
                last_wm = wm
        if t_us is not None and last_wm != t_us + 1:
            yield Packet(_frozen_empty(), t_us + 1)

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._it.close()
            self._frames.close()

    def counters(self) -> dict[str, int]:
        return self._emu.counters(self._state)

    def info(self) -> Mapping[str, Any]:
        s = self._state
        return {
            "source": self._src.name,
            **self._frames.info(),
            "emulated_frames": s.frames,
            "events": s.events,
            "noise_events": s.noise_events,
            "frontend_macs": s.frontend_macs,
        }


def _frozen_empty() -> np.ndarray:
    e = np.empty(0, dtype=DVS_EVENT)
    e.flags.writeable = False
    return e
