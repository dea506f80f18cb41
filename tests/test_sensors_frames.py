"""Frame sources: the OpenCV boundary replaced by a fake capture (unplug, stall, errors), and the real video."""

from __future__ import annotations

import threading
import time

import cv2
import numpy as np
import pytest

from runtime.errors import DeviceError, FormatError
from sensors.frames import FrameSource, frame_source_kind


class FakeCapture:
    """Behaves like cv2.VideoCapture: ``frames`` images, then ``end`` ('false', 'cv2', 'boom' or 'block')."""

    def __init__(self, frames, *, opened=True, fps=30.0, end="false", delay_s=0.0):
        self.frames = list(frames)
        self.opened = opened
        self.fps = fps
        self.end = end
        self.delay_s = delay_s
        self.released = False
        self.unblock = threading.Event()
        self.reads = 0

    def isOpened(self):
        return self.opened

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        self.reads += 1
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.frames:
            return True, self.frames.pop(0)
        if self.end == "cv2":
            raise cv2.error("VIDIOC_DQBUF: No such device")
        if self.end == "boom":
            raise RuntimeError("driver exploded")
        if self.end == "block":
            self.unblock.wait(10)
        return False, None

    def release(self):
        self.released = True


def bgr_frames(n, w=32, h=24, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3)).astype(np.uint8) for _ in range(n)]


def factory(cap, seen=None):
    def make(arg):
        if seen is not None:
            seen.append(arg)
        return cap
    return make


def test_kind_detection():
    assert frame_source_kind(0) == "camera" and frame_source_kind("2") == "camera"
    assert frame_source_kind("rtsp://cam.local/stream") == "url"
    assert frame_source_kind("clip.mp4") == "video"


def test_camera_unplugged_mid_run_ends_the_stream_cleanly():
    cap = FakeCapture(bgr_frames(5), end="false")
    seen = []
    before = time.perf_counter_ns() // 1000
    frames = FrameSource(0, capture_factory=factory(cap, seen)).open()
    got = list(frames)
    after = time.perf_counter_ns() // 1000
    assert seen == [0]
    assert len(got) == 5 and [f.index for f in got] == list(range(5))
    t = [f.t_us for f in got]
    assert all(b > a for a, b in zip(t, t[1:])) and before <= t[0] and t[-1] <= after  # arrival, perf_counter µs
    assert got[0].image.shape == (24, 32) and got[0].image.dtype == np.uint8  # grey by default
    info = frames.info()
    assert info["ended"] == "camera unplugged" and info["frames"] == 5 and info["input_kind"] == "camera"
    assert cap.released and not frames._thread.is_alive()
    frames.close()  # idempotent after the end


def test_camera_read_raising_cv2_error_is_an_unplug():
    cap = FakeCapture(bgr_frames(3), end="cv2")
    frames = FrameSource(1, capture_factory=factory(cap)).open()
    assert len(list(frames)) == 3
    assert frames.info()["ended"] == "camera unplugged"


def test_unexpected_capture_failure_is_raised_not_swallowed():
    cap = FakeCapture(bgr_frames(2), end="boom")
    frames = FrameSource(0, capture_factory=factory(cap)).open()
    next(frames), next(frames)
    with pytest.raises(DeviceError, match="camera 0: capture failed: RuntimeError: driver exploded"):
        next(frames)
    assert cap.released


def test_camera_that_cannot_be_opened_gives_a_clear_error():
    cap = FakeCapture([], opened=False)
    with pytest.raises(DeviceError, match=r"camera 7: OpenCV could not open it \(no such device"):
        FrameSource(7, capture_factory=factory(cap)).open()
    assert cap.released


def test_real_opencv_with_a_missing_camera_index_raises_device_error():
    with pytest.raises(DeviceError, match="camera 93: OpenCV could not open it"):
        FrameSource(93).open()


def test_camera_that_opens_but_sends_nothing():
    with pytest.raises(DeviceError, match="camera 0: opened but delivered no frame"):
        FrameSource(0, capture_factory=factory(FakeCapture([]))).open()


