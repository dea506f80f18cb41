"""Procedural gesture scenes: hand-like sprites moving over cluttered backgrounds, rendered as grey video frames.

One call, ``render_clip(label, seed, width, height)``, draws every choice from ``np.random.default_rng(seed)`` in
a fixed order and returns uint8 frames with their times and the gesture's true onset and offset. The same
arguments always give the same frames. What varies from clip to clip (each range is in :class:`SceneOptions`):

* **hand**: an open hand (palm, 0–4 fingers, optional thumb and wrist), a fist, an ellipse, a rounded box or a
  random blob; its size, brightness (above or below the background), texture (flat, gradient, stripes, smooth
  noise, spots), edge softness and slow rotation;
* **motion**: start/end positions, amplitude, speed profile (linear, ease in/out, minimum jerk), arcs and
  cross-axis drift, idle tremor before and after the gesture, entering from or leaving through the frame edge;
* **scene**: flat, gradient or cluttered backgrounds (rectangles, discs, lines, blurred), 0–4 distractor objects
  (small, moving on their own paths), camera shake, lighting flicker (slow waves, mains flicker aliased by the
  frame rate, steps), Gaussian camera noise, motion blur, frame rate 24–240 fps.

Directions are in image orientation: x grows to the right, y grows downwards, and ``circle_cw`` is clockwise as
seen in the image (angle θ growing in ``(x, y) = (cx + r cos θ, cy + r sin θ)``). ``none`` clips hold only idle or
slowly drifting hands, fidgeting, distractors, flicker and noise.

Example::

    clip = render_clip("swipe_right", seed=3, width=128, height=128)
    clip.frames.shape, clip.t_us[-1], clip.onset_us < clip.offset_us   # ((N, 128, 128), ..., True)
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Callable

import cv2
import numpy as np

from graphs.gesture import GESTURES, LABELS

__all__ = ["GESTURES", "LABELS", "SceneOptions", "RenderedClip", "render_clip", "make_sprite", "PROFILES",
           "CameraNoise"]

_SPRITE_PX = 128  # sprites are drawn on a square canvas of this size; their bounding radius is ~0.45 of it
_SPRITE_RADIUS = 0.45 * _SPRITE_PX


@dataclass(frozen=True)
class SceneOptions:
    """Ranges the scene generator draws from. Sizes are fractions of ``min(width, height)``; times in seconds."""

    duration_s: float = 2.0
    fps_choices: tuple[float, ...] = (24.0, 30.0, 30.0, 60.0, 60.0, 120.0, 240.0)
    onset_s: tuple[float, float] = (0.1, 0.6)
    gesture_s: tuple[float, float] = (0.35, 1.1)  # swipes and zooms
    circle_s: tuple[float, float] = (0.7, 1.5)  # a hand takes about a second per turn; faster is a blur at 50 ms
    hand_radius: tuple[float, float] = (0.15, 0.32)
    swipe_amplitude: tuple[float, float] = (0.5, 0.95)  # of the frame's length along the swipe
    circle_radius: tuple[float, float] = (0.15, 0.3)
    circle_turns: tuple[float, float] = (0.9, 1.25)
    zoom_ratio: tuple[float, float] = (2.0, 3.5)
    distractor_prob: float = 0.35  # chance a gesture clip has distractors (none clips: their own mix)
    distractor_radius: tuple[float, float] = (0.02, 0.06)
    noise_sigma: tuple[float, float] = (0.0, 3.0)  # camera noise, DN (drawn skewed towards 0)
    flicker_prob: float = 0.3
    shake_prob: float = 0.15
    blur_prob: float = 0.25
    clutter_prob: float = 0.6


@dataclass(frozen=True)
class RenderedClip:
    label: str
    frames: np.ndarray  # (N, H, W) uint8
    t_us: np.ndarray  # (N,) int64, strictly increasing, t_us[0] == 0
    onset_us: int  # when the gesture motion starts (for none: the clip start)
    offset_us: int  # when it ends
    info: dict = field(default_factory=dict)
    hand: np.ndarray | None = None  # (N, 4) hand centre x, y (px), bounding radius (px), angle (rad); None: no hand

    @property
    def fps(self) -> float:
        return float(self.info.get("fps", 0.0))


# -- speed profiles ------------------------------------------------------------------------------------------------

def _linear(u: np.ndarray) -> np.ndarray:
    return u


def _smooth(u: np.ndarray) -> np.ndarray:
    return u * u * (3 - 2 * u)


def _min_jerk(u: np.ndarray) -> np.ndarray:
    return u ** 3 * (10 - 15 * u + 6 * u * u)


def _ease_in(u: np.ndarray) -> np.ndarray:
    return u * u


def _ease_out(u: np.ndarray) -> np.ndarray:
    return 1 - (1 - u) ** 2


PROFILES: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "linear": _linear, "smooth": _smooth, "min_jerk": _min_jerk, "ease_in": _ease_in, "ease_out": _ease_out,
}


# -- sprites ---------------------------------------------------------------------------------------------------------

def _texture(rng: np.random.Generator, size: int, level: float, contrast: float) -> np.ndarray:
    """A float32 (size, size) texture around ``level`` with about ±``contrast`` variation."""
    kind = rng.choice(["flat", "flat", "gradient", "stripes", "noise", "spots"])
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32) / size
    if kind == "flat":
        pattern = np.zeros((size, size), np.float32)
    elif kind == "gradient":
        a = rng.uniform(0, 2 * math.pi)
        pattern = (math.cos(a) * (xx - 0.5) + math.sin(a) * (yy - 0.5)) * 2.0
    elif kind == "stripes":
        a = rng.uniform(0, math.pi)
        period = rng.uniform(0.08, 0.3)
        pattern = np.sin(2 * math.pi * (math.cos(a) * xx + math.sin(a) * yy) / period)
    elif kind == "noise":
        cells = int(rng.integers(3, 10))
        coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
        pattern = cv2.resize(coarse, (size, size), interpolation=cv2.INTER_CUBIC)
    else:
        pattern = np.zeros((size, size), np.float32)
        for _ in range(int(rng.integers(3, 12))):
            c = (int(rng.integers(0, size)), int(rng.integers(0, size)))
            cv2.circle(pattern, c, int(rng.integers(3, size // 6)), float(rng.choice([-1.0, 1.0])), -1, cv2.LINE_AA)
    return (level + contrast * pattern).astype(np.float32)


def _hand_mask(rng: np.random.Generator, s: int) -> np.ndarray:
    """An open hand: palm ellipse, 0–4 fingers fanning up, optional thumb and wrist (uint8 mask, 255 inside)."""
    m = np.zeros((s, s), np.uint8)
    k = s / 128.0
    cx, cy = s / 2 + rng.uniform(-4, 4) * k, s * 0.6
    pa, pb = rng.uniform(20, 28) * k, rng.uniform(22, 30) * k
    cv2.ellipse(m, (int(cx), int(cy)), (int(pa), int(pb)), rng.uniform(-10, 10), 0, 360, 255, -1, cv2.LINE_AA)
    n_fingers = int(rng.choice([0, 2, 3, 4, 4, 4]))
    spread = rng.uniform(0.1, 0.35)
    width = rng.uniform(7, 12) * k
    for i in range(n_fingers):
        f = (i - (n_fingers - 1) / 2) / max(1, n_fingers - 1) if n_fingers > 1 else 0.0
        ang = -math.pi / 2 + f * spread * 2 + rng.normal(0, 0.05)
        base = (cx + f * pa * 1.4, cy - pb * 0.7)
        length = rng.uniform(22, 38) * k * (1.0 - 0.25 * abs(f))
        tip = (base[0] + length * math.cos(ang), base[1] + length * math.sin(ang))
        cv2.line(m, (int(base[0]), int(base[1])), (int(tip[0]), int(tip[1])), 255, max(2, int(width)), cv2.LINE_AA)
    if rng.random() < 0.7:
        side = rng.choice([-1.0, 1.0])
        base = (cx + side * pa * 0.8, cy)
        length = rng.uniform(18, 30) * k
        lift = rng.uniform(0.3, 0.9)  # thumb angle above the horizontal
        tip = (base[0] + side * length * math.cos(lift), base[1] - length * math.sin(lift))
        cv2.line(m, (int(base[0]), int(base[1])), (int(tip[0]), int(tip[1])), 255, max(2, int(width * 1.1)),
                 cv2.LINE_AA)
    if rng.random() < 0.4:
        w = rng.uniform(14, 22) * k
        cv2.rectangle(m, (int(cx - w), int(cy + pb * 0.6)), (int(cx + w), s - 1), 255, -1, cv2.LINE_AA)
    return m


def _blob_mask(rng: np.random.Generator, s: int) -> np.ndarray:
    """A random star-convex blob (radial function with a few harmonics)."""
    m = np.zeros((s, s), np.uint8)
    th = np.linspace(0, 2 * math.pi, 64, endpoint=False)
    r = np.ones_like(th)
    for h in range(2, 6):
        r += rng.uniform(0, 0.25 / (h - 1)) * np.cos(h * th + rng.uniform(0, 2 * math.pi))
    r = r / r.max() * s * 0.42
    pts = np.stack([s / 2 + r * np.cos(th), s / 2 + r * np.sin(th)], axis=1)
    cv2.fillPoly(m, [np.round(pts * 16).astype(np.int32)], 255, cv2.LINE_AA, shift=4)
    return m


def _simple_mask(rng: np.random.Generator, s: int, kind: str) -> np.ndarray:
    m = np.zeros((s, s), np.uint8)
    c = (s // 2, s // 2)
    if kind == "ellipse":
        cv2.ellipse(m, c, (int(s * rng.uniform(0.3, 0.44)), int(s * rng.uniform(0.22, 0.44))), rng.uniform(0, 180),
                    0, 360, 255, -1, cv2.LINE_AA)
    elif kind == "box":
        a, b = s * rng.uniform(0.18, 0.3), s * rng.uniform(0.18, 0.3)
        r = int(min(a, b) * rng.uniform(0.2, 0.8))
        cv2.rectangle(m, (int(c[0] - a + r), int(c[1] - b + r)), (int(c[0] + a - r), int(c[1] + b - r)), 255, 2 * r + 1,
                      cv2.LINE_AA)
        cv2.rectangle(m, (int(c[0] - a + r), int(c[1] - b + r)), (int(c[0] + a - r), int(c[1] + b - r)), 255, -1)
    else:  # fist: a palm and a row of knuckles
        cv2.ellipse(m, (c[0], int(s * 0.55)), (int(s * 0.26), int(s * 0.24)), 0, 0, 360, 255, -1, cv2.LINE_AA)
        for i in range(4):
            x = int(c[0] + (i - 1.5) * s * 0.12)
            cv2.circle(m, (x, int(s * 0.34)), int(s * rng.uniform(0.07, 0.09)), 255, -1, cv2.LINE_AA)
    return m


def make_sprite(rng: np.random.Generator, level: float, contrast: float, kind: str | None = None
                ) -> tuple[np.ndarray, np.ndarray]:
    """(texture float32, alpha float32 in [0, 1]) of a hand-like sprite on a ``_SPRITE_PX`` square canvas."""
    s = _SPRITE_PX
    if kind is None:
        kind = str(rng.choice(["hand", "hand", "hand", "fist", "ellipse", "box", "blob"]))
    if kind == "hand":
        mask = _hand_mask(rng, s)
    elif kind == "blob":
        mask = _blob_mask(rng, s)
    else:
        mask = _simple_mask(rng, s, kind)
    alpha = mask.astype(np.float32) / 255.0
    soft = rng.uniform(0.0, 2.5)
    if soft > 0.5:
        alpha = cv2.GaussianBlur(alpha, (0, 0), soft)
    return _texture(rng, s, level, contrast), alpha


# -- backgrounds --------------------------------------------------------------------------------------------------

def _background(rng: np.random.Generator, w: int, h: int, level: float, clutter: bool) -> np.ndarray:
    m = min(w, h)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    a = rng.uniform(0, 2 * math.pi)
    grad = rng.uniform(0, 40) * ((math.cos(a) * (xx - w / 2) + math.sin(a) * (yy - h / 2)) / m)
    bg = (level + grad).astype(np.float32)
    if clutter:
        for _ in range(int(rng.integers(3, 25))):
            v = float(np.clip(level + rng.normal(0, 50), 0, 255))
            kind = rng.integers(0, 3)
            x0, y0 = int(rng.integers(0, w)), int(rng.integers(0, h))
            size = int(max(2, m * rng.uniform(0.03, 0.25)))
            if kind == 0:
                cv2.rectangle(bg, (x0, y0), (x0 + size, y0 + int(size * rng.uniform(0.3, 2))), v, -1, cv2.LINE_AA)
            elif kind == 1:
                cv2.circle(bg, (x0, y0), size // 2, v, -1, cv2.LINE_AA)
            else:
                x1, y1 = int(rng.integers(0, w)), int(rng.integers(0, h))
                cv2.line(bg, (x0, y0), (x1, y1), v, max(1, int(m * rng.uniform(0.005, 0.03))), cv2.LINE_AA)
        sigma = rng.uniform(0, 2.0) * m / 128
        if sigma > 0.3:
            bg = cv2.GaussianBlur(bg, (0, 0), sigma)
    return bg


# -- compositing ----------------------------------------------------------------------------------------------------

def _paste(frame: np.ndarray, tex: np.ndarray, alpha: np.ndarray, cx: float, cy: float, radius: float,
           angle: float) -> None:
    """Composite a sprite whose bounding radius becomes ``radius`` px, centred at (cx, cy), rotated by ``angle``
    (radians), into ``frame`` in place; only the sprite's bounding box is warped."""
    h, w = frame.shape
    scale = radius / _SPRITE_RADIUS
    half = _SPRITE_PX / 2 * scale * 1.45  # bounding box of the rotated canvas
    x0, y0 = max(0, int(math.floor(cx - half))), max(0, int(math.floor(cy - half)))
    x1, y1 = min(w, int(math.ceil(cx + half)) + 1), min(h, int(math.ceil(cy + half)) + 1)
    if x1 <= x0 or y1 <= y0 or scale <= 0:
        return
    c, s = math.cos(angle) * scale, math.sin(angle) * scale
    sc = _SPRITE_PX / 2
    # sprite point p maps to R·(p - sc) + (cx, cy), expressed in the box's coordinates
    mat = np.array([[c, -s, cx - x0 - (c * sc - s * sc)], [s, c, cy - y0 - (s * sc + c * sc)]], np.float32)
    size = (x1 - x0, y1 - y0)
    a = cv2.warpAffine(alpha, mat, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    t = cv2.warpAffine(tex, mat, size, flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    roi = frame[y0:y1, x0:x1]
    roi += a * (t - roi)


class CameraNoise:
    """Gaussian camera noise for the frames of one clip, drawn once per clip instead of once per pixel per frame.

    Fresh normals for every pixel of every frame were about 45 % of the CPU time of making a training clip (12 ns a
    sample on the training machine, 3 M samples in a typical clip). The bank holds ``2 · n_px`` normals; each frame
    reads ``n_px`` consecutive ones from a random offset. So the pixels of one frame never share a sample, and a
    pixel's samples over the frames come from independent offsets: the noise is white in space and in time as far
    as the emulator (which compares each pixel with its own past) can tell."""

    def __init__(self, rng: np.random.Generator, shape: tuple[int, int]):
        self.shape = (int(shape[0]), int(shape[1]))
        n_px = self.shape[0] * self.shape[1]
        bank = rng.standard_normal(2 * n_px, dtype=np.float32)
        self._bank = np.concatenate([bank, bank[:n_px]])  # any offset reads n_px values without wrapping

    def frame(self, rng: np.random.Generator) -> np.ndarray:
        """One frame of unit-variance noise (a read-only view into the bank)."""
        n_px = self.shape[0] * self.shape[1]
        o = int(rng.integers(0, 2 * n_px))
        view = self._bank[o:o + n_px].reshape(self.shape)
        view.flags.writeable = False
        return view


# -- motion -----------------------------------------------------------------------------------------------------------

def _tremor(rng: np.random.Generator, n: int, fps: float, amp: float) -> np.ndarray:
    """Smooth random jitter (n, 2) with standard deviation about ``amp`` (px)."""
    if amp <= 0 or n == 0:
        return np.zeros((n, 2))
    k = max(1, int(fps / 8))
    raw = rng.normal(0, 1, (n + 2 * k, 2))
    ker = np.hanning(2 * k + 1)
    ker /= np.sqrt((ker ** 2).sum())
    sm = np.stack([np.convolve(raw[:, i], ker, mode="same") for i in range(2)], axis=1)[k:k + n]
    return sm * amp


def _gesture_track(rng, label: str, opt: SceneOptions, w: int, h: int, p: np.ndarray, r0: float):
    """Hand centre (x, y), radius and angle per frame for gesture ``label`` at eased progress ``p`` ∈ [0, 1]."""
    m = min(w, h)
    n = p.shape[0]
    angle = rng.uniform(-0.4, 0.4) + rng.uniform(-0.3, 0.3) * p
    radius = r0 * (1 + rng.uniform(-0.1, 0.1) * p)
    if label.startswith("swipe"):
        horizontal = label in ("swipe_left", "swipe_right")
        length = w if horizontal else h
        cross_len = h if horizontal else w
        amp = rng.uniform(*opt.swipe_amplitude)
        start = rng.uniform(-0.12, max(-0.1, 1.0 - amp - 0.05))
        along = (start + amp * p) * length
        if label in ("swipe_left", "swipe_up"):
            along = length - along
        cross = (rng.uniform(0.3, 0.7) + rng.uniform(-0.1, 0.1) * p) * cross_len
        cross = cross + rng.uniform(-0.08, 0.08) * m * np.sin(math.pi * p)  # arc
        x, y = (along, cross) if horizontal else (cross, along)
    elif label.startswith("circle"):
        rad = rng.uniform(*opt.circle_radius) * m
        aspect = rng.uniform(0.75, 1.33)
        rx, ry = rad * math.sqrt(aspect), rad / math.sqrt(aspect)
        cx = rng.uniform(max(0.25 * w, rx + 0.05 * w), min(0.75 * w, w - rx - 0.05 * w)) if 2 * rx < 0.9 * w else w / 2
        cy = rng.uniform(max(0.25 * h, ry + 0.05 * h), min(0.75 * h, h - ry - 0.05 * h)) if 2 * ry < 0.9 * h else h / 2
        turn = 1.0 if label == "circle_cw" else -1.0
        theta = rng.uniform(0, 2 * math.pi) + turn * 2 * math.pi * rng.uniform(*opt.circle_turns) * p
        x, y = cx + rx * np.cos(theta), cy + ry * np.sin(theta)
    elif label.startswith("zoom"):
        ratio = rng.uniform(*opt.zoom_ratio)
        small = r0 * rng.uniform(0.35, 0.8)
        big = min(small * ratio, 0.75 * m)
        grow = p if label == "zoom_in" else 1 - p
        radius = small * (big / small) ** grow
        x = (rng.uniform(0.3, 0.7) + rng.uniform(-0.08, 0.08) * p) * w
        y = (rng.uniform(0.3, 0.7) + rng.uniform(-0.08, 0.08) * p) * h
        x, y = np.broadcast_to(x, (n,)), np.broadcast_to(y, (n,))
    else:
        raise ValueError(f"render: unknown gesture label {label!r}; expected one of {LABELS}")
    return np.asarray(x, float), np.asarray(y, float), np.broadcast_to(radius, (n,)).astype(float), angle


def _none_track(rng, kind: str, w: int, h: int, t_s: np.ndarray, r0: float):
    """Hand pose per frame for a ``none`` clip: idle, slow drift, fidgeting or in-place rotation."""
    m = min(w, h)
    n = t_s.shape[0]
    x0, y0 = rng.uniform(0.25, 0.75) * w, rng.uniform(0.25, 0.75) * h
    u = t_s / max(t_s[-1], 1e-9)
    x, y = np.full(n, x0), np.full(n, y0)
    radius = np.full(n, r0)
    angle = np.full(n, rng.uniform(-0.4, 0.4))
    if kind == "drift":  # slow, short displacement and a small size change
        d = rng.uniform(0.03, 0.12) * m
        a = rng.uniform(0, 2 * math.pi)
        x, y = x0 + d * math.cos(a) * u, y0 + d * math.sin(a) * u
        radius = r0 * (1 + rng.uniform(-0.15, 0.15) * u)
    elif kind == "fidget":  # small back-and-forth wobble in place
        amp = rng.uniform(0.015, 0.06) * m
        f = rng.uniform(1.0, 3.5)
        a = rng.uniform(0, 2 * math.pi)
        wob = amp * np.sin(2 * math.pi * f * t_s + rng.uniform(0, 2 * math.pi))
        x, y = x0 + wob * math.cos(a), y0 + wob * math.sin(a)
    elif kind == "rotate":  # turning in place (the centre stays put)
        angle = angle + rng.uniform(-0.8, 0.8) * np.sin(math.pi * u)
    return x, y, radius, angle


def _distractor_tracks(rng, count: int, opt: SceneOptions, w: int, h: int, t_s: np.ndarray):
    m = min(w, h)
    tracks = []
    for _ in range(count):
        level = rng.uniform(10, 245)
        tex, alpha = make_sprite(rng, level, rng.uniform(0, 30), kind=str(rng.choice(["ellipse", "box", "blob"])))
        r = rng.uniform(*opt.distractor_radius) * m
        kind = rng.choice(["linear", "walk", "orbit", "blink"])
        n = t_s.shape[0]
        if kind == "linear":
            p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            v = rng.normal(0, 1, 2)
            v = v / np.linalg.norm(v) * rng.uniform(0.1, 0.6) * m
            xy = p0 + np.outer(t_s, v)
        elif kind == "walk":
            p0 = np.array([rng.uniform(0, w), rng.uniform(0, h)])
            steps = rng.normal(0, 0.25 * m, (n, 2)) / math.sqrt(max(n, 1))
            xy = p0 + np.cumsum(steps, axis=0)
        elif kind == "orbit":  # a small object circling (ceiling fan, pendulum)
            c = np.array([rng.uniform(0.1, 0.9) * w, rng.uniform(0.1, 0.9) * h])
            rad = rng.uniform(0.02, 0.07) * m
            th = rng.uniform(0, 2 * math.pi) + rng.choice([-1, 1]) * 2 * math.pi * rng.uniform(0.5, 3) * t_s
            xy = c + rad * np.stack([np.cos(th), np.sin(th)], axis=1)
        else:  # static, blinking on and off (an LED, a screen)
            xy = np.tile([rng.uniform(0, w), rng.uniform(0, h)], (n, 1))
        visible = np.ones(n, bool)
        if kind == "blink":
            f = rng.uniform(0.5, 4.0)
            visible = np.sin(2 * math.pi * f * t_s + rng.uniform(0, 6.3)) > 0
        tracks.append((tex, alpha, xy, r, rng.uniform(0, 2 * math.pi), visible))
    return tracks


def _lighting(rng, opt: SceneOptions, t_s: np.ndarray, flicker: bool) -> np.ndarray:
    gain = np.ones_like(t_s)
    if not flicker:
        return gain
    kind = rng.choice(["wave", "wave", "mains", "step"])
    if kind == "wave":
        gain = 1 + rng.uniform(0.02, 0.15) * np.sin(2 * math.pi * rng.uniform(0.3, 6) * t_s + rng.uniform(0, 6.3))
    elif kind == "mains":  # 100/120 Hz flicker sampled at the frame rate: an aliased, frame-to-frame shimmer
        gain = 1 + rng.uniform(0.01, 0.06) * np.sin(2 * math.pi * rng.choice([100.0, 120.0]) * t_s
                                                    + rng.uniform(0, 6.3))
    else:
        t_step = rng.uniform(0, t_s[-1] if t_s.shape[0] else 1)
        gain = np.where(t_s < t_step, 1.0, 1 + rng.uniform(-0.2, 0.2))
    return gain


# -- the clip -----------------------------------------------------------------------------------------------------------

def render_clip(label: str, seed: int, width: int = 128, height: int = 128, *, options: SceneOptions | None = None,
                fps: float | None = None, duration_s: float | None = None) -> RenderedClip:
    """Render one clip of ``label`` (a gesture or ``"none"``) from ``seed``; see the module docstring."""
    if label not in LABELS:
        raise ValueError(f"render_clip: unknown label {label!r}; expected one of {', '.join(LABELS)}")
    if not (8 <= int(width) <= 4096 and 8 <= int(height) <= 4096):
        raise ValueError(f"render_clip: width and height must be in 8..4096 px, got {width}×{height}")
    opt = options if options is not None else SceneOptions()
    rng = np.random.default_rng(seed)
    w, h, m = int(width), int(height), min(int(width), int(height))
    fps = float(fps if fps is not None else rng.choice(opt.fps_choices))
    dur = float(duration_s if duration_s is not None else opt.duration_s)
    n = max(2, int(round(dur * fps)) + 1)
    t_s = np.arange(n) / fps
    t_us = np.round(t_s * 1e6).astype(np.int64)

    bg_level = rng.uniform(15, 235)
    hand_level = bg_level + rng.choice([-1.0, 1.0]) * rng.uniform(40, 150)
    if not 5 <= hand_level <= 250:
        hand_level = bg_level - math.copysign(rng.uniform(40, 150), hand_level - bg_level)
    hand_level = float(np.clip(hand_level, 5, 250))
    bg = _background(rng, w, h, bg_level, clutter=rng.random() < opt.clutter_prob)
    tex, alpha = make_sprite(rng, hand_level, rng.uniform(0, 40))
    r0 = rng.uniform(*opt.hand_radius) * m

    info: dict = {"fps": fps, "width": w, "height": h, "seed": int(seed)}
    if label == "none":
        kind = str(rng.choice(["static", "empty", "drift", "fidget", "rotate", "distractors"]))
        info["none_kind"] = kind
        x, y, radius, angle = _none_track(rng, kind, w, h, t_s, r0)
        show_hand = kind != "empty" and not (kind == "distractors" and rng.random() < 0.5)
        onset_us, offset_us = 0, int(t_us[-1])
        n_distract = int(rng.integers(1, 5)) if kind in ("distractors", "empty") or rng.random() < 0.5 else 0
    else:
        length = min(rng.uniform(*(opt.circle_s if label.startswith("circle") else opt.gesture_s)),
                     dur - opt.onset_s[0] - 0.05)
        onset = rng.uniform(opt.onset_s[0], max(opt.onset_s[0], min(opt.onset_s[1], dur - length - 0.05)))
        u = np.clip((t_s - onset) / length, 0.0, 1.0)
        profile = str(rng.choice(list(PROFILES)))
        info["profile"] = profile
        p = PROFILES[profile](u)
        x, y, radius, angle = _gesture_track(rng, label, opt, w, h, p, r0)
        show_hand = True
        onset_us, offset_us = int(round(onset * 1e6)), int(round((onset + length) * 1e6))
        n_distract = int(rng.integers(1, 4)) if rng.random() < opt.distractor_prob else 0
    jitter = _tremor(rng, n, fps, rng.uniform(0.0, 0.012) * m)
    x, y = x + jitter[:, 0], y + jitter[:, 1]
    angle = np.broadcast_to(angle, (n,))
    distractors = _distractor_tracks(rng, n_distract, opt, w, h, t_s)
    shake = _tremor(rng, n, fps, rng.uniform(0.3, 1.5) * m / 128) if rng.random() < opt.shake_prob else None
    gain = _lighting(rng, opt, t_s, flicker=rng.random() < opt.flicker_prob)
    sigma = opt.noise_sigma[0] + (opt.noise_sigma[1] - opt.noise_sigma[0]) * rng.random() ** 3
    sigma = min(sigma, 0.03 * max(bg_level, 5.0))  # a dark scene with strong noise would be noise only
    blur = rng.random() < opt.blur_prob
    info.update(n_distractors=n_distract, noise_sigma=round(float(sigma), 2), blur=bool(blur))

    def compose(i: int, dt: float) -> np.ndarray:
        """The scene at frame ``i`` shifted by ``dt`` frames (for motion blur)."""
        j = min(max(i + dt, 0.0), n - 1.0)
        i0 = int(math.floor(j))
        i1 = min(i0 + 1, n - 1)
        f = j - i0

        def lerp(a):
            return a[i0] * (1 - f) + a[i1] * f

        frame = bg.copy()
        if shake is not None:
            sx, sy = lerp(shake)
            mat = np.array([[1, 0, sx], [0, 1, sy]], np.float32)
            frame = cv2.warpAffine(frame, mat, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        else:
            sx = sy = 0.0
        for dtex, dalpha, xy, r, ang, visible in distractors:
            if visible[i]:
                _paste(frame, dtex, dalpha, lerp(xy[:, 0]) + sx, lerp(xy[:, 1]) + sy, r, ang)
        if show_hand:
            _paste(frame, tex, alpha, lerp(x) + sx, lerp(y) + sy, lerp(radius), lerp(angle))
        return frame

    noise = CameraNoise(rng, (h, w)) if sigma > 0 else None
    frames = np.empty((n, h, w), np.uint8)
    for i in range(n):
        if blur:
            img = (compose(i, -0.5) + compose(i, -0.25) + compose(i, 0.0)) / 3.0
        else:
            img = compose(i, 0.0)
        img *= gain[i]
        if noise is not None:
            img += np.float32(sigma) * noise.frame(rng)
        np.clip(img + 0.5, 0, 255, out=img)
        frames[i] = img.astype(np.uint8)
    hand = np.stack([x, y, np.broadcast_to(radius, (n,)), angle], axis=1) if show_hand else None
    return RenderedClip(label, frames, t_us, onset_us, offset_us, info, hand)
