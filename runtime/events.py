"""Event record layouts shared by every part of clockless.

All layouts are numpy structured dtypes addressed by field name. ``DVS_EVENT`` is byte-identical to
``tonic.io.events_struct`` so any tonic transform accepts a packet's events unchanged.
Time ``t`` is always int64 microseconds.
"""

from __future__ import annotations

import numpy as np

__all__ = [
    "DVS_EVENT",
    "AUDIO_EVENT",
    "SPIKE_EVENT",
    "DECISION_EVENT",
    "empty_events",
    "make_dvs_events",
]

DVS_EVENT = np.dtype([("x", "<i2"), ("y", "<i2"), ("t", "<i8"), ("p", "?")])
"""Camera events: pixel column ``x``, row ``y``, time ``t`` (µs), polarity ``p`` (True = ON, brightness up)."""

AUDIO_EVENT = np.dtype([("t", "<i8"), ("x", "<i2"), ("p", "?")])
"""Cochlea / audio front-end events: ``x`` is the frequency channel, as in tonic's audio datasets."""

SPIKE_EVENT = np.dtype([("t", "<i8"), ("addr", "<i4")])
"""Spikes inside a network: ``addr`` is the layer-local flat neuron index (C-order over the layer's shape)."""

DECISION_EVENT = np.dtype([("t", "<i8"), ("label", "<i2"), ("score", "<f4"), ("onset", "<i8")])
"""Decisions emitted by classifier sinks: stream time ``t``, label index, confidence in [0, 1], onset time."""


def empty_events(dtype: np.dtype) -> np.ndarray:
    """A read-only, zero-length event array of ``dtype``."""
    events = np.empty(0, dtype=dtype)
    events.flags.writeable = False
    return events


def make_dvs_events(x, y, t, p) -> np.ndarray:
    """Build a DVS event array from columns (copies; the result is writeable and unsorted as given)."""
    x = np.asarray(x)
    events = np.empty(x.shape[0], dtype=DVS_EVENT)
    events["x"] = x
    events["y"] = y
    events["t"] = t
    events["p"] = p
    return events
