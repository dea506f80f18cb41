"""Gesture clips as network-input events: render → the project's DVS emulator → the gesture graph's front end.

Every clip is fixed by its split and index: ``clip_spec("train", 17)`` always names the same label (index mod 9),
seed, sensor size and emulator settings, so the splits are disjoint by construction (seeds in separate ranges)
and reproducible on any machine. ``make_clip(spec)`` renders the scene at the sensor size, emulates events with
randomised pixel settings (a third of the clips use the emulator defaults, which is what ``clockless replay
VIDEO`` uses), and runs the same front end as the graph (orientation, centred square crop, binning to 32 × 32,
see ``graphs.gesture.input_stages``). The result is a spike stream of addresses ``p·32·32 + y·32 + x``.

``build_split(name, n)`` makes ``n`` clips with worker processes and caches them in one ``.npz`` (events of
all clips concatenated, with offsets). ``ClipSet`` gives per-clip access and dense bins for training.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

from apps.training.memory import keep_freed_memory
from graphs.gesture import INPUT_PX, LABELS, apply_stages, front_end
from runtime.spec import dvs_spec
from sensors.emulator import DvsConfig, emulate_frames

from .render import SceneOptions, render_clip

__all__ = [
    "SPLITS", "SENSOR_SIZES", "DATA_VERSION", "ClipSpec", "Clip", "ClipSet", "clip_spec", "make_clip",
    "build_split", "default_cache_dir", "bin_events",
]

DATA_VERSION = 5  # bump when the renderer, emulator sampling or front end changes what a clip contains
SPLITS = {"train": 10_000_000, "val": 20_000_000, "test": 30_000_000}  # seed ranges, disjoint
# (width, height, weight): cheap sizes often, the large ones (DAVIS346, VGA webcam) often enough to be learnt
SENSOR_SIZES = ((64, 64, 2.0), (96, 72, 1.0), (128, 128, 3.0), (160, 120, 2.0), (240, 180, 1.0), (346, 260, 1.0),
                (640, 480, 0.7))
N_ADDR = 2 * INPUT_PX * INPUT_PX


@dataclass(frozen=True)
class ClipSpec:
    split: str
    index: int
    label: str
    seed: int
    width: int
    height: int
    fps: float
    emulator: DvsConfig


@dataclass(frozen=True)
class Clip:
    spec: ClipSpec
    t_us: np.ndarray  # int64, sorted
    addr: np.ndarray  # int32 flat address over (2, INPUT_PX, INPUT_PX)
    onset_us: int
    offset_us: int
    duration_us: int
    sensor_events: int


def _emulator_config(rng: np.random.Generator, seed: int) -> DvsConfig:
    if rng.random() < 0.35:
        return DvsConfig(seed=seed)
    th = rng.uniform(0.15, 0.35)
    return DvsConfig(
        threshold_on=th, threshold_off=th * rng.uniform(0.75, 1.33), mismatch_sigma=rng.uniform(0.01, 0.06),
        cutoff_hz=0.0 if rng.random() < 0.3 else rng.uniform(20.0, 300.0),
        refractory_us=int(rng.integers(0, 2000)), leak_rate_hz=0.2 * rng.random() ** 2,
        shot_noise_rate_hz=2.0 * rng.random() ** 3, seed=seed,  # mostly quiet pixels, a few noisy cameras
    )


def clip_spec(split: str, index: int) -> ClipSpec:
    """The fixed description of clip ``index`` of ``split`` (label = LABELS[index mod 9])."""
    if split not in SPLITS:
        raise ValueError(f"gesture dataset: unknown split {split!r}; expected one of {sorted(SPLITS)}")
    if index < 0:
        raise ValueError(f"gesture dataset: clip index must be ≥ 0, got {index}")
    seed = SPLITS[split] + int(index)
    rng = np.random.default_rng([seed, 1])
    weights = np.array([s[2] for s in SENSOR_SIZES])
    w, h, _ = SENSOR_SIZES[int(rng.choice(len(SENSOR_SIZES), p=weights / weights.sum()))]
    choices = SceneOptions().fps_choices
    if w * h > 50_000:  # large frames: camera-like rates only (and the clip stays cheap to render)
        choices = tuple(f for f in choices if f <= 60)
    fps = float(rng.choice(choices))
    return ClipSpec(split, int(index), LABELS[index % len(LABELS)], seed, w, h, fps, _emulator_config(rng, seed))


def make_clip(spec: ClipSpec, options: SceneOptions | None = None) -> Clip:
    """Render, emulate and map one clip onto the network input."""
    clip = render_clip(spec.label, spec.seed, spec.width, spec.height, options=options, fps=spec.fps)
    events = emulate_frames(clip.frames, clip.t_us, spec.emulator)
    sensor = dvs_spec(spec.width, spec.height)
    duration_us = int(clip.t_us[-1]) + 1
    spikes, _ = apply_stages(front_end(), sensor, events, t_end_us=duration_us)
    return Clip(spec, spikes["t"].astype(np.int64), spikes["addr"].astype(np.int32), clip.onset_us, clip.offset_us,
                duration_us, int(events.shape[0]))


def _make_clip_arrays(args) -> tuple:
    split, index = args
    c = make_clip(clip_spec(split, index))
    s = c.spec
    return (c.t_us.astype(np.int32), c.addr.astype(np.int16), LABELS.index(s.label), c.onset_us, c.offset_us,
            c.duration_us, s.width, s.height, s.fps, c.sensor_events)


def default_cache_dir() -> Path:
    return Path(os.environ.get("CLOCKLESS_CACHE", Path.home() / ".cache" / "clockless")) / "gesture"


@dataclass
class ClipSet:
    """Clips of one split as concatenated arrays (``offsets[i]:offsets[i+1]`` are clip i's events)."""

    name: str
    t_us: np.ndarray
    addr: np.ndarray
    offsets: np.ndarray
    label: np.ndarray
    onset_us: np.ndarray
    offset_us: np.ndarray
    duration_us: np.ndarray
    width: np.ndarray
    height: np.ndarray
    fps: np.ndarray
    sensor_events: np.ndarray
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.label.shape[0])

    def events(self, i: int) -> tuple[np.ndarray, np.ndarray]:
        a, b = int(self.offsets[i]), int(self.offsets[i + 1])
        return self.t_us[a:b].astype(np.int64), self.addr[a:b].astype(np.int32)

    def subset(self, idx: Sequence[int]) -> "ClipSet":
        idx = np.asarray(idx, np.int64)
        parts_t = [self.t_us[self.offsets[i]:self.offsets[i + 1]] for i in idx]
        parts_a = [self.addr[self.offsets[i]:self.offsets[i + 1]] for i in idx]
        lens = np.array([p.shape[0] for p in parts_t], np.int64)
        return ClipSet(
            self.name, np.concatenate(parts_t) if parts_t else self.t_us[:0],
            np.concatenate(parts_a) if parts_a else self.addr[:0], np.concatenate([[0], np.cumsum(lens)]),
            self.label[idx], self.onset_us[idx], self.offset_us[idx], self.duration_us[idx], self.width[idx],
            self.height[idx], self.fps[idx], self.sensor_events[idx], dict(self.meta),
        )

    def save(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, t_us=self.t_us, addr=self.addr, offsets=self.offsets, label=self.label,
                 onset_us=self.onset_us, offset_us=self.offset_us, duration_us=self.duration_us, width=self.width,
                 height=self.height, fps=self.fps, sensor_events=self.sensor_events)
        os.replace(tmp, path)

    @classmethod
    def load(cls, path: Path, name: str) -> "ClipSet":
        with np.load(path) as z:
            return cls(name, *(z[k] for k in ("t_us", "addr", "offsets", "label", "onset_us", "offset_us",
                                              "duration_us", "width", "height", "fps", "sensor_events")))


