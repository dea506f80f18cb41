"""VAD training kernels (numba forward/backward) vs their slow twin: the same model stepped by PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.vad.model import SnnVad, VadConfig, score_from_trace


def reference_forward(x, weights, cfg: VadConfig):
    """Plain PyTorch, one bin at a time; the surrogate enters through a straight-through term."""
    n_b, n_t, _ = x.shape
    sizes = cfg.sizes
    layers, i = [], 0
    for li in range(len(sizes) - 1):
        w = weights[i]
        i += 1
        r = None
        if cfg.recurrent[li]:
            r = weights[i]
            i += 1
        layers.append((w, r, cfg.decays()[li], cfg.reset[li]))
    v = [torch.zeros(n_b, sizes[li + 1], dtype=torch.float64) for li in range(len(layers))]
    s_prev = [torch.zeros_like(vi) for vi in v]
    y = torch.zeros(n_b, dtype=torch.float64)
    ys, hidden = [], []
    th = cfg.threshold

    def spike(u, reset):
        hard = torch.where(u >= th, torch.floor(u / th), torch.zeros_like(u)) if reset == "subtract" else \
            (u >= th).double()
        d = u - th
        smooth = d / (1 + cfg.slope * d.abs())  # derivative 1 / (1 + slope |d|)^2
        return hard + smooth - smooth.detach()

    for t in range(n_t):
        inp = x[:, t].double()
        spikes = []
        for li, (w, r, a, reset) in enumerate(layers):
            u = a * v[li] + inp @ w
            if r is not None:
                u = u + s_prev[li] @ r
            if reset == "none":  # leaky-integrator readout: its potential is the output
                v[li] = u
                spikes.append(u)
                continue
            s = spike(u, reset)
            v[li] = u - s.detach() * th if reset == "subtract" else u * (1 - s.detach())
            spikes.append(s)
            inp = s
        s_prev = spikes
        y = spikes[-1].sum(1) if cfg.integrator_readout else cfg.trace_decay() * y + spikes[-1].sum(1)
        ys.append(y)
        hidden.append(torch.cat(spikes[:-1], 1))
    return torch.stack(ys, 1), torch.stack(hidden, 1).mean()


CONFIGS = [
    VadConfig(inputs=6, hidden=(5,), readout=2, tau_us=(20_000, 10_000), recurrent=(True, False),
              reset=("zero", "zero"), tau_y_us=30_000),
    VadConfig(inputs=6, hidden=(5, 4), readout=3, tau_us=(15_000, 60_000, 10_000), recurrent=(True, True, False),
              reset=("subtract", "subtract", "zero"), tau_y_us=30_000),
    VadConfig(inputs=6, hidden=(4, 3), readout=2, tau_us=(15_000, 40_000, 10_000), recurrent=(False, True, False),
              reset=("zero", "subtract", "subtract"), tau_y_us=20_000, slope=2.0),
    VadConfig(inputs=6, hidden=(5,), readout=1, tau_us=(20_000, 50_000), recurrent=(True, False),
              reset=("subtract", "none")),
]


@pytest.mark.parametrize("cfg", CONFIGS)
@pytest.mark.parametrize("seed", [0, 1])
def test_kernel_forward_and_gradients_match_autograd(cfg, seed):
    rng = np.random.default_rng(seed)
    counts = (rng.random((3, 70, 6)) < 0.25) * rng.integers(1, 3, (3, 70, 6))
    x = torch.from_numpy(counts.astype(np.float32))
    net = SnnVad(cfg, seed=seed, init_gain=1.5)
    with torch.no_grad():
        net.weights[-1].abs_()  # an excitatory readout, so it fires
    target = torch.from_numpy(rng.random((3, 70)))

    y, rate = net(x)
    loss = ((score_from_trace(y, 4.0) - target) ** 2).sum() + 3.0 * rate
    loss.backward()
    fast = [p.grad.clone() for p in net.weights]
    for p in net.weights:
        p.grad = None

    y_ref, rate_ref = reference_forward(x, list(net.weights), cfg)
    loss_ref = ((score_from_trace(y_ref, 4.0) - target) ** 2).sum() + 3.0 * rate_ref
    loss_ref.backward()

    assert float(y.detach().abs().sum()) > 10  # the readout fired (or integrated)
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-9, atol=1e-9)
    assert float(rate.detach()) == pytest.approx(float(rate_ref.detach()), rel=1e-9)
    for g, p in zip(fast, net.weights):
        assert float(p.grad.abs().max()) > 0
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6 * float(p.grad.abs().max()))
