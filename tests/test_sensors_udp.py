"""AER over UDP on loopback (127.0.0.1 only): layouts, every event in order, heartbeats, bad datagrams."""

from __future__ import annotations

import socket
import threading
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import DeviceError
from runtime.events import make_dvs_events
from runtime.packet import check_packet
from sensors.udp import DatagramError, UdpSource, decode_aestream, encode_aestream, send_events

LOOPBACK = "127.0.0.1"


def random_events(n, w, h, seed, t0=0, span_us=300_000):
    rng = np.random.default_rng(seed)
    t = t0 + np.sort(rng.integers(0, span_us, n))
    t[10:20] = t[10]  # a run of equal timestamps that a 64-event datagram may split
    t = np.sort(t)
    return make_dvs_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n).astype(bool))


def collect(opened, want_events, deadline_s=20.0):
    """Iterate an opened source until ``want_events`` arrived and the held tail came out."""
    packets = []
    got = 0
    stop_at = time.monotonic() + deadline_s
    last_wm = None
    for p in opened:
        check_packet(p.events, p.t_end_us, where="udp test", t_min_us=last_wm)
        last_wm = p.t_end_us
        packets.append(p)
        got += len(p)
        if got >= want_events or time.monotonic() > stop_at:
            break
    return packets


def sender_thread(*args, delay_s=0.05, **kw):
    def run():
        time.sleep(delay_s)
        send_events(*args, **kw)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    return th


# ----------------------------------------------------------------------------------------------------------------
# layout


def test_aestream_test_vector():
    # AEStream's own UDP test sends these 4 bytes and expects a count at frame[x=218, y=15]
    x, y, p, t = decode_aestream(b"\x0F\x00\xDA\x00", timestamps=False)
    assert (int(x[0]), int(y[0]), bool(p[0]), t) == (218, 15, False, None)


@given(st.integers(0, 200), st.booleans(), st.integers(0, 2**32 - 1))
def test_aestream_encode_decode_round_trip(n, timestamps, seed):
    rng = np.random.default_rng(seed)
    ev = make_dvs_events(rng.integers(0, 32768, n), rng.integers(0, 32768, n), np.sort(rng.integers(0, 2**40, n)),
                         rng.integers(0, 2, n).astype(bool))
    payload = encode_aestream(ev, timestamps=timestamps)
    assert len(payload) == n * (8 if timestamps else 4)
    x, y, p, t = decode_aestream(payload)  # auto: bit 31 says which
    np.testing.assert_array_equal(x, ev["x"])
    np.testing.assert_array_equal(y, ev["y"])
    np.testing.assert_array_equal(p, ev["p"])
    if timestamps and n:
        np.testing.assert_array_equal(t, ev["t"] % 2**32)
    elif n:
        assert t is None


def test_word_layout_bits():
    ev = make_dvs_events([5], [7], [123], [True])
    word = int(np.frombuffer(encode_aestream(ev, timestamps=False), "<u4")[0])
    assert word == (1 << 31) | (5 << 16) | (1 << 15) | 7
    pair = np.frombuffer(encode_aestream(ev, timestamps=True), "<u4")
    assert int(pair[0]) == (5 << 16) | (1 << 15) | 7 and int(pair[1]) == 123


def test_malformed_datagrams_raise_in_the_decoder():
    with pytest.raises(DatagramError, match="not a whole number of 32-bit words"):
        decode_aestream(b"\x00" * 5)
    with pytest.raises(DatagramError, match="come in \\(event, time\\) pairs"):
        decode_aestream(np.array([1, 2, 3], "<u4").tobytes())
    with pytest.raises(DatagramError, match="word 1 asks for a timestamp"):
        decode_aestream(np.array([1 << 31, 5], "<u4").tobytes())


# ----------------------------------------------------------------------------------------------------------------
# loopback


