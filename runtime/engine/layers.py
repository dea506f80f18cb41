"""Layer and neuron configs of the event-driven SNN engine (frozen; weights are read-only numpy arrays).

A network is a chain of layers. Synaptic layers (``Conv2d``, ``Linear``, ``SumPool2d`` with a neuron) scatter each
input event into their target neurons; ``Flatten`` and a ``SumPool2d`` without a neuron only re-address events.

Neuron model (the same in the engine, the numpy dense reference and the PyTorch mirror):

* potential ``v`` decays exactly between events, ``v(t) = v(t0) · exp(-(t - t0) / tau_us)`` (LIF) or not at all
  (IAF, ``tau_us=None``);
* all events with one timestamp are integrated first, then the threshold is tested once;
* ``reset="subtract"``: ``n = floor(v / threshold)`` spikes are emitted at once and ``v -= n · threshold``, so
  after every test ``v < threshold``; ``reset="zero"``: one spike and ``v = 0``;
* ``refractory_us``: input reaching a neuron at ``t < t_spike + refractory_us`` is dropped (not accumulated, not
  counted); the potential keeps decaying;
* output spikes carry the time of the input event that caused them plus the layer's ``delay_us``.

Addresses are flat C-order indices over the layer's shape ``(C, H, W)`` or ``(N,)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Union

import numpy as np

__all__ = [
    "Neuron", "ChannelGate", "Conv2d", "Linear", "SumPool2d", "Flatten", "Layer", "layer_shapes", "layer_fan_in",
    "dense_macs_per_bin_of", "frozen_array",
]


def frozen_array(a, dtype=np.float32, *, where: str = "", ndim: int | None = None) -> np.ndarray:
    """A read-only C-contiguous copy of ``a`` (accepts numpy arrays, lists and torch tensors)."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().numpy()
    out = np.array(a, dtype=dtype, copy=True, order="C")
    if ndim is not None and out.ndim != ndim:
        raise ValueError(f"{where}: expected a {ndim}-D array, got shape {out.shape}")
    if not np.all(np.isfinite(out)):
        raise ValueError(f"{where}: array holds NaN or infinite values")
    out.flags.writeable = False
    return out


def _pair(v, where: str, name: str, minimum: int) -> tuple[int, int]:
    if isinstance(v, (int, np.integer)):
        v = (int(v), int(v))
    v = tuple(int(x) for x in v)
    if len(v) != 2 or min(v) < minimum:
        raise ValueError(f"{where}: field '{name}' must be an int or a pair of ints ≥ {minimum}, got {v}")
    return v


@dataclass(frozen=True)
class Neuron:
    """Spiking neuron: IAF when ``tau_us`` is None, LIF with exact decay otherwise."""

    threshold: float = 1.0
    tau_us: float | None = None
    reset: str = "subtract"  # "subtract" (multi-spike) or "zero"
    refractory_us: int = 0

    def __post_init__(self):
        if not (self.threshold > 0 and math.isfinite(self.threshold)):
            raise ValueError(f"Neuron: threshold must be a finite number > 0, got {self.threshold}")
        if self.tau_us is not None and not (self.tau_us > 0 and math.isfinite(self.tau_us)):
            raise ValueError(f"Neuron: tau_us must be > 0 (or None for IAF), got {self.tau_us}")
        if self.reset not in ("subtract", "zero"):
            raise ValueError(f"Neuron: reset must be 'subtract' or 'zero', got {self.reset!r}")
        if int(self.refractory_us) != self.refractory_us or self.refractory_us < 0:
            raise ValueError(f"Neuron: refractory_us must be an int ≥ 0, got {self.refractory_us}")

    @property
    def model(self) -> str:
        return "iaf" if self.tau_us is None else "lif"


