"""Named graphs that ``clockless graph show NAME`` and the apps can build.

Each entry names a module with ``build_default() -> runtime.graph.Graph`` (a graph on its built-in input).
"""

from __future__ import annotations

import importlib

from runtime.errors import GraphError
from runtime.graph import Graph

__all__ = ["GRAPHS", "get_graph", "available_graphs"]

GRAPHS = {
    "passthrough": ("graphs.passthrough", "the runtime benchmark's 5-stage pass-through graph"),
    "gesture": ("graphs.gesture", "gesture recognition: DVS events → gates → SNN → early decisions"),
    "vad": ("graphs.vad", "voice activity detection: audio → spiking front end → SNN → speech segments"),
}


def available_graphs() -> dict[str, str]:
    out = {}
    for name, (module, text) in GRAPHS.items():
        try:
            importlib.import_module(module)
        except ModuleNotFoundError as exc:
            if exc.name != module:
                raise
            continue
        out[name] = text
    return out


def get_graph(name: str) -> Graph:
    avail = available_graphs()
    if name not in avail:
        raise GraphError(f"no graph named '{name}'; available: {', '.join(avail) or 'none'}")
    return importlib.import_module(GRAPHS[name][0]).build_default()
