"""Exponential moving average of a model's parameters during training (imports torch when used).

Surrogate-gradient training of spiking networks is noisy from step to step; evaluating and keeping the average of
the recent weights instead of the last step's gives a smoother validation curve and a better checkpoint.
"""

from __future__ import annotations

__all__ = ["WeightAverage"]


class WeightAverage:
    """Exponential moving average of parameters, ``a ← d·a + (1 − d)·p`` after each step, with the usual warm-up
    ``d_k = min(d, (1 + k) / (10 + k))`` so early averages are not dominated by the initial weights. ``swap``
    exchanges the live parameters with the average (twice restores them)."""

    def __init__(self, params, decay: float):
        import torch

        self.params = list(params)
        self.decay = float(decay)
        self.avg = [p.detach().clone() for p in self.params]
        self.k = 0
        self._torch = torch

    def update(self) -> None:
        d = min(self.decay, (1 + self.k) / (10 + self.k))
        self.k += 1
        with self._torch.no_grad():
            for a, p in zip(self.avg, self.params):
                a.mul_(d).add_(p.detach(), alpha=1.0 - d)

    def swap(self) -> None:
        with self._torch.no_grad():
            for a, p in zip(self.avg, self.params):
                tmp = p.detach().clone()
                p.copy_(a)
                a.copy_(tmp)
