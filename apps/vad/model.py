"""The VAD network for training (PyTorch parameters and optimiser, numba forward/backward) and its topology.

A chain of spiking Linear layers: ``hidden`` layers (LIF, optionally recurrent) then a ``readout`` population
whose spikes make the speech trace. ``SnnVad`` holds the weights as torch parameters in (in, out) layout; its
forward pass runs ``SnnVadFunction``, whose forward and backward are the numba kernels of
``apps.vad.train_kernels`` (far faster than stepping PyTorch autograd through thousands of 1 ms bins). The engine's
``Linear`` takes (out, in) and recurrent weights [to, from]: ``apps.vad.export`` transposes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from .train_kernels import F_A, F_TH, L_IN, L_OUT, L_R, L_REC, L_RESET, L_V, L_W, snn_backward, snn_forward

__all__ = ["VadConfig", "SnnVad", "SnnVadFunction", "score_from_trace", "layer_names"]


@dataclass(frozen=True)
class VadConfig:
    inputs: int = 32  # front-end channels × 2 polarities, address p · channels + x
    hidden: tuple = (64,)  # sizes of the hidden layers
    readout: int = 4
    tau_us: tuple = (30_000.0, 20_000.0)  # per layer, hidden layers then readout
    recurrent: tuple = (True, False)  # per layer
    reset: tuple = ("zero", "zero")  # per layer: "zero", "subtract" (multi-spike); "none" = leaky-integrator readout
    threshold: float = 1.0
    tau_y_us: float = 40_000.0
    y_scale: float = 4.0
    bin_us: int = 1000
    slope: float = 5.0

    def __post_init__(self):
        n = len(self.hidden) + 1
        for name in ("tau_us", "recurrent", "reset"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"VadConfig: field '{name}' needs one entry per layer ({n}), got {getattr(self, name)}")
        for r in self.reset:
            if r not in ("zero", "subtract", "none"):
                raise ValueError(f"VadConfig: reset must be 'zero', 'subtract' or 'none', got {r!r}")
        if "none" in self.reset[:-1] or (self.reset[-1] == "none" and self.recurrent[-1]):
            raise ValueError("VadConfig: only the readout may be a leaky integrator ('none'), and not recurrent")

    @property
    def integrator_readout(self) -> bool:
        return self.reset[-1] == "none"

    @property
    def sizes(self) -> list[int]:
        return [self.inputs, *self.hidden, self.readout]

    def decays(self) -> list[float]:
        return [math.exp(-self.bin_us / tau) for tau in self.tau_us]

    def trace_decay(self) -> float:
        return math.exp(-self.bin_us / self.tau_y_us)


def layer_names(cfg: VadConfig) -> list[str]:
    hidden = ["hidden"] + [f"hidden{i + 2}" for i in range(len(cfg.hidden) - 1)]
    return [*hidden, "readout"]


def score_from_trace(y, y_scale: float):
    """Speech score in [0, 1) from the readout spike trace."""
    if isinstance(y, torch.Tensor):
        return 1.0 - torch.exp(-y / y_scale)
    return 1.0 - np.exp(-np.asarray(y) / y_scale)


def _layout(cfg: VadConfig):
    """(desc, fpar, parameter (offset, shape) list) of the flat kernel layout."""
    sizes = cfg.sizes
    n_l = len(sizes) - 1
    desc = np.zeros((n_l, 7), np.int64)
    fpar = np.zeros((n_l, 2), np.float64)
    params = []
    w_off = v_off = 0
    for li in range(n_l):
        n_in, n_out = sizes[li], sizes[li + 1]
        desc[li, L_IN], desc[li, L_OUT], desc[li, L_W], desc[li, L_V] = n_in, n_out, w_off, v_off
        params.append((w_off, (n_in, n_out), False))
        w_off += n_in * n_out
        if cfg.recurrent[li]:
            desc[li, L_REC], desc[li, L_R] = 1, w_off
            params.append((w_off, (n_out, n_out), True))
            w_off += n_out * n_out
        desc[li, L_RESET] = {"zero": 0, "subtract": 1, "none": 2}[cfg.reset[li]]
        fpar[li, F_A] = cfg.decays()[li]
        fpar[li, F_TH] = cfg.threshold
        v_off += n_out
    return desc, fpar, params, w_off, v_off


class SnnVadFunction(torch.autograd.Function):
    """(x, cfg, *weights) → (y trace (B, T), mean spike count per hidden neuron and bin)."""

    @staticmethod
    def forward(ctx, x, cfg: VadConfig, *weights):
        desc, fpar, params, n_w, n_v = _layout(cfg)
        w = np.empty(n_w, np.float64)
        for (off, shape, _), p in zip(params, weights):
            w[off: off + shape[0] * shape[1]] = p.detach().numpy().ravel()
        xn = np.ascontiguousarray(x.detach().numpy(), dtype=np.float32)
        n_b, n_t, _ = xn.shape
        v = np.empty((n_b, n_t, n_v), np.float32)
        s = np.empty((n_b, n_t, n_v), np.float32)
        y = np.empty((n_b, n_t), np.float64)
        ops = snn_forward(xn, desc, fpar, w, cfg.trace_decay(), v, s, y)
        n_hidden = int(sum(cfg.hidden))
        ctx.saved = (xn, desc, fpar, params, w, v, s, cfg, n_hidden)
        ctx.ops = ops
        ctx.dtypes = [p.dtype for p in weights]
        rate = torch.tensor(float(s[:, :, :n_hidden].mean(dtype=np.float64)), dtype=torch.float64)
        return torch.from_numpy(y), rate

    @staticmethod
    def backward(ctx, gy, grate):
        xn, desc, fpar, params, w, v, s, cfg, n_hidden = ctx.saved
        g_rate = float(grate) / (s.shape[0] * s.shape[1] * n_hidden) if grate is not None else 0.0
        gyn = np.zeros(s.shape[:2]) if gy is None else np.ascontiguousarray(gy.numpy(), dtype=np.float64)
        gw = np.zeros_like(w)
        snn_backward(xn, desc, fpar, w, cfg.trace_decay(), cfg.slope, v, s, gyn, g_rate, gw)
        grads = [torch.from_numpy(gw[off: off + shape[0] * shape[1]].reshape(shape).copy()).to(dt)
                 for (off, shape, _), dt in zip(params, ctx.dtypes)]
        return (None, None, *grads)


class SnnVad(torch.nn.Module):
    """Weights: ``weights[i]`` in the kernel's order (each layer's (in, out) weight, then its (from, to) recurrent
    weight when it has one)."""

    def __init__(self, cfg: VadConfig, seed: int = 0, init_gain: float = 1.0):
        super().__init__()
        self.cfg = cfg
        g = torch.Generator().manual_seed(seed)
        _, _, params, _, _ = _layout(cfg)
        ws = []
        for _, (n_in, n_out), is_rec in params:
            scale = (0.3 / math.sqrt(n_in)) if is_rec else (2.0 / math.sqrt(n_in))
            ws.append(torch.nn.Parameter(torch.randn(n_in, n_out, generator=g, dtype=torch.float64) * scale * init_gain))
        self.weights = torch.nn.ParameterList(ws)
        self.bias = torch.nn.Parameter(torch.tensor(-2.0, dtype=torch.float64))  # integrator readout only

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return SnnVadFunction.apply(x, self.cfg, *self.weights)

    def output_spikes(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(y (B, T), spikes (B, T, N)) of the engine's last layer: the readout population, or with an
        integrator readout the last hidden layer (whose spikes the sink weighs)."""
        desc, fpar, params, n_w, n_v = _layout(self.cfg)
        w = np.empty(n_w, np.float64)
        for (off, shape, _), p in zip(params, self.weights):
            w[off: off + shape[0] * shape[1]] = p.detach().numpy().ravel()
        xn = np.ascontiguousarray(x, dtype=np.float32)
        v = np.empty((*xn.shape[:2], n_v), np.float32)
        s = np.empty_like(v)
        y = np.empty(xn.shape[:2], np.float64)
        snn_forward(xn, desc, fpar, w, self.cfg.trace_decay(), v, s, y)
        li = len(self.cfg.sizes) - (3 if self.cfg.integrator_readout else 2)
        off, n = int(desc[li, L_V]), int(desc[li, L_OUT])
        return y, s[:, :, off: off + n]

    def score(self, y: torch.Tensor) -> torch.Tensor:
        if self.cfg.integrator_readout:
            return torch.sigmoid(y + self.bias)
        return score_from_trace(y, self.cfg.y_scale)

    def layer_weights(self) -> list[tuple[np.ndarray, np.ndarray | None]]:
        """Per layer: (weight (out, in), recurrent weight [to, from] or None) in the engine's layouts."""
        out, i = [], 0
        for li in range(len(self.cfg.sizes) - 1):
            w = self.weights[i].detach().numpy().T
            i += 1
            r = None
            if self.cfg.recurrent[li]:
                r = self.weights[i].detach().numpy().T
                i += 1
            out.append((np.ascontiguousarray(w), None if r is None else np.ascontiguousarray(r)))
        return out
