"""iniVation camera source: the dv-processing boundary replaced by a fake camera (no hardware here)."""

import numpy as np
import pytest

from runtime.errors import DeviceError
from runtime.events import DVS_EVENT
from runtime.packet import concat_events
from sensors.inivation import InivationSource, store_to_events


class FakeStore:
    def __init__(self, records):
        self.records = records

    def size(self):
        return self.records.shape[0]

    def numpy(self):
        return self.records


def _records(t, x, y, p):
    rec = np.zeros(len(t), dtype=[("timestamp", "<i8"), ("x", "<i2"), ("y", "<i2"), ("polarity", "i1")])
    rec["timestamp"], rec["x"], rec["y"], rec["polarity"] = t, x, y, p
    return rec


class FakeCamera:
    """Batches, then some empty polls (silence), then the cable is pulled."""

    def __init__(self, batches, idle_polls=3):
        self.queue = [FakeStore(b) for b in batches] + [None] * idle_polls
        self.running = True

    def isEventStreamAvailable(self):
        return True

    def getEventResolution(self):
        return (346, 260)

    def getCameraName(self):
        return "DAVIS346_fake"

    def isRunning(self):
        return bool(self.queue)

    def getNextEventBatch(self):
        return self.queue.pop(0)


def test_store_records_become_dvs_events():
    ev = store_to_events(_records([5, 6], [1, 2], [3, 4], [1, 0]))
    assert ev.dtype == DVS_EVENT and ev["p"].tolist() == [True, False] and ev["t"].tolist() == [5, 6]


def test_batches_become_packets_without_splitting_equal_times_and_heartbeats_close_silence():
    b1 = _records([100, 101, 105, 105], [0, 1, 2, 3], [0, 0, 0, 0], [1, 1, 0, 1])
    b2 = _records([105, 110], [4, 5], [0, 0], [0, 1])  # continues the run at t=105
    clock = iter(range(200, 100_000, 20_000))
    src = InivationSource(camera_factory=lambda serial: FakeCamera([b1, b2]), clock_us=lambda: next(clock),
                          heartbeat_us=10_000, lag_us=0)
    opened = src.open()
    packets = list(opened)
    events = concat_events(packets, DVS_EVENT)
    assert events["t"].tolist() == [100, 101, 105, 105, 105, 110]
    for a, b in zip(packets[:-1], packets[1:]):
        assert a.t_end_us <= (b.events["t"][0] if len(b) else b.t_end_us)
        if len(a) and len(b):
            assert a.events["t"][-1] < b.events["t"][0]  # the t=105 run stays in one packet
    assert opened.spec.shape == (346, 260, 2)
    info = opened.info()
    assert info["ended"] == "camera disconnected" and info["events"] == 6 and info["heartbeats"] >= 1


def test_without_a_camera_the_error_is_clear():
    with pytest.raises(DeviceError, match="iniVation camera: (no camera of any kind could be opened|dv-processing is not installed)"):
        InivationSource().open()
