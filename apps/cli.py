"""The ``clockless`` command line. Each subcommand lives in its own ``apps/cmd_*.py`` module, imported lazily
so that ``clockless --help`` does not compile kernels."""

from __future__ import annotations

import argparse
import importlib
import sys

from runtime.errors import ClocklessError

__all__ = ["main", "COMMANDS"]

# name -> (module, one-line help)
COMMANDS = {
    "demo": ("apps.cmd_demo", "run the gesture app on a built-in clip (no arguments needed)"),
    "info": ("apps.cmd_info", "describe an event or audio file: format, geometry, counts, rate"),
    "replay": ("apps.cmd_replay", "replay a recording (event file, video or audio) through an app graph"),
    "live": ("apps.cmd_live", "run an app on a live source: camera, video, UDP AER stream, microphone"),
    "convert": ("apps.cmd_convert", "convert an event file to another format"),
    "emulate": ("apps.cmd_emulate", "turn a video into DVS events and write them to a file"),
    "bench": ("apps.cmd_bench", "measure throughput, latency and operation counts side by side"),
    "train": ("apps.cmd_train", "train the gesture or VAD network (needs the 'train' extra: torch)"),
    "graph": ("apps.cmd_graph", "show a named graph's topology as text and Mermaid"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="clockless",
        description="Event-driven spiking-network runtime: no input, no compute.",
        epilog="Example: clockless demo    |    clockless replay recording.aedat4 --app gesture --json report.json",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name != module_name:
                raise
            continue
        p = sub.add_parser(
            name,
            help=help_text,
            description=module.__doc__,
            epilog="Example: " + module.EXAMPLE,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if getattr(args, "_run", None) is None:
        parser.print_help()
        return 2
    try:
        return int(args._run(args) or 0)
    except ClocklessError as exc:
        print(f"clockless {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"clockless {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
