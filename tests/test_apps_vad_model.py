"""VAD training kernels (numba forward/backward) vs their slow twin: the same model stepped by PyTorch autograd."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from apps.vad.model import SnnVad, VadConfig, score_from_trace


def reference_forward(x, w1, r, w2, cfg: VadConfig):
    """Plain PyTorch, one bin at a time; the surrogate enters through a straight-through term."""
    a1, a2, ay = cfg.decays()
    n_b, n_t, _ = x.shape
    v1 = torch.zeros(n_b, w1.shape[1], dtype=torch.float64)
    v2 = torch.zeros(n_b, w2.shape[1], dtype=torch.float64)
    s1_prev = torch.zeros_like(v1)
    y = torch.zeros(n_b, dtype=torch.float64)
    ys, s1s = [], []

    def spike(v, th):
        u = v - th
        hard = (v >= th).double()
        smooth = u / (1 + cfg.slope * u.abs())  # derivative 1 / (1 + slope |u|)^2
        return hard + smooth - smooth.detach()

    for t in range(n_t):
        v1 = a1 * v1 + x[:, t].double() @ w1 + s1_prev @ r
        s1 = spike(v1, cfg.th1)
        v1 = v1 * (1 - s1.detach())
        v2 = a2 * v2 + s1 @ w2
        s2 = spike(v2, cfg.th2)
        v2 = v2 * (1 - s2.detach())
        y = ay * y + s2.sum(1)
        ys.append(y)
        s1s.append(s1)
        s1_prev = s1
    return torch.stack(ys, 1), torch.stack(s1s, 1).mean()


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_kernel_forward_and_gradients_match_autograd(seed):
    rng = np.random.default_rng(seed)
    cfg = VadConfig(inputs=6, hidden=5, readout=2, tau1_us=20_000, tau2_us=10_000, tau_y_us=30_000)
    counts = (rng.random((3, 70, 6)) < 0.25) * rng.integers(1, 3, (3, 70, 6))
    x = torch.from_numpy(counts.astype(np.float32))
    net = SnnVad(cfg, seed=seed)
    with torch.no_grad():
        net.w1.mul_(3.0)  # make the hidden layer fire
        net.w2.abs_().mul_(3.0)  # and the readout
    target = torch.from_numpy(rng.random((3, 70)))

    y, rate = net(x)
    loss = ((score_from_trace(y, 4.0) - target) ** 2).sum() + 3.0 * rate
    loss.backward()
    fast = [p.grad.clone() for p in (net.w1, net.r, net.w2)]
    for p in net.parameters():
        p.grad = None

    y_ref, rate_ref = reference_forward(x, net.w1, net.r, net.w2, cfg)
    loss_ref = ((score_from_trace(y_ref, 4.0) - target) ** 2).sum() + 3.0 * rate_ref
    loss_ref.backward()

    assert float(y.detach().sum()) > 10  # the readout fired
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-9, atol=1e-9)
    assert float(rate.detach()) == pytest.approx(float(rate_ref.detach()), rel=1e-9)
    for g, p in zip(fast, (net.w1, net.r, net.w2)):
        assert float(p.grad.abs().max()) > 0
        torch.testing.assert_close(g, p.grad, rtol=1e-5, atol=1e-6 * float(p.grad.abs().max()))
