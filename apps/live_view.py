"""Live view: an OpenCV window showing the ON/OFF event frame at display rate.

``EventFrameView`` is a sink stage: it accumulates the events of each display period into an image (ON white-green,
OFF red, nothing grey) and shows it at most ``display_hz`` times per second of wall time. The check for a display
happens before any window is opened, because with opencv-python (Qt backend) and no display ``cv2.imshow`` aborts
the whole process (SIGABRT, exit code 134) instead of raising: ``choose_window`` first looks for a display in the
environment and then opens and closes a window in a child process, so a broken display kills only the probe.
Without a display the view runs without a window (it still renders, counts and reports) and says why.

Standalone::

    python -m apps.live_view --camera 0
    python -m apps.live_view --video ../shared/data/vision/vid2e_sample.mp4 --no-window
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

import cv2
import numpy as np

from runtime.packet import Packet
from runtime.spec import StreamSpec

__all__ = ["EventFrameView", "display_available", "choose_window", "render_event_frame", "add_view_arguments", "main"]

_PROBE = "import cv2; cv2.namedWindow('clockless-probe'); cv2.waitKey(1); cv2.destroyAllWindows()"


def display_available(env: Mapping[str, str] | None = None, platform: str | None = None,
                      probe_timeout_s: float = 15.0) -> tuple[bool, str]:
    """Whether an OpenCV window can be opened here, and why not. Never opens a window in this process."""
    env = os.environ if env is None else env
    platform = sys.platform if platform is None else platform
    if "GUI:" in (info := cv2.getBuildInformation()) and _gui_line(info).endswith("NONE"):
        return False, "OpenCV was built without a GUI (opencv-python-headless)"
    if platform.startswith(("linux", "freebsd", "openbsd", "netbsd")):
        if not (env.get("DISPLAY") or env.get("WAYLAND_DISPLAY") or env.get("QT_QPA_PLATFORM")):
            return False, "no display (DISPLAY and WAYLAND_DISPLAY are not set)"
    try:
        probe = subprocess.run([sys.executable, "-c", _PROBE], env=dict(env), capture_output=True,
                               timeout=probe_timeout_s)
    except subprocess.TimeoutExpired:
        return False, f"opening a test window did not finish in {probe_timeout_s:.0f} s"
    if probe.returncode != 0:
        detail = probe.stderr.decode(errors="replace").strip().splitlines()
        why = detail[-1] if detail else f"exit code {probe.returncode}"
        return False, f"a test window could not be opened (exit code {probe.returncode}: {why[:160]})"
    return True, "display available"


def _gui_line(info: str) -> str:
    for line in info.splitlines():
        if line.strip().startswith("GUI:"):
            return line.strip()
    return ""


def choose_window(want_window: bool, **kw) -> tuple[bool, str | None]:
    """``(use_window, message)``: message is set when a requested window falls back to no window."""
    if not want_window:
        return False, None
    ok, why = display_available(**kw)
    if ok:
        return True, None
    return False, f"live view: {why}; running without a window (--no-window)"


def render_event_frame(on: np.ndarray, off: np.ndarray, scale: int = 1) -> np.ndarray:
    """BGR image of one display period: grey background, ON events green-white, OFF events red, more = brighter."""
    h, w = on.shape
    img = np.full((h, w, 3), 64, np.uint8)
    on_px = on > 0
    off_px = (off > 0) & ~on_px
    level_on = np.minimum(128 + 32 * on[on_px].astype(np.int32), 255).astype(np.uint8)
    level_off = np.minimum(128 + 32 * off[off_px].astype(np.int32), 255).astype(np.uint8)
    img[on_px] = np.stack([level_on // 2, level_on, level_on // 2], axis=-1)
    img[off_px] = np.stack([level_off // 4, level_off // 4, level_off], axis=-1)
    if scale > 1:
        img = cv2.resize(img, (w * scale, h * scale), interpolation=cv2.INTER_NEAREST)
    return img


@dataclass
class ViewState:
    on: np.ndarray
    off: np.ndarray
    window: bool
    last_show_s: float = float("-inf")  # the first packet is shown at once
    frames_shown: int = 0
    frames_rendered: int = 0
    events: int = 0
    closed_by_user: bool = False
    last_frame: np.ndarray | None = field(default=None, repr=False)


@dataclass(frozen=True)
class EventFrameView:
    """Sink stage: shows the ON/OFF event frame at ``display_hz`` (wall time); ``window=False`` only renders."""

    window: bool = True
    display_hz: float = 30.0
    scale: int = 1
    title: str = "clockless live"

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "dvs":
            raise ValueError(f"EventFrameView: expected a DVS stream, got {spec.describe()}")
        if self.display_hz <= 0:
            raise ValueError(f"EventFrameView.display_hz: expected > 0, got {self.display_hz}")
        return spec

    def init(self, spec: StreamSpec) -> ViewState:
        w, h = spec.shape[0], spec.shape[1]
        # self.window is what the caller decided with choose_window(); this stage never probes the display itself
        if self.window:
            cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
        return ViewState(on=np.zeros((h, w), np.int32), off=np.zeros((h, w), np.int32), window=self.window)

    def step(self, state: ViewState, packet: Packet) -> tuple[ViewState, list[Packet]]:
        ev = packet.events
        if ev.shape[0]:
            p = ev["p"]
            np.add.at(state.on, (ev["y"][p], ev["x"][p]), 1)
            np.add.at(state.off, (ev["y"][~p], ev["x"][~p]), 1)
            state.events += ev.shape[0]
        now = time.perf_counter()
        if now - state.last_show_s >= 1.0 / self.display_hz:
            self._show(state, now)
        return state, []

    def finish(self, state: ViewState) -> list[Packet]:
        if state.on.any() or state.off.any():
            self._show(state, time.perf_counter())
        if state.window:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        return []

    def result(self, state: ViewState) -> dict[str, Any]:
        return {"view_frames": state.frames_rendered, "window": state.window, "window_frames": state.frames_shown,
                "closed_by_user": state.closed_by_user}

    def _show(self, state: ViewState, now: float) -> None:
        img = render_event_frame(state.on, state.off, self.scale)
        state.last_frame = img
        state.frames_rendered += 1
        state.on[:] = 0
        state.off[:] = 0
        state.last_show_s = now
        if state.window and not state.closed_by_user:
            cv2.imshow(self.title, img)
            state.frames_shown += 1
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                state.closed_by_user = True
                cv2.destroyWindow(self.title)


def add_view_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--no-window", action="store_true", help="do not open the live view window")
    p.add_argument("--display-hz", type=float, default=30.0, help="live view refresh rate (default 30)")
    p.add_argument("--scale", type=int, default=1, help="enlarge the live view by this integer factor")


def main(argv: list[str] | None = None) -> int:
    """Emulator → live view, on a camera or a video (the smallest live graph)."""
    from runtime.errors import ClocklessError
    from runtime.executor import run
    from runtime.graph import Graph
    from sensors.emulator import DvsConfig, EmulatorSource
    from sensors.frames import FrameSource

    p = argparse.ArgumentParser(prog="python -m apps.live_view", description=__doc__.split("\n\n")[0])
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--camera", type=int, metavar="INDEX", help="camera index (0 = first camera)")
    src.add_argument("--video", metavar="FILE", help="video file or stream URL")
    p.add_argument("--size", nargs=2, type=int, metavar=("W", "H"), help="resize frames before emulating")
    p.add_argument("--noise", action=argparse.BooleanOptionalAction, default=True, help="leak and shot noise")
    p.add_argument("--speed", type=float, default=1.0, help="video replay speed (1 = real time)")
    add_view_arguments(p)
    args = p.parse_args(argv)
    use_window, message = choose_window(not args.no_window)
    if message:
        print(message, file=sys.stderr)
    try:
        frames = FrameSource(args.camera if args.camera is not None else args.video,
                             size=tuple(args.size) if args.size else None)
        g = Graph("live view")
        ev = g.source("emulator", EmulatorSource(frames, DvsConfig().with_noise(args.noise)))
        g.sink("view", EventFrameView(window=use_window, display_hz=args.display_hz, scale=args.scale), ev)
        report = run(g, speed=None if frames.kind != "video" else args.speed)
    except ClocklessError as exc:
        print(f"live view: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    inp, view = report["input"], report["results"]["view"]
    print(f"{inp.get('emulated_frames', 0)} frames, {inp.get('events', 0):,} events, ended: {inp.get('ended')}; "
          f"view: {view['view_frames']} frames rendered, window {'on' if view['window'] else 'off'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
