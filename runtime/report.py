"""The run report: one JSON schema for ``replay``, ``live`` and ``demo``, and its table form.

Schema (version 1; keys are a contract other tools rely on)::

    schema_version, provenance: {clockless_version, git_sha, python, machine, started_at, seed}
    graph, speed, interrupted
    input: {source, events, duration_us, sensor_size, ...source info}
    wall_s, events_per_s, realtime_factor
    latency_us: {p50, p90, p99, max, count, kind}   # kind: "latency" (paced/live) or "queueing" (--speed max)
    ops: {synaptic_ops, neuron_updates, ops_per_event, dense_macs_equivalent, gated_events, gate_ops,
          frontend_macs, energy_uj_estimate}
    nodes: {NAME: {events_in, events_out, synaptic_ops, busy_s, wakeups, drops, packets_in, packets_out,
                   queue_high_water, max_step_us, ...other counters}}
    decisions: [{t_us, label, score, onset_us}]
    segments:  [{start_us, end_us, decided_us, label}]

``energy_uj_estimate`` is an estimate with the 45 nm convention: 0.9 pJ per accumulate (synaptic and gate ops),
4.6 pJ per multiply-accumulate (front-end MACs). ``dense_macs_equivalent`` = Σ stages' MACs per 1 ms clock step ×
the number of 1 ms bins in the stream.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
import platform
import subprocess
from pathlib import Path
from typing import Any

__all__ = ["SCHEMA_VERSION", "provenance", "build_report", "format_table", "is_rise", "write_json", "PJ_PER_ACCUMULATE",
           "PJ_PER_MAC"]

SCHEMA_VERSION = 1
PJ_PER_ACCUMULATE = 0.9
PJ_PER_MAC = 4.6
BIN_US = 1000


def _version() -> str:
    try:
        from importlib.metadata import version

        return version("clockless")
    except Exception:  # not installed (running from a source tree)
        return "0+unknown"


def _git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        out = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5, check=False
        )
        return out.stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def provenance(seed: int | None = None, started_at: str | None = None) -> dict:
    return {
        "clockless_version": _version(),
        "git_sha": _git_sha(),
        "python": platform.python_version(),
        "machine": f"{platform.system()} {platform.machine()} {platform.processor() or ''}".strip(),
        "started_at": started_at or _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "seed": seed,
    }


def build_report(
    *,
    graph_name: str,
    sources: list,
    stages: dict,
    latency: Any,
    wall_s: float,
    speed: float | None,
    interrupted: bool,
    seed: int | None,
    started_at: str,
    live: bool = False,
) -> dict:
    events = sum(s.stats.events_out for s in sources)
    firsts = [s.t_first for s in sources if s.t_first is not None]
    ends = [s.last_wm for s in sources if s.last_wm is not None]
    duration_us = (max(ends) - min(firsts)) if firsts and ends else 0
    first = sources[0] if sources else None
    src_info = first.info() if first else {}
    source_name = src_info.pop("source", first.name if first else None)
    input_section = {k: v for k, v in src_info.items() if _jsonable(v)}  # extras first: ours win on a clash
    input_section.update({
        "source": source_name,
        "events": int(events),
        "duration_us": int(duration_us),
        "sensor_size": list(first.spec.shape) if first else None,
    })
    totals = {k: 0 for k in ("synaptic_ops", "neuron_updates", "gated_events", "gate_ops", "frontend_macs")}
    nodes: dict[str, dict] = {}
    dense_per_bin = 0
    for s in sources:
        c = s.counters()
        for k in totals:
            totals[k] += int(c.get(k, 0))
        nodes[s.name] = _node_entry(s.stats, c)
    for name, r in stages.items():
        c = r.counters()
        for k in totals:
            totals[k] += int(c.get(k, 0))
        dense_per_bin += r.dense_macs_per_bin()
        nodes[name] = _node_entry(r.stats, c)
    n_bins = math.ceil(duration_us / BIN_US) if duration_us > 0 else 0
    energy_pj = (totals["synaptic_ops"] + totals["gate_ops"]) * PJ_PER_ACCUMULATE + totals["frontend_macs"] * PJ_PER_MAC
    lat = latency.summary_us()
    lat["kind"] = "latency" if (speed is not None or live) else "queueing"
    report = {
        "schema_version": SCHEMA_VERSION,
        "provenance": provenance(seed, started_at),
        "graph": graph_name,
        "speed": "max" if speed is None else speed,
        "interrupted": bool(interrupted),
        "input": input_section,
        "wall_s": round(wall_s, 6),
        "events_per_s": round(events / wall_s, 1) if wall_s > 0 else None,
        "realtime_factor": round(duration_us / 1e6 / wall_s, 3) if wall_s > 0 and duration_us > 0 else None,
        "latency_us": lat,
        "ops": {
            "synaptic_ops": totals["synaptic_ops"],
            "neuron_updates": totals["neuron_updates"],
            "ops_per_event": round(totals["synaptic_ops"] / events, 3) if events else 0.0,
            "dense_macs_equivalent": int(dense_per_bin * n_bins),
            "gated_events": totals["gated_events"],
            "gate_ops": totals["gate_ops"],
            "frontend_macs": totals["frontend_macs"],
            "energy_uj_estimate": round(energy_pj * 1e-6, 6),
        },
        "nodes": nodes,
        "decisions": [],
        "segments": [],
    }
    for r in stages.values():
        if r.kind == "sink":
            for key, value in r.result().items():
                if key in ("decisions", "segments"):
                    report[key].extend(value)
                else:
                    report.setdefault("results", {}).setdefault(r.name, {})[key] = value
    return report


def _node_entry(stats, counters: dict) -> dict:
    entry = {
        "events_in": int(stats.events_in),
        "events_out": int(stats.events_out),
        "synaptic_ops": int(counters.get("synaptic_ops", 0)),
        "busy_s": round(stats.busy_ns / 1e9, 6),
        "wakeups": int(stats.wakeups),
        "drops": int(stats.drops),
        "packets_in": int(stats.packets_in),
        "packets_out": int(stats.packets_out),
        "queue_high_water": int(stats.queue_high_water),
        "max_step_us": round(stats.max_step_ns / 1000, 1),
    }
    for k, v in counters.items():
        if k not in entry and _jsonable(v):
            entry[k] = int(v) if isinstance(v, (int, float)) and float(v).is_integer() else v
    return entry


def _jsonable(v: Any) -> bool:
    try:
        json.dumps(v)
        return True
    except (TypeError, ValueError):
        return False


def write_json(report: dict, path: str | Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2, default=_default) + "\n")


def _default(o: Any):
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    raise TypeError(f"not JSON-serialisable: {type(o).__name__}")


def _fmt(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:,.3f}" if abs(v) < 1000 else f"{v:,.0f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def is_rise(decision: dict, last: dict) -> bool:
    """Whether a decision repeats its label's previous one more certainly (the same onset, a higher score: the
    gesture sink's rises) rather than starting a new gesture; ``last`` keeps each label's previous decision."""
    prev = last.get(decision["label"])
    last[decision["label"]] = decision
    return prev is not None and prev["onset_us"] == decision["onset_us"] and decision["score"] > prev["score"]


def format_table(report: dict) -> str:
    """The report as readable text (the same figures as the JSON)."""
    inp, ops, lat = report["input"], report["ops"], report["latency_us"]
    lines = [
        f"clockless run · graph {report['graph']} · speed {report['speed']}"
        + (" · INTERRUPTED (partial)" if report["interrupted"] else ""),
        f"input    {inp['source']}  events {_fmt(inp['events'])}  duration {_fmt(inp['duration_us'] / 1e6)} s  "
        f"sensor {inp['sensor_size']}",
        f"speed    wall {_fmt(report['wall_s'])} s  {_fmt(report['events_per_s'])} ev/s  "
        f"realtime x{_fmt(report['realtime_factor'])}",
        f"{lat['kind']:<8} p50 {_fmt(lat['p50'])} µs  p90 {_fmt(lat['p90'])}  p99 {_fmt(lat['p99'])}  "
        f"max {_fmt(lat['max'])}  (n={_fmt(lat['count'])})",
        f"ops      synaptic {_fmt(ops['synaptic_ops'])}  per event {_fmt(ops['ops_per_event'])}  "
        f"neuron updates {_fmt(ops['neuron_updates'])}  dense-equivalent MACs {_fmt(ops['dense_macs_equivalent'])}",
        f"         gated events {_fmt(ops['gated_events'])}  gate ops {_fmt(ops['gate_ops'])}  "
        f"front-end MACs {_fmt(ops['frontend_macs'])}  energy ≈ {_fmt(ops['energy_uj_estimate'])} µJ (estimate)",
        "",
        f"{'node':<16}{'events in':>12}{'events out':>12}{'syn ops':>14}{'busy s':>10}{'wakeups':>10}{'drops':>8}",
    ]
    for name, n in report["nodes"].items():
        lines.append(
            f"{name:<16}{_fmt(n['events_in']):>12}{_fmt(n['events_out']):>12}{_fmt(n['synaptic_ops']):>14}"
            f"{n['busy_s']:>10.3f}{_fmt(n['wakeups']):>10}{_fmt(n['drops']):>8}"
        )
    if report["decisions"]:
        lines.append("")
        lines.append(f"{'decision t (s)':>15}  {'label':<14}{'score':>7}  onset (s)")
        last: dict = {}
        for d in report["decisions"]:
            lines.append(f"{d['t_us'] / 1e6:>15.3f}  {d['label']:<14}{d['score']:>7.2f}  {d['onset_us'] / 1e6:.3f}"
                         + ("  (rise)" if is_rise(d, last) else ""))
    if report["segments"]:
        lines.append("")
        lines.append(f"{'start (s)':>10}{'end (s)':>10}{'decided (s)':>13}  label")
        for s in report["segments"]:
            lines.append(f"{s['start_us'] / 1e6:>10.3f}{s['end_us'] / 1e6:>10.3f}{s['decided_us'] / 1e6:>13.3f}  {s['label']}")
    return "\n".join(lines)