def _cache_key(split: str, n: int) -> str:
    h = hashlib.sha1(f"{DATA_VERSION}:{split}:{n}:{SENSOR_SIZES}:{SceneOptions()}".encode()).hexdigest()[:10]
    return f"{split}_{n}_v{DATA_VERSION}_{h}.npz"


def build_split(split: str, n: int, *, workers: int = 2, cache_dir: Path | None = None, progress=None,
                start: int = 0) -> ClipSet:
    """Clips ``start .. start+n-1`` of ``split``, from the cache when present, else made with ``workers``
    processes (and cached). ``progress(done, total)`` is called as clips finish."""
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = cache_dir / (_cache_key(split, n) if start == 0 else _cache_key(f"{split}@{start}", n))
    if path.is_file():
        return ClipSet.load(path, split)
    jobs = [(split, i) for i in range(start, start + n)]
    results: list = []
    if workers > 1:
        with ProcessPoolExecutor(max_workers=workers, initializer=keep_freed_memory) as pool:
            for r in pool.map(_make_clip_arrays, jobs, chunksize=4):
                results.append(r)
                if progress is not None:
                    progress(len(results), n)
    else:
        for job in jobs:
            results.append(_make_clip_arrays(job))
            if progress is not None:
                progress(len(results), n)
    cs = _from_results(split, results)
    cs.save(path)
    return cs


def _from_results(name: str, results: Iterable[tuple]) -> ClipSet:
    results = list(results)
    lens = np.array([r[0].shape[0] for r in results], np.int64)
    col = list(zip(*results))
    return ClipSet(
        name, np.concatenate(col[0]) if results else np.zeros(0, np.int32),
        np.concatenate(col[1]) if results else np.zeros(0, np.int16), np.concatenate([[0], np.cumsum(lens)]),
        np.array(col[2], np.int8), np.array(col[3], np.int64), np.array(col[4], np.int64), np.array(col[5], np.int64),
        np.array(col[6], np.int32), np.array(col[7], np.int32), np.array(col[8], np.float32),
        np.array(col[9], np.int64),
    )


def bin_events(t_us: np.ndarray, addr: np.ndarray, bin_us: int, n_bins: int, n_addr: int = N_ADDR) -> np.ndarray:
    """Event counts per bin and address, float32 (n_bins, n_addr); events past the last bin are dropped.

    Bin k holds events with ``k·bin_us ≤ t < (k+1)·bin_us``: the training clock's approximation of the
    event-driven runtime (all events of a bin integrated at once, thresholds tested at the bin's end)."""
    k = np.asarray(t_us, np.int64) // int(bin_us)
    ok = (k >= 0) & (k < n_bins)
    flat = k[ok] * n_addr + np.asarray(addr)[ok].astype(np.int64)
    return np.bincount(flat, minlength=n_bins * n_addr).astype(np.float32).reshape(n_bins, n_addr)
