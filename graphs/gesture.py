"""The gesture graph: camera events → image orientation → square crop → integrate-and-fire binning to the
network input (event density evened out across sensors) → attention gates → motion directions → delay lines →
spiking network → early-decision sink.

    g = Graph("gesture")
    ev  = g.source("input", source)                       # any DVS source: any sensor size and orientation
    ev  = g.stage("orient", ToImageOrientation(), ev)     # jAER DVS128: 180° turn (from the spec's flags)
    ev  = g.stage("crop", SquareCrop(32), ev)             # centred square, a multiple of 32 px
    ev  = g.stage("bin", BinToInput(32), ev)              # f × f IAF pooling → 32 × 32, density scaled by 1/f²
    cnt = g.stage("gain_count", GainCount(17), ev)        # (gain counting sensor events) count-only channel 16
    ev  = g.stage("spatial_gate", SpatialGate(...), ev)  # attention: drop events of quiet tiles
    ev  = g.stage("temporal_gate", TemporalGate(...), ev)  # attention: drop quiet 10 ms windows
    ev  = g.stage("motion", MotionDirections(4, polarity=1), ev)  # ON/OFF → 4 edge-motion directions × ON/OFF
    l0  = g.stage("line0", DelayLine(0, 2[, 1]), ev)      # delay lines: the directions now and
    l1  = g.stage("line1", DelayLine(1, 2[, 1]), g.stage("delay1", Delay(200_000), ev))   # 200 ms later
    spk = g.stage("snn", net.network(), l0, l1[, cnt])    # input gain, 3 conv [channel gates], sum-pool,
                                                          # recurrent, output (LIF)
    g.sink("decide", GestureDecision(labels, config), spk)

The front-end stages adapt to the sensor when the source opens (its spec gives size and orientation): a stage
with nothing to do for that sensor passes packets through. The network and decision settings come from the
network file ``graphs/weights/gesture.npz`` + ``gesture.json`` (written by ``clockless train gesture``).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from runtime.engine.gain import InputGain
from runtime.engine.gates import SpatialGate, TemporalGate
from runtime.engine.layers import Neuron, SumPool2d
from runtime.engine.network import Network
from runtime.errors import FormatError, GraphError
from runtime.graph import Graph
from runtime.packet import Packet, concat_events
from runtime.spec import StreamSpec, spike_spec
from runtime.stages import Delay
from sensors.filters import RegionOfInterest, ToImageOrientation

from .gesture_decision import DecisionConfig, GestureDecision
from .motion import MotionDirections
from .network import load_network, read_topology

__all__ = [
    "LABELS", "GESTURES", "DVS_GESTURE_CLASSES", "DVS_GESTURE_LABELS", "VOCABULARIES", "INPUT_PX", "BIN_PIXELS",
    "WEIGHTS_PATH", "front_end", "bin_factor", "SquareCrop",
    "BinToInput", "apply_stages", "default_gates", "GainCount",
    "topology", "load_network_file", "GestureNet", "build", "add_core", "DelayLine", "build_default", "sweep_events",
]

GESTURES = ("swipe_left", "swipe_right", "swipe_up", "swipe_down", "circle_cw", "circle_ccw", "zoom_in", "zoom_out")
LABELS = GESTURES + ("none",)
# IBM's DVS128 Gesture classes in tonic's order (``tonic.datasets.DVSGesture.classes``), for a network trained on
# that dataset with its own output head (``clockless train gesture --dvs-gesture ROOT``); ``none`` is last in every
# vocabulary (the decision sink's prior, never emitted)
DVS_GESTURE_CLASSES = ("hand_clapping", "right_hand_wave", "left_hand_wave", "right_arm_cw", "right_arm_ccw",
                       "left_arm_cw", "left_arm_ccw", "arm_roll", "air_drums", "air_guitar", "other_gestures")
DVS_GESTURE_LABELS = DVS_GESTURE_CLASSES + ("none",)
VOCABULARIES = (LABELS, DVS_GESTURE_LABELS)
INPUT_PX = 32  # the network sees INPUT_PX × INPUT_PX pixels, two polarity channels
BIN_PIXELS = 4  # sensor pixels per network pixel whose event density every sensor is scaled to
WEIGHTS_PATH = Path(__file__).resolve().parent / "weights" / "gesture.json"


def bin_factor(width: int, height: int, input_px: int = INPUT_PX) -> int:
    """Sensor pixels per network pixel along each axis: ``min(W, H) // input_px`` (≥ 1)."""
    factor = min(int(width), int(height)) // input_px
    if factor < 1:
        raise GraphError(
            f"gesture graph: sensor {width}×{height} is smaller than the network input {input_px}×{input_px}; "
            f"expected a sensor of at least {input_px} px on each side"
        )
    return factor


