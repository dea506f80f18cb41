"""Emulator throughput: frames/s and ns per pixel at 346×260 and 640×480 on one core, noise on and off.

Scenes: the shared real video (``vid2e_sample.mp4``, 9 frames at 25 fps, played forwards and backwards so motion
never jumps; resized to 640×480 for that size), a synthetic moving scene (textured background, a bright bar and a
dark disc moving a few pixels per frame, 30 fps), and a static scene (the idle cost of the emulator itself).
Frames are decoded and prepared before timing, so the emulator column is the pixel model alone; capture decode
(OpenCV/FFmpeg read + grey conversion, one thread) is timed separately on videos written at each size, and the
``with decode`` column adds the two (one core). The ``pipeline`` lines run ``EmulatorSource`` on those videos as
an app would: decoding in the grabbing thread overlaps the emulator, so it can use a second core. Baseline, timed side by side on the same frames: a straightforward numpy
model making the same output (float log per pixel, event counts by floor division, interpolated timestamps, one
uniform draw per pixel for noise, a comparison sort), the design the issue measured at 17 ns/px without noise and
56 ns/px with it (no low-pass, no refractory, no leak: it does less than the emulator).

The machine running this may be shared: each figure is the median of several repeats (spread printed), and the
JSON also keeps the best repeat (``best_frames_per_s``), the least disturbed estimate of the cost itself.

``frontend_macs`` per frame is counted by the emulator (see ``sensors.emulator``): per pixel 1 (change) + 1
(low-pass, when on) + 1 (leak, when on), plus 2 per event.
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

from runtime.events import DVS_EVENT
from sensors.emulator import DvsConfig, DvsEmulator

from . import median_spread

SIZES = ((346, 260), (640, 480))
GOAL_FPS_640 = 300.0
_VIDEO = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vision" / "vid2e_sample.mp4"


def _video_frames(size: tuple[int, int], n: int) -> tuple[list[np.ndarray], float]:
    cap = cv2.VideoCapture(str(_VIDEO))
    fps = cap.get(cv2.CAP_PROP_FPS) or 25.0
    grey = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        g = cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
        if (g.shape[1], g.shape[0]) != size:
            g = cv2.resize(g, size, interpolation=cv2.INTER_LINEAR)
        grey.append(g)
    cap.release()
    cycle = grey + grey[-2:0:-1]  # ping-pong
    return [cycle[i % len(cycle)] for i in range(n)], fps


def _synthetic_frames(size: tuple[int, int], n: int) -> list[np.ndarray]:
    w, h = size
    rng = np.random.default_rng(0)
    texture = cv2.GaussianBlur(rng.integers(40, 200, (h, w)).astype(np.uint8), (0, 0), 2.0)
    frames = []
    yy, xx = np.mgrid[0:h, 0:w]
    for k in range(n):
        f = np.roll(texture, k, axis=1).copy()  # background pans 1 px/frame
        x0 = (10 + 4 * k) % w
        f[:, x0:x0 + max(4, w // 40)] = 235
        cx, cy, r = (w // 2 + 3 * k) % w, h // 2 + int(h / 4 * np.sin(k / 10)), max(6, h // 12)
        f[(xx - cx) ** 2 + (yy - cy) ** 2 < r * r] = 15
        frames.append(f)
    return frames


def _emulator_pass(frames, dt_us: int, cfg: DvsConfig):
    """One timed pass of the emulator over the frames: (s per frame, events per frame, frontend MACs per frame)."""
    emu = DvsEmulator(cfg)
    h, w = frames[0].shape

    def one() -> tuple[float, float, float]:
        state = emu.init(w, h)
        state, _ = emu.step(state, frames[0], 0)
        n = 0
        t0 = time.perf_counter()
        for i in range(1, len(frames)):
            state, ev = emu.step(state, frames[i], i * dt_us)
            n += ev.shape[0]
        s = (time.perf_counter() - t0) / (len(frames) - 1)
        return s, n / (len(frames) - 1), emu.counters(state)["frontend_macs"] / len(frames)

    return one


def _interleaved(passes: list, repeats: int) -> list[list]:
    """Run every pass once per round, round after round, so load from other processes hits them alike."""
    out: list[list] = [[] for _ in passes]
    for _ in range(repeats):
        for k, one in enumerate(passes):
            out[k].append(one())
    return out


def _naive_pass(frames, dt_us: int, cfg: DvsConfig):
    """A straightforward numpy model making the same kind of output: float log per pixel, event counts by floor
    division, interpolated timestamps, a uniform draw per pixel for noise, a comparison sort. One pass: s/frame."""
    rng = np.random.default_rng(0)
    h, w = frames[0].shape
    th = np.float32(cfg.threshold_on)
    p_noise = cfg.shot_noise_rate_hz * dt_us * 1e-6

    def one() -> float:
        base = np.log(frames[0].astype(np.float32).reshape(-1) + 1.0)
        prev = base.copy()
        t0 = time.perf_counter()
        for i in range(1, len(frames)):
            t_prev = (i - 1) * dt_us
            lg = np.log(frames[i].astype(np.float32).reshape(-1) + 1.0)
            d = lg - base
            k = np.floor(np.abs(d) / th).astype(np.int64)
            idx = np.flatnonzero(k)
            reps = k[idx]
            pix = np.repeat(idx, reps)
            q = np.arange(pix.shape[0]) - np.repeat(np.cumsum(reps) - reps, reps) + 1  # 1..k per pixel
            sign = np.sign(d[pix])
            span = lg[pix] - prev[pix]
            level = base[pix] + sign * q * th
            with np.errstate(divide="ignore", invalid="ignore"):
                frac = np.clip(np.where(span != 0, (level - prev[pix]) / span, 1.0), 0.0, 1.0)
            t = t_prev + np.maximum(np.round(frac * dt_us), 1).astype(np.int64)
            x, y, pol = pix % w, pix // w, sign > 0
            if cfg.noisy:
                noisy = np.flatnonzero(rng.random(w * h) < p_noise)
                t = np.concatenate([t, t_prev + 1 + rng.integers(0, dt_us, noisy.shape[0])])
                x = np.concatenate([x, noisy % w])
                y = np.concatenate([y, noisy // w])
                pol = np.concatenate([pol, rng.random(noisy.shape[0]) < 0.5])
            order = np.argsort(t, kind="stable")
            ev = np.empty(t.shape[0], dtype=DVS_EVENT)
            ev["x"], ev["y"], ev["t"], ev["p"] = x[order], y[order], t[order], pol[order]
            base += np.sign(d) * k * th
            prev = lg
        return (time.perf_counter() - t0) / (len(frames) - 1)

    return one


def _write_video(path: Path, frames, fps: float) -> bool:
    h, w = frames[0].shape
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (w, h), True)
    if not writer.isOpened():
        return False
    for f in frames:
        writer.write(cv2.cvtColor(f, cv2.COLOR_GRAY2BGR))
    writer.release()
    return True


def _time_decode(path: Path, repeats: int) -> tuple[float, float]:
    """Seconds per frame (median and best repeat) to read and grey-convert a video with one decoder thread."""
    old = os.environ.get("OPENCV_FFMPEG_CAPTURE_OPTIONS")
    os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = "threads;1"
    try:
        samples = []
        for _ in range(repeats):
            cap = cv2.VideoCapture(str(path))
            ok, _ = cap.read()  # opening and the first frame (decoder set-up) are not per-frame costs
            n = 0
            t0 = time.perf_counter()
            while ok:
                ok, f = cap.read()
                if not ok:
                    break
                cv2.cvtColor(f, cv2.COLOR_BGR2GRAY)
                n += 1
            samples.append((time.perf_counter() - t0) / max(n, 1))
            cap.release()
        return median_spread(samples)[0], min(samples)
    finally:
        if old is None:
            os.environ.pop("OPENCV_FFMPEG_CAPTURE_OPTIONS", None)
        else:
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = old


def _time_pipeline(path: Path, cfg: DvsConfig) -> dict:
    """EmulatorSource end to end on a video file: decode in its grabbing thread, emulate in the caller's thread."""
    from sensors.emulator import EmulatorSource
    from sensors.frames import FrameSource

    src = EmulatorSource(FrameSource(path, queue_frames=8), cfg, max_events=1 << 16)
    opened = src.open()
    try:
        t0 = time.perf_counter()
        for _ in opened:
            pass
        wall = time.perf_counter() - t0
    finally:
        opened.close()
    info = opened.info()
    n = info["emulated_frames"]
    return {"frames_per_s": n / wall, "events_per_frame": info["events"] / max(n - 1, 1)}


