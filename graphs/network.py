"""Network files: a JSON topology plus an ``.npz`` of weights, loaded into a ``runtime.engine.Network`` stage.

Format (``NAME.json`` beside ``NAME.npz``; version 1)::

    {
      "format": "clockless.snn", "version": 1, "name": "gesture",
      "input": {"shape": [2, 64, 64]},          # (C, H, W) or (N,); DVS: C = polarity; audio: (2, channels)
      "decay": "frame",                          # "frame" (default) | "exp" | "lut": how LIF decay is computed
      "bin_us": 1000,                            # clock of the PyTorch mirror that trained it (1 ms default)
      "labels": ["swipe_left", ...],             # optional: names of the output neurons
      "input_gates": [                           # optional, applied in order before the first layer
        {"type": "spatial", "tile_px": 8, "tau_us": 20000, "min_activity": 1.0, "rel_threshold": 0.5,
         "tile_weight": true},                  # true: array "input_gates.spatial.tile_weight" in the npz
        {"type": "temporal", "window_us": 2000, "min_events": 2, "rel_threshold": 0.0, "ema_windows": 50}
      ],
      "input_gain": {"ref_rate_hz": 8000, "tau_us": 500000,   # optional: the first layer's input weighted by
                     "window_us": 50000,                      # the recent input rate (runtime.engine.InputGain)
                     "min_gain": 0.5, "max_gain": 8.0},
      "layers": [
        {"name": "conv1", "type": "conv2d", "in_channels": 2, "out_channels": 8, "kernel_size": [5, 5],
         "stride": [2, 2], "padding": [2, 2], "delay_us": 0,
         "neuron": {"model": "lif", "tau_us": 20000, "threshold": 1.0, "reset": "subtract", "refractory_us": 0},
         "channel_gate": {"tau_us": 50000}},   # arrays "conv1.gate_weight", "conv1.gate_bias"
        {"name": "pool1", "type": "sumpool2d", "kernel_size": [2, 2], "stride": [2, 2], "neuron": null},
        {"name": "flat", "type": "flatten"},
        {"name": "fc1", "type": "linear", "in_features": 512, "out_features": 64, "recurrent": true,
         "recurrent_delay_us": 1000, "neuron": {"model": "iaf", "threshold": 1.0}}
      ],
      "meta": {}                                 # free-form (training provenance, accuracy...)
    }

Arrays in the npz: ``LAYER.weight`` (conv ``(out, in, kh, kw)``, linear ``(out, in)``, float32),
``LAYER.recurrent_weight`` (``(out, out)``: ``[to, from]``), ``LAYER.gate_weight`` / ``LAYER.gate_bias`` (per
output channel), ``input_gates.spatial.tile_weight`` (``(tiles_y, tiles_x)``). No biases: a constant current would
need a clock. The PyTorch mirror (``apps.training.torch_snn``) uses the same names prefixed with ``layers.``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np

from runtime.engine.gain import InputGain
from runtime.engine.gates import SpatialGate, TemporalGate
from runtime.engine.layers import ChannelGate, Conv2d, Flatten, Linear, Neuron, SumPool2d
from runtime.engine.network import Network
from runtime.errors import FormatError

__all__ = [
    "FORMAT", "VERSION", "load_network", "save_network", "network_from_topology", "network_to_topology",
    "network_from_state_dict", "normalize_topology", "read_topology",
]

FORMAT = "clockless.snn"
VERSION = 1


def _paths(path) -> tuple[Path, Path]:
    p = Path(path)
    if p.suffix in (".json", ".npz"):
        p = p.with_suffix("")
    return p.with_suffix(".json"), p.with_suffix(".npz")


def read_topology(path) -> dict:
    """The JSON topology of a network file (``NAME.json``, ``NAME.npz`` or ``NAME``)."""
    jpath, _ = _paths(path)
    try:
        text = jpath.read_text()
    except FileNotFoundError:
        raise FormatError(jpath, "network topology file not found (a network is NAME.json + NAME.npz)") from None
    try:
        topo = json.loads(text)
    except json.JSONDecodeError as exc:
        raise FormatError(jpath, f"not valid JSON: {exc}") from None
    return normalize_topology(topo, where=str(jpath))


def _req(d: Mapping, key: str, where: str):
    if key not in d:
        raise FormatError(where, f"missing field '{key}' (have {sorted(d)})")
    return d[key]


def _pair(v, where: str, key: str) -> list[int]:
    if isinstance(v, (int, np.integer)):
        return [int(v), int(v)]
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(isinstance(x, (int, np.integer)) for x in v):
        raise FormatError(where, f"field '{key}' must be an int or [int, int], got {v!r}")
    return [int(v[0]), int(v[1])]


def _neuron(d, where: str) -> dict | None:
    if d is None:
        return None
    if not isinstance(d, Mapping):
        raise FormatError(where, f"field 'neuron' must be an object or null, got {d!r}")
    model = d.get("model", "lif" if d.get("tau_us") is not None else "iaf")
    if model not in ("iaf", "lif"):
        raise FormatError(where, f"neuron field 'model' must be 'iaf' or 'lif', got {model!r}")
    out = {
        "model": model,
        "threshold": float(d.get("threshold", 1.0)),
        "tau_us": None if model == "iaf" else float(_req(d, "tau_us", where + " neuron")),
        "reset": d.get("reset", "subtract"),
        "refractory_us": int(d.get("refractory_us", 0)),
    }
    if out["reset"] not in ("subtract", "zero"):
        raise FormatError(where, f"neuron field 'reset' must be 'subtract' or 'zero', got {out['reset']!r}")
    return out


def normalize_topology(topo: Mapping[str, Any], where: str = "topology") -> dict:
    """Check a topology dict and fill in defaults; raises FormatError naming the field."""
    if not isinstance(topo, Mapping):
        raise FormatError(where, f"expected a JSON object, got {type(topo).__name__}")
    fmt = topo.get("format", FORMAT)
    if fmt != FORMAT:
        raise FormatError(where, f"field 'format' must be {FORMAT!r}, got {fmt!r}")
    version = int(topo.get("version", VERSION))
    if version != VERSION:
        raise FormatError(where, f"field 'version' is {version}; this clockless reads version {VERSION}")
    inp = _req(topo, "input", where)
    shape = _req(inp, "shape", where + " input")
    if not isinstance(shape, (list, tuple)) or not 1 <= len(shape) <= 3 or not all(int(s) > 0 for s in shape):
        raise FormatError(where, f"input field 'shape' must be [C, H, W], [C, N] or [N], got {shape!r}")
    out = {
        "format": FORMAT,
        "version": VERSION,
        "name": str(topo.get("name", "snn")),
        "input": {**dict(inp), "shape": [int(s) for s in shape]},
        "decay": topo.get("decay", "frame"),
        "bin_us": int(topo.get("bin_us", 1000)),
        "labels": [str(x) for x in topo.get("labels", [])],
        "input_gates": [],
        "layers": [],
        "meta": dict(topo.get("meta", {})),
    }
    gain = topo.get("input_gain")
    if gain is not None:
        if not isinstance(gain, Mapping):
            raise FormatError(where, f"field 'input_gain' must be an object or null, got {gain!r}")
        try:
            out["input_gain"] = InputGain(**{k: (v if k == "count" else float(v)) for k, v in gain.items()}).to_dict()
        except (TypeError, ValueError) as exc:
            raise FormatError(where, f"field 'input_gain': {exc}") from None
    if out["decay"] not in ("frame", "exp", "lut"):
        raise FormatError(where, f"field 'decay' must be 'frame', 'exp' or 'lut', got {out['decay']!r}")
    for i, g in enumerate(topo.get("input_gates", [])):
        gw = f"{where} input_gates[{i}]"
        kind = _req(g, "type", gw)
        if kind == "temporal":
            out["input_gates"].append({
                "type": "temporal", "window_us": int(g.get("window_us", 2000)), "min_events": int(g.get("min_events", 2)),
                "rel_threshold": float(g.get("rel_threshold", 0.0)), "ema_windows": float(g.get("ema_windows", 50.0)),
            })
        elif kind == "spatial":
            out["input_gates"].append({
                "type": "spatial", "tile_px": int(g.get("tile_px", 8)), "tau_us": float(g.get("tau_us", 20000.0)),
                "min_activity": float(g.get("min_activity", 1.0)), "rel_threshold": float(g.get("rel_threshold", 0.5)),
                "tile_weight": bool(g.get("tile_weight", False)),
            })
        else:
            raise FormatError(gw, f"field 'type' must be 'temporal' or 'spatial', got {kind!r}")
    layers = _req(topo, "layers", where)
    if not isinstance(layers, list) or not layers:
        raise FormatError(where, "field 'layers' must be a non-empty list")
    names = set()
    for i, layer in enumerate(layers):
        lw = f"{where} layers[{i}]"
        kind = _req(layer, "type", lw)
        name = str(layer.get("name", f"{kind}{i}"))
        if name in names:
            raise FormatError(lw, f"layer name {name!r} is used twice")
        names.add(name)
        lw = f"{where} layer '{name}'"
        d: dict[str, Any] = {"name": name, "type": kind, "delay_us": int(layer.get("delay_us", 0))}
        if kind == "conv2d":
            d.update(
                in_channels=int(_req(layer, "in_channels", lw)), out_channels=int(_req(layer, "out_channels", lw)),
                kernel_size=_pair(_req(layer, "kernel_size", lw), lw, "kernel_size"),
                stride=_pair(layer.get("stride", 1), lw, "stride"), padding=_pair(layer.get("padding", 0), lw, "padding"),
                neuron=_neuron(layer.get("neuron", {}), lw),
            )
            if d["neuron"] is None:
                raise FormatError(lw, "conv2d needs a neuron (graded outputs are not events)")
        elif kind == "linear":
            d.update(
                in_features=int(_req(layer, "in_features", lw)), out_features=int(_req(layer, "out_features", lw)),
                recurrent=bool(layer.get("recurrent", False)),
                recurrent_delay_us=int(layer.get("recurrent_delay_us", out["bin_us"])),
                neuron=_neuron(layer.get("neuron", {}), lw),
            )
            if d["neuron"] is None:
                raise FormatError(lw, "linear needs a neuron (graded outputs are not events)")
        elif kind == "sumpool2d":
            k = _pair(_req(layer, "kernel_size", lw), lw, "kernel_size")
            d.update(kernel_size=k, stride=_pair(layer.get("stride", k), lw, "stride"),
                     neuron=_neuron(layer.get("neuron"), lw))
        elif kind == "flatten":
            pass
        else:
            raise FormatError(lw, f"field 'type' must be conv2d, linear, sumpool2d or flatten, got {kind!r}")
        cg = layer.get("channel_gate")
        if cg is not None:
            if kind not in ("conv2d", "linear"):
                raise FormatError(lw, f"field 'channel_gate' is allowed on conv2d and linear layers, not {kind}")
            d["channel_gate"] = {"tau_us": float(cg.get("tau_us", 50_000.0))}
        out["layers"].append(d)
    return out


def _array(arrays: Mapping[str, Any], key: str, where: str, shape: tuple | None = None) -> np.ndarray:
    for k in (key, "layers." + key):
        if k in arrays:
            a = arrays[k]
            if hasattr(a, "detach"):
                a = a.detach().cpu().numpy()
            a = np.asarray(a)
            if shape is not None and tuple(a.shape) != tuple(shape):
                raise FormatError(where, f"array '{key}' has shape {tuple(a.shape)}, expected {tuple(shape)}")
            return a
    raise FormatError(where, f"missing array '{key}' (have {sorted(arrays)[:12]}...)")


def network_from_topology(topo: Mapping[str, Any], arrays: Mapping[str, Any], where: str = "network") -> Network:
    """Build the engine's ``Network`` from a topology dict and its arrays (npz contents or a state dict)."""
    topo = normalize_topology(topo, where)
    layers = []
    for d in topo["layers"]:
        lw = f"{where} layer '{d['name']}'"
        nd = d.get("neuron")
        neuron = None if nd is None else Neuron(nd["threshold"], nd["tau_us"], nd["reset"], nd["refractory_us"])
        kind = d["type"]
        gate = None
        if "channel_gate" in d:
            c = d["out_channels"] if kind == "conv2d" else d["out_features"]
            gw = _array(arrays, f"{d['name']}.gate_weight", lw, (c,))
            gb = _array(arrays, f"{d['name']}.gate_bias", lw, (c,))
            gate = ChannelGate(d["channel_gate"]["tau_us"], gw, gb)
        try:
            if kind == "conv2d":
                w = _array(arrays, f"{d['name']}.weight", lw,
                           (d["out_channels"], d["in_channels"], *d["kernel_size"]))
                layers.append(Conv2d(d["name"], w, tuple(d["stride"]), tuple(d["padding"]), neuron, d["delay_us"], gate))
            elif kind == "linear":
                w = _array(arrays, f"{d['name']}.weight", lw, (d["out_features"], d["in_features"]))
                rw = None
                if d["recurrent"]:
                    n = d["out_features"]
                    rw = _array(arrays, f"{d['name']}.recurrent_weight", lw, (n, n))
                layers.append(Linear(d["name"], w, neuron, rw, d["recurrent_delay_us"], d["delay_us"], gate))
            elif kind == "sumpool2d":
                layers.append(SumPool2d(d["name"], tuple(d["kernel_size"]), tuple(d["stride"]), neuron, d["delay_us"],
                                        gate))
            else:
                layers.append(Flatten(d["name"]))
        except ValueError as exc:
            raise FormatError(lw, str(exc)) from None
    gates = []
    for g in topo["input_gates"]:
        if g["type"] == "temporal":
            gates.append(TemporalGate(g["window_us"], g["min_events"], g["rel_threshold"], g["ema_windows"]))
        else:
            tw = _array(arrays, "input_gates.spatial.tile_weight", where) if g["tile_weight"] else None
            gates.append(SpatialGate(g["tile_px"], g["tau_us"], g["min_activity"], g["rel_threshold"], tw))
    try:
        gain = InputGain(**topo["input_gain"]) if topo.get("input_gain") else None
        return Network(tuple(layers), tuple(topo["input"]["shape"]), topo["name"], topo["decay"], tuple(gates),
                       tuple(topo["labels"]), meta={"bin_us": topo["bin_us"], **topo["meta"]}, input_gain=gain)
    except ValueError as exc:
        raise FormatError(where, str(exc)) from None


