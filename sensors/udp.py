"""Live AER over UDP: a blocking source that receives event datagrams, and a matching sender.

Wire layouts (``layout=``):

``"aestream"`` (default) — the SPIF/AEStream layout, the one AEStream's UDP output and input use. A datagram is
a sequence of little-endian 32-bit words (AEStream sends at most 512 bytes per datagram). Each event word is::

    bit 31      1 = no timestamp follows, 0 = the next word is this event's timestamp
    bits 30-16  x (15 bits)
    bit 15      polarity (1 = ON)
    bits 14-0   y (15 bits)

so AEStream's test vector ``0F 00 DA 00`` is the event x=218, y=15, OFF. With bit 31 clear, the following
32-bit word is the event's time in µs (it wraps every 71.6 minutes; the source unwraps it). One datagram holds
either timestamp-free words only or (event, timestamp) pairs only; a datagram mixing them, or whose length is
not a whole number of records, is dropped and counted (``info()["dropped_datagrams"]``).

``"t64_x16_y16_on8"`` — faery's UDP layout: packed 13-byte records (uint64 t µs, uint16 x, uint16 y, uint8 on).

Time: events without timestamps get the arrival time of their datagram (``time.perf_counter_ns() // 1000``, the
runtime's ``perf_counter_us`` clock; with ``timestamps=False`` the opened source declares ``t_clock`` so latency
is measured per event), so all events of one datagram are simultaneous. Events with timestamps keep
the sender's time. Either way ``t`` never decreases: an event behind the stream's watermark (UDP reordering, or a
sender that split a run of equal times over two datagrams) is held at the watermark and counted
(``late_events_held``); a 32-bit timestamp that drops by more than half its range is a wrap and is unwrapped
(``wraps_unwrapped``). The last run of equal sender timestamps in a datagram is held back until a later datagram
or the next heartbeat shows it is complete (a sender may continue it in its next datagram), so with sender
timestamps the last events of a burst wait at most ``heartbeat_us``. UDP has no sequence numbers in these layouts: a lost datagram cannot be detected here.

Heartbeats: the source waits at most ``heartbeat_us`` for a datagram; when none comes it emits an empty,
watermark-only packet so downstream windows close while the sender is silent. The heartbeat watermark is "now"
on the arrival clock (before the first datagram only when ``timestamps=False`` fixes that clock; otherwise
heartbeats before the first datagram keep the watermark where it is); for sender timestamps it is the sender's clock estimated from the latest datagram
(sender time of its last event + time elapsed since it arrived) minus ``sender_lag_us``, the delay a sender may
hold events before sending them. The source is ``blocking``: the executor calls it from a worker thread.

Example::

    src = UdpSource(width=346, height=260, port=3333)               # receive what AEStream sends
    send_events(events, ("127.0.0.1", 3333), timestamps=True)        # or send a recording yourself
"""

from __future__ import annotations

import socket
import time
from dataclasses import dataclass
from typing import Any, Iterator, Mapping

import numpy as np

from runtime.errors import DeviceError
from runtime.events import DVS_EVENT
from runtime.packet import Packet
from runtime.spec import StreamSpec, dvs_spec

__all__ = [
    "LAYOUTS",
    "UdpSource",
    "OpenUdpSource",
    "encode_aestream",
    "decode_aestream",
    "encode_t64",
    "decode_t64",
    "send_events",
]

LAYOUTS = ("aestream", "t64_x16_y16_on8")
AESTREAM_MAX_DATAGRAM_BYTES = 512  # what AEStream sends
_NO_TS = np.uint32(1 << 31)
_T64 = np.dtype([("t", "<u8"), ("x", "<u2"), ("y", "<u2"), ("on", "u1")])  # packed, 13 bytes
_WRAP = 1 << 32


class DatagramError(ValueError):
    """A datagram that does not follow the layout (counted and dropped by the source)."""


# ----------------------------------------------------------------------------------------------------------------
# encoding / decoding (vectorised numpy: one datagram is at most a few thousand events)


def encode_aestream(events: np.ndarray, *, timestamps: bool) -> bytes:
    """One datagram payload in the AEStream layout (x, y < 32768; t taken modulo 2**32 when timestamped)."""
    x = events["x"].astype(np.uint32)
    y = events["y"].astype(np.uint32)
    if events.shape[0] and (x.max() > 0x7FFF or y.max() > 0x7FFF):
        raise ValueError("AEStream layout holds x and y below 32768")
    words = (x << 16) | y | (events["p"].astype(np.uint32) << 15)
    if not timestamps:
        return (words | _NO_TS).astype("<u4").tobytes()
    pairs = np.empty((events.shape[0], 2), dtype="<u4")
    pairs[:, 0] = words
    pairs[:, 1] = (events["t"].astype(np.int64) & 0xFFFFFFFF).astype(np.uint32)
    return pairs.tobytes()


