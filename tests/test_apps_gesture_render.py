"""The scene renderer: determinism, geometry of every gesture as seen in the image, none clips, errors."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from apps.gesture.render import GESTURES, LABELS, CameraNoise, SceneOptions, make_sprite, render_clip

CLEAN = SceneOptions(distractor_prob=0.0, noise_sigma=(0.0, 0.0), flicker_prob=0.0, shake_prob=0.0, blur_prob=0.0,
                     clutter_prob=0.0)


def _track(clip):
    """The hand's true centre and radius per frame (from the renderer), after checking the frames show it there:
    where the hand is fully in view, its centre pixel differs from the same pixel in a frame where the hand does
    not cover it."""
    x, y, r = clip.hand[:, 0], clip.hand[:, 1], clip.hand[:, 2]
    h, w = clip.frames.shape[1:]
    inside = (x - r > 0) & (x + r < w) & (y - r > 0) & (y + r < h)
    checked = 0
    for i in np.flatnonzero(inside)[::7]:
        far = np.flatnonzero(np.hypot(x - x[i], y - y[i]) > 1.3 * r)
        if far.shape[0] == 0:
            continue
        j = far[0]
        px, py = int(x[i]), int(y[i])
        patch_i = clip.frames[i, py - 1:py + 2, px - 1:px + 2].astype(float)
        patch_j = clip.frames[j, py - 1:py + 2, px - 1:px + 2].astype(float)
        checked += abs(patch_i.mean() - patch_j.mean()) > 5  # hand and background differ by ≥ 25 DN (mostly)
    return x, y, r, checked


def _hand_area(frame: np.ndarray) -> int:
    """Pixels off the background plane (the clean scenes' background is a linear gradient)."""
    h, w = frame.shape
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([xx.ravel(), yy.ravel(), np.ones(h * w)], axis=1)
    f = frame.astype(float).ravel()
    keep = np.ones(h * w, bool)
    for _ in range(3):
        coef, *_ = np.linalg.lstsq(a[keep], f[keep], rcond=None)
        keep = np.abs(f - a @ coef) < 12
    return int((~keep).sum())


def _at(clip, t_us):
    return int(np.searchsorted(clip.t_us, t_us))


def test_same_seed_same_frames_other_seed_other_frames():
    a = render_clip("circle_cw", 11, 64, 48, fps=30)
    b = render_clip("circle_cw", 11, 64, 48, fps=30)
    c = render_clip("circle_cw", 12, 64, 48, fps=30)
    assert np.array_equal(a.frames, b.frames) and a.onset_us == b.onset_us
    assert not np.array_equal(a.frames, c.frames)


@pytest.mark.parametrize("label", LABELS)
def test_every_label_renders_a_valid_clip(label):
    clip = render_clip(label, 3, 96, 72)
    n = clip.frames.shape[0]
    assert clip.frames.dtype == np.uint8 and clip.frames.shape[1:] == (72, 96)
    assert clip.t_us[0] == 0 and np.all(np.diff(clip.t_us) > 0) and clip.t_us.shape == (n,)
    assert abs(clip.t_us[-1] - 2_000_000) <= 1e6 / clip.fps
    assert 0 <= clip.onset_us < clip.offset_us <= clip.t_us[-1]
    assert clip.frames.std() > 1.0  # not a blank image


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("label,axis,sign", [("swipe_right", 0, 1), ("swipe_left", 0, -1), ("swipe_down", 1, 1),
                                             ("swipe_up", 1, -1)])
def test_swipes_move_the_hand_in_image_directions(label, axis, sign, seed):
    clip = render_clip(label, seed, 128, 96, options=CLEAN, fps=60)
    cx, cy, _, seen = _track(clip)
    pos = cx if axis == 0 else cy
    i0, i1 = _at(clip, clip.onset_us), _at(clip, clip.offset_us)
    size = 128 if axis == 0 else 96
    assert sign * (pos[i1] - pos[i0]) > 0.35 * size
    assert seen >= 1
    assert np.all(sign * np.diff(pos[i0:i1 + 1]) > -1.0)  # monotone along the swipe, apart from tremor


def _turn(cx, cy):
    """Total signed angle (radians) swept around the path's centre; positive = clockwise on screen (y down)."""
    x, y = cx - cx.mean(), cy - cy.mean()
    ang = np.unwrap(np.arctan2(y, x))
    return ang[-1] - ang[0]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("label,sign", [("circle_cw", 1), ("circle_ccw", -1)])
def test_circles_turn_clockwise_as_seen_in_the_image(label, sign, seed):
    clip = render_clip(label, seed, 128, 128, options=CLEAN, fps=60)
    cx, cy, _, seen = _track(clip)
    i0, i1 = _at(clip, clip.onset_us), _at(clip, clip.offset_us)
    turn = _turn(cx[i0:i1 + 1], cy[i0:i1 + 1])
    assert sign * turn > 1.4 * math.pi  # at least 0.8 of a turn (minus tremor)
    assert seen >= 1


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("label,sign", [("zoom_in", 1), ("zoom_out", -1)])
def test_zoom_changes_the_hand_size(label, sign, seed):
    clip = render_clip(label, seed, 128, 128, options=CLEAN, fps=60)
    _, _, r, seen = _track(clip)
    i0, i1 = _at(clip, clip.onset_us), _at(clip, clip.offset_us)
    ratio = r[i1] / r[i0]
    assert (ratio if sign > 0 else 1 / ratio) > 1.5
    area = _hand_area(clip.frames[i1]) / max(1, _hand_area(clip.frames[i0]))
    assert (area if sign > 0 else 1 / area) > 1.5


@pytest.mark.parametrize("seed", range(6))
def test_none_clips_have_no_large_displacement(seed):
    clip = render_clip("none", seed, 128, 128, options=CLEAN, fps=30)
    assert clip.onset_us == 0 and clip.offset_us == clip.t_us[-1]
    if clip.hand is None:
        return
    cx, cy, r, _ = _track(clip)
    assert max(np.ptp(cx), np.ptp(cy)) < 0.2 * 128, clip.info
    assert r.max() / r.min() < 1.3


def test_sprite_is_a_textured_mask():
    tex, alpha = make_sprite(np.random.default_rng(0), 120.0, 20.0, kind="hand")
    assert tex.shape == alpha.shape == (128, 128)
    assert 0.0 <= alpha.min() and alpha.max() <= 1.0 and 0.05 < alpha.mean() < 0.6


def test_camera_noise_is_white_in_space_and_time():
    rng = np.random.default_rng(5)
    noise = CameraNoise(rng, (48, 64))
    frames = np.stack([noise.frame(rng) for _ in range(400)])
    assert frames.shape == (400, 48, 64) and frames.dtype == np.float32
    assert abs(frames.mean()) < 0.02 and abs(frames.std() - 1.0) < 0.02
    # no two pixels of a frame share a sample (the bank holds twice a frame, read from one offset); float32 normals
    # repeat a value now and then, a bank that wrapped within a frame would repeat thousands
    assert all(np.unique(f).size > 0.99 * f.size for f in frames[:20])
    # a pixel over time: uncorrelated from frame to frame, and close to normal
    px = frames[:, 17, 23]
    assert abs(np.corrcoef(px[:-1], px[1:])[0, 1]) < 0.15
    d = frames[1:] - frames[:-1]
    assert abs(d.std() - math.sqrt(2.0)) < 0.03  # independent frames: differences have twice the variance
    flat = frames.ravel()
    assert abs((np.abs(flat) < 1.0).mean() - 0.6827) < 0.01  # the normal's one-sigma mass
    # neighbours within a frame are uncorrelated too
    assert abs(np.corrcoef(frames[:, :, :-1].ravel(), frames[:, :, 1:].ravel())[0, 1]) < 0.02
    with pytest.raises(ValueError):
        noise.frame(rng)[0, 0] = 1.0  # read-only view into the bank


def test_noise_sigma_reaches_the_frames():
    quiet = dataclasses.replace(CLEAN, noise_sigma=(0.0, 0.0))
    noisy = dataclasses.replace(CLEAN, noise_sigma=(2.0, 2.0))
    for seed in range(30):
        a = render_clip("none", seed, 64, 48, fps=30, options=quiet)
        if a.info["none_kind"] == "static" and a.info["noise_sigma"] == 0.0:
            break
    else:
        raise AssertionError("no static none clip among the seeds")
    b = render_clip("none", seed, 64, 48, fps=30, options=noisy)
    sigma = b.info["noise_sigma"]
    assert 0.4 < sigma <= 2.0  # capped at 3 % of the background level
    diff = b.frames.astype(float) - a.frames.astype(float)
    # rounding to whole DN adds variance 1/12 to an unrounded difference
    assert abs(diff.std() - math.sqrt(sigma ** 2 + 1 / 12)) < 0.15 * sigma + 0.1


def test_gesture_vocabulary():
    assert GESTURES == ("swipe_left", "swipe_right", "swipe_up", "swipe_down", "circle_cw", "circle_ccw", "zoom_in",
                        "zoom_out")
    assert LABELS == GESTURES + ("none",)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="unknown label 'wave'"):
        render_clip("wave", 0)
    with pytest.raises(ValueError, match="width and height must be in 8..4096"):
        render_clip("none", 0, 4, 4)