def network_from_state_dict(topo: Mapping[str, Any], state_dict: Mapping[str, Any]) -> Network:
    """Load the PyTorch mirror's ``state_dict()`` (keys ``layers.NAME.weight`` ...) with its topology."""
    return network_from_topology(topo, state_dict, where="state dict")


def network_to_topology(net: Network, *, bin_us: int | None = None, meta: Mapping | None = None
                        ) -> tuple[dict, dict[str, np.ndarray]]:
    """The topology dict and arrays that ``save_network`` writes for ``net``."""
    layers, arrays = [], {}
    shapes = net.shapes
    for layer, s_in in zip(net.layers, shapes[:-1]):
        d: dict[str, Any] = {"name": layer.name, "type": layer.kind}
        if layer.delay_us:
            d["delay_us"] = int(layer.delay_us)
        if isinstance(layer, Conv2d):
            o, c, kh, kw = layer.weight.shape
            d.update(in_channels=c, out_channels=o, kernel_size=[kh, kw], stride=list(layer.stride),
                     padding=list(layer.padding))
            arrays[f"{layer.name}.weight"] = np.asarray(layer.weight, np.float32)
        elif isinstance(layer, Linear):
            d.update(in_features=int(layer.weight.shape[1]), out_features=int(layer.weight.shape[0]))
            arrays[f"{layer.name}.weight"] = np.asarray(layer.weight, np.float32)
            if layer.recurrent_weight is not None:
                d.update(recurrent=True, recurrent_delay_us=int(layer.recurrent_delay_us))
                arrays[f"{layer.name}.recurrent_weight"] = np.asarray(layer.recurrent_weight, np.float32)
        elif isinstance(layer, SumPool2d):
            d.update(kernel_size=list(layer.kernel_size), stride=list(layer.stride))
        if not isinstance(layer, Flatten):
            n = layer.neuron
            d["neuron"] = None if n is None else {
                "model": n.model, "threshold": n.threshold, "tau_us": n.tau_us, "reset": n.reset,
                "refractory_us": int(n.refractory_us),
            }
        if layer.channel_gate is not None:
            d["channel_gate"] = {"tau_us": layer.channel_gate.tau_us}
            arrays[f"{layer.name}.gate_weight"] = np.asarray(layer.channel_gate.weight, np.float32)
            arrays[f"{layer.name}.gate_bias"] = np.asarray(layer.channel_gate.bias, np.float32)
        layers.append(d)
    gates = []
    for g in net.input_gates:
        if isinstance(g, TemporalGate):
            gates.append({"type": "temporal", "window_us": g.window_us, "min_events": g.min_events,
                          "rel_threshold": g.rel_threshold, "ema_windows": g.ema_windows})
        else:
            gates.append({"type": "spatial", "tile_px": g.tile_px, "tau_us": g.tau_us, "min_activity": g.min_activity,
                          "rel_threshold": g.rel_threshold, "tile_weight": g.tile_weight is not None})
            if g.tile_weight is not None:
                arrays["input_gates.spatial.tile_weight"] = np.asarray(g.tile_weight, np.float32)
    m = dict(net.meta)
    b = bin_us if bin_us is not None else int(m.pop("bin_us", 1000))
    m.pop("bin_us", None)
    topo = {
        "format": FORMAT, "version": VERSION, "name": net.name, "input": {"shape": list(net.input_shape)},
        "decay": net.decay, "bin_us": int(b), "labels": list(net.labels), "input_gates": gates, "layers": layers,
        "meta": {**m, **(meta or {})},
    }
    if net.input_gain is not None:
        topo["input_gain"] = net.input_gain.to_dict()
    return normalize_topology(topo), arrays


