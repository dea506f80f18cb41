"""Describe an event or cochlea recording: format, sensor size and where it came from, events, duration, first and
last timestamp, ON fraction, the time-rule counts, and the event rate over time (a sparkline here, a PNG with
``--plot``). The file is read once, in bounded memory.

JSON schema (``--json PATH``), ``schema`` = ``"clockless.info/1"``::

    path                str     the file
    format              str     reader format name (evt3, aedat4, ...); format_name: its long name
    kind                str     "dvs" (camera) or "audio" (cochlea)
    sensor_size         [int]   [W, H, 2] for cameras, [channels, 2] for cochleas
    sensor_size_origin  str     "header", "camera model in header", "format default", "sidecar json" or "user"
    x_mirrored, y_up    bool    native orientation relative to an image (jAER DVS128: both true)
    events              int     events decoded (after the time rules)
    t_first_us          int|null  first timestamp, µs as the file stores it (null when empty)
    t_last_us           int|null  last timestamp
    duration_us         int     t_last_us - t_first_us (0 when empty)
    on_fraction         float|null  ON events / events
    mean_rate_hz        float|null  events / duration
    peak_rate_hz        float|null  highest rate over bins of about 1 ms (or the whole span when shorter)
    time_rules          object  wraps_unwrapped, time_low_backsteps_held, ticks_floored, order_repairs,
                                skipped_packets {kind: n}, triggers
    rate                object  bin_us (int) and counts ([int], events per bin from t_first_us)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from sensors.formats import FORMATS, open_reader

EXAMPLE = "clockless info ../shared/data/vision/gen4_expelliarmus_evt3.raw --json info.json --plot rate.png"
SCHEMA = "clockless.info/1"
_SPARK = "▁▂▃▄▅▆▇█"
_MAX_BINS = 100_000


def add_arguments(p) -> None:
    p.add_argument("file", help="event recording (.aedat4, .aedat, .raw, .dat, .es, .npy, .npz, .h5, .bin...)")
    p.add_argument("--format", choices=sorted(FORMATS), help="format when it cannot be detected (e.g. nas_aedat)")
    p.add_argument(
        "--sensor-size", nargs="+", type=int, metavar="N", help="W H for cameras, or a channel count, when the file has none"
    )
    p.add_argument("--repair-order", action="store_true", help="sort out-of-order events and count them")
    p.add_argument("--json", metavar="PATH", help="write the description as JSON (schema in --help)")
    p.add_argument("--plot", metavar="PNG", help="write the event rate over time as a PNG")


class RateHistogram:
    """Events per time bin from the first event, in bounded memory: bins double in width when they get too many."""

    def __init__(self, bin_us: int = 10):
        self.bin_us = bin_us
        self.t0: int | None = None
        self.counts = np.zeros(0, np.int64)

    def add(self, t: np.ndarray) -> None:
        if t.shape[0] == 0:
            return
        if self.t0 is None:
            self.t0 = int(t[0])
        last_bin = (int(t[-1]) - self.t0) // self.bin_us
        while last_bin >= _MAX_BINS:
            self._coarsen()
            last_bin = (int(t[-1]) - self.t0) // self.bin_us
        idx = (t - self.t0) // self.bin_us
        part = np.bincount(idx, minlength=int(last_bin) + 1)
        if part.shape[0] > self.counts.shape[0]:
            self.counts = np.concatenate([self.counts, np.zeros(part.shape[0] - self.counts.shape[0], np.int64)])
        self.counts[: part.shape[0]] += part

    def _coarsen(self) -> None:
        c = self.counts
        if c.shape[0] % 2:
            c = np.concatenate([c, [0]])
        self.counts = c.reshape(-1, 2).sum(axis=1)
        self.bin_us *= 2

    def peak_rate_hz(self, window_us: int = 1000) -> float | None:
        """Highest rate over bins of at least ``window_us`` (a rate over a few µs says little)."""
        if self.counts.shape[0] == 0:
            return None
        c, bin_us = self.counts, self.bin_us
        while bin_us < window_us and c.shape[0] > 1:
            c = np.concatenate([c, [0]]) if c.shape[0] % 2 else c
            c = c.reshape(-1, 2).sum(axis=1)
            bin_us *= 2
        return float(c.max()) * 1e6 / bin_us

    def resample(self, n: int) -> np.ndarray:
        """Mean events per bin over ``n`` equal spans (for the sparkline)."""
        c = self.counts
        if c.shape[0] == 0:
            return np.zeros(0)
        edges = np.linspace(0, c.shape[0], min(n, c.shape[0]) + 1).astype(int)
        return np.array([c[a:b].mean() for a, b in zip(edges[:-1], edges[1:])])


def sparkline(values: np.ndarray) -> str:
    if values.shape[0] == 0:
        return ""
    top = float(values.max())
    if top <= 0:
        return _SPARK[0] * values.shape[0]
    levels = np.minimum((values / top * (len(_SPARK) - 1) + 0.5).astype(int), len(_SPARK) - 1)
    return "".join(_SPARK[i] for i in levels)


def describe(path, format=None, sensor_size=None, repair_order=False) -> tuple[dict, RateHistogram]:
    """Read the file once; return the JSON-ready description and the rate histogram."""
    reader = open_reader(path, format=format, sensor_size=sensor_size, repair_order=repair_order)
    hist = RateHistogram()
    n = n_on = 0
    t_first = t_last = None
    for chunk in reader.chunks():
        t = chunk["t"]
        if t_first is None:
            t_first = int(t[0])
        t_last = int(t[-1])
        n += chunk.shape[0]
        n_on += int(np.count_nonzero(chunk["p"]))
        hist.add(t)
    duration = 0 if t_first is None else t_last - t_first
    peak = hist.peak_rate_hz()
    info = {
        "schema": SCHEMA,
        "path": str(reader.path),
        "format": reader.format,
        "format_name": FORMATS[reader.format],
        "kind": reader.spec.kind,
        "sensor_size": [int(s) for s in reader.spec.shape],
        "sensor_size_origin": reader.sensor_size_origin,
        "x_mirrored": bool(reader.spec.x_mirrored),
        "y_up": bool(reader.spec.y_up),
        "events": n,
        "t_first_us": t_first,
        "t_last_us": t_last,
        "duration_us": duration,
        "on_fraction": (n_on / n) if n else None,
        "mean_rate_hz": (n * 1e6 / duration) if duration > 0 else None,
        "peak_rate_hz": peak,
        "time_rules": reader.counts,
        "rate": {"bin_us": hist.bin_us, "counts": hist.counts.tolist()},
    }
    return info, hist


def _si(value: float | None, unit: str) -> str:
    if value is None:
        return "n/a"
    for factor, prefix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if abs(value) >= factor:
            return f"{value / factor:.3g} {prefix}{unit}"
    return f"{value:.3g} {unit}"


def plot_rate(info: dict, hist: RateHistogram, png: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    # at most ~800 steps: a long recording's fine bins are averaged so the plot stays readable
    c = hist.counts
    group = max(1, -(-c.shape[0] // 800))
    if group > 1:
        c = np.concatenate([c, np.zeros(-c.shape[0] % group, c.dtype)]).reshape(-1, group).sum(axis=1)
    bin_us = hist.bin_us * group
    t_s = (np.arange(c.shape[0]) * bin_us) / 1e6
    fig, ax = plt.subplots(figsize=(8, 3), dpi=100)
    ax.step(t_s, c * 1e6 / bin_us, where="post", lw=0.8)
    ax.set_xlabel(f"time from first event (s), bins of {bin_us / 1000:g} ms")
    ax.set_ylabel("events/s")
    ax.set_title(f"{Path(info['path']).name} ({info['format']}, {info['events']} events)", fontsize=9)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)


def run(args) -> int:
    size = tuple(args.sensor_size) if args.sensor_size else None
    info, hist = describe(args.file, args.format, size, args.repair_order)
    rules = info["time_rules"]
    skipped = ", ".join(f"{k} {v}" for k, v in rules["skipped_packets"].items()) or "none"
    shape = "×".join(str(s) for s in info["sensor_size"][:-1])
    orient = [k for k in ("x_mirrored", "y_up") if info[k]]
    lines = [
        ("file", info["path"]),
        ("format", f"{info['format']} — {info['format_name']}"),
        ("sensor", f"{info['kind']} {shape}{' (' + ', '.join(orient) + ')' if orient else ''}"
                   f", size from {info['sensor_size_origin']}"),
        ("events", f"{info['events']:,}"),
        ("first / last t", f"{info['t_first_us']} / {info['t_last_us']} µs"),
        ("duration", f"{info['duration_us'] / 1e6:.6f} s"),
        ("ON fraction", "n/a" if info["on_fraction"] is None else f"{info['on_fraction']:.4f}"),
        ("rate", f"mean {_si(info['mean_rate_hz'], 'ev/s')}, peak {_si(info['peak_rate_hz'], 'ev/s')}"
                 " (over ~1 ms)"),
        ("time rules", f"wraps unwrapped {rules['wraps_unwrapped']}, backsteps held {rules['time_low_backsteps_held']}, "
                       f"ticks floored {rules['ticks_floored']}, order repairs {rules['order_repairs']}"),
        ("skipped", skipped),
        ("triggers", str(rules["triggers"])),
        ("rate over time", sparkline(hist.resample(60))),
    ]
    for key, value in lines:
        print(f"{key:>15}  {value}")
    if args.json:
        Path(args.json).write_text(json.dumps(info, indent=1) + "\n")
        print(f"{'json':>15}  {args.json}")
    if args.plot:
        plot_rate(info, hist, args.plot)
        print(f"{'plot':>15}  {args.plot}")
    return 0
