"""``InputGain``: divisive gain control at a network's input (a slow automatic gain, as in a retina).

Every input event is weighted by ``clip(ref_rate_hz / rate(t), min_gain, max_gain)``, where ``rate(t)`` is the
network's recent input rate: an exponential trace of its input events (time constant ``tau_us``, this event's
timestamp included) divided by ``tau_us``. It is the event-time twin of the binned filter ``r[k] = λ·r[k-1] +
(1 - λ)·N[k]`` (λ = exp(-bin / tau)) that the trainer applies per bin (``apps.gesture.model.input_gain``): both
read a steady rate exactly. The trace starts at the value whose rate is ``ref_rate_hz`` (gain 1).

A sparse stream (a low-contrast hand that gives a tenth of the usual events) drives the first layer as hard as
a busy one, so thresholds do not silence it; a busy scene is damped. One exp per distinct input timestamp, no
synaptic op: only the weight factor of the first layer changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["InputGain"]


@dataclass(frozen=True)
class InputGain:
    ref_rate_hz: float  # input events per second that get gain 1
    tau_us: float = 500_000.0
    min_gain: float = 0.5
    max_gain: float = 8.0

    def __post_init__(self):
        for name in ("ref_rate_hz", "tau_us", "min_gain", "max_gain"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"InputGain: field '{name}' must be a positive number, got {v!r}")
        if self.min_gain > self.max_gain:
            raise ValueError(f"InputGain: min_gain {self.min_gain} is above max_gain {self.max_gain}")

    @property
    def rate_per_trace_hz(self) -> float:
        """rate(t) = this × trace(t)."""
        return 1e6 / self.tau_us

    def to_dict(self) -> dict:
        return {"ref_rate_hz": self.ref_rate_hz, "tau_us": self.tau_us, "min_gain": self.min_gain,
                "max_gain": self.max_gain}
