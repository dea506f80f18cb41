"""Run an app on a live source: a webcam or video through the DVS emulator, an AER-over-UDP stream, or a
microphone. Ctrl-C stops cleanly: the partial report is printed (and written with ``--json``), open speech
segments are closed at the last processed sample, and a ``--record`` file is completed.

Without a display (or with ``--no-window``) no window is opened; the check happens before any window exists.
"""

from __future__ import annotations

from apps.apps_registry import APPS, build_app_graph
from runtime.errors import ClocklessError
from runtime.executor import RunInterrupted, run as run_graph
from runtime.graph import Graph
from runtime.report import format_table
from runtime.sources import Limited
from runtime.stages import CountSink

EXAMPLE = "clockless live --app gesture --camera 0      |  clockless live --udp 3333 --sensor-size 346 260 --record s.aedat4"


def add_arguments(p) -> None:
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="INDEX", help="webcam index, through the DVS emulator")
    src.add_argument("--video", metavar="FILE", help="a video file played live through the emulator")
    src.add_argument("--url", metavar="URL", help="a video stream URL through the emulator")
    src.add_argument("--udp", type=int, metavar="PORT", help="AER events over UDP (AEStream layout) on this port")
    src.add_argument("--inivation", nargs="?", const="", metavar="SERIAL",
                     help="an iniVation event camera through dv-processing (first found, or this serial)")
    src.add_argument("--mic", nargs="?", const="default", metavar="DEVICE", help="microphone (for --app vad)")
    p.add_argument("--app", choices=APPS, default="none", help="which app graph to run")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="resize camera/video frames to W×H")
    p.add_argument("--sensor-size", nargs=2, type=int, metavar=("W", "H"), default=(346, 260), help="UDP sensor size")
    p.add_argument("--udp-host", default="127.0.0.1", help="address to receive UDP on (0.0.0.0: every interface)")
    p.add_argument("--no-noise", action="store_true", help="emulator without leak and shot noise")
    p.add_argument("--threshold", type=float, default=0.2, help="emulator contrast threshold (log units)")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="stop after S seconds of stream time")
    p.add_argument("--record", metavar="FILE", help="also write the live event stream to FILE (.npy/.h5/.aedat4)")
    p.add_argument("--no-window", action="store_true", help="never open a window")
    p.add_argument("--no-gates", action="store_true", help="(gesture) attention gates off")
    p.add_argument("--weights", metavar="NETWORK", help="(gesture, vad) the network file to run (NAME.json + NAME.npz, "
                                                        "as written by clockless train); default: the shipped one")
    p.add_argument("--scores", metavar="PATH", help="(vad) write the per-10 ms speech score track")
    p.add_argument("--json", metavar="PATH", help="write the run report as JSON")


def live_source(args):
    if args.udp is not None:
        from sensors.udp import UdpSource

        w, h = args.sensor_size
        return UdpSource(int(w), int(h), port=args.udp, host=args.udp_host)
    if args.inivation is not None:
        from sensors.inivation import InivationSource

        return InivationSource(serial=args.inivation or None)
    if args.mic is not None:
        from sensors.audio import MicrophoneSource

        return MicrophoneSource(device=None if args.mic == "default" else args.mic)
    from sensors.emulator import DvsConfig, EmulatorSource
    from sensors.frames import FrameSource

    config = DvsConfig(threshold_on=args.threshold, threshold_off=args.threshold).with_noise(not args.no_noise)
    where = args.camera if args.camera is not None else (args.video or args.url)
    size = tuple(args.size) if args.size else None
    return EmulatorSource(FrameSource(where, size=size), config=config)


def build_live_graph(args, source) -> Graph:
    if args.duration is not None:
        source = Limited(source, int(args.duration * 1e6))
    g = build_app_graph(args.app, source, args)
    src_name = next(n for n, node in g.nodes.items() if node.kind == "source")
    if args.record:
        from sensors.record import Record

        g.sink("record", Record(args.record), src_name)
    want_window = not args.no_window and args.mic is None and args.app != "vad"
    if want_window:
        from apps.live_view import EventFrameView, choose_window

        show, why = choose_window(True)
        if not show:
            print(f"clockless live: no window ({why}); running without one")
        elif args.app == "gesture":  # events, attention heatmap, current gesture and confidence
            add_gesture_view(g, src_name, window=True, mirror=args.camera is not None)
        else:
            g.sink("view", EventFrameView(window=True), src_name)
    if args.app == "none" and "count" not in g.nodes:
        g.sink("count", CountSink(), src_name)
    return g


def add_gesture_view(g: Graph, src_name: str, *, window: bool, display_hz: float = 30.0, mirror: bool = True):
    """The gesture window's taps on a gesture graph (see apps.gesture.view); returns the board."""
    from apps.gesture.view import GestureBoard, add_view

    decide = g.nodes["decide"].obj
    network_input = next((n for n in ("temporal_gate", "spatial_gate", "bin") if n in g.nodes))
    board = GestureBoard(tuple(decide.labels), window=window, display_hz=display_hz, mirror=mirror)
    add_view(g, board, source=src_name, network_input=network_input, network_output="snn", decision=decide.config)
    return board


def run(args) -> int:
    if args.mic is not None and args.app not in ("vad", "none"):
        raise ClocklessError("--mic gives audio; use it with --app vad")
    graph = build_live_graph(args, live_source(args))
    try:
        # a video played "live" is paced in real time; cameras, UDP and microphones pace themselves
        speed = 1.0 if args.video else None
        report = run_graph(graph, speed=speed, json_path=args.json, on_output=_printer(graph))
    except RunInterrupted as stop:
        print(format_table(stop.report))
        return 130
    print(format_table(report))
    if report["input"].get("ended"):
        print(f"stream ended: {report['input']['ended']}")
    return 0


def _printer(graph: Graph):
    """Print decisions as they happen, with their label names."""
    labels = {}
    for name, node in graph.nodes.items():
        names = getattr(node.obj, "labels", None)
        if node.kind == "sink" and names:
            labels[name] = list(names)

    def on_output(sink: str, packet) -> None:
        ev = packet.events
        if ev.dtype.names is None or "label" not in ev.dtype.names:
            return
        names = labels.get(sink)
        for e in ev:
            label = names[int(e["label"])] if names else int(e["label"])
            print(f"{int(e['t']) / 1e6:10.3f} s  {label}  score {float(e['score']):.2f}", flush=True)

    return on_output
