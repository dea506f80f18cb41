"""The VAD network for training (PyTorch parameters and optimiser, numba forward/backward) and its export.

``SnnVad`` holds the weights as torch parameters; its forward pass runs ``SnnVadFunction``, whose forward and
backward are the numba kernels of ``apps.vad.train_kernels`` (about 20× faster than stepping PyTorch autograd
through 4000 one-millisecond bins). Layouts in torch are (in, out); the engine's ``Linear`` wants (out, in).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .train_kernels import snn_backward, snn_forward

__all__ = ["VadConfig", "SnnVad", "SnnVadFunction", "score_from_trace"]


@dataclass(frozen=True)
class VadConfig:
    inputs: int = 32  # front-end channels × 2 polarities, address p · channels + x
    hidden: int = 48
    readout: int = 4
    tau1_us: float = 30_000.0
    tau2_us: float = 20_000.0
    tau_y_us: float = 40_000.0
    th1: float = 1.0
    th2: float = 1.0
    y_scale: float = 4.0
    bin_us: int = 1000
    slope: float = 5.0

    def decays(self) -> tuple[float, float, float]:
        return tuple(math.exp(-self.bin_us / tau) for tau in (self.tau1_us, self.tau2_us, self.tau_y_us))


def score_from_trace(y, y_scale: float):
    """Speech score in [0, 1) from the readout spike trace."""
    if isinstance(y, torch.Tensor):
        return 1.0 - torch.exp(-y / y_scale)
    return 1.0 - np.exp(-np.asarray(y) / y_scale)


class SnnVadFunction(torch.autograd.Function):
    """(x, w1, r, w2) → (y trace (B, T), mean hidden spike count per neuron and bin)."""

    @staticmethod
    def forward(ctx, x, w1, r, w2, cfg: VadConfig):
        xn = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        w1n, rn, w2n = (np.ascontiguousarray(p.detach().numpy(), dtype=np.float64) for p in (w1, r, w2))
        n_b, n_t, _ = xn.shape
        n_h, n_k = w1n.shape[1], w2n.shape[1]
        v1 = np.empty((n_b, n_t, n_h), np.float32)
        s1 = np.empty((n_b, n_t, n_h), np.float32)
        v2 = np.empty((n_b, n_t, n_k), np.float32)
        y = np.empty((n_b, n_t), np.float64)
        a1, a2, ay = cfg.decays()
        ops = snn_forward(xn, w1n, rn, w2n, a1, a2, ay, cfg.th1, cfg.th2, v1, s1, v2, y)
        ctx.save_for_backward(x, w1, r, w2)
        ctx.saved = (xn, w1n, rn, w2n, v1, s1, v2, cfg)
        ctx.ops = ops
        rate = torch.tensor(float(s1.mean(dtype=np.float64)), dtype=torch.float64)
        return torch.from_numpy(y), rate

    @staticmethod
    def backward(ctx, gy, grate):
        xn, w1n, rn, w2n, v1, s1, v2, cfg = ctx.saved
        a1, a2, ay = cfg.decays()
        g_s1 = float(grate) / s1.size if grate is not None else 0.0
        gyn = np.zeros(v1.shape[:2]) if gy is None else np.ascontiguousarray(gy.numpy(), dtype=np.float64)
        gw1 = np.zeros_like(w1n)
        gr = np.zeros_like(rn)
        gw2 = np.zeros_like(w2n)
        snn_backward(xn, w1n, rn, w2n, a1, a2, ay, cfg.th1, cfg.th2, cfg.slope, v1, s1, v2, gyn, g_s1, gw1, gr, gw2)
        x, w1, r, w2 = ctx.saved_tensors
        return (None, torch.from_numpy(gw1).to(w1.dtype), torch.from_numpy(gr).to(r.dtype),
                torch.from_numpy(gw2).to(w2.dtype), None)


class SnnVad(torch.nn.Module):
    def __init__(self, cfg: VadConfig, seed: int = 0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        self.w1 = torch.nn.Parameter(torch.randn(cfg.inputs, cfg.hidden, generator=g, dtype=torch.float64) * 0.5)
        self.r = torch.nn.Parameter(torch.randn(cfg.hidden, cfg.hidden, generator=g, dtype=torch.float64) * 0.05)
        self.w2 = torch.nn.Parameter(torch.randn(cfg.hidden, cfg.readout, generator=g, dtype=torch.float64) * 0.3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return SnnVadFunction.apply(x, self.w1, self.r, self.w2, self.cfg)

    def score(self, y: torch.Tensor) -> torch.Tensor:
        return score_from_trace(y, self.cfg.y_scale)