def decode_aestream(
    payload: bytes, timestamps: bool | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None]:
    """``(x, y, p, t32 or None)`` from one datagram; raises DatagramError when it breaks the layout.

    ``timestamps``: None decides per datagram from bit 31 of its first word (the SPIF rule); False reads every
    word as an event and ignores bit 31 (what AEStream's own receiver does); True expects (event, time) pairs.
    """
    if len(payload) % 4:
        raise DatagramError(f"length {len(payload)} B is not a whole number of 32-bit words")
    words = np.frombuffer(payload, dtype="<u4")
    if words.shape[0] == 0:
        return (np.empty(0, np.int16),) * 2 + (np.empty(0, bool), None)
    if timestamps is None:
        timestamps = not bool(words[0] & _NO_TS)
        if not timestamps and not np.all(words & _NO_TS):
            i = int(np.argmax((words & _NO_TS) == 0))
            raise DatagramError(f"word {i} asks for a timestamp in a datagram of timestamp-free events")
    if not timestamps:
        ev, ts = words, None
    else:
        if words.shape[0] % 2:
            raise DatagramError(f"{words.shape[0]} words: timestamped events come in (event, time) pairs")
        ev, ts = words[0::2], words[1::2]
        if np.any(ev & _NO_TS):
            i = int(np.argmax((ev & _NO_TS) != 0)) * 2
            raise DatagramError(f"word {i} has no timestamp in a datagram of timestamped events")
    x = ((ev >> 16) & 0x7FFF).astype(np.int16)
    y = (ev & 0x7FFF).astype(np.int16)
    p = ((ev >> 15) & 1).astype(bool)
    return x, y, p, ts


def encode_t64(events: np.ndarray) -> bytes:
    """One datagram in faery's ``t64_x16_y16_on8`` layout."""
    rec = np.empty(events.shape[0], dtype=_T64)
    rec["t"] = events["t"]
    rec["x"] = events["x"]
    rec["y"] = events["y"]
    rec["on"] = events["p"]
    return rec.tobytes()


