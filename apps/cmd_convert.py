"""Convert an event recording to another format, chunk by chunk in bounded memory.

Reads every format ``clockless info`` reads (AEDAT 4.0/3.1/2.0, EVT 2.0/2.1/3.0 .raw, .dat, .es, .npy/.npz,
HDF5, N-MNIST .bin, NAS cochlea .aedat) and writes .npy/.npz (tonic layout + JSON sidecar), .h5/.hdf5 or
.aedat4 (camera streams only), chosen by OUT's extension or --out-format.

OUT.npy is a structured array in tonic's layout (x, y, t, p for cameras; t, x, p for cochleas), in stream order,
t in µs as the file stores it after the reader's time rules (no re-basing to zero), p = 1 for ON, coordinates in
the file's native orientation (jAER DVS128: y = 0 is the bottom row) unless --flip-x/--flip-y/--rotate or
--image-orientation change it. The sidecar OUT.json records the sensor size, orientation flags, event count,
first/last t, the source and the time-rule counts (wraps unwrapped, EVT3 back-steps held, ticks floored, order
repairs, skipped packets). Flips apply before the clockwise rotation.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from runtime.errors import ClocklessError

EXAMPLE = "clockless convert ../shared/data/vision/dvs128_walking.aedat walking.npy"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", metavar="IN", help="event recording to read")
    p.add_argument("output", metavar="OUT", help="file to write: .npy, .npz, .h5/.hdf5 or .aedat4")
    p.add_argument("--format", help="input format when the header and extension do not say (e.g. nas_aedat, evt3)")
    p.add_argument("--out-format", help="output format when OUT's extension does not say (npy, npz, hdf5, aedat4)")
    p.add_argument("--sensor-size", nargs="+", type=int, metavar="N",
                   help="W H for cameras (or the channel count for cochleas), overriding the file")
    p.add_argument("--flip-x", action="store_true", help="mirror x: x -> W-1-x")
    p.add_argument("--flip-y", action="store_true", help="mirror y: y -> H-1-y")
    p.add_argument("--rotate", type=int, choices=(0, 90, 180, 270), default=0,
                   help="rotate clockwise (as seen with y down) by this many degrees, after any flips")
    p.add_argument("--image-orientation", action="store_true",
                   help="flip as the file's orientation flags say so x runs right and y down (jAER DVS128: 180°)")
    p.add_argument("--repair-order", action="store_true",
                   help="sort events that go back in time (counted in the sidecar) instead of stopping")
    p.add_argument("--chunk-events", type=int, default=1 << 20, metavar="N",
                   help="events per chunk held in memory (default 1048576)")
    p.add_argument("--quiet", action="store_true", help="print nothing but errors")


def _remove_partial(path: Path) -> None:
    for p in (path, path.with_suffix(".json")):
        try:
            p.unlink()
        except OSError:
            pass


def run(args) -> int:
    from sensors.filters import transform_events, transformed_spec
    from sensors.formats import open_reader
    from sensors.writers import open_writer, writer_format_for

    src = Path(args.input)
    dst = Path(args.output)
    if args.chunk_events < 1:
        raise ClocklessError(f"--chunk-events: expected ≥ 1, got {args.chunk_events}")
    if src.exists() and dst.exists() and src.resolve() == dst.resolve():
        raise ClocklessError(f"{dst}: OUT is the input file; choose another output path")
    out_format = writer_format_for(dst, args.out_format)  # fail on a bad OUT before reading anything
    size = args.sensor_size
    if size is not None and len(size) not in (1, 2):
        raise ClocklessError(f"--sensor-size: expected W H (or one channel count), got {len(size)} numbers")
    try:
        reader = open_reader(src, format=args.format, sensor_size=size, repair_order=args.repair_order)
    except ValueError as exc:
        raise ClocklessError(f"{src}: {exc}") from None
    spec = reader.spec
    explicit = args.flip_x or args.flip_y or args.rotate
    if (explicit or args.image_orientation) and spec.kind != "dvs":
        raise ClocklessError(
            f"{src}: --flip-x/--flip-y/--rotate/--image-orientation apply to camera events; this file holds "
            f"'{spec.kind}' events"
        )
    if explicit and args.image_orientation:
        raise ClocklessError("--image-orientation already chooses the flips; drop --flip-x/--flip-y/--rotate")
    if args.image_orientation:
        fx, fy, rot = bool(spec.x_mirrored), bool(spec.y_up), 0
    else:
        fx, fy, rot = bool(args.flip_x), bool(args.flip_y), int(args.rotate)
    changes = fx or fy or rot
    out_spec = transformed_spec(spec, fx, fy, rot) if spec.kind == "dvs" else spec
    w = int(spec.shape[0])
    h = int(spec.shape[1]) if spec.kind == "dvs" else 1
    meta = {
        "source": str(src),
        "source_format": reader.format,
        "sensor_size_origin": reader.sensor_size_origin,
        "orientation_change": {"flip_x": fx, "flip_y": fy, "rotate": rot},
    }
    t0 = time.perf_counter()
    writer = open_writer(dst, out_spec, out_format, meta=meta)
    try:
        for chunk in reader.chunks(args.chunk_events):
            writer.write(transform_events(chunk, w, h, fx, fy, rot) if changes else chunk)
        writer.update_meta(counts=reader.counts)
        writer.close()
    except BaseException:
        writer.close()
        _remove_partial(dst)
        raise
    wall = time.perf_counter() - t0
    if not args.quiet:
        n = writer.events_written
        rate = n / wall / 1e6 if wall > 0 else 0.0
        span = "" if n == 0 else f", t {writer.t_first_us}..{writer.t_last_us} µs"
        rules = {k: v for k, v in reader.counts.items() if v}
        size_txt = "×".join(str(s) for s in out_spec.shape[:2]) if spec.kind == "dvs" else f"{spec.shape[0]} channels"
        print(f"{src} ({reader.format}, {reader.sensor_size_origin} size) → {dst} ({writer.format}, {size_txt}): "
              f"{n:,} events{span} in {wall:.2f} s ({rate:.1f} M ev/s)")
        if rules:
            print(f"time rules: {rules}")
        if changes:
            print(f"orientation: flip_x={fx} flip_y={fy} rotate={rot}°")
    return 0
