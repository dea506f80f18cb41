"""PyTorch mirror of the clockless engine, at time bins, with surrogate gradients (for training only).

``SNN(topology)`` builds the same layers, neuron model and gates as ``graphs.network`` / ``runtime.engine`` from a
topology dict (the JSON of a network file). Time is discretised into bins of ``topology["bin_us"]`` (1 ms by
default): bin ``k`` stands for stream time ``k · bin_us`` and all of its input events are taken to arrive then —
exactly the clockless engine's result when events lie on bin boundaries (``tests/test_apps_training_torch_snn.py``
checks it spike for spike). Per bin and layer::

    blocked = refractory > 0;  refractory = max(refractory - 1, 0)
    v = v · exp(-bin_us / tau_us) + (1 - blocked) · I          # IAF: no decay
    s = floor(v / threshold) if v ≥ threshold else 0         # reset "subtract" (multi-spike); "zero": s ∈ {0, 1}
    v = v - s · threshold  (or 0);  refractory = ceil(refractory_us / bin_us) - 1 where s > 0

Input: spike counts ``(T, B, *input_shape)``; output: the last layer's spikes ``(T, B, *out_shape)``.
``model.export(path)`` writes the network file the runtime loads (``graphs.network.load_network``);
``model.to_network()`` gives the engine stage directly. Gate parameters (channel gates' weight/bias, the spatial
gate's tile weights) are ``nn.Parameter``s, trained with straight-through masks.

Example::

    topo = {"input": {"shape": [2, 32, 32]}, "layers": [
        {"name": "c1", "type": "conv2d", "in_channels": 2, "out_channels": 4, "kernel_size": 3, "padding": 1,
         "neuron": {"model": "lif", "tau_us": 20000}},
        {"name": "f", "type": "flatten"},
        {"name": "out", "type": "linear", "in_features": 4096, "out_features": 3, "neuron": {"model": "iaf"}}]}
    model = SNN(topo, seed=0)
    spikes = model(torch.zeros(10, 1, 2, 32, 32))      # (10, 1, 3)
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from graphs.network import network_from_state_dict, normalize_topology, save_network

__all__ = ["SNN", "SpikeFn", "spike_fn", "LayerState", "bin_events"]


class SpikeFn(torch.autograd.Function):
    """Forward: spike count (multi-spike ``floor(v/θ)`` for subtract reset, 0/1 for zero reset); backward: a fast
    sigmoid surrogate ``1 / (1 + k·|v - θ| / θ)²`` (SuperSpike)."""

    @staticmethod
    def forward(ctx, v, theta: float, multi: bool, slope: float):
        ctx.save_for_backward(v)
        ctx.theta = theta
        ctx.slope = slope
        if multi:
            s = torch.where(v >= theta, torch.floor(v / theta), torch.zeros_like(v))
            return s
        return (v >= theta).to(v.dtype)

    @staticmethod
    def backward(ctx, grad):
        (v,) = ctx.saved_tensors
        x = ctx.slope * (v - ctx.theta).abs() / ctx.theta
        return grad / (1.0 + x) ** 2 / ctx.theta, None, None, None


def spike_fn(v: torch.Tensor, theta: float, multi: bool = True, slope: float = 5.0) -> torch.Tensor:
    return SpikeFn.apply(v, theta, multi, slope)


class _Heaviside(torch.autograd.Function):
    """Straight-through mask: forward ``score ≥ 0``, backward the derivative of ``sigmoid(4·score)``."""

    @staticmethod
    def forward(ctx, score):
        ctx.save_for_backward(score)
        return (score >= 0).to(score.dtype)

    @staticmethod
    def backward(ctx, grad):
        (score,) = ctx.saved_tensors
        sg = torch.sigmoid(4.0 * score)
        return grad * 4.0 * sg * (1 - sg)


class LayerState:
    """Per-layer state carried across calls when a stream is fed in chunks (``model(x, state=...)``)."""

    def __init__(self):
        self.v: dict[str, torch.Tensor] = {}
        self.refr: dict[str, torch.Tensor] = {}
        self.hist: dict[str, list] = {}  # recurrent / delayed spikes still to arrive
        self.trace: dict[str, torch.Tensor] = {}
        self.ema: float | torch.Tensor = 0.0


class _Layer(nn.Module):
    def __init__(self, d: Mapping[str, Any], bin_us: int, gen: torch.Generator | None, init_gain: float):
        super().__init__()
        self.d = dict(d)
        self.kind = d["type"]
        self.bin_us = bin_us
        n = d.get("neuron")
        self.neuron = n
        if self.kind == "conv2d":
            kh, kw = d["kernel_size"]
            fan_in = d["in_channels"] * kh * kw
            w = torch.randn(d["out_channels"], d["in_channels"], kh, kw, generator=gen) * (init_gain / math.sqrt(fan_in))
            self.weight = nn.Parameter(w)
        elif self.kind == "linear":
            w = torch.randn(d["out_features"], d["in_features"], generator=gen) * (init_gain / math.sqrt(d["in_features"]))
            self.weight = nn.Parameter(w)
            if d.get("recurrent"):
                n_out = d["out_features"]
                self.recurrent_weight = nn.Parameter(torch.randn(n_out, n_out, generator=gen) * (0.5 / math.sqrt(n_out)))
                if d["recurrent_delay_us"] % bin_us:
                    raise ValueError(f"layer '{d['name']}': recurrent_delay_us {d['recurrent_delay_us']} is not a "
                                     f"multiple of bin_us {bin_us}")
        if d.get("delay_us", 0) % bin_us:
            raise ValueError(f"layer '{d['name']}': delay_us {d['delay_us']} is not a multiple of bin_us {bin_us}")
        if "channel_gate" in d:
            c = d["out_channels"] if self.kind == "conv2d" else d["out_features"]
            self.gate_weight = nn.Parameter(torch.zeros(c))
            self.gate_bias = nn.Parameter(torch.ones(c))
        if n is not None:
            self.theta = float(n["threshold"])
            self.alpha = 1.0 if n["tau_us"] is None else math.exp(-bin_us / n["tau_us"])
            self.multi = n["reset"] == "subtract"
            self.refr_bins = max(0, math.ceil(n["refractory_us"] / bin_us) - 1)

    def current(self, x: torch.Tensor) -> torch.Tensor:
        """Synaptic input of a whole sequence at once: x (T, B, ...) -> (T, B, ...)."""
        t, b = x.shape[:2]
        flat = x.reshape(t * b, *x.shape[2:])
        if self.kind == "conv2d":
            y = F.conv2d(flat, self.weight, stride=tuple(self.d["stride"]), padding=tuple(self.d["padding"]))
        elif self.kind == "linear":
            y = flat @ self.weight.t()
        elif self.kind == "sumpool2d":
            k, s = tuple(self.d["kernel_size"]), tuple(self.d["stride"])
            y = F.avg_pool2d(flat, k, s) * (k[0] * k[1])
        else:
            return x.reshape(t, b, -1)
        return y.reshape(t, b, *y.shape[1:])


class SNN(nn.Module):
    """The PyTorch mirror of a network topology (see module docstring)."""

    def __init__(self, topology: Mapping[str, Any], *, seed: int | None = None, init_gain: float = 1.0,
                 surrogate_slope: float = 5.0):
        super().__init__()
        self.topology = normalize_topology(topology, where="SNN topology")
        self.bin_us = int(self.topology["bin_us"])
        self.slope = surrogate_slope
        gen = None
        if seed is not None:
            gen = torch.Generator().manual_seed(int(seed))
        # fill in channel counts the linear/pool layers need for their gates
        shapes = self._shapes()
        self.shapes = shapes
        self.layers = nn.ModuleDict()
        for d, s_out in zip(self.topology["layers"], shapes[1:]):
            self.layers[d["name"]] = _Layer(d, self.bin_us, gen, init_gain)
        self.input_gates = list(self.topology["input_gates"])
        self.tile_weight = None
        for g in self.input_gates:
            if g["type"] == "spatial":
                grid = _grid3(shapes[0])
                ty, tx = -(-grid[1] // g["tile_px"]), -(-grid[2] // g["tile_px"])
                self.tile_weight = nn.Parameter(torch.ones(ty, tx)) if g["tile_weight"] else None
            elif g["window_us"] % self.bin_us:
                raise ValueError(f"temporal gate window {g['window_us']} µs is not a multiple of bin_us {self.bin_us}")

    def _shapes(self) -> list[tuple[int, ...]]:
        from runtime.engine.layers import layer_shapes

        net = network_from_state_dict(self.topology, _zeros_for(self.topology))
        return [tuple(s) for s in layer_shapes(net.layers, net.input_shape)]

    # ------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor, *, record: bool = False, state: LayerState | None = None):
        """x: spike counts (T, B, *input_shape). Returns the last layer's spikes (T, B, *out_shape), or with
        ``record=True`` a dict of every layer's spikes plus ``"potentials"`` (last bin) and ``"gated"``."""
        if tuple(x.shape[2:]) != tuple(self.shapes[0]):
            raise ValueError(f"SNN: input has shape {tuple(x.shape[2:])} per sample, network expects {self.shapes[0]}")
        st = state if state is not None else LayerState()
        rec: dict[str, Any] = {"gated": {}}
        x = self._input_gates(x, st, rec)
        for name, layer in self.layers.items():
            if layer.kind == "flatten":
                x = x.reshape(x.shape[0], x.shape[1], -1)
                continue
            if layer.neuron is None:  # addressing-only pool
                x = layer.current(x)
            else:
                x = self._neurons(layer, layer.current(x), st, rec)
            x = self._delay(layer, x, st)
            if hasattr(layer, "gate_weight"):
                x = self._channel_gate(layer, x, st, rec)
            if record:
                rec[name] = x
        if record:
            rec["output"] = x
            return rec
        return x

    def _neurons(self, layer: _Layer, cur: torch.Tensor, st: LayerState, rec: dict) -> torch.Tensor:
        name = layer.d["name"]
        t_len = cur.shape[0]
        v = st.v.get(name)
        if v is None:
            v = torch.zeros_like(cur[0])
        refr = st.refr.get(name)
        if refr is None:
            refr = torch.zeros_like(cur[0], dtype=torch.int64)
        recurrent = hasattr(layer, "recurrent_weight")
        if recurrent:
            d_rec = layer.d["recurrent_delay_us"] // self.bin_us
            hist = st.hist.get(name + ".rec") or [torch.zeros_like(cur[0]) for _ in range(d_rec)]
        out = []
        for k in range(t_len):
            i_k = cur[k]
            if recurrent:
                i_k = i_k + hist[-d_rec] @ layer.recurrent_weight.t()
            if layer.refr_bins:
                blocked = refr > 0
                refr = torch.clamp(refr - 1, min=0)
                i_k = torch.where(blocked, torch.zeros_like(i_k), i_k)
            v = v * layer.alpha + i_k
            s = spike_fn(v, layer.theta, layer.multi, self.slope)
            if layer.multi:
                v = v - s * layer.theta
            else:
                v = v * (1.0 - s)
            if layer.refr_bins:
                refr = torch.where(s > 0, torch.full_like(refr, layer.refr_bins), refr)
            out.append(s)
            if recurrent:
                hist.append(s)
                hist = hist[-d_rec:]
        st.v[name] = v
        st.refr[name] = refr
        if recurrent:
            st.hist[name + ".rec"] = hist
        rec.setdefault("potentials", {})[name] = v
        return torch.stack(out)

    def _delay(self, layer: _Layer, x: torch.Tensor, st: LayerState) -> torch.Tensor:
        d = layer.d.get("delay_us", 0) // self.bin_us
        if d == 0:
            return x
        name = layer.d["name"] + ".delay"
        prev = st.hist.get(name)
        if prev is None:
            prev = torch.zeros(d, *x.shape[1:], dtype=x.dtype)
        full = torch.cat([prev, x])
        st.hist[name] = full[-d:]
        return full[: x.shape[0]]

    def _channel_gate(self, layer: _Layer, s: torch.Tensor, st: LayerState, rec: dict) -> torch.Tensor:
        """Gate scores come from the spikes at their spike time (before the layer's delay), as in the engine."""
        name = layer.d["name"]
        tau = layer.d["channel_gate"]["tau_us"]
        beta = math.exp(-self.bin_us / tau)
        c = s.shape[2]
        undelayed = s  # after a whole-bin delay the traces and masks are the same, shifted by the delay
        r = st.trace.get(name)
        if r is None:
            r = torch.zeros(s.shape[1], c, dtype=s.dtype)
        out = []
        dropped = torch.zeros((), dtype=s.dtype)
        for k in range(s.shape[0]):
            per_c = undelayed[k].detach().reshape(s.shape[1], c, -1).sum(-1)
            r = r * beta + per_c
            mean = r.sum(-1, keepdim=True) / c
            score = layer.gate_weight * r / mean.clamp_min(1e-12) + layer.gate_bias
            mask = _Heaviside.apply(score)
            mask = torch.where(mean > 0, mask, torch.ones_like(mask))
            shape = (s.shape[1], c) + (1,) * (s.dim() - 3)
            out.append(s[k] * mask.reshape(shape))
            dropped = dropped + (s[k].detach() * (1 - mask.detach()).reshape(shape)).sum()
        st.trace[name] = r
        rec["gated"][name] = dropped
        return torch.stack(out)

    def _input_gates(self, x: torch.Tensor, st: LayerState, rec: dict) -> torch.Tensor:
        for g in self.input_gates:
            if g["type"] == "spatial":
                x = self._spatial(g, x, st, rec)
            else:
                x = self._temporal(g, x, st, rec)
        return x

    def _spatial(self, g, x, st, rec):
        t_len, b = x.shape[:2]
        c, h, w = _grid3(self.shapes[0])
        tp = g["tile_px"]
        ty, tx = -(-h // tp), -(-w // tp)
        xg = x.reshape(t_len, b, c, h, w)
        pad = F.pad(xg, (0, tx * tp - w, 0, ty * tp - h))
        counts = pad.reshape(t_len, b, c, ty, tp, tx, tp).sum(dim=(2, 4, 6)).reshape(t_len, b, ty * tx).detach()
        beta = math.exp(-self.bin_us / g["tau_us"])
        act = st.trace.get("input.spatial")
        if act is None:
            act = torch.zeros(b, ty * tx, dtype=x.dtype)
        tw = torch.ones(ty * tx, dtype=x.dtype) if self.tile_weight is None else self.tile_weight.reshape(-1)
        out = []
        dropped = torch.zeros((), dtype=x.dtype)
        for k in range(t_len):
            act = act * beta + counts[k]
            score = tw * act
            floor = torch.maximum(torch.full_like(score, g["min_activity"]),
                                  g["rel_threshold"] * act.sum(-1, keepdim=True) / act.shape[-1])
            keep = _Heaviside.apply(score - floor)
            m = keep.reshape(b, 1, ty, 1, tx, 1).expand(b, 1, ty, tp, tx, tp).reshape(b, 1, ty * tp, tx * tp)
            m = m[:, :, :h, :w]
            out.append((xg[k] * m).reshape(x.shape[1:]))
            dropped = dropped + (xg[k].detach() * (1 - m.detach())).sum()
        st.trace["input.spatial"] = act
        rec["gated"]["spatial"] = dropped
        return torch.stack(out)

    def _temporal(self, g, x, st, rec):
        wb = g["window_us"] // self.bin_us
        beta = 1.0 - 1.0 / g["ema_windows"]
        t_len, b = x.shape[:2]
        ema = st.ema if isinstance(st.ema, torch.Tensor) else torch.zeros(b, dtype=x.dtype)
        out = []
        dropped = torch.zeros((), dtype=x.dtype)
        for k0 in range(0, t_len, wb):
            chunk = x[k0: k0 + wb]
            n = chunk.detach().reshape(chunk.shape[0], b, -1).sum(dim=(0, 2))
            ok = ((n >= g["min_events"]) & (n >= g["rel_threshold"] * ema)).to(x.dtype)
            out.append(chunk * ok.reshape(1, b, *([1] * (x.dim() - 2))))
            dropped = dropped + (n * (1 - ok)).sum()
            ema = beta * ema + (1 - beta) * n
        st.ema = ema
        rec["gated"]["temporal"] = dropped
        return torch.cat(out)

    # ------------------------------------------------------------------ export
    def arrays(self) -> dict[str, np.ndarray]:
        """The network-file arrays (``LAYER.weight`` ...) of the current parameters."""
        out = {}
        for k, v in self.state_dict().items():
            key = k[len("layers."):] if k.startswith("layers.") else k
            if key == "tile_weight":
                key = "input_gates.spatial.tile_weight"
            out[key] = v.detach().cpu().numpy().astype(np.float32)
        return out

    def to_network(self):
        """The clockless engine stage with the current weights."""
        return network_from_state_dict(self.topology, self.arrays())

    def export(self, path, meta: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
        """Write ``path.json`` + ``path.npz`` for ``graphs.network.load_network``."""
        topo = dict(self.topology)
        if meta:
            topo["meta"] = {**topo.get("meta", {}), **meta}
        return save_network(topo, path, self.arrays())


def _grid3(shape) -> tuple[int, int, int]:
    if len(shape) == 3:
        return int(shape[0]), int(shape[1]), int(shape[2])
    if len(shape) == 2:
        return int(shape[0]), 1, int(shape[1])
    return 1, 1, int(shape[0])


def _zeros_for(topo: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Placeholder arrays with the shapes a topology needs (to infer layer shapes before weights exist)."""
    arrays = {}
    for d in topo["layers"]:
        if d["type"] == "conv2d":
            arrays[f"{d['name']}.weight"] = np.zeros((d["out_channels"], d["in_channels"], *d["kernel_size"]), np.float32)
        elif d["type"] == "linear":
            arrays[f"{d['name']}.weight"] = np.zeros((d["out_features"], d["in_features"]), np.float32)
            if d.get("recurrent"):
                n = d["out_features"]
                arrays[f"{d['name']}.recurrent_weight"] = np.zeros((n, n), np.float32)
    for d in topo["layers"]:
        if "channel_gate" in d:
            c = d["out_channels"] if d["type"] == "conv2d" else d["out_features"]
            arrays[f"{d['name']}.gate_weight"] = np.zeros(c, np.float32)
            arrays[f"{d['name']}.gate_bias"] = np.zeros(c, np.float32)
    for g in topo["input_gates"]:
        if g["type"] == "spatial" and g["tile_weight"]:
            c, h, w = _grid3(topo["input"]["shape"])
            arrays["input_gates.spatial.tile_weight"] = np.ones((-(-h // g["tile_px"]), -(-w // g["tile_px"])))
    return arrays


def bin_events(t_us: np.ndarray, addr: np.ndarray, shape, bin_us: int = 1000, n_bins: int | None = None,
               t0_us: int = 0) -> torch.Tensor:
    """Spike counts ``(T, *shape)`` as a float tensor from event times and flat addresses (add the batch axis
    yourself: ``bin_events(...)[:, None]``)."""
    from runtime.engine.dense import bin_addresses

    return torch.from_numpy(bin_addresses(t_us, addr, shape, bin_us, n_bins, t0_us)).float()
