"""``clockless bench`` suites. Each suite module has ``run(quick: bool, plots_dir: Path | None) -> dict``: it prints
its own table and returns its section of the bench JSON. Every comparison is measured side by side in one run."""

from __future__ import annotations

import statistics
import time
from typing import Callable

__all__ = ["SUITES", "median_spread", "time_repeats"]

SUITES = ("runtime", "decode", "emulator", "snn", "peers", "gesture", "vad", "idle")


def time_repeats(fn: Callable[[], object], repeats: int, warmup: int = 1) -> list[float]:
    """Wall seconds of ``repeats`` calls after ``warmup`` untimed calls."""
    for _ in range(warmup):
        fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def median_spread(samples: list[float]) -> tuple[float, float]:
    """Median and relative spread ((max − min) / median) of timing samples."""
    med = statistics.median(samples)
    return med, ((max(samples) - min(samples)) / med if med > 0 else 0.0)