def test_stalled_camera_ends_without_hanging():
    cap = FakeCapture(bgr_frames(2), end="block")
    frames = FrameSource(0, stall_timeout_s=0.2, capture_factory=factory(cap)).open()
    t0 = time.perf_counter()
    got = list(frames)
    assert len(got) == 2
    assert frames.info()["ended"] == "camera stalled"
    assert time.perf_counter() - t0 < 4.0
    cap.unblock.set()  # let the daemon thread finish
    frames._thread.join(2)
    assert not frames._thread.is_alive()


def test_live_source_drops_the_oldest_frames_when_the_consumer_is_slow():
    cap = FakeCapture(bgr_frames(40, 8, 6), end="false")
    frames = FrameSource(0, queue_frames=2, capture_factory=factory(cap)).open()
    time.sleep(0.3)  # the grabber runs ahead; the queue holds 2
    got = list(frames)
    info = frames.info()
    assert info["dropped"] > 0
    assert len(got) + info["dropped"] == 40
    idx = [f.index for f in got]
    assert idx == sorted(idx) and idx[-1] == 39  # the newest frames are kept


def test_video_file_source_never_drops_and_stamps_index_over_fps():
    cap = FakeCapture(bgr_frames(30, 8, 6), fps=10.0)
    frames = FrameSource("fake.mp4", queue_frames=2, capture_factory=factory(cap)).open()
    time.sleep(0.2)
    got = list(frames)
    assert [f.index for f in got] == list(range(30))
    assert [f.t_us for f in got] == [i * 100_000 for i in range(30)]
    assert frames.info()["ended"] == "end of video" and frames.info()["dropped"] == 0


def test_video_without_a_frame_rate_needs_fps():
    with pytest.raises(FormatError, match="states no frame rate.*pass fps="):
        FrameSource("fake.mp4", capture_factory=factory(FakeCapture(bgr_frames(2), fps=0.0))).open()
    frames = FrameSource("fake.mp4", fps=4.0, capture_factory=factory(FakeCapture(bgr_frames(2), fps=0.0))).open()
    assert [f.t_us for f in frames] == [0, 250_000]


def test_real_video_frames_and_timestamps(shared_data):
    path = shared_data / "vision" / "vid2e_sample.mp4"
    frames = FrameSource(path).open()
    got = list(frames)
    assert len(got) == 9  # the file holds 9 frames at 25 fps (stsz sample count), whatever its README says
    assert [f.t_us for f in got] == [i * 40_000 for i in range(9)]
    assert got[0].image.shape == (260, 346)
    info = frames.info()
    assert info["ended"] == "end of video" and info["fps"] == 25.0 and (info["width"], info["height"]) == (346, 260)
    cap = cv2.VideoCapture(str(path))
    ok, first = cap.read()
    cap.release()
    assert np.array_equal(got[0].image, cv2.cvtColor(first, cv2.COLOR_BGR2GRAY))


def test_real_video_resized_and_colour(shared_data):
    path = shared_data / "vision" / "vid2e_sample.mp4"
    small = FrameSource(path, size=(173, 130), gray=False).open()
    f = next(small)
    small.close()
    assert f.image.shape == (130, 173, 3)
    assert small.info()["ended"] == "closed" and not small._thread.is_alive()
    big = FrameSource(path, size=(640, 480), max_frames=3).open()
    got = list(big)
    assert len(got) == 3 and got[0].image.shape == (480, 640)
    assert big.info()["ended"] == "max_frames reached"


def test_bad_video_paths(shared_data, tmp_path):
    with pytest.raises(FormatError, match="no such video file"):
        FrameSource(tmp_path / "missing.mp4").open()
    junk = tmp_path / "junk.mp4"
    junk.write_bytes(b"this is not a video" * 100)
    with pytest.raises(FormatError, match="junk.mp4: OpenCV cannot decode it as video"):
        FrameSource(junk).open()
    with pytest.raises(ValueError, match=r"FrameSource.size: expected \(W, H\)"):
        FrameSource(0, size=(0, 10))
