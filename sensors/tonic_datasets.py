"""Replay samples of a tonic dataset the user already has on disk, one after another, keeping their labels.

Any object that is indexable, returns ``(events, target)`` and has ``sensor_size`` works: every
``tonic.datasets.*`` class (``DVSGesture(save_to=...)``, ``NMNIST``, ``SHD``...) or your own::

    ds = tonic.datasets.DVSGesture(save_to="~/data", train=False)
    g.source("gestures", TonicDatasetSource(ds, indices=range(10), gap_us=200_000))

Stream time: sample ``k`` is shifted so that it starts ``gap_us`` after the end of sample ``k-1`` (the first
sample keeps its own times), so ``t`` never decreases across samples. ``info()["samples"]`` lists, per replayed
sample, its dataset index, its target (the label), the shift applied and its span ``[t_start_us, t_end_us)`` in
stream time, so a report can line decisions up with labels.

Events: vision samples (fields x, y, t, p) become ``DVS_EVENT``, audio samples (t, x, p; e.g. SHD with sensor size
``(700, 1, 1)``) become ``AUDIO_EVENT``. Polarity 0/1 or -1/1 maps to OFF/ON. Float times are floored to whole
µs (counted as ``ticks_floored``). A sample whose times go backwards is an error naming the sample and event
index, or, with ``repair_order=True``, is sorted and counted (``order_repairs``). Events outside
``sensor_size`` are an error. ``transform`` (e.g. a ``tonic.transforms.Compose``) is applied to each sample's
events before replay, as tonic's own ``transform=`` argument would; our packets are tonic-layout arrays, so
pointwise tonic transforms also run on them directly.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from runtime.errors import ClocklessError, StreamOrderError
from runtime.events import AUDIO_EVENT, DVS_EVENT
from runtime.packet import Packet, Packetizer
from runtime.sources import OpenIter
from runtime.spec import StreamSpec, audio_spec, dvs_spec

from .filters import check_in_sensor

__all__ = ["TonicDatasetSource", "DatasetError", "sample_to_events"]


class DatasetError(ClocklessError):
    """A dataset or one of its samples does not look like tonic's (events, target) with a sensor size."""


def _plain(value: Any) -> Any:
    """A JSON-friendly form of a target (ints, floats, strings, lists), else its repr."""
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    if isinstance(value, np.ndarray):
        return value.tolist() if value.size <= 64 else f"array{value.shape}"
    if isinstance(value, (int, float, str, bool)) or value is None:
        return value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    try:  # torch tensors and the like
        return _plain(value.tolist())
    except Exception:
        return repr(value)


def _spec_for(dataset: Any, sensor_size, kind: str, x_mirrored: bool, y_up: bool, name: str) -> StreamSpec:
    size = sensor_size if sensor_size is not None else getattr(dataset, "sensor_size", None)
    if size is None:
        raise DatasetError(
            f"{name}: dataset {type(dataset).__name__} has no 'sensor_size'; expected a tonic-style dataset "
            "(sensor_size = (W, H, P)), or pass sensor_size=(W, H, P)"
        )
    size = tuple(int(s) for s in size)
    if kind == "audio":
        return audio_spec(size[0], source="tonic", dataset=type(dataset).__name__)
    if len(size) < 2:
        raise DatasetError(f"{name}: sensor_size {size} needs at least (W, H) for camera events")
    return dvs_spec(size[0], size[1], x_mirrored=x_mirrored, y_up=y_up, source="tonic",
                    dataset=type(dataset).__name__)


def _kind_of(events: Any, where: str) -> str:
    names = getattr(getattr(events, "dtype", None), "names", None)
    if names is None:
        raise DatasetError(
            f"{where}: expected events as a numpy structured array (fields x, y, t, p or t, x, p), "
            f"got {type(events).__name__}"
        )
    if {"x", "y", "t", "p"} <= set(names):
        return "dvs"
    if {"t", "x", "p"} <= set(names):
        return "audio"
    raise DatasetError(f"{where}: events have fields {list(names)}; expected x, y, t, p (vision) or t, x, p (audio)")


