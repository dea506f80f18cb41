"""Turn a video (file, stream URL or camera index) into DVS events with the emulator and write them to a file.

The output format follows OUT's extension: .npy/.npz (tonic layout + JSON sidecar), .h5/.hdf5, .aedat4. The pixel
model is v2e's (lin-log, per-pixel thresholds with mismatch, photoreceptor low-pass, refractory period, leak and
shot noise); ``--preset clean`` is an ideal noiseless sensor, ``--no-noise`` keeps the model but drops leak and
shot noise. Video timestamps are frame index / fps, so the same video, options and seed give the same events.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict, replace

from runtime.errors import ClocklessError

EXAMPLE = "clockless emulate ../shared/data/vision/vid2e_sample.mp4 events.aedat4 --seed 1 --size 346 260"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("video", help="video file, stream URL, or camera index (with --max-frames)")
    p.add_argument("out", help="output event file: .npy, .npz, .h5/.hdf5 or .aedat4")
    p.add_argument("--out-format", help="output format when the extension does not say (npy, npz, hdf5, aedat4)")
    p.add_argument("--preset", choices=("default", "clean", "noisy"), default="default",
                   help="parameter set to start from (default: v2e's defaults)")
    p.add_argument("--threshold", type=float, metavar="LN", help="ON and OFF threshold in log units (default 0.2)")
    p.add_argument("--threshold-on", type=float, metavar="LN", help="ON threshold in log units")
    p.add_argument("--threshold-off", type=float, metavar="LN", help="OFF threshold in log units")
    p.add_argument("--mismatch", type=float, metavar="SIGMA", help="per-pixel threshold spread (default 0.03)")
    p.add_argument("--cutoff-hz", type=float, help="photoreceptor cutoff at full intensity, 0 = off (default 300)")
    p.add_argument("--refractory-us", type=int, help="refractory period in µs (default 500)")
    p.add_argument("--leak-hz", type=float, help="leak events per pixel per second (default 0.01)")
    p.add_argument("--shot-noise-hz", type=float, help="shot-noise events per pixel per second (default 0.001)")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=None,
                   help="leak and shot noise on (the preset's rates) or off")
    p.add_argument("--seed", type=int, default=0, help="seed for mismatch and noise (default 0)")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="resize frames to W×H before emulating")
    p.add_argument("--fps", type=float, help="frame rate for videos whose container states none")
    p.add_argument("--max-frames", type=int, help="stop after this many frames (needed for a camera)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def config_from_args(args):
    """The DvsConfig the options describe (ValueError for bad values is turned into a one-line error)."""
    from sensors.emulator import DvsConfig

    changes = {}
    if args.threshold is not None:
        changes["threshold_on"] = changes["threshold_off"] = args.threshold
    for opt, name in (("threshold_on", "threshold_on"), ("threshold_off", "threshold_off"),
                      ("mismatch", "mismatch_sigma"), ("cutoff_hz", "cutoff_hz"), ("refractory_us", "refractory_us"),
                      ("leak_hz", "leak_rate_hz"), ("shot_noise_hz", "shot_noise_rate_hz")):
        value = getattr(args, opt)
        if value is not None:
            changes[name] = value
    try:
        cfg = replace(DvsConfig.preset(args.preset), seed=args.seed, **changes)
        if args.noise is not None:
            cfg = cfg.with_noise(args.noise)
    except ValueError as exc:
        raise ClocklessError(f"emulator options: {exc}") from None
    return cfg


def run(args) -> int:
    from sensors.emulator import EmulatorSource
    from sensors.frames import FrameSource
    from sensors.writers import open_writer

    cfg = config_from_args(args)
    if args.max_frames is not None and args.max_frames < 1:
        raise ClocklessError(f"--max-frames: expected ≥ 1, got {args.max_frames}")
    try:
        frames = FrameSource(args.video, size=tuple(args.size) if args.size else None, fps=args.fps,
                             max_frames=args.max_frames)
    except ValueError as exc:
        raise ClocklessError(str(exc)) from None
    if frames.kind == "camera" and args.max_frames is None:
        raise ClocklessError(f"{args.video}: a camera never ends; give --max-frames N")
    t0 = time.perf_counter()
    opened = EmulatorSource(frames, cfg, max_events=1 << 16).open()
    try:
        meta = {"source": str(args.video), "emulator": asdict(cfg)}
        with open_writer(args.out, opened.spec, args.out_format, meta=meta) as writer:
            for packet in opened:
                writer.write(packet.events)
    finally:
        opened.close()
    wall = time.perf_counter() - t0
    info = opened.info()
    if not args.quiet:
        n = info["emulated_frames"]
        w, h = info["width"], info["height"]
        print(f"{args.video}: {n} frames {w}×{h} → {info['events']:,} events "
              f"({info['noise_events']:,} shot noise) in {wall:.2f} s ({n / wall if wall > 0 else 0:.0f} frames/s, "
              f"ended: {info['ended']})")
        print(f"wrote {args.out} ({writer.format})")
    return 0
