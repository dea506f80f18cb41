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
    """Topology dict of the VAD network: recurrent LIF hidden layer → LIF readout population (reset to zero)."""

    def lif(tau_us: float, th: float) -> dict:
        return {"model": "lif", "tau_us": float(tau_us), "threshold": float(th), "reset": "zero", "refractory_us": 0}

    return {
        "format": "clockless.snn", "version": 1, "name": "vad",
        "input": {"shape": [cfg.inputs]},  # cochlea events, address p · channels + x
        "decay": "frame", "bin_us": int(cfg.bin_us), "labels": [f"speech{k}" for k in range(cfg.readout)],
        "layers": [
            {"name": "hidden", "type": "linear", "in_features": cfg.inputs, "out_features": cfg.hidden,
             "recurrent": True, "recurrent_delay_us": int(cfg.bin_us), "neuron": lif(cfg.tau1_us, cfg.th1)},
            {"name": "readout", "type": "linear", "in_features": cfg.hidden, "out_features": cfg.readout,
             "neuron": lif(cfg.tau2_us, cfg.th2)},
        ],
        "meta": {
            "vad": {"frontend": asdict(frontend),
                    "segmenter": {"tau_us": float(cfg.tau_y_us), "y_scale": float(cfg.y_scale),
                                  **DEFAULT_SEGMENTER, **(segmenter or {})}},
            "train": info or {},
        },
    }


def save_network(path: Path, net, frontend, info: dict, segmenter: dict | None = None) -> tuple[Path, Path]:
    """``net``: an ``apps.vad.model.SnnVad`` (torch layouts (in, out)), written in the engine's (out, in)."""
    from graphs.network import save_network as write

    arrays = {
        "hidden.weight": net.w1.detach().numpy().T,
        "hidden.recurrent_weight": net.r.detach().numpy().T,  # [to, from]
        "readout.weight": net.w2.detach().numpy().T,
    }
    return write(vad_topology(net.cfg, frontend, info, segmenter), Path(path), arrays)
