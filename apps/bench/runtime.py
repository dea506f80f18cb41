"""Runtime overhead: a 5-stage pass-through graph against bare trio channels, at several packet sizes.

Baseline: the same 5 pass-through hops written directly with trio memory channels (``await send`` / ``async for``),
the way a trio program would be written without clockless. Both move the same pre-built packets, so only the
runtime's cost is compared. ``fused`` runs the linear chain in one task (the default); ``unfused`` gives every
node its own task and channel, like the baseline.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import trio

from runtime.events import DVS_EVENT
from runtime.executor import run as run_graph
from runtime.graph import Graph
from runtime.packet import Packet
from runtime.sources import IterSource
from runtime.spec import dvs_spec
from runtime.stages import CountSink, Identity

from . import median_spread

SIZES = (1, 64, 1024, 16384)
N_STAGES = 5


def _packets(size: int, n_packets: int) -> list[Packet]:
    rng = np.random.default_rng(size)
    out = []
    for i in range(n_packets):
        ev = np.zeros(size, dtype=DVS_EVENT)
        ev["x"] = rng.integers(0, 128, size)
        ev["t"] = i * 1000 + np.sort(rng.integers(0, 1000, size))
        ev.flags.writeable = False
        out.append(Packet(ev, (i + 1) * 1000))
    return out


def _graph(packets: list[Packet], n_stages: int) -> Graph:
    g = Graph(f"passthrough{n_stages}")
    s = g.source("src", IterSource(dvs_spec(128, 128), lambda: iter(packets)))
    for i in range(n_stages):
        s = g.stage(f"id{i}", Identity(), s)
    g.sink("out", CountSink(), s)
    return g


def _run_graph(packets: list[Packet], n_stages: int, fuse: bool) -> float:
    return run_graph(_graph(packets, n_stages), fuse=fuse)["wall_s"]


def _run_bare(packets: list[Packet], n_stages: int) -> float:
    import time

    async def main() -> float:
        chans = [trio.open_memory_channel(16) for _ in range(n_stages + 1)]

        async def source(send):
            async with send:
                for p in packets:
                    await send.send(p)

        async def hop(recv, send):
            async with recv, send:
                async for p in recv:
                    await send.send(p)

        async def sink(recv):
            n = 0
            async with recv:
                async for p in recv:
                    n += p.events.shape[0]
            return n

        t0 = time.perf_counter_ns()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(source, chans[0][0])
            for i in range(n_stages):
                nursery.start_soon(hop, chans[i][1], chans[i + 1][0])
            nursery.start_soon(sink, chans[n_stages][1])
        return (time.perf_counter_ns() - t0) / 1e9

    return trio.run(main)


def run_suite(quick: bool = False, plots_dir: Path | None = None, *, sizes: tuple[int, ...] = SIZES,
              budget: int | None = None, repeats: int | None = None) -> dict:
    repeats = repeats or (3 if quick else 5)
    budget = budget or (2_000 if quick else 20_000)  # packets at size 1; fewer at bigger sizes
    rows = []
    for size in sizes:
        n_packets = max(min(budget, 50 if quick else 400), min(budget, int(budget * 64 / max(size, 64))))
        counted = run_graph(_graph(_packets(size, 3), N_STAGES))["nodes"]["out"]["events_in"]
        if counted != 3 * size:
            raise RuntimeError(f"bench runtime: the pass-through graph delivered {counted} of {3 * size} events")
        packets = _packets(size, n_packets)
        samples = {k: [] for k in ("bare", "bare0", "fused", "unfused", "graph0")}
        _run_graph(packets[:10], N_STAGES, True)  # warm-up
        for _ in range(repeats):
            samples["bare"].append(_run_bare(packets, N_STAGES))
            samples["bare0"].append(_run_bare(packets, 0))
            samples["fused"].append(_run_graph(packets, N_STAGES, True))
            samples["unfused"].append(_run_graph(packets, N_STAGES, False))
            samples["graph0"].append(_run_graph(packets, 0, True))
        med = {k: median_spread(v) for k, v in samples.items()}
        events = size * n_packets
        per_stage_us = lambda a, b: max(0.0, (med[a][0] - med[b][0]) / (n_packets * N_STAGES) * 1e6)  # noqa: E731
        rows.append({
            "packet_events": size,
            "packets": n_packets,
            "bare_events_per_s": events / med["bare"][0],
            "fused_events_per_s": events / med["fused"][0],
            "unfused_events_per_s": events / med["unfused"][0],
            "fused_vs_bare": med["fused"][0] / med["bare"][0],
            "unfused_vs_bare": med["unfused"][0] / med["bare"][0],
            "bare_us_per_packet_per_stage": per_stage_us("bare", "bare0"),
            "fused_us_per_packet_per_stage": per_stage_us("fused", "graph0"),
            "unfused_us_per_packet_per_stage": per_stage_us("unfused", "graph0"),
            "spread": {k: round(v[1], 3) for k, v in med.items()},
        })
    _print(rows, repeats)
    return {"stages": N_STAGES, "repeats": repeats, "rows": rows,
            "goals": {"vs_bare_max": 1.5, "us_per_packet_per_stage_max": 25, "events_per_s_at_16k_min": 100e6}}


def _print(rows: list[dict], repeats: int) -> None:
    from rich.console import Console
    from rich.table import Table

    t = Table(title=f"runtime: {N_STAGES}-stage pass-through vs bare trio channels (median of {repeats})")
    for col in ("packet", "bare ev/s", "fused ev/s", "unfused ev/s", "fused/bare time", "unfused/bare time",
                "µs/pkt/stage bare", "fused", "unfused", "spread"):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(
            str(r["packet_events"]),
            f"{r['bare_events_per_s']:,.0f}",
            f"{r['fused_events_per_s']:,.0f}",
            f"{r['unfused_events_per_s']:,.0f}",
            f"{r['fused_vs_bare']:.2f}×",
            f"{r['unfused_vs_bare']:.2f}×",
            f"{r['bare_us_per_packet_per_stage']:.2f}",
            f"{r['fused_us_per_packet_per_stage']:.2f}",
            f"{r['unfused_us_per_packet_per_stage']:.2f}",
            f"{max(r['spread'].values()):.0%}",
        )
    Console(width=200).print(t)
    print("time ratios < 1 mean clockless is faster than bare channels; goal ≤ 1.5× everywhere, "
          "≤ 25 µs per packet per stage, ≥ 100 M events/s at 16k-event packets")


run = run_suite
