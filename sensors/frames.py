"""Frame sources from OpenCV: a camera index, a video file or a stream URL, grabbed in a background thread.

The grabbing thread decodes, converts to grey and resizes, so neither the trio loop nor the emulator waits on
the decoder; frames reach the consumer through a bounded queue. Timestamps:

* video file: ``round(index · 10⁶ / fps)`` µs from the first frame (fps from the file, or ``FrameSource.fps``);
* camera / stream: arrival time, ``time.perf_counter_ns() // 1000`` µs read right after the frame arrived (so
  latency can be measured against ``perf_counter``), made strictly increasing.

A live source drops the oldest queued frame when the consumer falls behind (counted in ``info()["dropped"]``);
a file source never drops (the thread waits). A camera that stops delivering (``read()`` fails, raises, or no
frame for ``stall_timeout_s``) ends the stream cleanly with ``info()["ended"] == "camera unplugged"`` (or
``"camera stalled"``); a file ends with ``"end of video"``.

The OpenCV boundary is one object with ``read() -> (ok, image)``, ``get(prop)``, ``isOpened()`` and
``release()``; ``FrameSource(capture_factory=...)`` replaces ``cv2.VideoCapture`` (tests use a fake one).
"""

from __future__ import annotations

import math
import queue
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping

import cv2
import numpy as np

from runtime.errors import DeviceError, FormatError

__all__ = ["Frame", "FrameSource", "OpenFrames", "frame_source_kind"]


@dataclass(frozen=True, slots=True)
class Frame:
    image: np.ndarray  # (H, W) uint8 grey, or (H, W, 3) uint8 BGR when FrameSource.gray is False
    t_us: int
    index: int  # frame number as delivered by the capture (dropped frames leave gaps)


def frame_source_kind(source: int | str) -> str:
    """``"camera"`` for an index (int or digit string), ``"url"`` for ``scheme://...``, else ``"video"``."""
    if isinstance(source, (int, np.integer)) or (isinstance(source, str) and source.strip().isdigit()):
        return "camera"
    if isinstance(source, str) and "://" in source:
        return "url"
    return "video"


@dataclass(frozen=True)
class FrameSource:
    """Where frames come from and how they are prepared (config only; ``open()`` starts the grabbing thread)."""

    source: int | str | Path
    size: tuple[int, int] | None = None  # (W, H) to resize to; None keeps the capture's size
    gray: bool = True
    queue_frames: int = 4
    stall_timeout_s: float = 5.0
    fps: float | None = None  # for video files whose container states no frame rate
    max_frames: int | None = None
    capture_factory: Callable[..., Any] | None = None

    def __post_init__(self):
        if self.size is not None:
            w, h = self.size
            if not (0 < int(w) <= 32767 and 0 < int(h) <= 32767):
                raise ValueError(f"FrameSource.size: expected (W, H) with 1..32767 pixels each, got {self.size}")
        if self.queue_frames < 1:
            raise ValueError(f"FrameSource.queue_frames: expected ≥ 1, got {self.queue_frames}")
        if self.fps is not None and not (self.fps > 0):
            raise ValueError(f"FrameSource.fps: expected a positive frame rate, got {self.fps}")

    @property
    def kind(self) -> str:
        return frame_source_kind(self.source if not isinstance(self.source, Path) else str(self.source))

    def open(self) -> "OpenFrames":
        return OpenFrames(self)


_END = object()


