"""Measure clockless on this machine, side by side with its baselines, in one run.

Suites: runtime (executor overhead vs bare trio channels), decode (file readers vs faery/aedat/expelliarmus),
peers (the same SNN in snnTorch, Sinabs and a torch loop, clock-driven at 1 ms),
emulator (frames/s, ns per pixel), snn (event-driven engine vs the same network clock-driven), gesture, vad
(accuracy, ops and speed vs WebRTC VAD and Silero), idle (the cost of silence), or all. Every comparison is a
ratio measured in the same run; medians of repeats, spread printed. Bench runs never gate CI.
The JSON (``--json``) has one section per suite, plus ``schema_version`` and ``provenance``.
"""

from __future__ import annotations

import importlib
import json
import time
from pathlib import Path

from runtime.report import provenance

from .bench import SUITES

EXAMPLE = "clockless bench runtime snn --json bench.json --plots plots/"
BENCH_SCHEMA_VERSION = 1


def add_arguments(p) -> None:
    p.add_argument("suites", nargs="*", default=["all"], metavar="SUITE", help=f"one or more of {', '.join(SUITES)}, all")
    p.add_argument("--json", metavar="PATH", help="write the results as JSON")
    p.add_argument("--plots", metavar="DIR", help="write PNG plots into DIR")
    p.add_argument("--quick", action="store_true", help="smaller inputs and fewer repeats (smoke run)")


def run(args) -> int:
    names = list(SUITES) if "all" in args.suites else args.suites
    unknown = [n for n in names if n not in SUITES]
    if unknown:
        from runtime.errors import ClocklessError

        raise ClocklessError(f"unknown bench suite(s) {unknown}; choose from {', '.join(SUITES)} or all")
    plots = Path(args.plots) if args.plots else None
    if plots:
        plots.mkdir(parents=True, exist_ok=True)
    out = {"schema_version": BENCH_SCHEMA_VERSION, "provenance": provenance(), "quick": bool(args.quick), "suites": {}}
    for name in names:
        try:
            module = importlib.import_module(f"apps.bench.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"apps.bench.{name}":
                raise
            print(f"[{name}] not available in this build")
            out["suites"][name] = {"available": False}
            continue
        print(f"\n== bench {name} ==")
        t0 = time.perf_counter()
        section = module.run(args.quick, plots)
        section["suite_wall_s"] = round(time.perf_counter() - t0, 2)
        out["suites"][name] = section
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2, default=_default) + "\n")
        print(f"\nwrote {args.json}")
    return 0


def _default(o):
    import numpy as np

    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    return str(o)