@dataclass
class _Delegate:
    stage: Any
    state: Any


class _Adaptive:
    """A stage that picks its concrete inner stage from the incoming spec (the sensor is known only once the
    source is open). ``inner(spec)`` returns the stage, or None to pass packets through untouched."""

    def inner(self, spec: StreamSpec) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        st = self.inner(spec)
        return spec if st is None else st.out_spec(spec)

    def init(self, spec: StreamSpec) -> _Delegate:
        st = self.inner(spec)
        return _Delegate(st, None if st is None else st.init(spec))

    def step(self, state: _Delegate, packet: Packet) -> tuple[_Delegate, list[Packet]]:
        if state.stage is None:
            return state, [packet]
        state.state, out = state.stage.step(state.state, packet)
        return state, out

    def finish(self, state: _Delegate) -> list[Packet]:
        return [] if state.stage is None else state.stage.finish(state.state)

    def counters(self, state: _Delegate) -> dict[str, int]:
        fn = getattr(state.stage, "counters", None)
        return dict(fn(state.state)) if fn is not None else {}


@dataclass(frozen=True)
class SquareCrop(_Adaptive):
    """Keep the largest centred square whose side is a multiple of ``input_px`` (a 640×480 webcam: 480×480;
    DAVIS346: 256×256); a sensor that already is one passes untouched."""

    input_px: int = INPUT_PX

    def inner(self, spec: StreamSpec) -> Any:
        if spec.kind != "dvs":
            raise GraphError(f"gesture graph: expects a DVS event stream, got {spec.describe()}")
        w, h = int(spec.shape[0]), int(spec.shape[1])
        side = bin_factor(w, h, self.input_px) * self.input_px
        if (w, h) == (side, side):
            return None
        return RegionOfInterest((w - side) // 2, (h - side) // 2, side, side)


@dataclass(frozen=True)
class BinToInput(_Adaptive):
    """Pool a square sensor by f × f onto ``input_px`` × ``input_px`` integrate-and-fire pixels (one per polarity)
    with threshold ``max(1, f² / bin_pixels)``: signal and noise events both grow with the f² sensor pixels behind
    one network pixel, and the threshold divides that out, so every sensor delivers about the event density of
    one with ``bin_pixels`` pixels per network pixel. One synaptic op per input event (pooling, weight 1)."""

    input_px: int = INPUT_PX
    bin_pixels: float = BIN_PIXELS

    def inner(self, spec: StreamSpec) -> Network:
        if spec.kind != "dvs":
            raise GraphError(f"gesture graph: expects a DVS event stream, got {spec.describe()}")
        w, h = int(spec.shape[0]), int(spec.shape[1])
        f = bin_factor(w, h, self.input_px)
        if (w, h) != (f * self.input_px, f * self.input_px):
            raise GraphError(f"BinToInput: expects a square sensor of a multiple of {self.input_px} px (put "
                             f"SquareCrop first), got {w}×{h}")
        pool = SumPool2d("bin", (f, f), neuron=Neuron(threshold=max(1.0, f * f / self.bin_pixels)))
        return Network((pool,), (2, h, w), name="bin")

    def dense_macs_per_bin(self, spec: StreamSpec) -> int:
        return int(self.inner(spec).dense_macs_per_bin(spec))


def front_end(input_px: int = INPUT_PX) -> list[tuple[str, Any]]:
    """The (name, stage) list that maps a DVS stream of any size and orientation onto the network input:
    image orientation from the spec's flags, centred square crop, f × f integrate-and-fire binning."""
    return [("orient", ToImageOrientation()), ("crop", SquareCrop(input_px)), ("bin", BinToInput(input_px))]


def apply_stages(stages: Sequence[tuple[str, Any]], spec: StreamSpec, events: np.ndarray,
                 t_end_us: int | None = None) -> tuple[np.ndarray, StreamSpec]:
    """Run ``stages`` over one whole sorted event array (one packet) and return (events, output spec).

    The stages are packet-invariant, so this equals what the graph computes packet by packet."""
    if t_end_us is None:
        t_end_us = int(events["t"][-1]) + 1 if events.shape[0] else 1
    ev = np.array(events)
    ev.flags.writeable = False
    packets = [Packet(ev, int(t_end_us))]
    for name, stage in stages:
        out_spec = stage.out_spec(spec)
        state = stage.init(spec)
        outs: list[Packet] = []
        for p in packets:
            state, o = stage.step(state, p)
            outs.extend(o)
        outs.extend(stage.finish(state))
        packets, spec = outs, out_spec
    return concat_events(packets, spec.dtype), spec


# -- gates -----------------------------------------------------------------------------------------------------------

def default_gates(config: Mapping[str, Any] | None = None) -> tuple[Any, ...]:
    """The input attention gates (spatial, then temporal); ``config`` overrides: ``{"spatial": {...}, ...}``.

    Spatial: 8 × 8-pixel tiles (a 4 × 4 grid at the 32 × 32 input), activity decaying with 50 ms; an event passes
    when its tile is busier than ``rel_threshold`` × the mean tile (1.5: about 65 % of the rendered clips' events
    pass; 2.5 kept half but starved zooms, whose events spread over many tiles). Temporal: 10 ms windows; a window passes
    when it holds at least ``min_events`` events (drops the trickle of noise between movements)."""
    cfg = dict(config or {})
    sp = {"tile_px": 8, "tau_us": 50_000.0, "min_activity": 1.0, "rel_threshold": 1.5, **cfg.get("spatial", {})}
    tp = {"window_us": 10_000, "min_events": 4, "rel_threshold": 0.0, "ema_windows": 50.0, **cfg.get("temporal", {})}
    return (SpatialGate(**sp), TemporalGate(**tp))


# -- network file ------------------------------------------------------------------------------------------------------

def topology(taus_us: Sequence[float], *, bin_us: int, channels: Sequence[int] = (8, 16, 32), hidden: int = 128,
             conv3_stride: int = 2, delays_us: Sequence[int] = (0,), gates: Sequence[Any] | None = None,
             meta: Mapping[str, Any] | None = None, pool: int = 1, motion: MotionDirections | None = None,
             input_gain: InputGain | None = None, channel_gates: Mapping[str, float] | None = None,
             labels: Sequence[str] = LABELS) -> dict:
    """The gesture network's topology in the ``graphs.network`` file format: three convolutions (5×5 stride 2,
    3×3 stride 2, 3×3 stride ``conv3_stride``) of LIF neurons, optionally a ``pool``×``pool`` sum-pool, a recurrent
    LIF layer (feedback one training bin
    later) and one LIF output neuron per label; threshold 1, reset by subtraction, one time constant per layer.
    ``channel_gates``: conv layer name → the time constant (µs) of its trained channel gate (arrays
    ``NAME.gate_weight``, ``NAME.gate_bias``). ``labels``: one of ``VOCABULARIES``."""
    labels = tuple(labels)
    if labels not in VOCABULARIES:
        raise ValueError(f"gesture topology: labels must be one of {[list(v) for v in VOCABULARIES]}, "
                         f"got {list(labels)}")
    taus = [float(t) for t in taus_us]
    if len(taus) != 5:
        raise ValueError(f"gesture topology: expected 5 time constants (one per layer), got {len(taus)}")
    c1, c2, c3 = (int(c) for c in channels)

    def lif(i: int) -> dict:
        return {"model": "lif", "tau_us": taus[i], "threshold": 1.0, "reset": "subtract"}

    side = INPUT_PX // (4 * int(conv3_stride))
    if int(pool) < 1 or side % int(pool):
        raise ValueError(f"gesture topology: pool {pool} must divide conv3's {side}×{side} map")
    flat = c3 * (side // int(pool)) ** 2
    pooling = ([{"name": "pool", "type": "sumpool2d", "kernel_size": int(pool), "stride": int(pool), "neuron": None}]
               if int(pool) > 1 else [])
    n_in = (motion.channels if motion is not None else 2) * len(delays_us)
    cgates = dict(channel_gates or {})
    unknown = set(cgates) - {"conv1", "conv2", "conv3"}
    if unknown:
        raise ValueError(f"gesture topology: channel gates go on conv1, conv2 or conv3, got {sorted(unknown)}")

    def gate(name: str) -> dict:
        return {"channel_gate": {"tau_us": float(cgates[name])}} if name in cgates else {}

    return {
        "format": "clockless.snn", "version": 1, "name": "gesture", "input": {"shape": [n_in, INPUT_PX, INPUT_PX]},
        "bin_us": int(bin_us), "labels": list(labels),
        "input_gates": [_gate_dict(g) for g in (gates if gates is not None else default_gates())],
        **({"input_gain": input_gain.to_dict()} if input_gain is not None else {}),
        "layers": [
            {"name": "conv1", "type": "conv2d", "in_channels": n_in, "out_channels": c1, "kernel_size": 5, "stride": 2,
             "padding": 2, "neuron": lif(0), **gate("conv1")},
            {"name": "conv2", "type": "conv2d", "in_channels": c1, "out_channels": c2, "kernel_size": 3, "stride": 2,
             "padding": 1, "neuron": lif(1), **gate("conv2")},
            {"name": "conv3", "type": "conv2d", "in_channels": c2, "out_channels": c3, "kernel_size": 3,
             "stride": int(conv3_stride),
             "padding": 1, "neuron": lif(2), **gate("conv3")},
            *pooling,
            {"name": "flatten", "type": "flatten"},
            {"name": "hidden", "type": "linear", "in_features": flat, "out_features": int(hidden), "recurrent": True,
             "recurrent_delay_us": int(bin_us), "neuron": lif(3)},
            {"name": "out", "type": "linear", "in_features": int(hidden), "out_features": len(labels),
             "neuron": lif(4)},
        ],
        "meta": {"delays_us": [int(d) for d in delays_us], **({"motion": motion.to_dict()} if motion else {}),
                 **dict(meta or {})},
    }


def _gate_dict(g: Any) -> dict:
    if isinstance(g, SpatialGate):
        return {"type": "spatial", "tile_px": int(g.tile_px), "tau_us": float(g.tau_us),
                "min_activity": float(g.min_activity), "rel_threshold": float(g.rel_threshold), "tile_weight": False}
    if isinstance(g, TemporalGate):
        return {"type": "temporal", "window_us": int(g.window_us), "min_events": int(g.min_events),
                "rel_threshold": float(g.rel_threshold), "ema_windows": float(g.ema_windows)}
    raise TypeError(f"gesture topology: unknown gate {g!r}")


class GestureNet:
    """A loaded gesture network file: the engine ``Network``, its input gates and delay lines, labels, decision
    settings."""

    def __init__(self, net: Network, meta: Mapping[str, Any], source: str = "<memory>"):
        self.meta = dict(meta)
        self.source = source
        self.labels = tuple(net.labels) if net.labels else LABELS
        if self.labels not in VOCABULARIES:
            known = " or ".join(str(list(v)) for v in VOCABULARIES)
            raise FormatError(source, f"field 'labels': expected one of {known}, got {list(self.labels)}")
        self.bin_us = int(net.meta.get("bin_us", 1000))
        self.decision = dict(self.meta.get("decision", {}))
        self.delays_us = tuple(int(d) for d in self.meta.get("delays_us", [0]))
        if not self.delays_us or self.delays_us[0] != 0 or any(d < 0 for d in self.delays_us):
            raise FormatError(source, f"field 'meta.delays_us': expected [0, d1, d2, ...] µs, got {self.delays_us}")
        try:
            self.motion = MotionDirections.from_dict(self.meta["motion"]) if self.meta.get("motion") else None
        except (TypeError, ValueError) as exc:
            raise FormatError(source, f"field 'meta.motion': {exc}") from exc
        channels = self.motion.channels if self.motion is not None else 2
        want = (channels * len(self.delays_us), INPUT_PX, INPUT_PX)
        if tuple(net.input_shape) != want:
            raise FormatError(source, f"field 'input.shape': {len(self.delays_us)} delay lines of {channels} channels "
                                      f"need {list(want)}, got {list(net.input_shape)}")
        self.gates = tuple(net.input_gates)
        self.net = replace(net, input_gates=())  # the gates run as stages, before the delay lines

    def network(self, name: str = "snn", channel_gates: bool = True) -> Network:
        """The engine network; ``channel_gates=False``: without the channel gates of its layers (gates off)."""
        net = replace(self.net, name=name)
        if channel_gates:
            return net
        return replace(net, layers=tuple(replace(layer, channel_gate=None) if getattr(layer, "channel_gate", None)
                                         else layer for layer in net.layers))

    @property
    def channel_gated(self) -> tuple[str, ...]:
        """Names of the layers with a channel gate."""
        return tuple(layer.name for layer in self.net.layers if getattr(layer, "channel_gate", None) is not None)


def load_network_file(path: str | Path | None = None) -> GestureNet:
    """Load a gesture network file (``NAME.json`` + ``NAME.npz``; default: the shipped weights)."""
    path = Path(path if path is not None else WEIGHTS_PATH)
    net = load_network(path)
    topo = read_topology(path)
    return GestureNet(net, topo.get("meta", {}), str(path))


# -- the graph --------------------------------------------------------------------------------------------------------

def build(source: Any, weights: str | Path | GestureNet | None = None, gates: bool = True,
          decision: Mapping[str, Any] | None = None, name: str = "gesture") -> Graph:
    """The gesture graph on ``source`` (any DVS source: file replay, emulator, camera).

    ``weights``: a network file path or a loaded ``GestureNet`` (default: the shipped weights). ``gates``: the
    attention gates on or off. ``decision``: overrides of the decision settings (e.g. ``{"p_on": 0.8}``)."""
    net = weights if isinstance(weights, GestureNet) else load_network_file(weights)
    g = Graph(name)
    ev = g.source("input", source)
    for stage_name, stage in front_end():
        ev = g.stage(stage_name, stage, ev)
    add_core(g, ev, net, gates=gates, decision=decision)
    return g


def add_core(g: Graph, ev: str, net: GestureNet, *, gates: bool = True,
             decision: Mapping[str, Any] | None = None) -> str:
    """Add gates → motion directions (when the network file has ``meta.motion``) → delay lines → network →
    decision sink behind node ``ev`` (a (2, 32, 32) spike stream). ``gates=False`` leaves out the input gates and
    the network's channel gates.

    Delay line k re-sends every spike of the C-channel map ``delays_us[k]`` later as channels kC … kC + C - 1 of
    the network input, so the first layer sees what moves now and what moved then, like a synaptic delay line."""
    sensor_gain = net.net.input_gain is not None and net.net.input_gain.count == "sensor"
    before_gates = ev
    if gates:
        fan = _first_layer_fanout(net) * len(net.delays_us)
        for g_ in net.gates:
            ev = g.stage(f"{g_.kind}_gate", replace(g_, fanout_ops=fan), ev)
    if net.motion is not None:
        ev = g.stage("motion", net.motion, ev)
    lines = []
    for k, d in enumerate(net.delays_us):
        line = ev
        if d:
            line = g.stage(f"delay{k}", Delay(d), line)
        if len(net.delays_us) > 1 or sensor_gain:
            line = g.stage(f"line{k}", DelayLine(k, len(net.delays_us), extra=int(sensor_gain)), line)
        lines.append(line)
    if sensor_gain:  # the input gain counts what the sensor sent, so what the gates drop costs nothing downstream
        lines.append(g.stage("gain_count", GainCount(int(net.net.input_shape[0]) + 1), before_gates))
    spk = g.stage("snn", net.network(channel_gates=gates), *lines)
    dcfg = DecisionConfig(**{**net.decision, **dict(decision or {})})
    return g.sink("decide", GestureDecision(net.labels, dcfg), spk)


def _first_layer_fanout(net: GestureNet) -> int:
    """Synaptic ops one input spike costs in the first layer, away from the borders."""
    layer = net.net.layers[0]
    o, _, kh, kw = layer.weight.shape
    return int(o * -(-kh // layer.stride[0]) * -(-kw // layer.stride[1]))


@dataclass(frozen=True)
class DelayLine:
    """Re-address a (C, H, W) spike stream as channels ``kC … kC + C - 1`` of a (nC + extra, H, W) stream (line
    k of n; ``extra`` channels after the lines, e.g. the network's gain-count channel, see ``GainCount``)."""

    k: int
    n: int
    extra: int = 0

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "spike" or len(spec.shape) != 3:
            raise GraphError(f"DelayLine: expects a (C, H, W) spike stream, got {spec.describe()}")
        return spike_spec((spec.shape[0] * self.n + self.extra, spec.shape[1], spec.shape[2]))

    def init(self, spec: StreamSpec) -> int:
        self.out_spec(spec)
        return int(np.prod(spec.shape))

    def step(self, state: int, packet: Packet) -> tuple[int, list[Packet]]:
        ev = np.array(packet.events)
        ev["addr"] += self.k * state
        return state, [packet.derive(ev)]

    def finish(self, state: int) -> list[Packet]:
        return []


@dataclass(frozen=True)
class GainCount:
    """Re-address every event of a (P, H, W) spike stream (the sensor's binned events, before the gates) to the
    last channel of a (channels, H, W) stream: the network's count-only port, which its input gain counts
    (``InputGain(count="sensor")``) and which costs no synaptic op."""

    channels: int

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "spike" or len(spec.shape) != 3:
            raise GraphError(f"GainCount: expects a (C, H, W) spike stream, got {spec.describe()}")
        return spike_spec((self.channels, spec.shape[1], spec.shape[2]))

    def init(self, spec: StreamSpec) -> int:
        self.out_spec(spec)
        return int(spec.shape[1] * spec.shape[2])

    def step(self, state: int, packet: Packet) -> tuple[int, list[Packet]]:
        ev = np.array(packet.events)
        ev["addr"] = (self.channels - 1) * state + ev["addr"] % state
        return state, [packet.derive(ev)]

    def finish(self, state: int) -> list[Packet]:
        return []


def build_default() -> Graph:
    """The gesture graph on a small built-in stream (a bright disc sweeping right on a 128×128 sensor), for
    ``clockless graph show gesture``; the demo command uses a rendered clip instead (apps.gesture.app)."""
    from runtime.sources import ArraySource
    from runtime.spec import dvs_spec

    return build(ArraySource(sweep_events(), dvs_spec(128, 128), name="built-in sweep 128×128"))


def sweep_events(width: int = 128, height: int = 128, duration_us: int = 1_000_000, seed: int = 0) -> np.ndarray:
    """Events of a disc (radius H/6) sweeping left to right: ON at its leading edge, OFF at its trailing edge."""
    from runtime.events import make_dvs_events

    rng = np.random.default_rng(seed)
    r = height / 6
    ts = np.arange(0, duration_us, 2_000)
    xs, ys, tt, ps = [], [], [], []
    for t in ts:
        cx = r + (width - 2 * r) * t / duration_us
        ang = rng.uniform(-np.pi / 2, np.pi / 2, 24)
        for sign, pol in ((1.0, True), (-1.0, False)):
            xs.append(np.clip(cx + sign * r * np.cos(ang), 0, width - 1))
            ys.append(np.clip(height / 2 + r * np.sin(ang), 0, height - 1))
            tt.append(np.full(ang.shape[0], t))
            ps.append(np.full(ang.shape[0], pol))
    ev = make_dvs_events(np.concatenate(xs).astype(np.int16), np.concatenate(ys).astype(np.int16),
                         np.concatenate(tt), np.concatenate(ps))
    return ev[np.argsort(ev["t"], kind="stable")]