def sample_to_events(events: np.ndarray, kind: str, *, where: str, repair_order: bool = False,
                     counts: dict | None = None) -> np.ndarray:
    """One tonic sample as a sorted ``DVS_EVENT``/``AUDIO_EVENT`` array (new memory; the sample is not touched)."""
    counts = counts if counts is not None else {}
    dtype = DVS_EVENT if kind == "dvs" else AUDIO_EVENT
    if _kind_of(events, where) != kind:
        raise DatasetError(
            f"{where}: expected {kind} events like the first sample, got fields {list(events.dtype.names)}"
        )
    out = np.empty(events.shape[0], dtype=dtype)
    t = events["t"]
    if np.issubdtype(t.dtype, np.floating):
        if t.shape[0] and not np.all(np.isfinite(t)):
            i = int(np.argmax(~np.isfinite(t)))
            raise DatasetError(f"{where}: field 't' of event {i} is {t[i]}; expected finite µs")
        floored = np.floor(t)
        counts["ticks_floored"] = counts.get("ticks_floored", 0) + int(np.count_nonzero(floored != t))
        t = floored
    out["t"] = t
    p = events["p"]
    if p.shape[0]:
        values = np.unique(p)
        if not (set(values.tolist()) <= {0, 1} or set(values.tolist()) <= {-1, 1}):
            raise DatasetError(f"{where}: field 'p' holds {values[:5].tolist()}; expected polarity 0/1 or -1/1")
    out["p"] = p > 0
    for name in ("x", "y") if kind == "dvs" else ("x",):
        col = events[name]
        if col.shape[0] and (col.min() < np.iinfo(np.int16).min or col.max() > np.iinfo(np.int16).max):
            i = int(np.argmax((col < -32768) | (col > 32767)))
            raise DatasetError(f"{where}: field '{name}' = {int(col[i])} at event {i} does not fit int16")
        out[name] = col
    steps = np.diff(out["t"])
    if steps.size and steps.min() < 0:
        i = int(np.argmax(steps < 0)) + 1
        if not repair_order:
            raise StreamOrderError(
                f"{where}: field 't' decreases at event {i}: t={int(out['t'][i])} µs after t={int(out['t'][i - 1])} µs "
                "(expected sorted samples; pass repair_order=True to sort and count)"
            )
        order = np.argsort(out["t"], kind="stable")
        counts["order_repairs"] = counts.get("order_repairs", 0) + int(np.count_nonzero(order != np.arange(order.size)))
        out = out[order]
    return out


@dataclass(frozen=True, eq=False)
class TonicDatasetSource:
    """Replays ``dataset[i]`` for ``i`` in ``indices`` (default: every sample) as one stream of packets."""

    dataset: Any
    indices: Sequence[int] | None = None
    gap_us: int = 100_000
    transform: Callable[[np.ndarray], np.ndarray] | None = None
    sensor_size: tuple[int, ...] | None = None
    x_mirrored: bool = False
    y_up: bool = False
    repair_order: bool = False
    max_events: int = 4096
    max_span_us: int | None = 1000
    name: str = "tonic"
    extra: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self):
        if self.gap_us < 0:
            raise ValueError(f"TonicDatasetSource: gap_us must be ≥ 0, got {self.gap_us}")

    def _indices(self) -> list[int]:
        try:
            n = len(self.dataset)
        except TypeError as exc:
            raise DatasetError(f"{self.name}: dataset {type(self.dataset).__name__} has no len(); expected a "
                               "tonic-style dataset") from exc
        idx = list(range(n)) if self.indices is None else [int(i) for i in self.indices]
        for i in idx:
            if not -n <= i < n:
                raise DatasetError(f"{self.name}: sample index {i} is outside the dataset's {n} samples")
        return idx

    def _get(self, i: int) -> tuple[np.ndarray, Any]:
        item = self.dataset[i]
        if not (isinstance(item, tuple) and len(item) == 2):
            raise DatasetError(
                f"{self.name}: dataset[{i}] returned {type(item).__name__}; expected a tuple (events, target)"
            )
        events, target = item
        if self.transform is not None:
            events = self.transform(events)
        return events, target

    def open(self) -> OpenIter:
        indices = self._indices()
        if not indices:
            raise DatasetError(f"{self.name}: no samples to replay (indices is empty)")
        first_events, first_target = self._get(indices[0])
        kind = _kind_of(first_events, f"{self.name}: dataset[{indices[0]}]")
        spec = _spec_for(self.dataset, self.sensor_size, kind, self.x_mirrored, self.y_up, self.name)
        info: dict[str, Any] = {
            "source": self.name,
            "dataset": type(self.dataset).__name__,
            "sensor_size": list(spec.shape),
            "samples": [],
            "counts": {"ticks_floored": 0, "order_repairs": 0},
            **dict(self.extra),
        }
        classes = getattr(self.dataset, "classes", None)
        if classes is not None:
            info["classes"] = [str(c) for c in classes]
        packetizer = Packetizer(spec.dtype, self.max_events, self.max_span_us, where=self.name)

        def packets() -> Iterator[Packet]:
            next_start: int | None = None
            cached = (first_events, first_target)
            for k, i in enumerate(indices):
                raw, target = cached if k == 0 else self._get(i)
                cached = None
                where = f"{self.name}: dataset[{i}]"
                ev = sample_to_events(raw, kind, where=where, repair_order=self.repair_order, counts=info["counts"])
                shift = 0
                if ev.shape[0]:
                    if next_start is not None:
                        shift = next_start - int(ev["t"][0])
                        ev["t"] += shift
                    check_in_sensor(ev, spec, where=where)
                    start, end = int(ev["t"][0]), int(ev["t"][-1]) + 1
                else:
                    start = end = next_start if next_start is not None else 0
                info["samples"].append({"index": i, "target": _plain(target), "events": int(ev.shape[0]),
                                        "t_shift_us": shift, "t_start_us": start, "t_end_us": end})
                next_start = end + self.gap_us
                yield from packetizer.feed(ev)
            yield from packetizer.flush()

        return OpenIter(spec, packets(), info=info)
