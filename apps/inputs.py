"""Turn what the user names on the command line into a Source: an event file, a video, an audio file, a camera,
a UDP port or a microphone. Shared by ``replay``, ``live`` and ``demo``."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from runtime.errors import ClocklessError

__all__ = ["VIDEO_EXTS", "AUDIO_EXTS", "input_kind", "replay_source", "add_replay_arguments", "parse_speed"]

VIDEO_EXTS = {".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv"}
AUDIO_EXTS = {".wav", ".flac", ".ogg", ".mp3", ".pcm", ".s16le"}


def input_kind(path: str, fmt: str | None = None) -> str:
    """``"video"``, ``"audio"`` or ``"events"``."""
    if fmt in ("pcm", "wav", "audio"):
        return "audio"
    if fmt is not None:
        return "events"
    ext = Path(path).suffix.lower()
    if ext in VIDEO_EXTS:
        return "video"
    if ext in AUDIO_EXTS:
        return "audio"
    return "events"


def parse_speed(text: str) -> float | None:
    if text in ("max", "inf", "0"):
        return None
    try:
        value = float(text)
    except ValueError:
        raise ClocklessError(f"--speed: expected 'max' or a positive factor such as 1 or 10, got {text!r}") from None
    if value <= 0:
        raise ClocklessError(f"--speed: expected a positive factor, got {text}")
    return value


def add_replay_arguments(p) -> None:
    p.add_argument("--format", help="input format when it cannot be detected (e.g. nas_aedat, evt3, pcm)")
    p.add_argument("--sensor-size", nargs=2, type=int, metavar=("W", "H"), help="sensor size when the file has none")
    p.add_argument("--start", type=float, default=None, metavar="S", help="start this many seconds into the recording")
    p.add_argument("--duration", type=float, default=None, metavar="S", help="replay only this many seconds")
    p.add_argument("--loop", type=int, default=1, help="replay the file this many times (time keeps increasing)")
    p.add_argument("--speed", default="max", help="'max' (as fast as possible), 1 (real time) or any factor")
    p.add_argument("--max-events", type=int, default=4096, help="at most this many events per packet")
    p.add_argument("--max-span-us", type=int, default=1000, help="at most this much stream time per packet (µs)")
    p.add_argument("--heartbeat-us", type=int, default=None, help="watermark-only packets through silences (paced)")
    p.add_argument("--repair-order", action="store_true", help="sort out-of-order events and count them")
    p.add_argument("--rate-hz", type=int, default=None, help="raw PCM sample rate (with --format pcm)")


def replay_source(path: str, args: Any) -> Any:
    """A Source for a recording: event file → ReplaySource, video → emulator, audio → audio source."""
    if not Path(path).exists():
        raise ClocklessError(f"{path}: no such file")
    kind = input_kind(path, getattr(args, "format", None))
    start_us = None if args.start is None else int(args.start * 1e6)
    duration_us = None if args.duration is None else int(args.duration * 1e6)
    if kind == "video":
        from sensors.emulator import EmulatorSource

        return EmulatorSource.video(path)
    if kind == "audio":
        from sensors.audio import audio_file_source

        return audio_file_source(path, fmt=getattr(args, "format", None), rate_hz=getattr(args, "rate_hz", None),
                                 start_us=start_us, duration_us=duration_us)
    from sensors.replay import ReplaySource

    return ReplaySource(
        path,
        format=args.format,
        sensor_size=tuple(args.sensor_size) if args.sensor_size else None,
        start_us=start_us,
        duration_us=duration_us,
        loop=args.loop,
        max_events=args.max_events,
        max_span_us=args.max_span_us,
        repair_order=args.repair_order,
    )
