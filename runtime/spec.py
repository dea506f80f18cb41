"""Stream specs: what flows along an edge, carried once per edge rather than per event."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Mapping

import numpy as np

from .events import AUDIO_EVENT, DECISION_EVENT, DVS_EVENT, SPIKE_EVENT

__all__ = ["StreamSpec", "dvs_spec", "audio_spec", "spike_spec", "decision_spec"]


@dataclass(frozen=True)
class StreamSpec:
    """Layout and geometry of one stream.

    ``kind`` is ``"dvs"`` (shape = sensor size ``(W, H, P)`` as in tonic), ``"audio"`` (shape = ``(channels, P)``),
    ``"spike"`` (shape = the layer's neuron shape, e.g. ``(C, H, W)``) or ``"decision"`` (shape = ``(n_labels,)``).
    ``x_mirrored``/``y_up`` give the native orientation relative to an image (x right, y down): jAER DVS128 files
    have both set. ``labels`` names the classes of a decision stream or the channels of a classifier layer.
    """

    kind: str
    dtype: np.dtype
    shape: tuple[int, ...]
    x_mirrored: bool = False
    y_up: bool = False
    labels: tuple[str, ...] = ()
    meta: Mapping[str, Any] = field(default_factory=dict, compare=False)

    @property
    def sensor_size(self) -> tuple[int, ...]:
        return self.shape

    def describe(self) -> str:
        orient = ""
        if self.x_mirrored or self.y_up:
            orient = " (" + ", ".join(s for s, on in (("x mirrored", self.x_mirrored), ("y up", self.y_up)) if on) + ")"
        return f"{self.kind}{list(self.shape)}{orient}"

    def with_(self, **changes) -> "StreamSpec":
        return replace(self, **changes)


def dvs_spec(width: int, height: int, *, x_mirrored: bool = False, y_up: bool = False, **meta) -> StreamSpec:
    return StreamSpec("dvs", DVS_EVENT, (int(width), int(height), 2), x_mirrored, y_up, meta=meta)


def audio_spec(channels: int, **meta) -> StreamSpec:
    return StreamSpec("audio", AUDIO_EVENT, (int(channels), 2), meta=meta)


def spike_spec(shape: tuple[int, ...], labels: tuple[str, ...] = (), **meta) -> StreamSpec:
    return StreamSpec("spike", SPIKE_EVENT, tuple(int(s) for s in shape), labels=labels, meta=meta)


def decision_spec(labels: tuple[str, ...], **meta) -> StreamSpec:
    return StreamSpec("decision", DECISION_EVENT, (len(labels),), labels=tuple(labels), meta=meta)