@dataclass(frozen=True, eq=False)
class ChannelGate:
    """Causal channel attention on a layer's output spikes.

    Each output channel keeps a running spike trace ``r_c`` (exact exponential decay, ``tau_us``) of all spikes
    its neurons emit. When a channel spikes at ``t`` (after integrating every spike at ``t``), its score is
    ``weight[c] · r_c / mean_c(r) + bias[c]``; spikes of channels scoring below 0 are dropped before the next
    layer. ``weight = 0, bias > 0`` keeps a channel always; ``bias < 0`` with ``weight = 0`` prunes it (a learned
    static mask); ``weight > 0, bias < 0`` drops channels whose activity is below ``-bias / weight`` of the mean.
    """

    tau_us: float
    weight: np.ndarray  # (C,)
    bias: np.ndarray  # (C,)

    def __post_init__(self):
        if not (self.tau_us > 0 and math.isfinite(self.tau_us)):
            raise ValueError(f"ChannelGate: tau_us must be > 0, got {self.tau_us}")
        object.__setattr__(self, "weight", frozen_array(self.weight, np.float64, where="ChannelGate.weight", ndim=1))
        object.__setattr__(self, "bias", frozen_array(self.bias, np.float64, where="ChannelGate.bias", ndim=1))
        if self.weight.shape != self.bias.shape:
            raise ValueError(f"ChannelGate: weight {self.weight.shape} and bias {self.bias.shape} must match")

    @classmethod
    def relative(cls, channels: int, keep_above: float, tau_us: float = 50_000.0) -> "ChannelGate":
        """Drop spikes of channels whose running rate is below ``keep_above`` × the mean channel rate."""
        return cls(tau_us, np.ones(channels), np.full(channels, -float(keep_above)))


@dataclass(frozen=True, eq=False)
class Conv2d:
    """2-D convolution (cross-correlation, as in PyTorch) of events into spiking neurons; no bias."""

    name: str
    weight: np.ndarray  # (out_channels, in_channels, kh, kw)
    stride: tuple[int, int] = (1, 1)
    padding: tuple[int, int] = (0, 0)
    neuron: Neuron = field(default_factory=Neuron)
    delay_us: int = 0
    channel_gate: ChannelGate | None = None

    def __post_init__(self):
        where = f"layer '{self.name}' (conv2d)"
        object.__setattr__(self, "weight", frozen_array(self.weight, where=where + " weight", ndim=4))
        object.__setattr__(self, "stride", _pair(self.stride, where, "stride", 1))
        object.__setattr__(self, "padding", _pair(self.padding, where, "padding", 0))
        _check_common(self, where, needs_neuron=True)

    @property
    def kind(self) -> str:
        return "conv2d"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        where = f"layer '{self.name}' (conv2d)"
        if len(in_shape) != 3:
            raise ValueError(f"{where}: expects input shape (C, H, W), got {in_shape} (add no Flatten before it)")
        o, c, kh, kw = self.weight.shape
        if in_shape[0] != c:
            raise ValueError(f"{where}: weight expects {c} input channels, input has shape {in_shape}")
        oh = (in_shape[1] + 2 * self.padding[0] - kh) // self.stride[0] + 1
        ow = (in_shape[2] + 2 * self.padding[1] - kw) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{where}: input {in_shape} is smaller than the kernel {(kh, kw)} (with padding)")
        return (o, oh, ow)

    def fan_in(self, in_shape) -> int:
        return int(np.prod(self.weight.shape[1:]))


@dataclass(frozen=True, eq=False)
class Linear:
    """Fully connected layer of spiking neurons; optional recurrent weights (spikes fed back after
    ``recurrent_delay_us``, ≥ 1 µs; one bin of the training clock reproduces the time-stepped model)."""

    name: str
    weight: np.ndarray  # (out_features, in_features)
    neuron: Neuron = field(default_factory=Neuron)
    recurrent_weight: np.ndarray | None = None  # (out_features, out_features): [to, from]
    recurrent_delay_us: int = 1000
    delay_us: int = 0
    channel_gate: ChannelGate | None = None

    def __post_init__(self):
        where = f"layer '{self.name}' (linear)"
        object.__setattr__(self, "weight", frozen_array(self.weight, where=where + " weight", ndim=2))
        if self.recurrent_weight is not None:
            rw = frozen_array(self.recurrent_weight, where=where + " recurrent_weight", ndim=2)
            n = self.weight.shape[0]
            if rw.shape != (n, n):
                raise ValueError(f"{where}: recurrent_weight must have shape ({n}, {n}), got {rw.shape}")
            object.__setattr__(self, "recurrent_weight", rw)
            if int(self.recurrent_delay_us) != self.recurrent_delay_us or self.recurrent_delay_us < 1:
                raise ValueError(f"{where}: recurrent_delay_us must be an int ≥ 1, got {self.recurrent_delay_us}")
        _check_common(self, where, needs_neuron=True)

    @property
    def kind(self) -> str:
        return "linear"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        where = f"layer '{self.name}' (linear)"
        if len(in_shape) != 1:
            raise ValueError(f"{where}: expects a flat input (N,), got {in_shape}: put a Flatten before it")
        if in_shape[0] != self.weight.shape[1]:
            raise ValueError(f"{where}: weight expects {self.weight.shape[1]} inputs, input has {in_shape[0]}")
        return (int(self.weight.shape[0]),)

    def fan_in(self, in_shape) -> int:
        rec = self.weight.shape[0] if self.recurrent_weight is not None else 0
        return int(self.weight.shape[1] + rec)