def run(quick: bool, plots_dir: Path | None) -> dict:
    n_frames = 20 if quick else 150
    repeats = 1 if quick else 5
    threads = cv2.getNumThreads()
    cv2.setNumThreads(1)
    rows = []
    pipeline = []
    decode = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for size in SIZES:
                w, h = size
                npx = w * h
                scenes = {}
                if _VIDEO.is_file():
                    vf, fps = _video_frames(size, n_frames)
                    scenes["vid2e_sample"] = (vf, int(round(1e6 / fps)))
                syn = _synthetic_frames(size, n_frames)
                scenes["synthetic"] = (syn, 33_333)
                scenes["static"] = ([syn[0]] * n_frames, 33_333)
                # decode cost at this size, on a video written from the synthetic scene
                vid = Path(tmp) / f"synthetic_{w}x{h}.mp4"
                dec, dec_best = _time_decode(vid, repeats) if _write_video(vid, syn, 30.0) else (None, None)
                decode[f"{w}x{h}"] = {"codec": "mp4v (MPEG-4 part 2)", "s_per_frame": dec,
                                      "best_s_per_frame": dec_best,
                                      "ns_per_px": None if dec is None else dec / npx * 1e9}
                if _VIDEO.is_file() and size == (346, 260):
                    d, d_best = _time_decode(_VIDEO, max(repeats, 5))
                    decode["vid2e_sample_346x260_h264"] = {"codec": "H.264", "s_per_frame": d,
                                                           "best_s_per_frame": d_best, "ns_per_px": d / npx * 1e9}
                if dec is not None:
                    for noise in (False, True):
                        pr = _time_pipeline(vid, DvsConfig(seed=1).with_noise(noise))
                        pipeline.append({"scene": "synthetic mp4", "size": f"{w}x{h}", "noise": noise, **pr})
                for scene, (frames, dt_us) in scenes.items():
                    cfgs = [DvsConfig(seed=1).with_noise(noise) for noise in (False, True)]
                    passes = [_emulator_pass(frames, dt_us, c) for c in cfgs] + [_naive_pass(frames, dt_us, c)
                                                                                 for c in cfgs]
                    for one in passes:  # untimed warm-up (caches, first allocations)
                        one()
                    timed = _interleaved(passes, repeats)
                    for k, noise in enumerate((False, True)):
                        samples = [r[0] for r in timed[k]]
                        s, spread = median_spread(samples)
                        r = {"spread": spread, "best_s_per_frame": min(samples), "events_per_frame": timed[k][-1][1],
                             "frontend_macs_per_frame": timed[k][-1][2]}
                        naive = median_spread(timed[2 + k])[0]
                        with_dec = s + (dec or 0.0)
                        rows.append({
                            "scene": scene, "size": f"{w}x{h}", "noise": noise,
                            "frames_per_s": 1.0 / s, "ns_per_px": s / npx * 1e9, "spread": r["spread"],
                            "best_frames_per_s": 1.0 / r["best_s_per_frame"],
                            "events_per_frame": r["events_per_frame"],
                            "events_per_s_wall": r["events_per_frame"] / s,
                            "events_per_s_stream": r["events_per_frame"] * 1e6 / dt_us,
                            "frontend_macs_per_frame": r["frontend_macs_per_frame"],
                            "frames_per_s_with_decode": 1.0 / with_dec if dec is not None else None,
                            "best_frames_per_s_with_decode": (1.0 / (r["best_s_per_frame"] + dec_best)
                                                              if dec_best is not None else None),
                            "ns_per_px_with_decode": with_dec / npx * 1e9 if dec is not None else None,
                            "naive_numpy_ns_per_px": naive / npx * 1e9, "speedup_vs_naive": naive / s,
                        })
    finally:
        cv2.setNumThreads(threads)
    _print(rows, decode, pipeline)

    def at_640(scene: str) -> dict:
        return {("noise_on" if r["noise"] else "noise_off"): r["frames_per_s_with_decode"] for r in rows
                if r["size"] == "640x480" and r["scene"] == scene}

    goal_fps, video_fps = at_640("synthetic"), at_640("vid2e_sample")
    out = {
        "frames": n_frames, "repeats": repeats, "one_core": True, "rows": rows, "decode": decode,
        "pipeline_two_threads": pipeline,
        "goal_frames_per_s_640x480": GOAL_FPS_640, "synthetic_640x480_frames_per_s_with_decode": goal_fps,
        "goal_met": {k: bool(v is not None and v >= GOAL_FPS_640) for k, v in goal_fps.items()},
        "shared_video_640x480_frames_per_s_with_decode": video_fps,
        "goal_met_shared_video": {k: bool(v is not None and v >= GOAL_FPS_640) for k, v in video_fps.items()},
    }
    for name, fps in (("synthetic scene", goal_fps), ("shared video", video_fps)):
        if fps and all(v is not None for v in fps.values()):
            verdicts = " / ".join(f"{fps[k]:.0f} ({'met' if fps[k] >= GOAL_FPS_640 else 'MISSED'})"
                                  for k in ("noise_off", "noise_on") if k in fps)
            print(f"goal ≥ {GOAL_FPS_640:.0f} frames/s at 640x480 including decode, one core, {name} "
                  f"(noise off / on): {verdicts}")
    if plots_dir is not None:
        out["plot"] = _plot(rows, plots_dir)
    return out


