"""``Network``: a chain of event-driven layers run as ONE stage (one kernel call per packet).

Input: DVS events (channel = polarity, address ``p·H·W + y·W + x`` over the input shape ``(2, H, W)``), cochlea
events (``p·channels + x`` over ``(2, channels)``) or spikes (``addr`` = flat C-order index over the input shape).
Output: the last layer's spikes, ``spike_spec(shape of the last layer)``; each spike carries the time of the input
event that caused it plus the layers' ``delay_us`` (the output watermark is the input watermark plus the same).
A per-layer stage is simply ``Network([layer], input_shape=...)``; ``Network.split()`` gives one per layer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np

from ..errors import StreamOrderError
from ..events import SPIKE_EVENT
from ..packet import Packet
from ..spec import StreamSpec, spike_spec
from .gain import InputGain
from .gates import SpatialGate, TemporalGate
from .kernels import snn as sk
from .layers import Conv2d, Flatten, Linear, SumPool2d, dense_macs_per_bin_of, layer_shapes

__all__ = ["Network", "NetworkState", "DECAY_MODES"]

DECAY_MODES = {"frame": sk.DECAY_FRAME, "exp": sk.DECAY_EXP, "lut": sk.DECAY_LUT}
LUT_MAX = 1 << 16


@dataclass
class NetworkState:
    """Mutable state made by ``Network.init``: flat arrays shared with the kernel, and counters."""

    u: np.ndarray
    tl: np.ndarray
    ru: np.ndarray
    scratch: np.ndarray
    lstate: np.ndarray
    cg_r: np.ndarray
    counters: np.ndarray
    q_t: np.ndarray
    q_a: np.ndarray
    q_start: np.ndarray
    gates: list
    in_kind: str
    in_grid: tuple
    wm_in: int | None = None
    wm_out: int | None = None
    events_in: int = 0
    events_out: int = 0
    args: tuple | None = None  # the kernel's array arguments, cached
    gain_win: int = 0  # a gain counting sensor events: its open window, and that window's count so far
    gain_n: float = 0.0


@dataclass(frozen=True)
class _Compiled:
    desc: np.ndarray
    fpar: np.ndarray
    W: np.ndarray
    lut: np.ndarray
    cg_w: np.ndarray
    cg_b: np.ndarray
    n_total: int
    max_n: int
    n_cg: int
    names: tuple
    any_refr: bool
    any_tl: bool


@dataclass(frozen=True, eq=False)
class Network:
    """An event-driven spiking network; a stage. ``decay``: ``"frame"`` (time-invariant frame, one exp per
    distinct input timestamp; default), ``"exp"`` (one exp per neuron touched) or ``"lut"`` (decay table).
    ``state_dtype``: ``"float64"`` (default) or ``"float32"`` neuron potentials (half the memory; no faster
    since the conv rows are vectorised, the weights staying float64; float32 rounding accumulates to ~1e-4 of
    the threshold after hundreds of updates, so neurons that close to threshold may spike differently from the
    float64 reference).
    ``input_gain``: an ``InputGain`` that weights the first layer's input events by the recent input rate. With
    ``count="sensor"`` it counts not the network's input but a count-only port: the stage then takes a (C + 1, H,
    W) spike stream for a (C, H, W) input, and events of channel C (the sensor's events before any gate, see
    ``graphs.gesture.GainCount``) are counted and do nothing else, so events a gate dropped stay dropped."""

    layers: tuple
    input_shape: tuple
    name: str = "snn"
    decay: str = "frame"
    input_gates: tuple = ()
    labels: tuple = ()
    meta: Mapping[str, Any] = field(default_factory=dict)
    state_dtype: str = "float64"
    input_gain: InputGain | None = None

    def __post_init__(self):
        object.__setattr__(self, "layers", tuple(self.layers))
        object.__setattr__(self, "input_shape", tuple(int(s) for s in self.input_shape))
        object.__setattr__(self, "input_gates", tuple(self.input_gates))
        object.__setattr__(self, "labels", tuple(self.labels))
        if not self.layers:
            raise ValueError(f"network '{self.name}': needs at least one layer")
        for layer in self.layers:
            if not isinstance(layer, (Conv2d, Linear, SumPool2d, Flatten)):
                raise ValueError(f"network '{self.name}': unknown layer {layer!r}")
        if self.state_dtype not in ("float64", "float32"):
            raise ValueError(f"network '{self.name}': state_dtype must be 'float64' or 'float32', got "
                             f"{self.state_dtype!r}")
        if self.decay not in DECAY_MODES:
            raise ValueError(f"network '{self.name}': decay must be one of {sorted(DECAY_MODES)}, got {self.decay!r}")
        for g in self.input_gates:
            if not isinstance(g, (TemporalGate, SpatialGate)):
                raise ValueError(f"network '{self.name}': input_gates take TemporalGate/SpatialGate, got {g!r}")
        if self.input_gain is not None:
            if not isinstance(self.input_gain, InputGain):
                raise ValueError(f"network '{self.name}': input_gain takes an InputGain, got {self.input_gain!r}")
            first = next((x for x in self.layers if not isinstance(x, Flatten)), None)
            if (first is None or getattr(first, "recurrent_weight", None) is not None
                    or (isinstance(first, SumPool2d) and first.neuron is None)):
                raise ValueError(f"network '{self.name}': input_gain needs a first layer with synapses of its own "
                                 f"(conv2d, linear without recurrence or a pooling layer with neurons), got "
                                 f"{first!r}")
            if self.input_gain.count == "sensor" and len(self.input_shape) != 3:
                raise ValueError(f"network '{self.name}': an input gain that counts sensor events needs a (C, H, W) "
                                 f"input, got {self.input_shape}")
        try:
            shapes = layer_shapes(self.layers, self.input_shape)
        except ValueError as exc:
            raise ValueError(f"network '{self.name}': {exc}") from None
        if self.labels and len(self.labels) != int(np.prod(shapes[-1])):
            raise ValueError(f"network '{self.name}': {len(self.labels)} labels for {int(np.prod(shapes[-1]))} "
                             "outputs")
        object.__setattr__(self, "shapes", tuple(shapes))
        object.__setattr__(self, "_c", self._compile())
        object.__setattr__(self, "_delay", int(sum(layer.delay_us for layer in self.layers)))

    # ---------------------------------------------------------------- structure
    @property
    def out_shape(self) -> tuple[int, ...]:
        return self.shapes[-1]

    @property
    def delay_us(self) -> int:
        return int(sum(layer.delay_us for layer in self.layers))

    def layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise KeyError(f"network '{self.name}' has no layer '{name}'; layers: {[x.name for x in self.layers]}")

    def split(self) -> list["Network"]:
        """One single-layer Network per layer (Flatten folded into the next), for per-layer graph stages."""
        stages = []
        shape = self.input_shape
        gates = self.input_gates
        for layer, s_out in zip(self.layers, self.shapes[1:]):
            if isinstance(layer, Flatten):
                shape = s_out
                continue
            stages.append(Network((layer,), shape, f"{self.name}.{layer.name}", self.decay, gates,
                                  state_dtype=self.state_dtype, input_gain=None if stages else self.input_gain))
            gates = ()
            shape = s_out
        return stages

    def _compile(self) -> _Compiled:
        rows, frows, wparts, lut_parts, cgw, cgb, names = [], [], [], [], [], [], []
        w_off = u_off = lut_off = cg_off = 0
        any_refr = any_tl = False
        mode_lif = DECAY_MODES[self.decay]
        max_n = 1
        for layer, s_in, s_out in zip(self.layers, self.shapes[:-1], self.shapes[1:]):
            if isinstance(layer, Flatten):
                continue
            d = np.zeros(sk.D_COLS, np.int64)
            f = np.zeros(sk.F_COLS, np.float64)
            if isinstance(layer, Linear):
                d[sk.D_TYPE] = sk.T_LINEAR
                d[[sk.D_IN_C, sk.D_IN_H, sk.D_IN_W]] = (s_in[0], 1, 1)
                d[[sk.D_OUT_C, sk.D_OUT_H, sk.D_OUT_W]] = (s_out[0], 1, 1)
                d[[sk.D_KH, sk.D_KW, sk.D_SH, sk.D_SW]] = 1
                block = [np.ascontiguousarray(layer.weight.T, np.float64).ravel()]
                d[sk.D_W_OFF] = w_off
                if layer.recurrent_weight is not None:
                    d[sk.D_REC] = 1
                    d[sk.D_REC_OFF] = w_off + block[0].shape[0]
                    d[sk.D_REC_DELAY] = layer.recurrent_delay_us
                    block.append(np.ascontiguousarray(layer.recurrent_weight.T, np.float64).ravel())
                wblock = np.concatenate(block)
            else:
                d[[sk.D_IN_C, sk.D_IN_H, sk.D_IN_W]] = s_in
                d[[sk.D_OUT_C, sk.D_OUT_H, sk.D_OUT_W]] = s_out
                if isinstance(layer, Conv2d):
                    d[sk.D_TYPE] = sk.T_CONV
                    kh, kw = layer.weight.shape[2:]
                    d[[sk.D_KH, sk.D_KW]] = (kh, kw)
                    d[[sk.D_SH, sk.D_SW]] = layer.stride
                    d[[sk.D_PH, sk.D_PW]] = layer.padding
                    wblock = np.ascontiguousarray(layer.weight.transpose(1, 2, 3, 0), np.float64).ravel()
                    rows_w, taps = sk.conv_row_weights(layer.weight, layer.stride[1])
                    d[sk.D_ROW_OFF] = w_off + wblock.shape[0]
                    d[sk.D_ROW_TAPS] = taps
                    d[sk.D_DIV_HW] = sk.div_magic(s_in[1] * s_in[2], int(np.prod(s_in)) - 1)
                    d[sk.D_DIV_W] = sk.div_magic(s_in[2], s_in[1] * s_in[2] - 1)
                    wblock = np.concatenate([wblock, rows_w])
                else:
                    d[sk.D_TYPE] = sk.T_POOL if layer.neuron is not None else sk.T_POOL_ADDR
                    d[[sk.D_KH, sk.D_KW]] = layer.kernel_size
                    d[[sk.D_SH, sk.D_SW]] = layer.stride
                    wblock = np.ones(1)
                d[sk.D_W_OFF] = w_off
            wparts.append(wblock)
            w_off += wblock.shape[0]
            n = int(np.prod(s_out))
            d[sk.D_U_OFF] = u_off
            d[sk.D_N] = n
            u_off += n
            max_n = max(max_n, n)
            d[sk.D_DELAY] = layer.delay_us
            neuron = layer.neuron
            if neuron is not None:
                f[sk.F_THETA] = neuron.threshold
                f[sk.F_TAU] = 1.0 if neuron.tau_us is None else neuron.tau_us
                d[sk.D_RESET] = 0 if neuron.reset == "subtract" else 1
                d[sk.D_REFR] = neuron.refractory_us
                any_refr |= neuron.refractory_us > 0
                if neuron.tau_us is None:
                    d[sk.D_DECAY] = sk.DECAY_NONE
                else:
                    d[sk.D_DECAY] = mode_lif
                    any_tl |= mode_lif != sk.DECAY_FRAME
                    if mode_lif == sk.DECAY_LUT:
                        length = int(min(LUT_MAX, math.ceil(40 * neuron.tau_us)))
                        lut_parts.append(np.exp(-np.arange(length, dtype=np.float64) / neuron.tau_us))
                        d[sk.D_LUT_OFF] = lut_off
                        d[sk.D_LUT_LEN] = length
                        lut_off += length
            gate = layer.channel_gate
            if gate is not None:
                d[sk.D_CG] = 1
                d[sk.D_CG_OFF] = cg_off
                f[sk.F_CG_TAU] = gate.tau_us
                cgw.append(gate.weight)
                cgb.append(gate.bias)
                cg_off += gate.weight.shape[0]
            if self.input_gain is not None and not rows:
                ig = self.input_gain
                d[sk.D_GAIN] = 2 if ig.count == "sensor" else 1
                d[sk.D_GAIN_WIN] = int(ig.window_us)
                f[[sk.F_GAIN_REF, sk.F_GAIN_KEEP, sk.F_GAIN_MIN, sk.F_GAIN_MAX]] = (
                    ig.ref_per_window, ig.keep, ig.min_gain, ig.max_gain)
            rows.append(d)
            frows.append(f)
            names.append(layer.name)

        def cat(parts):
            return np.ascontiguousarray(np.concatenate(parts)) if parts else np.zeros(1)

        return _Compiled(
            np.ascontiguousarray(np.stack(rows)), np.ascontiguousarray(np.stack(frows)), cat(wparts), cat(lut_parts),
            cat(cgw), cat(cgb), u_off, max_n, cg_off, tuple(names), any_refr, any_tl,
        )

    # ---------------------------------------------------------------- stage protocol
    def _input_kind(self, spec: StreamSpec) -> tuple[str, tuple]:
        where = f"network '{self.name}'"
        shape = self.input_shape
        if spec.kind == "dvs":
            w, h, p = spec.shape
            if shape != (2, h, w):
                raise ValueError(f"{where}: input shape is {shape}, but the DVS stream {spec.describe()} maps to "
                                 f"(2, {h}, {w}) (polarity, y, x); resize the stream or the network input")
            return "dvs", (2, h, w)
        if spec.kind == "audio":
            ch, p = spec.shape
            if shape not in ((2, ch), (2 * ch,)):
                want = shape[-1] if len(shape) == 2 else int(np.prod(shape)) / 2
                raise ValueError(
                    f"{where}: expects audio events of {want:g} channels (input shape {shape}: ON/OFF × channel), "
                    f"but the stream {spec.describe()} has {ch} channels; feed it a stream with {want:g} channels "
                    f"or use a network trained on {ch}")
            return "audio", (2, 1, ch)
        if self._sensor_gain and self.input_gates:
            raise ValueError(f"{where}: its input gain counts sensor events before the gates, so the gates must run "
                             f"as stages before it, not as the network's own {len(self.input_gates)} input gates")
        if spec.kind == "spike" and self._sensor_gain:
            want = (shape[0] + 1,) + shape[1:]
            if tuple(spec.shape) != want:
                raise ValueError(f"{where}: its input gain counts sensor events on a count channel, so it takes a "
                                 f"{want} spike stream (input {shape} plus that channel), got {spec.describe()}")
            return "spike", (int(np.prod(shape)),)
        if spec.kind == "spike":
            if spec.shape != shape and not (len(shape) == 1 and int(np.prod(spec.shape)) == shape[0]):
                raise ValueError(f"{where}: input shape is {shape}, the spike stream has shape {spec.shape}")
            return "spike", (int(np.prod(spec.shape)),)
        raise ValueError(f"{where}: cannot take a '{spec.kind}' stream; expected dvs, audio or spike events")

    def split_at(self, k: int) -> tuple["Network", "Network"]:
        """(the first ``k`` layers, the rest) as two networks that together compute what this one does: the input
        gates and gain stay with the first, the labels go with the second. Equal up to float rounding: at one
        timestamp, the second part's first layer adds its inputs' weights in address order (inside one network:
        in the order they were emitted), and k spikes of one neuron as k additions (inside: k · w once)."""
        n = len(self.layers)
        if not 0 < k < n or all(isinstance(x, Flatten) for x in self.layers[:k]) \
                or all(isinstance(x, Flatten) for x in self.layers[k:]):
            raise ValueError(f"network '{self.name}': cannot split its {n} layers after layer {k}: each part needs a "
                             f"layer with neurons (layers: {[x.name for x in self.layers]})")
        front = Network(self.layers[:k], self.input_shape, f"{self.name}[:{k}]", self.decay, self.input_gates,
                        state_dtype=self.state_dtype, input_gain=self.input_gain)
        back = Network(self.layers[k:], self.shapes[k], f"{self.name}[{k}:]", self.decay, (), self.labels,
                       self.meta, state_dtype=self.state_dtype)
        return front, back

    @property
    def _sensor_gain(self) -> bool:
        return self.input_gain is not None and self.input_gain.count == "sensor"

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        self._input_kind(spec)
        return spike_spec(self.out_shape, labels=self.labels, network=self.name)

    def init(self, spec: StreamSpec) -> NetworkState:
        kind, grid = self._input_kind(spec)
        c = self._c
        n_layers = c.desc.shape[0]
        lstate = np.zeros((n_layers, sk.S_COLS))
        if self.input_gain is not None:  # the running count starts at the reference: gain 1 until input says otherwise
            lstate[0, sk.S_GAIN_R] = self.input_gain.ref_per_window
        state = NetworkState(
            u=np.zeros(max(1, c.n_total), dtype=self.state_dtype),
            tl=np.zeros(c.n_total if c.any_tl else 1, np.int64),
            ru=np.full(c.n_total if c.any_refr else 1, np.iinfo(np.int64).min, np.int64),
            scratch=np.zeros((3, c.max_n), np.int64),
            lstate=lstate,
            cg_r=np.zeros(max(1, c.n_cg)),
            counters=np.zeros((n_layers, sk.C_COLS), np.int64),
            q_t=np.empty(0, np.int64),
            q_a=np.empty(0, np.int32),
            q_start=np.zeros(n_layers + 1, np.int64),
            gates=[],
            in_kind=kind,
            in_grid=grid,
        )
        gate_grid = (2, grid[1], grid[2]) if kind in ("dvs", "audio") else _grid3(self.input_shape)
        for g in self.input_gates:
            gs = g.make_state(gate_grid)
            gs.pending = np.empty(0, np.int32)
            state.gates.append(gs)
        # compile (or load from the cache) now, on empty inputs, never on the first real packet
        frozen = _empty_like_spec(spec)
        frozen.flags.writeable = False  # packets hold read-only arrays: numba compiles that type apart
        self._run_events(state, frozen, 0)
        self._run_events(state, _empty_like_spec(spec), 0)
        self._run(state, np.empty(0, np.int64), np.empty(0, np.int32), 0)
        sk.fanout_sum(c.desc, 0, np.empty(0, np.int32))
        for g, gs in zip(self.input_gates, state.gates):
            g.apply(gs, np.empty(0, np.int64), np.empty(0, np.int32), 0)
        state.gates = [g.make_state(gate_grid) for g in self.input_gates]
        for gs in state.gates:
            gs.pending = np.empty(0, np.int32)
        state.q_start[:] = 0
        return state

    def _args(self, state: NetworkState) -> tuple:
        args = state.args
        if args is None:  # built once; rebuilt only when the recurrent queue arrays are replaced
            c = self._c
            args = state.args = (c.desc, c.fpar, c.W, state.u, state.tl, state.ru, state.scratch, state.lstate, c.lut,
                                 c.cg_w, c.cg_b, state.cg_r, state.counters, state.q_t, state.q_a, state.q_start)
        return args

    def _encode(self, state: NetworkState, events: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        kind = state.in_kind
        if kind == "dvs":
            _, h, w = state.in_grid
            t, a, bad = sk.encode_dvs(events["x"], events["y"], events["p"], events["t"], w, h)
        elif kind == "audio":
            t, a, bad = sk.encode_audio(events["x"], events["p"], events["t"], state.in_grid[2])
        else:
            t, a, bad = sk.encode_flat(events["addr"], events["t"], state.in_grid[0])
        if bad >= 0:
            self._bad_input(events, bad)
        return t, a

    def _bad_input(self, events, bad: int):
        raise ValueError(f"network '{self.name}': input event {bad} lies outside the input shape "
                         f"{self.input_shape}: {events[bad]} (crop or rescale the stream first)")

    def _run_events(self, state: NetworkState, events: np.ndarray, wm: int) -> np.ndarray:
        """Encode and run one packet's events in a single kernel call (no input gates)."""
        kind = state.in_kind
        if kind == "dvs":
            _, h, w = state.in_grid
            ev, extra = sk.run_dvs(events, w, h, int(wm), *self._args(state))
        elif kind == "audio":
            ev, extra = sk.run_audio(events, state.in_grid[2], int(wm), *self._args(state))
        else:
            ev, extra = sk.run_spikes(events, state.in_grid[0], int(wm), *self._args(state))
        err = int(extra[0])
        if err >= 0:
            self._bad_input(events, err)
        return self._unpack(state, ev, extra, events.shape[0], wm, err)

    def _run(self, state: NetworkState, t: np.ndarray, a: np.ndarray, wm: int) -> np.ndarray:
        """Run encoded inputs (times, addresses; the addresses get sorted in place within equal times)."""
        ev, extra = sk.run_encoded(t, a, int(wm), *self._args(state))
        return self._unpack(state, ev, extra, t.shape[0], wm, int(extra[0]))

    def _unpack(self, state: NetworkState, ev: np.ndarray, extra: np.ndarray, n_in: int, wm: int,
                err: int) -> np.ndarray:
        nl = state.q_start.shape[0]
        nq = (extra.shape[0] - 1 - nl) // 2
        if nq or state.q_t.shape[0]:
            state.q_start = extra[1: 1 + nl].copy()
            state.q_t = extra[1 + nl: 1 + nl + nq].copy()
            state.q_a = extra[1 + nl + nq:].astype(np.int32)
            state.args = None
        if err == sk.ERR_RUNAWAY:
            i = int(np.flatnonzero(state.lstate[:, sk.S_RUNAWAY] > 0)[0])
            raise RuntimeError(
                f"network '{self.name}': layer '{self._c.names[i]}' emitted over {int(state.lstate[i, sk.S_RUNAWAY])} "
                f"spikes from a packet of {n_in} events ending at {wm} µs: runaway excitation (recurrent weights or "
                "thresholds make activity grow without bound); the network state is no longer valid")
        return ev

    def _gate_inputs(self, state: NetworkState, t, a, wm: int, final: bool = False):
        for g, gs in zip(self.input_gates, state.gates):
            t, a, wm, dropped = g.apply(gs, t, a, wm, a=None, final=final)
            if dropped.shape[0]:
                gs.gated_ops_saved += int(sk.fanout_sum(self._c.desc, 0, np.ascontiguousarray(dropped)))
        return t, a, wm

    def step(self, state: NetworkState, packet: Packet) -> tuple[NetworkState, list[Packet]]:
        wm = int(packet.t_end_us)
        events = packet.events
        n = events.shape[0]
        if state.wm_in is not None and (wm < state.wm_in or (n and int(events["t"][0]) < state.wm_in)):
            first = int(events["t"][0]) if n else wm
            raise StreamOrderError(
                f"network '{self.name}': packet starting at t={first} µs (watermark {wm}) arrived after watermark "
                f"{state.wm_in} µs; a network's state only moves forward in time (use a new state for a new stream)")
        state.wm_in = wm
        state.events_in += n
        if self.input_gates:
            t, a = self._encode(state, events)
            t, a, wm = self._gate_inputs(state, t, a, wm)
            out = self._run(state, t, a, wm)
        elif self._sensor_gain:
            out = self._run_counted(state, events, wm)
        elif n == 0 and state.q_t.shape[0] == 0:
            out = _EMPTY_SPIKES
        else:
            out = self._run_events(state, events, wm)
        return state, [self._emit(state, out, wm)]

    def _run_counted(self, state: NetworkState, events: np.ndarray, wm: int) -> np.ndarray:
        """A packet under a gain that counts the count channel's events: those update the gain's windows here, and
        the other events run in one kernel call per gain window, each after the windows before it were closed
        (the kernel reads the gain from the layer state and counts nothing itself)."""
        n_in = state.in_grid[0]
        counted = events["addr"] >= n_in
        if counted.any():
            t_cnt = events["t"][counted]
            events = events[~counted]
        else:
            t_cnt = events["t"][:0]
        win_us = int(self.input_gain.window_us)
        parts = []
        i = 0
        if events.shape[0]:
            win = events["t"] // win_us
            cuts = np.flatnonzero(np.diff(win)) + 1
            for s, e in zip(np.concatenate(([0], cuts)).tolist(), np.concatenate((cuts, [win.shape[0]])).tolist()):
                w = int(win[s])
                i = self._gain_advance(state, t_cnt, i, w)
                parts.append(self._run_events(state, events[s:e], wm if e == win.shape[0] else (w + 1) * win_us))
        elif state.q_t.shape[0]:
            parts.append(self._run_events(state, events, wm))
        if i < t_cnt.shape[0]:  # later input lies in these windows or after them; what is left is in the last one
            i = self._gain_advance(state, t_cnt, i, int(t_cnt[-1]) // win_us)
            state.gain_n += t_cnt.shape[0] - i
        if not parts:
            return _EMPTY_SPIKES
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _gain_advance(self, state: NetworkState, t_cnt: np.ndarray, i: int, w: int) -> int:
        """Count the count channel's events ``t_cnt[i:]`` of windows before ``w``, close those windows (the same
        running count as the kernel's ``r ← λ·r + (1 - λ)·N``) and open window ``w``; returns the next index."""
        if w <= state.gain_win:
            return i
        win_us = int(self.input_gain.window_us)
        keep = self.input_gain.keep
        r = float(state.lstate[0, sk.S_GAIN_R])
        while state.gain_win < w:
            end = (state.gain_win + 1) * win_us
            j = i + int(np.searchsorted(t_cnt[i:], end))
            state.gain_n += j - i
            i = j
            r = keep * r + (1.0 - keep) * state.gain_n
            state.gain_n = 0.0
            state.gain_win += 1
            if i == t_cnt.shape[0] and state.gain_win < w:  # only empty windows left: decay them at once
                r *= keep ** (w - state.gain_win)
                state.gain_win = w
        state.lstate[0, sk.S_GAIN_R] = r
        return i

    def finish(self, state: NetworkState) -> list[Packet]:
        if not any(g.kind == "temporal" and gs.pending_t.shape[0] for g, gs in zip(self.input_gates, state.gates)):
            return []
        wm = int(state.wm_in)
        t, a, _ = self._gate_inputs(state, np.empty(0, np.int64), np.empty(0, np.int32), wm, final=True)
        return [self._emit(state, self._run(state, t, a, wm), wm)]

    def _emit(self, state: NetworkState, ev: np.ndarray, wm: int) -> Packet:
        if ev is not _EMPTY_SPIKES:  # a fresh kernel output (its flags are set without reading them first)
            ev.flags.writeable = False
        wm_out = wm + self._delay
        prev = state.wm_out
        if prev is not None and wm_out < prev:
            wm_out = prev
        state.wm_out = wm_out
        state.events_out += ev.shape[0]
        return Packet(ev, wm_out)

    # ---------------------------------------------------------------- measurements
    def counters(self, state: NetworkState) -> dict[str, int]:
        cnt = state.counters
        out = {
            "synaptic_ops": int(cnt[:, sk.C_OPS].sum()),
            "neuron_updates": int(cnt[:, sk.C_UPDATES].sum()),
            "spikes": int(cnt[:, sk.C_SPIKES].sum()),
            "gated_events": int(cnt[:, sk.C_GATED].sum()) + sum(gs.gated_events for gs in state.gates),
            "gated_ops_saved": int(cnt[:, sk.C_SAVED].sum()) + sum(gs.gated_ops_saved for gs in state.gates),
            "gate_ops": int(cnt[:, sk.C_GATE_OPS].sum()) + sum(gs.gate_ops for gs in state.gates),
        }
        for i, name in enumerate(self._c.names):
            out[f"spikes.{name}"] = int(cnt[i, sk.C_SPIKES])
            out[f"synaptic_ops.{name}"] = int(cnt[i, sk.C_OPS])
            if cnt[i, sk.C_GATED] or self.layer(name).channel_gate is not None:
                out[f"gated_events.{name}"] = int(cnt[i, sk.C_GATED])
        for g, gs in zip(self.input_gates, state.gates):
            out[f"gated_events.{g.kind}"] = gs.gated_events
            out[f"gated_ops_saved.{g.kind}"] = gs.gated_ops_saved
            out[f"gate_ops.{g.kind}"] = gs.gate_ops
        return out

    def dense_macs_per_bin(self, spec: StreamSpec | None = None) -> int:
        """MACs of one 1 ms clock step of the same network: Σ layers (outputs × fan-in)."""
        if spec is not None:
            self._input_kind(spec)
        return dense_macs_per_bin_of(self.layers, self.input_shape)

    def potentials(self, state: NetworkState, layer: str, t_us: int) -> np.ndarray:
        """Membrane potentials of ``layer`` at stream time ``t_us`` (exact decay), in the layer's shape.

        ``t_us`` must not precede the layer's last processed event (state only moves forward)."""
        c = self._c
        if layer not in c.names:
            raise KeyError(f"network '{self.name}' has no neuron layer '{layer}'; layers: {list(c.names)}")
        i = c.names.index(layer)
        d = c.desc[i]
        off, n = int(d[sk.D_U_OFF]), int(d[sk.D_N])
        u = state.u[off: off + n].astype(np.float64)
        tau = float(c.fpar[i, sk.F_TAU])
        mode = int(d[sk.D_DECAY])
        if mode == sk.DECAY_FRAME:
            u *= math.exp(-(t_us - state.lstate[i, sk.S_TREF]) / tau)
        elif mode in (sk.DECAY_EXP, sk.DECAY_LUT):
            u *= np.exp(-(t_us - state.tl[off: off + n]) / tau)
        oc, oh, ow = int(d[sk.D_OUT_C]), int(d[sk.D_OUT_H]), int(d[sk.D_OUT_W])
        shape = self.shapes[1 + [x.name for x in self.layers].index(layer)]
        return u.reshape(oh, ow, oc).transpose(2, 0, 1).reshape(shape)


def _grid3(shape) -> tuple[int, int, int]:
    if len(shape) == 3:
        return tuple(int(s) for s in shape)
    if len(shape) == 2:
        return int(shape[0]), 1, int(shape[1])
    return 1, 1, int(shape[0])


_EMPTY_SPIKES = np.empty(0, SPIKE_EVENT)
_EMPTY_SPIKES.flags.writeable = False


def _empty_like_spec(spec: StreamSpec) -> np.ndarray:
    ev = np.empty(0, spec.dtype)
    return ev