@dataclass(frozen=True, eq=False)
class SumPool2d:
    """Sum pooling per channel. With a neuron: pooled neurons accumulate every input spike with weight 1. Without:
    addressing only (each input spike becomes a spike at its pooled address, at the same time)."""

    name: str
    kernel_size: tuple[int, int] = (2, 2)
    stride: tuple[int, int] | None = None  # None = kernel_size
    neuron: Neuron | None = None
    delay_us: int = 0
    channel_gate: ChannelGate | None = None

    def __post_init__(self):
        where = f"layer '{self.name}' (sumpool2d)"
        object.__setattr__(self, "kernel_size", _pair(self.kernel_size, where, "kernel_size", 1))
        stride = self.kernel_size if self.stride is None else self.stride
        object.__setattr__(self, "stride", _pair(stride, where, "stride", 1))
        _check_common(self, where, needs_neuron=False)

    @property
    def kind(self) -> str:
        return "sumpool2d"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        where = f"layer '{self.name}' (sumpool2d)"
        if len(in_shape) != 3:
            raise ValueError(f"{where}: expects input shape (C, H, W), got {in_shape}")
        kh, kw = self.kernel_size
        oh = (in_shape[1] - kh) // self.stride[0] + 1
        ow = (in_shape[2] - kw) // self.stride[1] + 1
        if oh < 1 or ow < 1:
            raise ValueError(f"{where}: input {in_shape} is smaller than the pooling window {self.kernel_size}")
        return (in_shape[0], oh, ow)

    def fan_in(self, in_shape) -> int:
        return int(self.kernel_size[0] * self.kernel_size[1])


@dataclass(frozen=True)
class Flatten:
    """Addressing only: C-order flat indices are unchanged, the shape becomes ``(C·H·W,)``."""

    name: str = "flatten"
    delay_us: int = 0
    neuron: None = None
    channel_gate: None = None

    @property
    def kind(self) -> str:
        return "flatten"

    def out_shape(self, in_shape: tuple[int, ...]) -> tuple[int, ...]:
        return (int(np.prod(in_shape)),)

    def fan_in(self, in_shape) -> int:
        return 0


Layer = Union[Conv2d, Linear, SumPool2d, Flatten]


def _check_common(layer, where: str, *, needs_neuron: bool) -> None:
    if not layer.name or not isinstance(layer.name, str):
        raise ValueError(f"{where}: every layer needs a non-empty name")
    if needs_neuron and not isinstance(layer.neuron, Neuron):
        raise ValueError(f"{where}: needs a Neuron (graded outputs are not events), got {layer.neuron!r}")
    if layer.neuron is not None and not isinstance(layer.neuron, Neuron):
        raise ValueError(f"{where}: neuron must be a Neuron or None, got {layer.neuron!r}")
    if int(layer.delay_us) != layer.delay_us or layer.delay_us < 0:
        raise ValueError(f"{where}: delay_us must be an int ≥ 0, got {layer.delay_us}")
    if layer.channel_gate is not None and not isinstance(layer.channel_gate, ChannelGate):
        raise ValueError(f"{where}: channel_gate must be a ChannelGate, got {layer.channel_gate!r}")


def layer_shapes(layers, input_shape: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Shapes ``[input, after layer 0, after layer 1, ...]``; validates the chain (and channel-gate sizes)."""
    shapes = [tuple(int(s) for s in input_shape)]
    names = set()
    for layer in layers:
        if layer.name in names:
            raise ValueError(f"layer name '{layer.name}' is used twice; every layer needs its own name")
        names.add(layer.name)
        out = layer.out_shape(shapes[-1])
        gate = layer.channel_gate
        if gate is not None and gate.weight.shape[0] != out[0]:
            raise ValueError(
                f"layer '{layer.name}': channel_gate has {gate.weight.shape[0]} channels, layer has {out[0]}"
            )
        shapes.append(tuple(int(s) for s in out))
    return shapes


def layer_fan_in(layer, in_shape) -> int:
    return layer.fan_in(in_shape)


def dense_macs_per_bin_of(layers, input_shape) -> int:
    """Σ over layers of (outputs × fan-in): the MACs of one clock step of the same network."""
    shapes = layer_shapes(layers, input_shape)
    total = 0
    for layer, s_in, s_out in zip(layers, shapes[:-1], shapes[1:]):
        total += int(np.prod(s_out)) * layer.fan_in(s_in)
    return int(total)