def _print(rows: list[dict], decode: dict, pipeline: list[dict]) -> None:
    print(f"{'scene':13} {'size':8} {'noise':5} {'frames/s':>9} {'ns/px':>6} {'+decode fps':>11} "
          f"{'events/frame':>12} {'Mev/s wall':>10} {'MACs/frame':>11} {'numpy ns/px':>11} {'×':>5} {'spread':>6}")
    for r in rows:
        wd = f"{r['frames_per_s_with_decode']:11.0f}" if r["frames_per_s_with_decode"] else f"{'-':>11}"
        print(f"{r['scene']:13} {r['size']:8} {'on' if r['noise'] else 'off':5} {r['frames_per_s']:9.0f} "
              f"{r['ns_per_px']:6.2f} {wd} {r['events_per_frame']:12.0f} {r['events_per_s_wall'] / 1e6:10.1f} "
              f"{r['frontend_macs_per_frame']:11.0f} {r['naive_numpy_ns_per_px']:11.1f} "
              f"{r['speedup_vs_naive']:5.1f} {r['spread']:6.2f}")
    for name, d in decode.items():
        if d["s_per_frame"] is not None:
            print(f"decode {name} ({d['codec']}): {d['s_per_frame'] * 1e3:.2f} ms/frame, {d['ns_per_px']:.2f} ns/px "
                  f"(best repeat {d['best_s_per_frame'] * 1e3:.2f} ms/frame)")
    for r in pipeline:
        print(f"pipeline (EmulatorSource: decode thread + emulator) {r['scene']} {r['size']} noise "
              f"{'on' if r['noise'] else 'off'}: {r['frames_per_s']:.0f} frames/s, {r['events_per_frame']:.0f} events/frame")


def _plot(rows: list[dict], plots_dir: Path) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{r['scene']}\n{r['size']} {'noise' if r['noise'] else 'clean'}" for r in rows]
    fig, ax = plt.subplots(figsize=(max(8, len(rows) * 0.9), 4))
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [r["ns_per_px"] for r in rows], 0.4, label="emulator")
    ax.bar(x + 0.2, [r["naive_numpy_ns_per_px"] for r in rows], 0.4, label="straightforward numpy")
    ax.set_xticks(x, labels, fontsize=7)
    ax.set_ylabel("ns per pixel per frame")
    ax.set_title("DVS emulator cost per pixel (one core)")
    ax.legend()
    fig.tight_layout()
    path = plots_dir / "emulator_ns_per_px.png"
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return str(path)
