"""The main job, on built-in data: the gesture app on a clip rendered by clockless's own scene generator and turned
into events by its own DVS emulator (so its licence is ours). Prints the decisions with their times next to the
true gestures, latency, operation counts and the real-time factor. No arguments needed.
"""

from __future__ import annotations

from runtime.errors import FormatError
from runtime.executor import RunInterrupted, run as run_graph
from runtime.graph import Graph
from runtime.report import format_table
from runtime.stages import CountSink

EXAMPLE = "clockless demo    |    clockless demo --speed 1 --json demo.json"


def add_arguments(p) -> None:
    p.add_argument("--speed", default="1", help="'max' or a factor; default 1 (real time, so latency is latency)")
    p.add_argument("--no-gates", action="store_true", help="attention gates off (to compare operation counts)")
    p.add_argument("--weights", metavar="NETWORK", help="the gesture network file to run (NAME.json + NAME.npz, as "
                                                        "written by clockless train gesture); default: the shipped one")
    p.add_argument("--json", metavar="PATH", help="write the run report as JSON")


def run(args) -> int:
    from apps.gesture.app import build_gesture_graph, demo_clip, demo_source
    from apps.inputs import parse_speed

    print("rendering the built-in clip and emulating its events ...", flush=True)
    clip = demo_clip()
    source = demo_source(clip)
    try:
        graph = build_gesture_graph(source, weights=args.weights, gates=not args.no_gates)
    except FormatError as exc:
        if args.weights:  # the file the user named is wrong: say so, do not fall back
            raise
        # no trained weights in this build: show the runtime on the same clip without the network
        print(f"gesture network unavailable ({exc}); running the clip through a counting graph instead")
        graph = Graph("demo-count")
        graph.sink("count", CountSink(), graph.source("clip", source))
    try:
        report = run_graph(graph, speed=parse_speed(args.speed), json_path=args.json)
    except RunInterrupted as stop:
        print(format_table(stop.report))
        return 130
    print(format_table(report))
    print("\ntrue gestures:")
    for label, onset, offset in clip.truth:
        print(f"  {label:<12} {onset / 1e6:6.2f}–{offset / 1e6:5.2f} s  →  decided "
              f"{describe_answer(report['decisions'], onset, offset)}")
    return 0


def describe_answer(decisions, onset_us: int, offset_us: int) -> str:
    """The answer for one true gesture: the best-scoring decision from its onset to 500 ms after its end, with its
    delay, and when that label was first decided if earlier (rises report a label again as its confidence grows,
    so the first decision is the early answer and the best one the surest)."""
    hits = [d for d in decisions if onset_us <= d["t_us"] < offset_us + 500_000]
    if not hits:
        return "none"
    best = max(hits, key=lambda d: d["score"])
    text = f"{best['label']} (score {best['score']:.2f}, {(best['t_us'] - onset_us) / 1e3:.0f} ms after onset"
    first = min(d["t_us"] for d in hits if d["label"] == best["label"])
    if first < best["t_us"]:
        text += f"; first decided {(first - onset_us) / 1e3:.0f} ms after onset"
    return text + ")"
