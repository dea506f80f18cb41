"""Live view: display check before any window (no display here), rendering, and the standalone command."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from apps.live_view import EventFrameView, choose_window, display_available, render_event_frame
from runtime.events import make_dvs_events
from runtime.spec import dvs_spec
from runtime.testing import cut_at, run_stage

REPO = Path(__file__).resolve().parents[1]


def _env(**changes):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    env.update(changes)
    return env


def test_no_display_in_the_environment_means_no_window():
    ok, why = display_available(env={}, platform="linux")
    assert not ok and "no display" in why
    assert choose_window(False) == (False, None)
    use, message = choose_window(True, env={}, platform="linux")
    assert not use and message.endswith("running without a window (--no-window)")


def test_a_display_that_cannot_be_reached_is_caught_by_the_probe_not_by_this_process():
    # cv2.imshow in this process would abort it (exit 134); the probe runs in a child
    ok, why = display_available(env=_env(DISPLAY=":87"), platform="linux")
    assert not ok and "a test window could not be opened" in why


def _live_view(env, *args):
    video = REPO.parent / "shared" / "data" / "vision" / "vid2e_sample.mp4"
    return subprocess.run([sys.executable, "-m", "apps.live_view", "--video", str(video), "--speed", "8", *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=120)


def test_live_view_without_display_falls_back_with_a_message(shared_data):
    res = _live_view(_env())
    assert res.returncode == 0, res.stderr
    assert "live view: no display" in res.stderr and "running without a window" in res.stderr
    assert "9 frames" in res.stdout and "ended: end of video" in res.stdout and "window off" in res.stdout


def test_live_view_with_a_dead_display_does_not_abort(shared_data):
    res = _live_view(_env(DISPLAY=":87"))
    assert res.returncode == 0, (res.returncode, res.stderr[-500:])  # not 134
    assert "a test window could not be opened" in res.stderr and "window off" in res.stdout


def test_live_view_no_window_flag_skips_the_check(shared_data):
    res = _live_view(_env(DISPLAY=":87"), "--no-window")
    assert res.returncode == 0 and "live view:" not in res.stderr and "window off" in res.stdout


def test_render_event_frame_colours():
    on = np.zeros((3, 4), np.int32)
    off = np.zeros((3, 4), np.int32)
    on[0, 1] = 1
    on[2, 3] = 9
    off[1, 2] = 2
    img = render_event_frame(on, off)
    assert img.shape == (3, 4, 3)
    assert tuple(img[0, 0]) == (64, 64, 64)  # nothing
    b, g, r = img[0, 1]
    assert g > b and g > 64 and g == 160  # ON: green, 128 + 32 per event
    assert tuple(img[2, 3]) == (127, 255, 127)  # saturates
    b, g, r = img[1, 2]
    assert r == 192 and b < r and g < r  # OFF: red
    assert render_event_frame(on, off, scale=3).shape == (9, 12, 3)


def test_view_stage_without_window_accumulates_and_renders():
    spec = dvs_spec(4, 3)
    ev = make_dvs_events([1, 1, 2, 3], [0, 0, 1, 2], [10, 20, 30, 40], [True, True, False, True])
    ev.flags.writeable = False
    view = EventFrameView(window=False, display_hz=1e-6)  # first packet at once, then only at the end
    _, state, outs = run_stage(view, spec, cut_at(ev, [2]))
    assert outs == []
    res = view.result(state)
    assert res["window"] is False and res["window_frames"] == 0 and res["view_frames"] == 2
    img = state.last_frame  # the second display period: the first one's events were cleared
    assert tuple(img[0, 1]) == (64, 64, 64)
    assert tuple(img[1, 2]) == (40, 40, 160)  # one OFF event at (x=2, y=1)
    assert tuple(img[2, 3]) == (80, 160, 80)  # one ON event at (x=3, y=2)
