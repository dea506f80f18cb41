"""Event-time rules: packets, watermarks, packetization."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import StreamOrderError
from runtime.events import DVS_EVENT, make_dvs_events
from runtime.packet import Packet, Packetizer, concat_events, make_packet, packetize


def _events(t):
    t = np.asarray(t, dtype=np.int64)
    return make_dvs_events(np.arange(t.size) % 7, np.arange(t.size) % 5, t, np.arange(t.size) % 2)


def test_make_packet_freezes_and_checks_watermark():
    ev = _events([1, 2, 2, 5])
    p = make_packet(ev, 6)
    assert not p.events.flags.writeable
    assert ev.flags.writeable  # the caller's array is not touched
    with pytest.raises(StreamOrderError, match="watermark t_end_us=5 must exceed the last event's t=5"):
        make_packet(ev, 5)


def test_make_packet_names_the_first_backward_step():
    with pytest.raises(StreamOrderError, match=r"event 2 has t=3 µs after t=9 µs"):
        make_packet(_events([1, 9, 3]), 10)


def test_empty_packet_is_a_legal_watermark():
    p = make_packet(np.empty(0, DVS_EVENT), 100)
    assert len(p) == 0 and p.t_end_us == 100 and p.t_first_us is None


def test_packetizer_never_splits_equal_timestamps():
    t = [0, 1, 1, 1, 1, 1, 2, 3, 3]
    packets = list(packetize(_events(t), max_events=2, max_span_us=None))
    for a, b in zip(packets[:-1], packets[1:]):
        assert a.events["t"][-1] < b.events["t"][0]
        assert a.t_end_us == b.events["t"][0]
    # a run longer than max_events stays whole
    assert any(len(p) == 5 for p in packets)
    assert np.array_equal(concat_events(packets, DVS_EVENT)["t"], t)


def test_packetizer_time_span_limit():
    t = np.arange(0, 10_000, 10)
    packets = list(packetize(_events(t), max_events=10_000, max_span_us=1000))
    assert all(p.events["t"][-1] - p.events["t"][0] < 1000 for p in packets)
    assert len(packets) == 10


def test_packetizer_rejects_backwards_chunks_with_the_event_index():
    p = Packetizer(DVS_EVENT, 4, None, where="file.raw")
    p.feed(_events([1, 2, 3]))
    with pytest.raises(StreamOrderError, match=r"file.raw: field 't' decreases at event 3: t=2 µs after t=3 µs"):
        p.feed(_events([2, 4]))


@given(
    gaps=st.lists(st.integers(0, 3), min_size=1, max_size=200),
    chunk_sizes=st.lists(st.integers(1, 50), min_size=1, max_size=20),
    max_events=st.integers(1, 16),
    span=st.one_of(st.none(), st.integers(1, 10)),
)
def test_packetizer_is_chunk_invariant(gaps, chunk_sizes, max_events, span):
    ev = _events(np.cumsum(gaps))
    whole = list(packetize(ev, max_events, span))
    p = Packetizer(DVS_EVENT, max_events, span)
    pieces, i, k = [], 0, 0
    while i < len(ev):
        n = chunk_sizes[k % len(chunk_sizes)]
        pieces.extend(p.feed(ev[i : i + n]))
        i += n
        k += 1
    pieces.extend(p.flush())
    assert [(len(a), a.t_end_us) for a in whole] == [(len(b), b.t_end_us) for b in pieces]
    assert np.array_equal(concat_events(whole, DVS_EVENT), concat_events(pieces, DVS_EVENT))


def test_packet_derive_keeps_watermark_and_adds_delay():
    p = make_packet(_events([1, 2]), 3)
    q = p.derive(p.events[:1].copy(), delay_us=5)
    assert q.t_end_us == 8 and not q.events.flags.writeable
    assert isinstance(q, Packet)


def test_tonic_transforms_accept_packet_events():
    import tonic
    import tonic.transforms as T

    assert DVS_EVENT == np.dtype(tonic.io.events_struct)
    rng = np.random.default_rng(0)
    n = 500
    ev = make_dvs_events(rng.integers(0, 32, n), rng.integers(0, 32, n), np.sort(rng.integers(0, 10_000, n)), rng.integers(0, 2, n))
    p = make_packet(ev, 10_001)
    frames = T.ToFrame(sensor_size=(32, 32, 2), event_count=100)(p.events)
    assert frames.shape == (5, 2, 32, 32) and frames.sum() == n
    flipped = T.RandomFlipLR(sensor_size=(32, 32, 2), p=1.0)(p.events)
    assert np.array_equal(flipped["x"], 31 - ev["x"])
    down = T.Downsample(spatial_factor=0.5)(p.events)
    assert down["x"].max() < 16
    assert not p.events.flags.writeable  # tonic did not need to write into the packet


def _cut_points_twin(t, max_events, max_span_us):
    """Slow, obviously correct: grow each packet one event at a time, then back off out of a run of equal t."""
    t = list(t)
    ends, start = [], 0
    while start < len(t):
        end = start + 1
        while end < len(t) and end - start < max_events and (max_span_us is None or t[end] - t[start] < max_span_us):
            end += 1
        if end < len(t) and t[end] == t[end - 1]:
            back = end
            while back > start and t[back - 1] == t[end]:
                back -= 1
            if back > start:
                end = back
            else:
                while end < len(t) and t[end] == t[end - 1]:
                    end += 1
        ends.append(end)
        start = end
    return ends


@given(
    gaps=st.lists(st.integers(0, 4), min_size=1, max_size=300),
    max_events=st.integers(1, 20),
    span=st.one_of(st.none(), st.integers(1, 12)),
)
def test_cut_points_kernel_matches_its_twin(gaps, max_events, span):
    from runtime.packet_kernels import cut_points

    t = np.cumsum(np.asarray(gaps, dtype=np.int64))
    assert cut_points(t, max_events, span).tolist() == _cut_points_twin(t, max_events, span)


def test_first_descent_kernel_matches_numpy():
    from runtime.packet_kernels import first_descent

    rng = np.random.default_rng(1)
    for _ in range(50):
        t = np.sort(rng.integers(0, 100, 50))
        if rng.random() < 0.7:
            i = int(rng.integers(1, 50))
            t[i] = t[i - 1] - 1
        steps = np.flatnonzero(np.diff(t) < 0)
        assert first_descent(t) == (int(steps[0]) + 1 if steps.size else -1)