def save_network(net_or_topology, path, arrays: Mapping[str, Any] | None = None) -> tuple[Path, Path]:
    """Write ``NAME.json`` + ``NAME.npz``. Pass a ``Network``, or a topology dict with its arrays."""
    if isinstance(net_or_topology, Network):
        topo, arrs = network_to_topology(net_or_topology)
    else:
        if arrays is None:
            raise ValueError("save_network: a topology dict needs its arrays")
        topo = normalize_topology(net_or_topology)
        arrs = {k: (v.detach().cpu().numpy() if hasattr(v, "detach") else np.asarray(v)) for k, v in arrays.items()}
        network_from_topology(topo, arrs)  # refuse to write a file that would not load
    jpath, npath = _paths(path)
    jpath.parent.mkdir(parents=True, exist_ok=True)
    jpath.write_text(json.dumps(topo, indent=1) + "\n")
    np.savez_compressed(npath, **{k: np.asarray(v, np.float32) for k, v in arrs.items()})
    return jpath, npath


def load_network(path) -> Network:
    """Load ``NAME.json`` + ``NAME.npz`` (any of the three spellings) as a ``Network`` stage."""
    topo = read_topology(path)
    _, npath = _paths(path)
    try:
        with np.load(npath, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except FileNotFoundError:
        raise FormatError(npath, "network weights file not found (a network is NAME.json + NAME.npz)") from None
    except (ValueError, OSError) as exc:
        raise FormatError(npath, f"not a readable .npz: {exc}") from None
    return network_from_topology(topo, arrays, where=str(_paths(path)[0]))
