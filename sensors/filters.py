"""Event filters as clockless stages: hot pixels, background activity, refractory period, crop, flip/rotate,
downsample.

Every filter is a frozen config with explicit state (``init``/``step``/``finish``), gives the same output however
the stream is cut into packets, counts what it removes in ``counters(state)["filtered_events"]``, and checks that
every event lies inside the sensor: an event outside raises :class:`EventRangeError` naming the stage, the field,
the value, the event's index in the stream and the sensor size.

Simultaneity: events with equal ``t`` are simultaneous. The background-activity filter lets simultaneous
neighbours support each other (the result does not depend on their order inside the packet); the refractory
filter keeps the first of several simultaneous events at one pixel.

Orientation: ``Transform(flip_x, flip_y, rotate)`` flips first, then rotates clockwise as seen on screen with
y down (``rotate=90``: ``(x, y) -> (H-1-y, x)``, size ``(H, W)``). Flipping x toggles the spec's ``x_mirrored``,
flipping y toggles ``y_up``; a 90/270 rotation swaps the two flags (a mirrored x axis becomes a mirrored y axis).
``ToImageOrientation()`` reads the flags of the incoming spec and flips what is needed to reach image
orientation (x right, y down): for a jAER DVS128 stream (``x_mirrored`` and ``y_up``) it is a 180° turn.

Example::

    g.stage("denoise", BackgroundActivityFilter(window_us=5_000), ev)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

import numpy as np

from runtime.errors import EventRangeError, GraphError
from runtime.packet import Packet
from runtime.spec import StreamSpec

from . import filter_kernels as K

__all__ = [
    "EventRangeError",
    "check_in_sensor",
    "HotPixelFilter",
    "BackgroundActivityFilter",
    "RefractoryFilter",
    "RegionOfInterest",
    "Transform",
    "ToImageOrientation",
    "Downsample",
    "transform_events",
    "transformed_spec",
]


def check_in_sensor(events: np.ndarray, spec: StreamSpec, *, where: str, first_index: int = 0) -> None:
    """Raise EventRangeError if any event's coordinates fall outside ``spec``'s sensor.

    ``first_index`` is the stream index of ``events[0]`` so the message can name the offending event.
    """
    if events.shape[0] == 0:
        return
    if spec.kind == "dvs":
        limits = (("x", int(spec.shape[0])), ("y", int(spec.shape[1])))
        size = f"{spec.shape[0]}×{spec.shape[1]} (W×H)"
    elif spec.kind == "audio":
        limits = (("x", int(spec.shape[0])),)
        size = f"of {spec.shape[0]} channels"
    else:
        return
    for name, limit in limits:
        col = events[name]
        lo = col.min()
        hi = col.max()
        if lo < 0 or hi >= limit:
            i = int(np.argmax((col < 0) | (col >= limit)))
            raise EventRangeError(
                f"{where}: field '{name}' = {int(col[i])} at event {first_index + i} (t={int(events['t'][i])} µs) "
                f"lies outside the sensor {size}; expected 0 ≤ {name} < {limit} "
                "(fix: give the right --sensor-size, or crop/remove the stray events first)"
            )


def _require_dvs(stage: Any, spec: StreamSpec) -> None:
    if spec.kind != "dvs":
        raise GraphError(
            f"{type(stage).__name__}: expects a camera stream (kind 'dvs', events x, y, t, p); "
            f"got a '{spec.kind}' stream {spec.describe()}"
        )


def _name(stage: Any) -> str:
    return type(stage).__name__


# --------------------------------------------------------------------------------------------------------------
# Shared state for the per-event filters
# --------------------------------------------------------------------------------------------------------------


@dataclass
class _FilterState:
    spec: StreamSpec
    events_seen: int = 0
    filtered: int = 0


def _counters(state: _FilterState) -> dict[str, int]:
    return {"filtered_events": int(state.filtered)}


def _frozen(events: np.ndarray) -> np.ndarray:
    if events.flags.writeable:
        events.flags.writeable = False
    return events


# --------------------------------------------------------------------------------------------------------------
# Hot pixels
# --------------------------------------------------------------------------------------------------------------


@dataclass
class HotPixelState(_FilterState):
    mask: np.ndarray = None  # (W, H) bool: True = hot, drop
    counts: np.ndarray | None = None  # (W, H) int64 while calibrating
    calibration_end_us: int | None = None
    t_start_us: int | None = None
    calibrating: bool = False
    held: list = field(default_factory=list)
    last_watermark_us: int | None = None
    hot_pixels: int = 0


@dataclass(frozen=True)
class HotPixelFilter:
    """Drop events from hot pixels: a fixed list and/or pixels whose rate exceeds a threshold.

    ``pixels``: ``((x, y), ...)`` always masked. ``rate_threshold_hz``: when set, the filter counts events per
    pixel over the first ``calibration_us`` of stream time (from the first event) and masks every pixel firing
    faster than the threshold. Events of the calibration window are held back until the window closes (the
    input watermark passes its end) and then filtered with the calibrated mask too, so the first
    ``calibration_us`` of output arrive that much later; after that the filter adds no delay. A stream that ends
    inside the calibration window is calibrated on the time it lasted. For an offline mask, use
    :meth:`from_recording`.
    """

    pixels: tuple[tuple[int, int], ...] = ()
    rate_threshold_hz: float | None = None
    calibration_us: int = 1_000_000

    def __post_init__(self):
        object.__setattr__(self, "pixels", tuple((int(a), int(b)) for a, b in self.pixels))
        if self.rate_threshold_hz is not None and not self.rate_threshold_hz > 0:
            raise ValueError(f"HotPixelFilter: rate_threshold_hz must be > 0 Hz, got {self.rate_threshold_hz}")
        if self.calibration_us < 1:
            raise ValueError(f"HotPixelFilter: calibration_us must be ≥ 1 µs, got {self.calibration_us}")

    @classmethod
    def from_recording(
        cls, events: np.ndarray, spec: StreamSpec, rate_threshold_hz: float, *, extra: Iterable = ()
    ) -> "HotPixelFilter":
        """A fixed-list filter masking every pixel whose mean rate over ``events`` exceeds the threshold."""
        if events.shape[0] == 0:
            return cls(pixels=tuple(extra))
        check_in_sensor(events, spec, where="HotPixelFilter.from_recording")
        counts = np.zeros(spec.shape[:2], dtype=np.int64)
        K.count_pixels_kernel(events["x"], events["y"], counts)
        span_s = max(int(events["t"][-1]) - int(events["t"][0]), 1) * 1e-6
        hot = np.argwhere(counts / span_s > rate_threshold_hz)
        return cls(pixels=tuple(map(tuple, hot.tolist())) + tuple(extra))

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        return spec

    def init(self, spec: StreamSpec) -> HotPixelState:
        _require_dvs(self, spec)
        K.warm_up()
        w, h = int(spec.shape[0]), int(spec.shape[1])
        mask = np.zeros((w, h), dtype=np.bool_)
        for x, y in self.pixels:
            if not (0 <= x < w and 0 <= y < h):
                raise GraphError(
                    f"HotPixelFilter: pixel ({x}, {y}) in 'pixels' lies outside the sensor {w}×{h}; "
                    f"expected 0 ≤ x < {w}, 0 ≤ y < {h}"
                )
            mask[x, y] = True
        calibrating = self.rate_threshold_hz is not None
        return HotPixelState(
            spec=spec, mask=mask, counts=np.zeros((w, h), dtype=np.int64) if calibrating else None,
            calibrating=calibrating, hot_pixels=int(mask.sum()),
        )

    def _apply(self, state: HotPixelState, events: np.ndarray) -> np.ndarray:
        if events.shape[0] == 0:
            return events
        keep = ~state.mask[events["x"], events["y"]]
        state.filtered += int(events.shape[0] - keep.sum())
        return events[keep]

    def _calibrate(self, state: HotPixelState, end_us: int) -> None:
        span_us = max(1, min(self.calibration_us, end_us - state.t_start_us))
        rate_hz = state.counts / (span_us * 1e-6)
        state.mask |= rate_hz > self.rate_threshold_hz
        state.hot_pixels = int(state.mask.sum())
        state.calibrating = False
        state.counts = None

    def step(self, state: HotPixelState, packet: Packet) -> tuple[HotPixelState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        state.last_watermark_us = packet.t_end_us
        if not state.calibrating:
            return state, [packet.derive(self._apply(state, events))]
        if state.calibration_end_us is None and events.shape[0]:
            state.t_start_us = int(events["t"][0])
            state.calibration_end_us = state.t_start_us + self.calibration_us
        if state.calibration_end_us is None:
            return state, [packet]  # nothing seen yet: pass the watermark on
        split = int(np.searchsorted(events["t"], state.calibration_end_us, "left"))
        early = events[:split]
        if early.shape[0]:
            K.count_pixels_kernel(early["x"], early["y"], state.counts)
            state.held.append(early)
        if packet.t_end_us < state.calibration_end_us:
            # still calibrating: promise no more than the earliest held event allows
            return state, [Packet(_frozen(np.empty(0, events.dtype)), min(state.t_start_us, packet.t_end_us))]
        self._calibrate(state, state.calibration_end_us)
        held = np.concatenate(state.held + [events[split:]])
        state.held = []
        return state, [packet.derive(self._apply(state, held))]

    def finish(self, state: HotPixelState) -> list[Packet]:
        if not state.calibrating or state.t_start_us is None:
            return []
        self._calibrate(state, state.last_watermark_us)
        held = np.concatenate(state.held)
        state.held = []
        return [Packet(_frozen(self._apply(state, held)), state.last_watermark_us)]

    def counters(self, state: HotPixelState) -> dict[str, int]:
        return _counters(state)


# --------------------------------------------------------------------------------------------------------------
# Background activity
# --------------------------------------------------------------------------------------------------------------


@dataclass
class LastTimeState(_FilterState):
    last_us: np.ndarray = None  # (W, H) int64


@dataclass(frozen=True)
class BackgroundActivityFilter:
    """Drop isolated events: keep an event when one of its 8 neighbours fired within ``window_us``.

    "Within" is the half-open window ``(t - window_us, t]``; every input event (kept or dropped) counts as
    firing; the event's own pixel does not support it; simultaneous events (equal ``t``) see each other.
    """

    window_us: int = 5_000

    def __post_init__(self):
        if self.window_us < 1:
            raise ValueError(f"BackgroundActivityFilter: window_us must be ≥ 1 µs, got {self.window_us}")

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        return spec

    def init(self, spec: StreamSpec) -> LastTimeState:
        _require_dvs(self, spec)
        K.warm_up()
        return LastTimeState(spec=spec, last_us=np.full(spec.shape[:2], K.NEVER_US, dtype=np.int64))

    def step(self, state: LastTimeState, packet: Packet) -> tuple[LastTimeState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        if events.shape[0] == 0:
            return state, [packet]
        keep = np.empty(events.shape[0], dtype=np.bool_)
        state.filtered += K.background_activity_kernel(
            events["x"], events["y"], events["t"], state.last_us, np.int64(self.window_us), keep
        )
        return state, [packet.derive(events[keep])]

    def finish(self, state: LastTimeState) -> list[Packet]:
        return []

    def counters(self, state: LastTimeState) -> dict[str, int]:
        return _counters(state)


# --------------------------------------------------------------------------------------------------------------
# Refractory period
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RefractoryFilter:
    """Per pixel (either polarity), drop events less than ``period_us`` after the pixel's last kept event."""

    period_us: int = 1_000

    def __post_init__(self):
        if self.period_us < 1:
            raise ValueError(f"RefractoryFilter: period_us must be ≥ 1 µs, got {self.period_us}")

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        return spec

    def init(self, spec: StreamSpec) -> LastTimeState:
        _require_dvs(self, spec)
        K.warm_up()
        return LastTimeState(spec=spec, last_us=np.full(spec.shape[:2], K.NEVER_US, dtype=np.int64))

    def step(self, state: LastTimeState, packet: Packet) -> tuple[LastTimeState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        if events.shape[0] == 0:
            return state, [packet]
        keep = np.empty(events.shape[0], dtype=np.bool_)
        state.filtered += K.refractory_kernel(
            events["x"], events["y"], events["t"], state.last_us, np.int64(self.period_us), keep
        )
        return state, [packet.derive(events[keep])]

    def finish(self, state: LastTimeState) -> list[Packet]:
        return []

    def counters(self, state: LastTimeState) -> dict[str, int]:
        return _counters(state)


# --------------------------------------------------------------------------------------------------------------
# Geometry: crop, flip/rotate, downsample (stateless maps; numpy is already the fast path for them)
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RegionOfInterest:
    """Keep events inside the rectangle ``[x0, x0+width) × [y0, y0+height)`` and shift them to its origin.

    The output spec's sensor size becomes ``(width, height)``; events outside the rectangle are counted as
    filtered.
    """

    x0: int
    y0: int
    width: int
    height: int

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        w, h = int(spec.shape[0]), int(spec.shape[1])
        if self.width < 1 or self.height < 1:
            raise GraphError(f"RegionOfInterest: width and height must be ≥ 1, got {self.width}×{self.height}")
        if not (0 <= self.x0 and 0 <= self.y0 and self.x0 + self.width <= w and self.y0 + self.height <= h):
            raise GraphError(
                f"RegionOfInterest: rectangle x=[{self.x0}, {self.x0 + self.width}) y=[{self.y0}, "
                f"{self.y0 + self.height}) does not fit the sensor {w}×{h}; expected 0 ≤ x0, x0+width ≤ {w}, "
                f"0 ≤ y0, y0+height ≤ {h}"
            )
        return spec.with_(shape=(int(self.width), int(self.height), *spec.shape[2:]))

    def init(self, spec: StreamSpec) -> _FilterState:
        self.out_spec(spec)
        return _FilterState(spec=spec)

    def step(self, state: _FilterState, packet: Packet) -> tuple[_FilterState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        if events.shape[0] == 0:
            return state, [packet]
        x = events["x"]
        y = events["y"]
        keep = (x >= self.x0) & (x < self.x0 + self.width) & (y >= self.y0) & (y < self.y0 + self.height)
        out = events[keep]  # a fresh copy (boolean indexing), safe to shift
        out["x"] -= self.x0
        out["y"] -= self.y0
        state.filtered += int(events.shape[0] - out.shape[0])
        return state, [packet.derive(out)]

    def finish(self, state: _FilterState) -> list[Packet]:
        return []

    def counters(self, state: _FilterState) -> dict[str, int]:
        return _counters(state)


_ROTATIONS = (0, 90, 180, 270)


def transformed_spec(spec: StreamSpec, flip_x: bool = False, flip_y: bool = False, rotate: int = 0) -> StreamSpec:
    """The spec after :func:`transform_events`: size swapped by 90/270, orientation flags updated."""
    if rotate not in _ROTATIONS:
        raise ValueError(f"rotate must be one of {_ROTATIONS} degrees, got {rotate}")
    w, h = int(spec.shape[0]), int(spec.shape[1])
    xm = bool(spec.x_mirrored) ^ bool(flip_x)
    yu = bool(spec.y_up) ^ bool(flip_y)
    if rotate in (90, 270):
        return spec.with_(shape=(h, w, *spec.shape[2:]), x_mirrored=yu, y_up=xm)
    return spec.with_(x_mirrored=xm, y_up=yu)


def transform_events(
    events: np.ndarray, width: int, height: int, flip_x: bool = False, flip_y: bool = False, rotate: int = 0
) -> np.ndarray:
    """A new event array flipped (first) and rotated clockwise (then); see the module docstring."""
    if rotate not in _ROTATIONS:
        raise ValueError(f"rotate must be one of {_ROTATIONS} degrees, got {rotate}")
    out = np.array(events)  # own copy, writeable
    if not (flip_x or flip_y or rotate):
        return out
    x = events["x"].astype(np.int32)
    y = events["y"].astype(np.int32)
    if flip_x:
        x = (width - 1) - x
    if flip_y:
        y = (height - 1) - y
    if rotate == 90:
        x, y = (height - 1) - y, x
    elif rotate == 180:
        x, y = (width - 1) - x, (height - 1) - y
    elif rotate == 270:
        x, y = y, (width - 1) - x
    out["x"] = x
    out["y"] = y
    return out


class _Orient:
    """Shared body of Transform and ToImageOrientation; subclasses say which flips/rotation apply."""

    def _resolved(self, spec: StreamSpec) -> tuple[bool, bool, int]:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        return transformed_spec(spec, *self._resolved(spec))

    def init(self, spec: StreamSpec) -> _FilterState:
        _require_dvs(self, spec)
        return _FilterState(spec=spec)

    def step(self, state: _FilterState, packet: Packet) -> tuple[_FilterState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        fx, fy, rot = self._resolved(state.spec)
        if events.shape[0] == 0 or not (fx or fy or rot):
            return state, [packet]
        w, h = int(state.spec.shape[0]), int(state.spec.shape[1])
        return state, [packet.derive(transform_events(events, w, h, fx, fy, rot))]

    def finish(self, state: _FilterState) -> list[Packet]:
        return []

    def counters(self, state: _FilterState) -> dict[str, int]:
        return _counters(state)


@dataclass(frozen=True)
class Transform(_Orient):
    """Flip and/or rotate camera events (flip first, then rotate clockwise on screen); updates the spec."""

    flip_x: bool = False
    flip_y: bool = False
    rotate: int = 0

    def __post_init__(self):
        if self.rotate not in _ROTATIONS:
            raise ValueError(f"Transform: rotate must be one of {_ROTATIONS} degrees, got {self.rotate}")

    def _resolved(self, spec: StreamSpec) -> tuple[bool, bool, int]:
        return bool(self.flip_x), bool(self.flip_y), int(self.rotate)


@dataclass(frozen=True)
class ToImageOrientation(_Orient):
    """Flip x and/or y as the incoming spec's ``x_mirrored``/``y_up`` say, so the output is in image orientation
    (x right, y down). A jAER DVS128 stream (both flags set) is turned by 180°."""

    def _resolved(self, spec: StreamSpec) -> tuple[bool, bool, int]:
        return bool(spec.x_mirrored), bool(spec.y_up), 0


@dataclass(frozen=True)
class Downsample:
    """Coarser pixels: ``x // factor_x``, ``y // factor_y``; sensor size ``ceil(W / fx) × ceil(H / fy)``.

    Every event passes (several input pixels map onto one output pixel, as with ``tonic.transforms.Downsample``).
    """

    factor_x: int = 2
    factor_y: int | None = None

    def __post_init__(self):
        fy = self.factor_x if self.factor_y is None else self.factor_y
        if self.factor_x < 1 or fy < 1:
            raise ValueError(f"Downsample: factors must be ≥ 1, got {self.factor_x}×{fy}")
        object.__setattr__(self, "factor_y", int(fy))

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        _require_dvs(self, spec)
        w, h = int(spec.shape[0]), int(spec.shape[1])
        return spec.with_(shape=(-(-w // self.factor_x), -(-h // self.factor_y), *spec.shape[2:]))

    def init(self, spec: StreamSpec) -> _FilterState:
        _require_dvs(self, spec)
        return _FilterState(spec=spec)

    def step(self, state: _FilterState, packet: Packet) -> tuple[_FilterState, list[Packet]]:
        events = packet.events
        check_in_sensor(events, state.spec, where=_name(self), first_index=state.events_seen)
        state.events_seen += events.shape[0]
        if events.shape[0] == 0:
            return state, [packet]
        out = np.array(events)
        out["x"] //= self.factor_x
        out["y"] //= self.factor_y
        return state, [packet.derive(out)]

    def finish(self, state: _FilterState) -> list[Packet]:
        return []

    def counters(self, state: _FilterState) -> dict[str, int]:
        return _counters(state)