class OpenFrames:
    """Iterates Frames from a capture read in a background thread. ``close()`` stops the thread and releases."""

    def __init__(self, cfg: FrameSource):
        self.cfg = cfg
        self.kind = cfg.kind
        self.live = self.kind != "video"
        self.name = _describe(cfg.source, self.kind)
        self._cap = self._open_capture()
        self._stop = threading.Event()
        self._queue: queue.Queue = queue.Queue(maxsize=cfg.queue_frames)
        self._lock = threading.Lock()
        self.ended: str | None = None
        self.grabbed = 0
        self.delivered = 0
        self.dropped = 0
        self._last_t_us = -1
        self.fps = self._frame_rate()
        try:
            first = self._read_one(0)
        except Exception:
            self._cap.release()
            raise
        if first is None:
            self._cap.release()
            what = "video" if self.kind == "video" else "device"
            raise (FormatError(self.name, "holds no decodable frame") if self.kind == "video" else DeviceError(
                f"{self.name}: opened but delivered no frame (is the {what} in use or disconnected?)"))
        self.height, self.width = first.image.shape[:2]
        self._queue.put(first)
        self._thread = threading.Thread(target=self._grab_loop, name=f"grab {self.name}", daemon=True)
        self._thread.start()

    # -- opening -----------------------------------------------------------------------------------------------

    def _open_capture(self):
        cfg = self.cfg
        factory = cfg.capture_factory or cv2.VideoCapture
        if self.kind == "camera":
            arg: Any = int(cfg.source)
        else:
            arg = str(cfg.source)
            if self.kind == "video" and cfg.capture_factory is None and not Path(arg).is_file():
                raise FormatError(arg, "no such video file (expected a path to .mp4/.avi/... or a camera index)")
        try:
            cap = factory(arg)
        except cv2.error as exc:
            raise DeviceError(f"{self.name}: OpenCV failed to open it: {exc}") from exc
        if not cap.isOpened():
            cap.release()
            if self.kind == "camera":
                raise DeviceError(
                    f"camera {arg}: OpenCV could not open it (no such device, in use by another program, or no "
                    f"permission); check the index (e.g. `v4l2-ctl --list-devices`) or pass --video FILE instead"
                )
            if self.kind == "url":
                raise DeviceError(f"stream {arg}: OpenCV could not open it (unreachable or unsupported protocol)")
            raise FormatError(arg, "OpenCV cannot decode it as video (expected .mp4, .avi, .mkv, ...)")
        return cap

    def _frame_rate(self) -> float | None:
        if self.kind != "video":
            return None
        fps = self.cfg.fps
        if fps is None:
            got = float(self._cap.get(cv2.CAP_PROP_FPS) or 0.0)
            if not (math.isfinite(got) and got > 0):
                self._cap.release()
                raise FormatError(self.name, f"the container states no frame rate (got {got}); pass fps=... "
                                             "(--fps on the command line)")
            fps = got
        return float(fps)

    # -- grabbing (background thread) ----------------------------------------------------------------------------

    def _read_one(self, index: int) -> Frame | None:
        try:
            ok, image = self._cap.read()
        except cv2.error:
            ok, image = False, None
        if not ok or image is None:
            return None
        if self.kind == "video":
            t_us = int(round(index * 1e6 / self.fps))
        else:
            t_us = max(time.perf_counter_ns() // 1000, self._last_t_us + 1)
        self._last_t_us = t_us
        return Frame(self._prepare(image), t_us, index)

    def _prepare(self, image: np.ndarray) -> np.ndarray:
        cfg = self.cfg
        if cfg.gray and image.ndim == 3:
            image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
        if cfg.size is not None and (image.shape[1], image.shape[0]) != tuple(cfg.size):
            w, h = int(cfg.size[0]), int(cfg.size[1])
            shrink = w <= image.shape[1] and h <= image.shape[0]
            image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
        return np.ascontiguousarray(image)

    def _grab_loop(self) -> None:
        index = 1
        reason = "end of video" if self.kind == "video" else (
            "camera unplugged" if self.kind == "camera" else "stream ended")
        error: BaseException | None = None
        try:
            while not self._stop.is_set():
                if self.cfg.max_frames is not None and index >= self.cfg.max_frames:
                    reason = "max_frames reached"
                    break
                frame = self._read_one(index)
                if frame is None:
                    break
                index += 1
                self.grabbed = index
                if not self._put(frame):
                    return
            else:
                reason = "closed"
        except BaseException as exc:  # handed to the consumer, which raises it: nothing is swallowed
            error = exc
        self._put(_End(reason, error))

    def _put(self, item) -> bool:
        """Queue an item; a live frame pushes out the oldest queued one when full, else wait. False if stopped."""
        drop = self.live and isinstance(item, Frame)
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.05)
                return True
            except queue.Full:
                if drop:
                    try:
                        old = self._queue.get_nowait()
                        if isinstance(old, Frame):
                            with self._lock:
                                self.dropped += 1
                    except queue.Empty:
                        pass
        return False

    # -- consuming -----------------------------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        if self.ended is not None:
            raise StopIteration
        timeout = self.cfg.stall_timeout_s if self.live else None
        try:
            item = self._queue.get(timeout=timeout)
        except queue.Empty:
            self.ended = "camera stalled" if self.kind == "camera" else "stream stalled"
            self.close()
            raise StopIteration from None
        if isinstance(item, _End):
            self.ended = item.reason
            self._join()
            if item.error is not None:
                raise DeviceError(f"{self.name}: capture failed: {type(item.error).__name__}: {item.error}") \
                    from item.error
            raise StopIteration
        self.delivered += 1
        return item

    def _join(self) -> None:
        self._thread.join(timeout=2.0)
        if not self._thread.is_alive():
            self._cap.release()

    def close(self) -> None:
        """Stop grabbing and release the capture (a thread stuck in a driver call is left to die as a daemon)."""
        self._stop.set()
        if self.ended is None:
            self.ended = "closed"
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        self._join()

    def info(self) -> Mapping[str, Any]:
        out = {
            "input": self.name,
            "input_kind": self.kind,
            "width": self.width,
            "height": self.height,
            "frames": self.delivered,
            "dropped": self.dropped,
            "ended": self.ended,
        }
        if self.fps is not None:
            out["fps"] = self.fps
        return out


@dataclass(frozen=True, slots=True)
class _End:
    reason: str
    error: BaseException | None


def _describe(source, kind: str) -> str:
    if kind == "camera":
        return f"camera {int(source)}"
    if kind == "url":
        return f"stream {source}"
    return str(source)
