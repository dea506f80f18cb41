"""Replay an event recording as a clockless source: any format :func:`sensors.formats.open_reader` reads.

>>> from sensors.replay import ReplaySource
>>> src = ReplaySource("../shared/data/vision/dvs128_walking.aedat", duration_us=500_000)   # doctest: +SKIP
>>> opened = src.open(); first = next(opened); opened.close()                                # doctest: +SKIP

**Time window.** ``start_us`` and ``duration_us`` are measured from the recording's first event: the source
replays events with ``t0 + start_us <= t < t0 + start_us + duration_us`` (timestamps are kept as the file
stores them, not re-based). The file is read a block at a time and reading stops at the end of the window.

**Looping.** ``loop=N`` replays the window N times (``loop=0`` forever). Each repeat is shifted by the window's
length (``duration_us`` when given, else last − first + 1 µs), so time keeps increasing and every repeat sits
right after the one before.

**Packet formation and latency.** Events are cut into packets of at most ``max_events`` events spanning less than
``max_span_us`` µs of stream time, whichever comes first, never splitting a run of equal timestamps
(:class:`runtime.packet.Packetizer`). A packet can only leave once the first event after it has been read (that
event fixes the packet's end and watermark), so packetization adds up to ``max_span_us`` of stream-time latency to
the earliest event of a packet (less when ``max_events`` fills first): 1 ms by default. Smaller spans lower this
latency at the cost of more, smaller packets (more per-packet overhead). Pacing (real time, a speed factor or as
fast as possible) is the executor's job; the source only produces packets.

``info()`` reports the source name, file, format, sensor size and where it came from, the reader's time-rule
counts (wraps unwrapped, backsteps held, ticks floored, order repairs, skipped packets, triggers), events
emitted and loops completed.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runtime.packet import Packet, Packetizer
from runtime.sources import OpenIter

from .formats import open_reader
from .formats.kernels.warm import warm_up

__all__ = ["ReplaySource"]

_READ_EVENTS = 1 << 18  # events per file read: bounded memory whatever the file size


@dataclass(frozen=True)
class ReplaySource:
    """A recording replayed as packets (see the module docstring for window, loop and latency rules)."""

    path: str | Path
    format: str | None = None
    sensor_size: tuple[int, ...] | int | None = None
    start_us: int | None = None
    duration_us: int | None = None
    loop: int = 1
    max_events: int = 4096
    max_span_us: int | None = 1000
    repair_order: bool = False
    name: str = "replay"

    def __post_init__(self):
        if self.start_us is not None and self.start_us < 0:
            raise ValueError(f"{self.name}: start_us must be ≥ 0, got {self.start_us}")
        if self.duration_us is not None and self.duration_us < 1:
            raise ValueError(f"{self.name}: duration_us must be ≥ 1 µs, got {self.duration_us}")
        if self.loop < 0:
            raise ValueError(f"{self.name}: loop must be ≥ 0 (0 = forever), got {self.loop}")
        if self.max_events < 1:
            raise ValueError(f"{self.name}: max_events must be ≥ 1, got {self.max_events}")
        if self.max_span_us is not None and self.max_span_us < 1:
            raise ValueError(f"{self.name}: max_span_us must be ≥ 1 µs or None, got {self.max_span_us}")

    def open(self) -> OpenIter:
        warm_up()  # kernels compile (or load from cache) now, not on the first packet
        reader = open_reader(self.path, format=self.format, sensor_size=self.sensor_size, repair_order=self.repair_order)
        info: dict[str, Any] = {
            "source": self.name,
            "path": str(reader.path),
            "format": reader.format,
            "sensor_size": list(reader.spec.shape),
            "sensor_size_origin": reader.sensor_size_origin,
            "time_rules": reader.counts,
            "events": 0,
            "loops_done": 0,
        }
        packets = self._packets(reader, info)
        return _ReplayOpen(reader.spec, packets, info=info)

    def _packets(self, reader, info: dict) -> Iterator[Packet]:
        packetizer = Packetizer(reader.spec.dtype, self.max_events, self.max_span_us, where=f"{self.name} {reader.path}")
        t0 = None  # first event of the recording
        period = None
        shift = 0
        done = 0
        while self.loop == 0 or done < self.loop:
            lo = hi = None
            last = None
            emitted = 0
            for chunk in reader.chunks(_READ_EVENTS):
                t = chunk["t"]
                if t0 is None:
                    t0 = int(t[0])
                if lo is None:
                    lo = t0 + (self.start_us or 0)
                    hi = None if self.duration_us is None else lo + self.duration_us
                a = int(np.searchsorted(t, lo, "left")) if int(t[0]) < lo else 0
                b = chunk.shape[0] if hi is None or int(t[-1]) < hi else int(np.searchsorted(t, hi, "left"))
                if a < b:
                    part = chunk[a:b]
                    if shift:
                        part = np.array(part)
                        part["t"] += shift
                    last = int(chunk["t"][b - 1])
                    emitted += b - a
                    info["events"] += b - a
                    info["time_rules"] = reader.counts
                    yield from packetizer.feed(part)
                if hi is not None and int(t[-1]) >= hi:
                    break
            info["time_rules"] = reader.counts
            if emitted == 0:
                break  # an empty window: looping it would spin forever
            done += 1
            info["loops_done"] = done
            if period is None:
                period = self.duration_us if self.duration_us is not None else last - lo + 1
            shift += period
        end = None
        if self.duration_us is not None and lo is not None:
            end = lo + self.duration_us + shift - (period or 0)
        yield from packetizer.flush(end)


class _ReplayOpen(OpenIter):
    """OpenIter whose ``info()`` is a snapshot (callers may edit what they get)."""

    def info(self) -> dict:
        live = super().info()
        snap = dict(live)
        rules = dict(live["time_rules"])
        rules["skipped_packets"] = dict(rules.get("skipped_packets", {}))
        snap["time_rules"] = rules
        return snap
