"""Replay a recording through an app graph and report decisions, latency and operation counts.

The input may be an event file (AEDAT4, AEDAT 2/3.1, EVT2/EVT2.1/EVT3 .raw, .dat, .es, .npy/.npz, HDF5,
N-MNIST .bin, NAS cochlea AEDAT), a video (turned into events by the emulator) or an audio file.
``--speed max`` replays as fast as possible (latency is then queueing delay); ``--speed 1`` in real time.
"""

from __future__ import annotations

from apps.apps_registry import APPS, build_app_graph
from apps.inputs import add_replay_arguments, parse_speed, replay_source
from runtime.executor import RunInterrupted, run as run_graph
from runtime.report import format_table, is_rise

EXAMPLE = "clockless replay ../shared/data/vision/dvs128_walking.aedat --app gesture --speed 1 --json report.json"


def add_arguments(p) -> None:
    p.add_argument("input", help="event file, video or audio file")
    p.add_argument("--app", choices=APPS, default="none", help="which app graph to run (default: count events)")
    add_replay_arguments(p)
    p.add_argument("--json", metavar="PATH", help="write the run report as JSON")
    p.add_argument("--scores", metavar="PATH", help="(vad) write the per-10 ms speech score track")
    p.add_argument("--no-gates", action="store_true", help="(gesture) run with the attention gates off")
    p.add_argument("--weights", metavar="NETWORK", help="(gesture, vad) the network file to run (NAME.json + NAME.npz, "
                                                        "as written by clockless train); default: the shipped one")
    p.add_argument("--quiet", action="store_true", help="print only decisions/segments, not the table")


def run(args) -> int:
    source = replay_source(args.input, args)
    graph = build_app_graph(args.app, source, args)
    try:
        report = run_graph(graph, speed=parse_speed(args.speed), heartbeat_us=args.heartbeat_us, json_path=args.json)
    except RunInterrupted as stop:  # the executor already wrote the partial JSON
        print(render(stop.report, args.quiet))
        return 130
    print(render(report, args.quiet))
    return 0


def render(report: dict, quiet: bool) -> str:
    if not quiet:
        return format_table(report)
    lines, last = [], {}
    for d in report["decisions"]:
        lines.append(f"{d['t_us'] / 1e6:.3f} s  {d['label']}  score {d['score']:.2f}" + ("  (rise)" if is_rise(d, last) else ""))
    lines += [f"{s['start_us'] / 1e6:.3f}–{s['end_us'] / 1e6:.3f} s  {s['label']}" for s in report["segments"]]
    return "\n".join(lines)