@pytest.mark.parametrize("timestamps", [True, False])
def test_every_event_arrives_in_order(timestamps):
    ev = random_events(12_000, 346, 260, seed=1)
    src = UdpSource(346, 260, port=0, host=LOOPBACK, heartbeat_us=20_000, end_after_idle_s=1.0,
                    timestamps=None if timestamps else False).open()
    assert src.blocking
    th = sender_thread(ev, (LOOPBACK, src.port), timestamps=timestamps, speed=1.0)
    packets = collect(src, len(ev))
    th.join()
    src.close()
    got = np.concatenate([p.events for p in packets])
    assert len(got) == len(ev)
    np.testing.assert_array_equal(got["x"], ev["x"])
    np.testing.assert_array_equal(got["y"], ev["y"])
    np.testing.assert_array_equal(got["p"], ev["p"])
    info = src.info()
    assert info["events"] == len(ev) and info["dropped_datagrams"] == 0
    assert info["datagrams"] == -(-len(ev) // (64 if timestamps else 128))
    if timestamps:
        np.testing.assert_array_equal(got["t"], ev["t"])  # sender time kept exactly, runs not split
        assert info["late_events_held"] == 0 and info["time"] == "sender timestamps"
    else:
        assert np.all(np.diff(got["t"]) >= 0) and info["time"] == "arrival time"
        # events of one datagram are simultaneous
        assert len(np.unique(got["t"])) <= info["datagrams"]


def test_silent_sender_yields_heartbeats_only():
    src = UdpSource(64, 48, port=0, host=LOOPBACK, heartbeat_us=20_000, end_after_idle_s=0.25,
                    timestamps=False).open()
    t_start = time.monotonic()
    packets = list(src)
    elapsed = time.monotonic() - t_start
    assert len(packets) >= 3 and all(len(p) == 0 for p in packets)
    marks = [p.t_end_us for p in packets]
    assert marks == sorted(marks) and marks[-1] > marks[0]
    assert src.t_clock == "perf_counter_us" and marks[0] >= src.opened_at_us
    assert marks[-1] - src.opened_at_us <= elapsed * 1e6 + 1  # watermarks follow the arrival clock, never ahead
    info = src.info()
    assert info["heartbeats"] == len(packets) and info["events"] == 0 and "no datagram" in info["ended"]


def test_heartbeats_after_timestamped_data_advance_past_the_last_event():
    ev = random_events(500, 32, 32, seed=3, t0=5_000_000, span_us=50_000)
    src = UdpSource(32, 32, port=0, host=LOOPBACK, heartbeat_us=10_000, sender_lag_us=0,
                    end_after_idle_s=0.3).open()
    th = sender_thread(ev, (LOOPBACK, src.port), timestamps=True)
    packets = list(src)
    th.join()
    got = np.concatenate([p.events for p in packets])
    np.testing.assert_array_equal(got["t"], ev["t"])
    after = [p for p in packets if p.t_end_us > ev["t"][-1]]
    assert after and all(len(p) == 0 for p in after[1:])  # the held last run comes out, then only heartbeats
    assert packets[-1].t_end_us > int(ev["t"][-1]) + 100_000  # the sender clock, estimated, kept moving


def test_32_bit_wrap_is_unwrapped():
    ev = random_events(600, 16, 16, seed=4, t0=2**32 - 30_000, span_us=60_000)
    src = UdpSource(16, 16, port=0, host=LOOPBACK, end_after_idle_s=0.3).open()
    th = sender_thread(ev, (LOOPBACK, src.port), timestamps=True)
    got = np.concatenate([p.events for p in src])
    th.join()
    np.testing.assert_array_equal(got["t"], ev["t"])
    assert src.info()["wraps_unwrapped"] == 1


@pytest.mark.filterwarnings("ignore::ResourceWarning", "ignore::pytest.PytestUnraisableExceptionWarning")
def test_faery_sender_is_received_event_for_event():  # faery 0.7.1's encoder leaves its socket to the GC
    import faery.udp_encoder

    ev = random_events(3_000, 128, 128, seed=5, span_us=100_000)
    fev = np.zeros(len(ev), dtype=faery.EVENTS_DTYPE)
    for name, src_name in (("t", "t"), ("x", "x"), ("y", "y"), ("on", "p")):
        fev[name] = ev[src_name]
    src = UdpSource(128, 128, port=0, host=LOOPBACK, layout="t64_x16_y16_on8", end_after_idle_s=0.4).open()

    def run():
        time.sleep(0.05)
        for k in range(0, len(fev), 300):  # paced a little so loopback never overflows
            faery.udp_encoder.encode([fev[k : k + 300]], (LOOPBACK, src.port), events_per_packet=100)
            time.sleep(0.005)

    th = threading.Thread(target=run, daemon=True)
    th.start()
    got = np.concatenate([p.events for p in src])
    th.join()
    np.testing.assert_array_equal(got, ev)


def test_bad_datagrams_and_stray_events_are_dropped_and_counted():
    src = UdpSource(10, 10, port=0, host=LOOPBACK, end_after_idle_s=0.3, timestamps=None).open()
    good = make_dvs_events([1, 2], [3, 4], [100, 200], True)
    stray = make_dvs_events([50], [3], [300], True)  # x = 50 on a 10-wide sensor

    def run():
        time.sleep(0.05)
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.sendto(b"\x01\x02\x03", (LOOPBACK, src.port))  # not whole words
        s.sendto(np.array([1 << 31, 5], "<u4").tobytes(), (LOOPBACK, src.port))  # mixed layout
        s.sendto(encode_aestream(good, timestamps=True), (LOOPBACK, src.port))
        s.sendto(encode_aestream(stray, timestamps=True), (LOOPBACK, src.port))
        s.close()

    th = threading.Thread(target=run, daemon=True)
    th.start()
    got = np.concatenate([p.events for p in src])
    th.join()
    np.testing.assert_array_equal(got, good)
    info = src.info()
    assert info["dropped_datagrams"] == 2 and info["events_outside_sensor_dropped"] == 1
    assert sum(info["drop_reasons"].values()) == 2


def test_close_from_another_thread_ends_iteration():
    src = UdpSource(10, 10, port=0, host=LOOPBACK, heartbeat_us=50_000).open()
    threading.Timer(0.2, src.close).start()
    t0 = time.monotonic()
    n = sum(1 for _ in src)
    assert time.monotonic() - t0 < 5.0 and n >= 1


def test_port_in_use_is_a_device_error():
    first = UdpSource(4, 4, port=0, host=LOOPBACK).open()
    try:
        with pytest.raises(DeviceError, match=rf"udp: cannot listen for UDP on 127\.0\.0\.1:{first.port}"):
            UdpSource(4, 4, port=first.port, host=LOOPBACK).open()
    finally:
        first.close()
