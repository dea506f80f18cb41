"""Live iniVation cameras (DVS128, DAVIS, DVXplorer) through dv-processing, the vendor's library.

``InivationSource(serial=None)`` opens the first camera (or the one with that serial number) and streams its
events as DVS packets. dv-processing is an optional extra (``pip install -e '.[inivation]'``). Device timestamps
are µs of the host's clock (``dv.now()``), so silent periods are closed by watermark-only heartbeats at
``now − lag_us``: events the camera still holds in its USB buffers are never older than the lag.
A run of equal timestamps at the end of a batch is held until the next batch or heartbeat, so packets never split
simultaneous events. The camera's native orientation is image orientation (y down).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterator, Mapping

import numpy as np

from runtime.errors import DeviceError
from runtime.events import DVS_EVENT
from runtime.packet import Packet, Packetizer
from runtime.spec import StreamSpec, dvs_spec

__all__ = ["InivationSource", "OpenInivation", "store_to_events"]


def store_to_events(batch: np.ndarray) -> np.ndarray:
    """dv-processing's ``EventStore.numpy()`` records (timestamp, x, y, polarity) → DVS_EVENT."""
    out = np.empty(batch.shape[0], dtype=DVS_EVENT)
    out["x"] = batch["x"]
    out["y"] = batch["y"]
    out["t"] = batch["timestamp"]
    out["p"] = batch["polarity"] != 0
    return out


def _open_with_dv(serial: str | None) -> Any:
    try:
        import dv_processing as dv
    except ModuleNotFoundError:
        raise DeviceError(
            "iniVation camera: dv-processing is not installed; pip install dv-processing "
            "(or pip install -e '.[inivation]')"
        ) from None
    try:
        return dv.io.camera.open(serial) if serial else dv.io.camera.open()
    except (RuntimeError, IndexError, ValueError) as exc:
        which = f"with serial {serial}" if serial else "of any kind"
        raise DeviceError(
            f"iniVation camera: no camera {which} could be opened ({exc}); check the USB connection and "
            "permissions (udev rules), or replay a recording instead"
        ) from exc


@dataclass(frozen=True)
class InivationSource:
    serial: str | None = None
    heartbeat_us: int = 10_000
    lag_us: int = 2_000
    max_events: int = 4096
    name: str = "inivation"
    camera_factory: Callable[[str | None], Any] | None = None  # replaces dv-processing (tests)
    clock_us: Callable[[], int] | None = None  # the device clock; default dv.now()

    def open(self) -> "OpenInivation":
        return OpenInivation(self)


class OpenInivation:
    blocking = True
    live = True

    def __init__(self, cfg: InivationSource):
        self.cfg = cfg
        self._cam = (cfg.camera_factory or _open_with_dv)(cfg.serial)
        if not self._cam.isEventStreamAvailable():
            raise DeviceError(f"iniVation camera {self._cam.getCameraName()}: it has no event stream")
        w, h = self._cam.getEventResolution()
        self.spec: StreamSpec = dvs_spec(int(w), int(h), camera=str(self._cam.getCameraName()))
        if cfg.clock_us is not None:
            self._now_us = cfg.clock_us
        else:
            import dv_processing as dv

            self._now_us = dv.now
        self._packetizer = Packetizer(DVS_EVENT, cfg.max_events, None, where=self.cfg.name)
        self._it = self._packets()
        self._ended: str | None = None
        self._events = 0
        self._heartbeats = 0

    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        return next(self._it)

    def _packets(self) -> Iterator[Packet]:
        cam, cfg = self._cam, self.cfg
        last_wm: int | None = None
        last_t = -1
        while cam.isRunning():
            store = cam.getNextEventBatch()
            if store is not None and store.size() > 0:
                events = store_to_events(store.numpy())
                self._events += events.shape[0]
                last_t = int(events["t"][-1])
                for p in self._packetizer.feed(events):
                    last_wm = p.t_end_us
                    yield p
                continue
            now = int(self._now_us()) - cfg.lag_us
            if last_wm is None or now - last_wm >= cfg.heartbeat_us:
                wm = max(now, last_t + 1, (last_wm or 0))
                for p in self._packetizer.flush(wm):
                    last_wm = p.t_end_us
                    self._heartbeats += 1
                    yield p
            else:
                time.sleep(0.0005)
        self._ended = "camera disconnected"
        for p in self._packetizer.flush():
            yield p

    def close(self) -> None:
        self._it.close()

    def info(self) -> Mapping[str, Any]:
        return {"source": self.cfg.name, "camera": self.spec.meta.get("camera"), "events": self._events,
                "heartbeats": self._heartbeats, **({"ended": self._ended} if self._ended else {})}
