"""The gesture network in PyTorch at time bins, for training (imports torch; the runtime never imports this).

It mirrors the event-driven engine layer for layer (``runtime.engine.layers``) with the same neuron model:

* potential ``v[k] = beta · v[k-1] + I[k]`` with ``beta = exp(-bin_us / tau_us)`` (the engine's exact decay at bin
  boundaries), all of a bin's input integrated before the threshold test;
* reset by subtraction with several spikes at once: ``n[k] = floor(max(v[k], 0) / threshold)``,
  ``v[k] -= n[k] · threshold`` (threshold 1; the weights carry the scale);
* recurrent weights act one bin later (the engine's ``recurrent_delay_us = bin_us``).

The spike function's gradient is a surrogate, the fast-sigmoid bump ``1 / (1 + gamma · |v - 1|)²`` (SuperSpike)
around the first threshold, or (``surrogate="periodic"``, the trainer's default) around the nearest threshold
crossing, so that neurons emitting several spikes per bin keep a gradient (with the trainer's other settings
unchanged, 22 epochs: final training loss 1.73 → 1.39, held-out accuracy 74.8 → 77.2 %). Time constants are learnt
per layer, as in the engine (one tau per layer).

Layers: conv 2→C1 5×5/2 → conv C1→C2 3×3/2 → conv C2→C3 3×3/s (s = 1 or 2) → [sum-pool P×P] → flatten → recurrent linear H → linear 9.
Optional trained channel gates on the conv layers' spikes (``ModelConfig.channel_gates``, the engine's
``ChannelGate``; ``GestureSNN.channel_gate``), applied to the samples given as gated.
``to_layers(model, bin_us)`` gives the engine layers with the trained weights.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

__all__ = ["ModelConfig", "GestureSNN", "spike_fn", "to_arrays", "from_network_file", "input_gain", "gain_of"]


@dataclass(frozen=True)
class ModelConfig:
    input_px: int = 32
    c1: int = 8
    c2: int = 16
    c3: int = 32
    c3_stride: int = 2  # 2: a 4×4 map into the hidden layer; 1: 8×8
    pool: int = 1  # sum-pool conv3's map by this factor before the hidden layer (coarse position, fewer weights)
    delays_bins: tuple[int, ...] = (0,)  # delay lines: the input again, k bins later, as extra channels
    in_channels: int = 2  # per delay line: 2 (ON/OFF) or the motion stage's direction channels
    hidden: int = 128
    n_out: int = 9
    bin_us: int = 40_000
    tau_init_us: tuple[float, ...] = (60_000.0, 80_000.0, 100_000.0, 200_000.0, 200_000.0)
    gamma: float = 2.0
    surrogate: str = "bump"  # see _surrogate
    # input gain (the engine's InputGain): all input scaled by clip(gain_ref / running events per bin, min, max)
    gain_ref: float = 0.0  # events per bin that get gain 1 (0: no gain)
    # what the gain counts: "input", the events reaching the network (after the gates, every delay line);
    # "sensor", the binned sensor events before the gates, so the gates' drops are not made up for by the gain
    gain_count: str = "input"
    gain_tau_us: float = 500_000.0
    gain_min: float = 0.5
    gain_max: float = 8.0
    # trained channel gates (the engine's ChannelGate) on these layers' output spikes: per channel c a running
    # spike count r_c (time constant gate_tau_us), spikes kept while w_c · r_c / mean(r) + b_c ≥ 0
    channel_gates: tuple[str, ...] = ()
    gate_tau_us: float = 100_000.0
    gate_temp: float = 0.5  # the score scale of the gates' straight-through sigmoid gradient


def _surrogate(x: torch.Tensor, gamma: float, kind: str = "bump") -> torch.Tensor:
    """d spikes / d v (threshold 1).

    ``bump``: the fast-sigmoid bump ``1 / (1 + gamma·|v - 1|)²`` around the first threshold (SuperSpike);
    ``periodic``: the same bump around the nearest threshold crossing (1, 2, 3, ...), so a neuron emitting
    several spikes per bin keeps a gradient (bounded by 1; the bump alone starves busy neurons);
    ``st``: the bump below the first threshold and 1 above it (straight through the staircase)."""
    if kind == "bump":
        return 1.0 / (1.0 + gamma * (x - 1.0).abs()) ** 2
    if kind == "periodic":
        near = torch.clamp(torch.round(x), min=1.0)
        return 1.0 / (1.0 + gamma * (x - near).abs()) ** 2
    below = 1.0 / (1.0 + gamma * (1.0 - x).clamp(min=0.0)) ** 2
    return torch.where(x < 1.0, below, torch.ones_like(x))


class _Spike(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, gamma, kind):
        ctx.save_for_backward(x)
        ctx.gamma = gamma
        ctx.kind = kind
        return torch.floor(torch.clamp(x, min=0.0))

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * _surrogate(x, ctx.gamma, ctx.kind), None, None


def spike_fn(x: torch.Tensor, gamma: float = 2.0, kind: str = "bump") -> torch.Tensor:
    """Spike counts ``floor(max(x, 0))`` with the surrogate gradient."""
    return _Spike.apply(x, gamma, kind)


class _LIFScan(torch.autograd.Function):
    """A whole LIF layer over time in one autograd node (feed-forward layers: no recurrence).

    Forward: ``v = beta·v + I[k]; n[k] = floor(max(v, 0)); v -= n[k]``. Backward (reset detached, as is usual):
    ``g[k] = dL/dn[k] · surrogate(v_pre[k]) + beta · g[k+1]`` is dL/dI[k]; dL/dbeta = Σ g[k] · v_post[k-1].
    One node instead of T keeps the graph small and the backward a tight loop."""

    @staticmethod
    def forward(ctx, current, beta, gamma, kind="bump"):
        v = torch.zeros_like(current[0])
        v_pre = torch.empty_like(current)
        out = torch.empty_like(current)
        b = float(beta)
        for k in range(current.shape[0]):
            v.mul_(b).add_(current[k])
            v_pre[k] = v
            n = torch.floor(torch.clamp(v, min=0.0))
            out[k] = n
            v.sub_(n)
        ctx.save_for_backward(v_pre, out, beta)
        ctx.gamma = gamma
        ctx.kind = kind
        return out

    @staticmethod
    def backward(ctx, grad_out):
        v_pre, out, beta = ctx.saved_tensors
        b = float(beta)
        grad_in = torch.empty_like(v_pre)
        g = torch.zeros_like(v_pre[0])
        gbeta = torch.zeros((), dtype=v_pre.dtype)
        for k in range(v_pre.shape[0] - 1, -1, -1):
            g = grad_out[k] * _surrogate(v_pre[k], ctx.gamma, ctx.kind) + b * g
            grad_in[k] = g
            if k > 0:
                gbeta = gbeta + (g * (v_pre[k - 1] - out[k - 1])).sum()
        return grad_in, gbeta.reshape(beta.shape), None, None


def _beta_param(tau_us: float, bin_us: int) -> nn.Parameter:
    beta = math.exp(-bin_us / tau_us)
    return nn.Parameter(torch.tensor(math.log(beta / (1 - beta))))  # logit, so beta stays in (0, 1)


class GestureSNN(nn.Module):
    def __init__(self, cfg: ModelConfig = ModelConfig()):
        super().__init__()
        self.cfg = cfg
        self.conv1 = nn.Conv2d(cfg.in_channels * len(cfg.delays_bins), cfg.c1, 5, stride=2, padding=2, bias=False)
        self.conv2 = nn.Conv2d(cfg.c1, cfg.c2, 3, stride=2, padding=1, bias=False)
        self.conv3 = nn.Conv2d(cfg.c2, cfg.c3, 3, stride=cfg.c3_stride, padding=1, bias=False)
        side = cfg.input_px // (4 * cfg.c3_stride)
        if cfg.pool < 1 or side % cfg.pool:
            raise ValueError(f"gesture model: pool {cfg.pool} must divide conv3's {side}×{side} map")
        flat = cfg.c3 * (side // cfg.pool) ** 2
        self.fc1 = nn.Linear(flat, cfg.hidden, bias=False)
        self.rec1 = nn.Linear(cfg.hidden, cfg.hidden, bias=False)
        self.fc2 = nn.Linear(cfg.hidden, cfg.n_out, bias=False)
        self.beta_logits = nn.ParameterList([_beta_param(t, cfg.bin_us) for t in cfg.tau_init_us])
        with torch.no_grad():
            for m, gain in ((self.conv1, 2.0), (self.conv2, 2.0), (self.conv3, 2.0), (self.fc1, 2.0), (self.fc2, 2.0)):
                nn.init.kaiming_uniform_(m.weight, a=math.sqrt(5))
                m.weight.mul_(gain)
            nn.init.orthogonal_(self.rec1.weight, gain=0.06)  # weak feedback at first: no runaway loops
        chans = {"conv1": cfg.c1, "conv2": cfg.c2, "conv3": cfg.c3}
        for name in cfg.channel_gates:
            if name not in chans:
                raise ValueError(f"gesture model: channel gates go on conv1, conv2 or conv3, got {name!r}")
        # start as "keep channels above half the mean rate", the calibrated gate's usual setting
        self.gate_w = nn.ParameterDict({n: nn.Parameter(torch.ones(chans[n])) for n in cfg.channel_gates})
        self.gate_b = nn.ParameterDict({n: nn.Parameter(torch.full((chans[n],), -0.5)) for n in cfg.channel_gates})

    def betas(self) -> list[torch.Tensor]:
        return [torch.sigmoid(b) for b in self.beta_logits]

    def taus_us(self) -> list[float]:
        return [float(-self.cfg.bin_us / math.log(float(b.detach()))) for b in self.betas()]

    def _conv1_lines(self, x: torch.Tensor, gains: torch.Tensor | None) -> torch.Tensor:
        """conv1 of the delay lines (``delay_lines``: the input and its copies d bins later as extra channels),
        without building them: convolution and a shift in time commute, so conv1's weights of every line are
        applied to the input once, as one conv with that many times the output channels, and each line's part is
        then shifted by its delay and summed. The gain (one factor per bin and sample) multiplies the sum."""
        d = self.cfg.delays_bins
        w = self.conv1.weight  # (c1, lines · C, k, k)
        c1 = w.shape[0]
        if len(d) > 1:
            w = w.unflatten(1, (len(d), w.shape[1] // len(d))).transpose(0, 1).flatten(0, 1)  # (lines · c1, C, k, k)
        T, B = x.shape[:2]
        xf = x.flatten(0, 1).contiguous(memory_format=torch.channels_last)
        y = nn.functional.conv2d(xf, w, stride=self.conv1.stride, padding=self.conv1.padding).unflatten(0, (T, B))
        out = None
        for j, dj in enumerate(d):
            part = _later(y[:, :, j * c1:(j + 1) * c1], dj)
            out = part if out is None else out + part
        if gains is not None:
            out = out * gains[:, :, None, None, None]
        return out

    def _lif(self, current: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        """current (T, B, ...) → spike counts (T, B, ...)."""
        return _LIFScan.apply(current.contiguous(), beta, self.cfg.gamma, self.cfg.surrogate)

    def channel_gate(self, s: torch.Tensor, name: str, on: torch.Tensor | None):
        """The engine's ``ChannelGate`` at bins: spikes s (T, B, C, H, W) → (kept spikes, keep mask (T, B, C)).

        With every spike on a bin boundary the engine scores a channel after adding all of the bin's spikes
        to the traces: ``r[k] = λ·r[k-1] + n[k]`` (n: the channel's spikes in bin k, before the gate), score
        ``w·r/mean_c(r) + b``. The mask is the step of the score forward and a sigmoid of it backward.
        ``on`` (B,): the samples seen with gates on (None: all)."""
        lam = math.exp(-self.cfg.bin_us / self.cfg.gate_tau_us)
        with torch.no_grad():
            n = s.sum((3, 4))
            r = torch.zeros_like(n[0])
            rel = []
            for k in range(n.shape[0]):
                r = lam * r + n[k]
                rel.append(r / r.mean(-1, keepdim=True).clamp(min=1e-12))
            rel = torch.stack(rel)
        score = self.gate_w[name] * rel + self.gate_b[name]
        soft = torch.sigmoid(score / self.cfg.gate_temp)
        mask = (score >= 0).to(s.dtype) + soft - soft.detach()
        if on is not None:
            mask = torch.where(on.to(torch.bool)[None, :, None], mask, torch.ones_like(mask))
        return s * mask[..., None, None], mask

    def forward(self, x: torch.Tensor, record: bool = False, sensor_counts: torch.Tensor | None = None,
                gates_on: torch.Tensor | None = None, gain_start: torch.Tensor | None = None):
        """x: (T, B, C, H, W) input event counts per bin → output spike counts (T, B, n_out)
        (and, with ``record``, the spike counts of every layer). ``sensor_counts`` (T, B): the binned sensor
        events per bin before the gates, which a ``gain_count="sensor"`` gain counts. ``gates_on`` (B,) bool:
        which samples go through the channel gates (None: all of them). With ``record``, each gated layer's
        record is its spikes before the gate, and ``self.gate_record`` maps its name to (spikes, kept spikes).
        ``gain_start`` (B,): each sample's input gain starts from ``gain_start`` times the reference count instead
        of the reference itself (see ``input_gain``)."""
        T, B = x.shape[:2]
        gains = None
        if self.cfg.gain_ref > 0:
            if self.cfg.gain_count == "sensor":
                if sensor_counts is None:
                    raise ValueError("GestureSNN: a gain that counts sensor events needs sensor_counts (T, B)")
                gains = input_gain(torch.as_tensor(sensor_counts, dtype=x.dtype), self.cfg, gain_start)
            else:  # every delay line's events: the input's count per bin, summed over the lines' delays
                gains = input_gain(_delayed_sum(x.flatten(2).sum(-1), self.cfg.delays_bins), self.cfg, gain_start)
        b = self.betas()
        self.gate_record = {}

        def gated(name, s):
            if name not in self.cfg.channel_gates:
                return s
            kept, _ = self.channel_gate(s, name, gates_on)
            self.gate_record[name] = (s, kept)
            return kept

        s1 = self._lif(self._conv1_lines(x, gains), b[0])
        g1 = gated("conv1", s1)
        s2 = self._lif(_conv(self.conv2, g1), b[1])
        g2 = gated("conv2", s2)
        s3 = self._lif(_conv(self.conv3, g2), b[2])
        p3 = gated("conv3", s3)
        if self.cfg.pool > 1:  # the engine's sumpool2d: a pooled spike is the sum of its window's spikes
            p3 = nn.functional.avg_pool2d(p3.flatten(0, 1), self.cfg.pool).unflatten(0, (T, B)) * self.cfg.pool ** 2
        i4 = self.fc1(p3.flatten(2))
        v = torch.zeros_like(i4[0])
        n_prev = torch.zeros_like(i4[0])
        outs = []
        for i4k in i4.unbind(0):
            v = b[3] * v + i4k + self.rec1(n_prev)
            n_prev = spike_fn(v, self.cfg.gamma, self.cfg.surrogate)
            v = v - n_prev.detach()
            outs.append(n_prev)
        s4 = torch.stack(outs)
        s5 = self._lif(self.fc2(s4), b[4])
        if record:
            return s5, (s1, s2, s3, s4, s5)
        return s5


def _conv(conv: nn.Conv2d, x: torch.Tensor) -> torch.Tensor:
    """A conv layer on every bin at once, (T, B, C, H, W) → (T, B, C', H', W'), in channels-last memory order,
    on which oneDNN's convolutions of these small maps are faster (forward + backward with 2 threads, 1280 maps:
    conv2 13 → 9 ms, conv3 14 → 12 ms; conv1 as in ``_conv1_lines`` 43 → 23 ms, where the plain conv on the
    concatenated delay lines took 100 ms)."""
    T, B = x.shape[:2]
    return conv(x.flatten(0, 1).contiguous(memory_format=torch.channels_last)).unflatten(0, (T, B))


def _later(y: torch.Tensor, d: int) -> torch.Tensor:
    """y delayed by d bins along the first axis (time), zeros before it starts."""
    if d == 0:
        return y
    if d >= y.shape[0]:
        return torch.zeros_like(y)
    return torch.cat([torch.zeros_like(y[:d]), y[:-d]])


def _delayed_sum(y: torch.Tensor, delays_bins) -> torch.Tensor:
    """Σ over the delay lines of y delayed by each line's delay: what the lines add up."""
    out = None
    for d in delays_bins:
        out = _later(y, d) if out is None else out + _later(y, d)
    return out


def input_gain(x: torch.Tensor, cfg: ModelConfig, start: torch.Tensor | None = None) -> torch.Tensor:
    """(T, B, ...) input counts (or (T, B) totals) → (T, B) gains ``clip(gain_ref / r[k-1], gain_min, gain_max)``: ``r[k] = λ·r[k-1] +
    (1 - λ)·N[k]`` is the running count per bin of the bins before (N[k] the bin's input events, λ = exp(-bin /
    gain_tau), r starting at gain_ref): sparse input (a low-contrast hand) is amplified, a busy scene damped, so
    the layers see about the same drive. The engine's ``InputGain`` computes the same gains from event times.
    ``start`` (B,): r starts at ``start · gain_ref`` instead (training from the states a stream leaves the gain
    in: low after a busy gesture, at its maximum after a silence)."""
    lam = math.exp(-cfg.bin_us / cfg.gain_tau_us)
    with torch.no_grad():
        total = x.flatten(2).sum(-1) if x.dim() > 2 else x
        r = torch.full_like(total[0], cfg.gain_ref)
        if start is not None:
            if start.shape != r.shape:
                raise ValueError(f"input_gain: start must have shape {tuple(r.shape)} (one per sample), got "
                                 f"{tuple(start.shape)}")
            r = r * start.to(r.dtype)
        gains = []
        for k in range(total.shape[0]):
            gains.append(torch.clamp(cfg.gain_ref / r.clamp(min=1e-6), cfg.gain_min, cfg.gain_max))
            r = lam * r + (1.0 - lam) * total[k]
        return torch.stack(gains)


def gain_of(cfg: ModelConfig):
    """The engine's ``InputGain`` for this model (None without one): the reference count per bin as a rate."""
    if cfg.gain_ref <= 0:
        return None
    from runtime.engine.gain import InputGain

    return InputGain(cfg.gain_ref / (cfg.bin_us * 1e-6), cfg.gain_tau_us, cfg.bin_us, cfg.gain_min, cfg.gain_max,
                     count=cfg.gain_count)


def delay_lines(x: torch.Tensor, delays_bins) -> torch.Tensor:
    """(T, B, C, H, W) → (T, B, C·len(delays), H, W): copy k holds the input ``delays_bins[k]`` bins late (the
    graph's Delay stages and re-addressing, see graphs.gesture)."""
    if tuple(delays_bins) == (0,):
        return x
    parts = [_later(x, d) for d in delays_bins]
    return torch.cat(parts, dim=2)


def to_arrays(model: GestureSNN) -> dict[str, np.ndarray]:
    """Trained weights under the network file's names (``graphs.gesture.topology`` layers), plus ``tau_us``."""
    sd = {k: v.detach().cpu().numpy().astype(np.float32) for k, v in model.state_dict().items()}
    out = {
        "conv1.weight": sd["conv1.weight"], "conv2.weight": sd["conv2.weight"], "conv3.weight": sd["conv3.weight"],
        "hidden.weight": sd["fc1.weight"], "hidden.recurrent_weight": sd["rec1.weight"], "out.weight": sd["fc2.weight"],
        "tau_us": np.array(model.taus_us(), np.float64),
    }
    for name in model.cfg.channel_gates:
        out[f"{name}.gate_weight"] = sd[f"gate_w.{name}"]
        out[f"{name}.gate_bias"] = sd[f"gate_b.{name}"]
    return out


def from_network_file(path) -> tuple[GestureSNN, dict]:
    """The PyTorch model with a gesture network file's weights (``graphs.gesture`` topology), and its topology."""
    from graphs.network import read_topology

    topo = read_topology(path)
    layers = {d["name"]: d for d in topo["layers"]}
    gated = tuple(n for n in ("conv1", "conv2", "conv3") if "channel_gate" in layers[n])
    gate_taus = {float(layers[n]["channel_gate"]["tau_us"]) for n in gated}
    if len(gate_taus) > 1:
        raise ValueError(f"gesture network file {path}: the training framework needs one channel-gate tau_us, "
                         f"got {sorted(gate_taus)}")
    cfg = ModelConfig(
        channel_gates=gated, **({"gate_tau_us": gate_taus.pop()} if gate_taus else {}),
        c1=layers["conv1"]["out_channels"], c2=layers["conv2"]["out_channels"], c3=layers["conv3"]["out_channels"],
        c3_stride=layers["conv3"]["stride"][0], pool=layers["pool"]["kernel_size"][0] if "pool" in layers else 1,
        delays_bins=tuple(int(d) // int(topo["bin_us"]) for d in topo["meta"].get("delays_us", [0])),
        in_channels=int(topo["input"]["shape"][0]) // len(topo["meta"].get("delays_us", [0])),
        hidden=layers["hidden"]["out_features"], n_out=layers["out"]["out_features"], bin_us=int(topo["bin_us"]),
        tau_init_us=tuple(layers[n]["neuron"]["tau_us"] for n in ("conv1", "conv2", "conv3", "hidden", "out")),
        **_gain_fields(topo.get("input_gain"), int(topo["bin_us"])),
    )
    model = GestureSNN(cfg)
    npz = Path(path)
    npz = (npz.with_suffix("") if npz.suffix in (".json", ".npz") else npz).with_suffix(".npz")
    with np.load(npz) as z:
        sd = {"conv1.weight": z["conv1.weight"], "conv2.weight": z["conv2.weight"], "conv3.weight": z["conv3.weight"],
              "fc1.weight": z["hidden.weight"], "rec1.weight": z["hidden.recurrent_weight"], "fc2.weight": z["out.weight"]}
        for n in gated:
            sd[f"gate_w.{n}"], sd[f"gate_b.{n}"] = z[f"{n}.gate_weight"], z[f"{n}.gate_bias"]
    with torch.no_grad():
        for k, v in sd.items():
            model.get_parameter(k).copy_(torch.from_numpy(np.asarray(v, np.float32)))
    model.eval()
    return model, topo


def _gain_fields(gain: dict | None, bin_us: int) -> dict:
    if not gain:
        return {}
    if int(gain["window_us"]) != bin_us:  # the mirror applies the gain per bin: other windows would not match
        raise ValueError(f"gesture network file: input_gain window_us {gain['window_us']} must equal bin_us "
                         f"{bin_us} for the training framework")
    return {"gain_ref": float(gain["ref_rate_hz"]) * bin_us * 1e-6, "gain_tau_us": float(gain["tau_us"]),
            "gain_min": float(gain["min_gain"]), "gain_max": float(gain["max_gain"]),
            "gain_count": str(gain.get("count", "input"))}
