"""Write a trained VAD network as a clockless network file (``graphs.network``: ``NAME.json`` + ``NAME.npz``).

The topology's ``meta.vad`` carries what the graph needs besides the weights: the front-end settings the network
was trained on and the segmenter's constants (its trace time constant and scale are the training loss's).
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

__all__ = ["save_network", "vad_topology", "DEFAULT_SEGMENTER"]

DEFAULT_SEGMENTER = {"on": 0.5, "off": 0.3, "hangover_us": 200_000, "onset_lead_us": 40_000}


def vad_topology(cfg, frontend, info: dict | None = None, segmenter: dict | None = None) -> dict:
    """Topology dict of the VAD network: LIF hidden layer(s) → LIF readout population."""
    from .model import layer_names

    layers = []
    sizes = cfg.sizes
    names = layer_names(cfg)
    if cfg.integrator_readout:  # the sink runs the leaky-integrator readout; the engine ends at the hidden layer
        names = names[:-1]
    for li, name in enumerate(names):
        d = {"name": name, "type": "linear", "in_features": sizes[li], "out_features": sizes[li + 1],
             "neuron": {"model": "lif", "tau_us": float(cfg.tau_us[li]), "threshold": float(cfg.threshold),
                        "reset": cfg.reset[li], "refractory_us": 0}}
        if cfg.recurrent[li]:
            d.update(recurrent=True, recurrent_delay_us=int(cfg.bin_us))
        layers.append(d)
    return {
        "format": "clockless.snn", "version": 1, "name": "vad",
        "input": {"shape": [cfg.inputs]},  # cochlea events, address p · channels + x
        "decay": "frame", "bin_us": int(cfg.bin_us),
        "labels": [] if cfg.integrator_readout else [f"speech{k}" for k in range(cfg.readout)],
        "layers": layers,
        "meta": {
            "vad": {"frontend": asdict(frontend), "segmenter": {**_readout_defaults(cfg), **(segmenter or {})}},
            "train": info or {},
        },
    }


def _readout_defaults(cfg) -> dict:
    if cfg.integrator_readout:
        return {"tau_us": float(cfg.tau_us[-1]), **DEFAULT_SEGMENTER}
    return {"tau_us": float(cfg.tau_y_us), "y_scale": float(cfg.y_scale), **DEFAULT_SEGMENTER}


def save_network(path: Path, net, frontend, info: dict, segmenter: dict | None = None) -> tuple[Path, Path]:
    """``net``: an ``apps.vad.model.SnnVad``; weights are written in the engine's (out, in) / [to, from]. An
    integrator readout goes to the segmenter's settings (weights, bias, time constant), not to the engine."""
    from graphs.network import save_network as write

    from .model import layer_names

    arrays = {}
    seg = dict(segmenter or {})
    for name, (w, r) in zip(layer_names(net.cfg), net.layer_weights()):
        if name == "readout" and net.cfg.integrator_readout:
            seg.setdefault("readout_weights", [float(v) for v in w.sum(axis=0)])
            seg.setdefault("bias", float(net.bias.detach()))
            continue
        arrays[f"{name}.weight"] = w
        if r is not None:
            arrays[f"{name}.recurrent_weight"] = r
    if "readout_weights" in seg:
        seg["readout_weights"] = [float(v) for v in seg["readout_weights"]]
    return write(vad_topology(net.cfg, frontend, info, seg), Path(path), arrays)


def load_snn(path: Path):
    """The trainable ``SnnVad`` of a VAD network file written by ``save_network`` (inverse of it: the engine's
    (out, in) / [to, from] weights transposed back, the sink's integrator readout back into the last layer), with
    its front end and the file's ``meta.train``. Used to re-tune a network's segmenter without training it again."""
    import numpy as np
    import torch

    from graphs.vad import load_vad
    from runtime.errors import FormatError

    from .model import SnnVad, VadConfig

    model = load_vad(path)
    seg = model.segmenter
    layers = model.network.layers
    where = Path(path).with_suffix(".json")
    if "readout_weights" not in seg or "bias" not in seg:
        raise FormatError(where, "field 'meta.vad.segmenter' has no integrator readout ('readout_weights', 'bias'): "
                                 "only networks with a leaky-integrator readout can be re-tuned")
    recurrent = [getattr(layer, "recurrent_weight", None) is not None for layer in layers]
    cfg = VadConfig(inputs=int(layers[0].weight.shape[1]), hidden=tuple(int(layer.weight.shape[0]) for layer in layers),
                    readout=1, tau_us=(*(float(layer.neuron.tau_us) for layer in layers), float(seg["tau_us"])),
                    recurrent=(*recurrent, False), reset=(*(layer.neuron.reset for layer in layers), "none"),
                    threshold=float(layers[0].neuron.threshold), bin_us=int(model.frontend.frame_us))
    net = SnnVad(cfg)
    arrays = []
    for layer in layers:
        arrays.append(np.asarray(layer.weight, np.float64).T)
        if getattr(layer, "recurrent_weight", None) is not None:
            arrays.append(np.asarray(layer.recurrent_weight, np.float64).T)
    arrays.append(np.asarray(seg["readout_weights"], np.float64)[:, None])
    with torch.no_grad():
        for p, a in zip(net.weights, arrays):
            if tuple(p.shape) != a.shape:
                raise FormatError(where, f"weight of shape {a.shape} where the topology needs {tuple(p.shape)}")
            p.copy_(torch.from_numpy(np.ascontiguousarray(a)))
        net.bias.fill_(float(seg["bias"]))
    return net, model.frontend, dict(model.meta.get("train", {}))
