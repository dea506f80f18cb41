"""``InputGain``: divisive gain control at a network's input (a slow automatic gain, as in a retina).

Stream time is cut into windows of ``window_us`` (from t = 0). Every input event is weighted by
``clip(ref / r, min_gain, max_gain)``, where ``ref = ref_rate_hz · window`` and ``r`` is the running count per
window over the windows before the event's own: ``r ← λ·r + (1 - λ)·N`` as each window closes (N its input
events, λ = exp(-window_us / tau_us); r starts at ``ref``, so the gain starts at 1). The gain is constant within a
window and known when its first event arrives: no clock, only the event times. It is exactly the per-bin filter
the trainer applies at bins of ``window_us`` (``apps.gesture.model.input_gain``), so the two agree gain for gain.

A sparse stream (a low-contrast hand that gives a tenth of the usual events) then drives the first layer about
as hard as a busy one, so thresholds do not silence it; a busy scene is damped. A few multiplies per input
window, no synaptic op: only the weight factor of the first layer changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["InputGain"]


@dataclass(frozen=True)
class InputGain:
    ref_rate_hz: float  # input events per second that get gain 1
    tau_us: float = 500_000.0
    window_us: int = 50_000
    min_gain: float = 0.5
    max_gain: float = 8.0
    count: str = "input"  # "input": the network's own input events; "sensor": a count-only port (see below)

    def __post_init__(self):
        if self.count not in ("input", "sensor"):
            raise ValueError(f"InputGain: field 'count' must be 'input' or 'sensor', got {self.count!r}")
        for name in ("ref_rate_hz", "tau_us", "window_us", "min_gain", "max_gain"):
            v = getattr(self, name)
            if not (isinstance(v, (int, float)) and math.isfinite(v) and v > 0):
                raise ValueError(f"InputGain: field '{name}' must be a positive number, got {v!r}")
        if int(self.window_us) != self.window_us:
            raise ValueError(f"InputGain: field 'window_us' must be a whole number of µs, got {self.window_us!r}")
        if self.min_gain > self.max_gain:
            raise ValueError(f"InputGain: min_gain {self.min_gain} is above max_gain {self.max_gain}")

    @property
    def ref_per_window(self) -> float:
        return self.ref_rate_hz * self.window_us * 1e-6

    @property
    def keep(self) -> float:
        """λ: what is left of the running count after one window."""
        return math.exp(-self.window_us / self.tau_us)

    def to_dict(self) -> dict:
        return {"ref_rate_hz": self.ref_rate_hz, "tau_us": self.tau_us, "window_us": int(self.window_us),
                "min_gain": self.min_gain, "max_gain": self.max_gain, "count": self.count}