def decode_t64(payload: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    if len(payload) % _T64.itemsize:
        raise DatagramError(f"length {len(payload)} B is not a whole number of 13-byte records")
    rec = np.frombuffer(payload, dtype=_T64)
    if rec.shape[0] and int(rec["t"].max()) >= 1 << 63:
        raise DatagramError("a timestamp does not fit in int64 µs")
    return rec["x"].astype(np.int16), rec["y"].astype(np.int16), rec["on"].astype(bool), rec["t"].astype(np.int64)


def send_events(
    events: np.ndarray,
    address: tuple[str, int],
    *,
    layout: str = "aestream",
    timestamps: bool = True,
    events_per_datagram: int | None = None,
    speed: float | None = None,
    sock: socket.socket | None = None,
) -> int:
    """Send ``events`` (sorted) as datagrams to ``address``; returns the number of datagrams sent.

    ``events_per_datagram`` defaults to AEStream's 512-byte datagrams (128 events, or 64 with timestamps).
    ``speed`` paces the sending in stream time (1.0 = real time); None sends as fast as the socket takes them.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"send_events: layout must be one of {LAYOUTS}, got {layout!r}")
    if events_per_datagram is None:
        if layout == "aestream":
            events_per_datagram = AESTREAM_MAX_DATAGRAM_BYTES // (8 if timestamps else 4)
        else:
            events_per_datagram = AESTREAM_MAX_DATAGRAM_BYTES // _T64.itemsize
    own = sock is None
    if own:
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sent = 0
    try:
        start_wall = time.monotonic()
        t0 = int(events["t"][0]) if events.shape[0] else 0
        for a in range(0, events.shape[0], events_per_datagram):
            part = events[a : a + events_per_datagram]
            if speed:
                due = start_wall + (int(part["t"][0]) - t0) * 1e-6 / speed
                delay = due - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            payload = encode_aestream(part, timestamps=timestamps) if layout == "aestream" else encode_t64(part)
            sock.sendto(payload, address)
            sent += 1
    finally:
        if own:
            sock.close()
    return sent


# ----------------------------------------------------------------------------------------------------------------
# the source


@dataclass(frozen=True)
class UdpSource:
    """Receive AER datagrams on ``host:port`` (see the module docstring for layouts, time and heartbeats).

    ``timestamps`` (AEStream layout): None decides per datagram by bit 31 (SPIF rule), False reads every word as
    a timestamp-free event (AEStream's receiver), True expects (event, time) pairs.

    ``end_after_idle_s``: end the stream after that much silence (None: run until closed). ``port=0`` binds a
    free port; read it from the opened source's ``port``.
    """

    width: int
    height: int
    port: int = 3333
    host: str = "127.0.0.1"
    layout: str = "aestream"
    timestamps: bool | None = None
    heartbeat_us: int = 10_000
    sender_lag_us: int = 10_000
    end_after_idle_s: float | None = None
    max_events_per_packet: int = 65_536
    x_mirrored: bool = False
    y_up: bool = False
    receive_buffer_bytes: int = 8 << 20
    name: str = "udp"

    def __post_init__(self):
        if self.layout not in LAYOUTS:
            raise ValueError(f"UdpSource: layout must be one of {LAYOUTS}, got {self.layout!r}")
        if self.heartbeat_us < 100:
            raise ValueError(f"UdpSource: heartbeat_us must be ≥ 100 µs, got {self.heartbeat_us}")
        if self.width < 1 or self.height < 1:
            raise ValueError(f"UdpSource: sensor size must be positive, got {self.width}×{self.height}")

    def open(self) -> "OpenUdpSource":
        return OpenUdpSource(self)


class OpenUdpSource:
    """An opened UDP source: iterate for packets; ``close()`` from any thread ends the iteration."""

    blocking = True

    def __init__(self, cfg: UdpSource):
        self.cfg = cfg
        self.spec: StreamSpec = dvs_spec(
            cfg.width, cfg.height, x_mirrored=cfg.x_mirrored, y_up=cfg.y_up, source="udp", layout=cfg.layout
        )
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, int(cfg.receive_buffer_bytes))
            sock.bind((cfg.host, cfg.port))
        except OSError as exc:
            sock.close()
            raise DeviceError(f"{cfg.name}: cannot listen for UDP on {cfg.host}:{cfg.port}: {exc}") from exc
        sock.settimeout(cfg.heartbeat_us * 1e-6)
        self._sock = sock
        self.port = sock.getsockname()[1]
        self._buf = bytearray(1 << 16)
        self._t0_ns = time.perf_counter_ns()
        self._watermark = 0
        self._last_t32: int | None = None
        self._wrap_base = 0
        self._offset_us: int | None = None  # sender clock - arrival clock, from the latest timestamped datagram
        self._last_data_ns = self._t0_ns
        self.opened_at_us = self._t0_ns // 1000
        # events get arrival times: heartbeats may advance the watermark before the first datagram, and the
        # executor may measure latency against each event's own time (runtime's "perf_counter_us" clock)
        self._arrival_clock = cfg.layout == "aestream" and cfg.timestamps is False
        if self._arrival_clock:
            self.t_clock = "perf_counter_us"
            self._watermark = self.opened_at_us
        self._tail: np.ndarray | None = None  # last run of equal sender timestamps, held until complete
        self._closed = False
        self._ended = ""
        self._counts = {
            "events": 0,
            "datagrams": 0,
            "heartbeats": 0,
            "late_events_held": 0,
            "wraps_unwrapped": 0,
            "dropped_datagrams": 0,
            "events_outside_sensor_dropped": 0,
        }
        self._drop_reasons: dict[str, int] = {}

    # -- iteration -------------------------------------------------------------------------------------------
    def __iter__(self) -> Iterator[Packet]:
        return self

    def __next__(self) -> Packet:
        while True:
            if self._closed:
                raise StopIteration
            try:
                n = self._sock.recv_into(self._buf)
            except socket.timeout:
                idle_s = (time.perf_counter_ns() - self._last_data_ns) * 1e-9
                if self.cfg.end_after_idle_s is not None and idle_s >= self.cfg.end_after_idle_s:
                    if self._tail is not None:
                        return self._heartbeat()  # flush the held run first
                    self._ended = f"no datagram for {self.cfg.end_after_idle_s} s"
                    self.close()
                    raise StopIteration
                return self._heartbeat()
            except OSError:
                if self._closed:  # closed from another thread while waiting
                    raise StopIteration
                raise
            parts = [bytes(self._buf[:n])]
            total = n
            # coalesce datagrams already waiting: fewer, larger packets under load, no added latency
            self._sock.setblocking(False)
            try:
                while total < self.cfg.max_events_per_packet * 4:
                    try:
                        m = self._sock.recv_into(self._buf)
                    except (BlockingIOError, InterruptedError):
                        break
                    parts.append(bytes(self._buf[:m]))
                    total += m
            finally:
                self._sock.settimeout(self.cfg.heartbeat_us * 1e-6)
            packet = self._packet(parts)
            if packet is not None:
                return packet

    def _now_us(self) -> int:
        return time.perf_counter_ns() // 1000

    def _heartbeat(self) -> Packet:
        now = self._now_us()
        if self._offset_us is not None:
            mark = now + self._offset_us - self.cfg.sender_lag_us
        elif self._arrival_clock:
            mark = now
        else:
            mark = self._watermark  # the sender's clock is not known yet: promise nothing new
        self._counts["heartbeats"] += 1
        if self._tail is not None:
            events = self._tail
            self._tail = None
            self._watermark = max(self._watermark, int(events["t"][-1]) + 1, mark)
            return Packet(events, self._watermark)
        self._watermark = max(self._watermark, mark)
        empty = np.empty(0, dtype=DVS_EVENT)
        empty.flags.writeable = False
        return Packet(empty, self._watermark)

    def _drop(self, reason: str) -> None:
        self._counts["dropped_datagrams"] += 1
        self._drop_reasons[reason] = self._drop_reasons.get(reason, 0) + 1

    def _packet(self, datagrams: list[bytes]) -> Packet | None:
        arrival = self._now_us()
        self._last_data_ns = time.perf_counter_ns()
        chunks = []
        for payload in datagrams:
            self._counts["datagrams"] += 1
            try:
                if self.cfg.layout == "aestream":
                    x, y, p, t32 = decode_aestream(payload, self.cfg.timestamps)
                    if t32 is None:
                        t, timed = np.zeros(x.shape[0], np.int64), np.zeros(x.shape[0], bool)
                    else:
                        t, timed = self._time_from_t32(t32), np.ones(x.shape[0], bool)
                else:
                    x, y, p, t = decode_t64(payload)
                    timed = np.ones(x.shape[0], bool)
            except DatagramError as exc:
                self._drop(str(exc))
                continue
            chunks.append((x, y, p, t, timed))
        if not chunks:
            return None
        x, y, p, t, timed = (np.concatenate([c[k] for c in chunks]) for k in range(5))
        inside = (x >= 0) & (x < self.cfg.width) & (y >= 0) & (y < self.cfg.height)
        if not inside.all():
            # a live stream is not stopped for one stray address: drop and count it
            self._counts["events_outside_sensor_dropped"] += int((~inside).sum())
            x, y, p, t, timed = x[inside], y[inside], p[inside], t[inside], timed[inside]
        if x.shape[0] == 0:
            return None
        t = np.where(timed, t, max(arrival, self._watermark))
        if timed.any():
            self._offset_us = int(t[timed][-1]) - arrival
        if not timed.all():
            self._arrival_clock = True
        # never decrease: hold late events at the running maximum, never below the watermark
        held = np.maximum.accumulate(np.maximum(t, self._watermark))
        self._counts["late_events_held"] += int(np.count_nonzero(held != t))
        self._counts["events"] += int(held.shape[0])
        ev = np.empty(held.shape[0], dtype=DVS_EVENT)
        ev["x"] = x
        ev["y"] = y
        ev["t"] = held
        ev["p"] = p
        if self._tail is not None:
            ev = np.concatenate([self._tail, ev])
            self._tail = None
        t_last = int(ev["t"][-1])
        if timed[-1]:
            # a sender may continue this timestamp in its next datagram: hold the last run until it cannot
            split = int(np.searchsorted(ev["t"], t_last, "left"))
            out, tail = ev[:split], ev[split:]
            tail.flags.writeable = False
            self._tail = tail
            self._watermark = t_last
        else:
            out = ev
            self._watermark = t_last + 1
        out.flags.writeable = False
        return Packet(out, self._watermark)

    def _time_from_t32(self, t32: np.ndarray) -> np.ndarray:
        """Unwrap 32-bit sender µs into int64: a drop of more than half the range is a wrap."""
        t = t32.astype(np.int64)
        prev = np.empty_like(t)
        if t.shape[0] == 0:
            return t
        prev[0] = t[0] if self._last_t32 is None else self._last_t32
        prev[1:] = t[:-1]
        wraps = np.cumsum((prev - t) > (1 << 31))
        self._counts["wraps_unwrapped"] += int(wraps[-1])
        out = self._wrap_base + wraps * _WRAP + t
        self._wrap_base += int(wraps[-1]) * _WRAP
        self._last_t32 = int(t[-1])
        return out

    # -- lifecycle -------------------------------------------------------------------------------------------
    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            self._sock.close()
        except OSError:
            pass

    def info(self) -> Mapping[str, Any]:
        out: dict[str, Any] = {
            "source": self.cfg.name,
            "address": f"{self.cfg.host}:{self.port}",
            "layout": self.cfg.layout,
            "time": "unknown yet" if self._counts["datagrams"] == 0 else (
                "sender timestamps" if self._offset_us is not None else "arrival time"),
            **self._counts,
        }
        if self._drop_reasons:
            out["drop_reasons"] = dict(self._drop_reasons)
        if self._ended:
            out["ended"] = self._ended
        return out
