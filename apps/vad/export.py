"""Write the trained VAD network as a network file (placeholder until graphs/network.py lands)."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import numpy as np


def save_network(path: Path, net, frontend, info: dict) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez(path, w1=net.w1.detach().numpy().T.astype(np.float32), r=net.r.detach().numpy().T.astype(np.float32),
             w2=net.w2.detach().numpy().T.astype(np.float32))
    meta = {"config": asdict(net.cfg), "frontend": asdict(frontend), "train": info}
    path.with_suffix(".json").write_text(json.dumps(meta, indent=1))
