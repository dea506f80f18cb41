"""Every reader kernel against a slow, obviously correct twin written straight from the format description,
on real recordings and on random word streams, with the output buffer cut small to exercise resumption."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from runtime.events import DVS_EVENT
from sensors.formats.kernels import common, es, evt
from sensors.formats.prophesee import read_raw_header


# -- twins ------------------------------------------------------------------------------------------------------
def twin_evt2(words, width=2048, height=2048):
    events, triggers = [], []
    high = None
    wraps = 0
    for w in map(int, words):
        kind = w >> 28
        if kind in (0, 1):
            t = (((wraps << 28) + (high or 0)) << 6) + ((w >> 22) & 63)
            events.append(((w >> 11) & 2047, w & 2047, t, kind == 1))
        elif kind == 8:
            new = w & ((1 << 28) - 1)
            if high is not None and high - new > (1 << 27):
                wraps += 1
            high = new
        elif kind == 0xA:
            t = (((wraps << 28) + (high or 0)) << 6) + ((w >> 22) & 63)
            triggers.append((t, (w >> 8) & 31, (w & 1) == 1))
        elif kind in (0xE, 0xF):
            pass
        else:
            return events, triggers, "bad"
    return events, triggers, None


def twin_evt21(words, swap=False):
    events, triggers = [], []
    high = None
    wraps = 0
    for w in map(int, words):
        if swap:
            w = ((w & 0xFFFFFFFF) << 32) | (w >> 32)
        kind = w >> 60
        if kind in (0, 1):
            t = (((wraps << 28) + (high or 0)) << 6) + ((w >> 54) & 63)
            x0, y, mask = (w >> 43) & 2047, (w >> 32) & 2047, w & 0xFFFFFFFF
            for b in range(32):
                if mask & (1 << b):
                    events.append((x0 + b, y, t, kind == 1))
        elif kind == 8:
            new = (w >> 32) & ((1 << 28) - 1)
            if high is not None and high - new > (1 << 27):
                wraps += 1
            high = new
        elif kind == 0xA:
            t = (((wraps << 28) + (high or 0)) << 6) + ((w >> 54) & 63)
            triggers.append((t, (w >> 40) & 31, (w >> 32) & 1 == 1))
        elif kind in (0xE, 0xF):
            pass
        else:
            return events, triggers, "bad"
    return events, triggers, None


def twin_evt3(words):
    """EVT 3.0 with the hold rule: a time word behind the latest time holds it, unless > 2^23 µs behind (a wrap)."""
    events, triggers = [], []
    y = x = pol = 0
    high = low = None
    wraps = 0
    now = 0
    held = 0
    for w in map(int, words):
        kind, v = w >> 12, w & 0xFFF
        if kind == 0x0:
            y = w & 0x7FF
        elif kind == 0x2:
            events.append((w & 0x7FF, y, now, (w >> 11) & 1 == 1))
        elif kind == 0x3:
            x, pol = w & 0x7FF, (w >> 11) & 1 == 1
        elif kind in (0x4, 0x5):
            n = 12 if kind == 0x4 else 8
            for b in range(n):
                if v & (1 << b):
                    events.append((x + b, y, now, pol))
            x += n
        elif kind in (0x6, 0x8):
            if kind == 0x6:
                low = v
                high = 0 if high is None else high
            elif v != high:
                high, low = v, 0
            else:
                continue  # TIME_HIGH repeated unchanged says nothing new: no time step, nothing held
            candidate = (wraps << 24) + (high << 12) + low
            if candidate >= now:
                now = candidate
            elif now - candidate > (1 << 23):
                wraps += 1
                now = candidate + (1 << 24)
            else:
                held += 1
        elif kind == 0xA:
            triggers.append((now, (w >> 8) & 0xF, w & 1 == 1))
        elif kind in (0x7, 0xE, 0xF):
            pass
        else:
            return events, triggers, "bad", held
    return events, triggers, None, held


def twin_es(data, atis=False, height=240):
    events = []
    t = 0
    i = 0
    while i < len(data):
        b = data[i]
        if not atis and b == 0xFF:
            t += 127
            i += 1
            continue
        if not atis and b == 0xFE:
            i += 1
            continue
        if atis and b & 0xFC == 0xFC:
            t += 63 * (b & 3)
            i += 1
            continue
        if i + 4 >= len(data):
            break
        if atis:
            t += b >> 2
            keep, p = (b & 1) == 0, (b >> 1) & 1 == 1
        else:
            t += b >> 1
            keep, p = True, b & 1 == 1
        x = data[i + 1] | (data[i + 2] << 8)
        yy = data[i + 3] | (data[i + 4] << 8)
        if keep:
            events.append((x if x < 32768 else -1, height - 1 - yy if yy < height else -1, t, p))
        i += 5
    return events


# -- drive the kernels like the readers do, with a small output buffer ------------------------------------------
def run_evt(kernel, words, cap, *extra, width=2048, height=2048):
    state = evt.new_state()
    tt, ti, tp = np.empty(3, np.int64), np.empty(3, np.uint8), np.empty(3, np.bool_)
    parts, trig = [], []
    pos = 0
    status = 0
    while pos < words.shape[0]:
        out = np.empty(cap, DVS_EVENT)
        pos, k, ntrig, status, _ = kernel(words, pos, out.view(np.uint8), tt, ti, tp, state, width, height, *extra)
        parts.append(out[:k].copy())
        trig += list(zip(tt[:ntrig].tolist(), ti[:ntrig].tolist(), tp[:ntrig].tolist()))
        if status:
            break
    ev = np.concatenate(parts) if parts else np.empty(0, DVS_EVENT)
    got = list(zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist()))
    return got, trig, ("bad" if status else None), state


def _raw_words(path, dtype):
    with open(path, "rb") as f:
        read_raw_header(path, f)
        data = f.read()
    return np.frombuffer(data[: len(data) - len(data) % np.dtype(dtype).itemsize], dtype=dtype)


def test_evt2_kernel_matches_twin_on_real_file(shared_data):
    words = _raw_words(shared_data / "vision" / "gen3_faery_evt2.raw", "<u4")[:60_000]
    got, trig, bad, _ = run_evt(evt.evt2_decode, words, 1000)
    want, wtrig, wbad = twin_evt2(words)
    assert got == want and trig == wtrig and bad == wbad and len(got) > 50_000


def test_evt3_kernel_matches_twin_on_real_files(shared_data):
    for name in ("gen4_expelliarmus_evt3.raw", "gen4_triggers_evt3.raw"):
        words = _raw_words(shared_data / "vision" / name, "<u2")[:80_000]
        got, trig, bad, state = run_evt(evt.evt3_decode, words, 100)
        want, wtrig, wbad, held = twin_evt3(words)
        assert got == want and trig == wtrig and bad == wbad
        assert state[evt.S_HELD] == held


_EVT2_KINDS = st.sampled_from([0, 1, 0, 1, 0, 1, 8, 0xA, 0xE, 0xF])


@st.composite
def evt2_words(draw):
    n = draw(st.integers(0, 300))
    out = []
    for _ in range(n):
        kind = draw(_EVT2_KINDS)
        payload = draw(st.integers(0, (1 << 28) - 1))
        if kind == 8 and draw(st.booleans()):
            payload = draw(st.integers(0, 40))  # small values: wraps back from large ones
        out.append((kind << 28) | payload)
    if draw(st.booleans()) and out:
        out.insert(draw(st.integers(0, len(out))), draw(st.sampled_from([2, 5, 9, 0xB, 0xC])) << 28)
    return np.array(out, dtype=np.uint32)


@settings(max_examples=60)
@given(words=evt2_words(), cap=st.integers(1, 50))
def test_evt2_kernel_matches_twin_on_random_words(words, cap):
    got, trig, bad, _ = run_evt(evt.evt2_decode, words, cap)
    want, wtrig, wbad = twin_evt2(words)
    assert bad == wbad
    if bad is None:
        assert got == want and trig == wtrig


@st.composite
def evt21_words(draw):
    n = draw(st.integers(0, 120))
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from([0, 1, 0, 1, 8, 0xA, 0xE, 0xF]))
        payload = draw(st.integers(0, (1 << 60) - 1))
        if kind == 8 and draw(st.booleans()):
            payload = draw(st.integers(0, 40)) << 32
        out.append((kind << 60) | payload)
    return np.array(out, dtype=np.uint64)


@settings(max_examples=60)
@given(words=evt21_words(), cap=st.integers(32, 90), swap=st.booleans())
def test_evt21_kernel_matches_twin_on_random_words(words, cap, swap):
    got, trig, bad, _ = run_evt(evt.evt21_decode, words, cap, swap)
    want, wtrig, wbad = twin_evt21(words, swap)
    assert (got, trig, bad) == (want, wtrig, wbad)


@st.composite
def evt3_words(draw):
    n = draw(st.integers(0, 400))
    out = []
    for _ in range(n):
        kind = draw(st.sampled_from([0x0, 0x2, 0x3, 0x4, 0x5, 0x6, 0x6, 0x8, 0x7, 0xA, 0xE, 0xF]))
        out.append((kind << 12) | draw(st.integers(0, 0xFFF)))
    return np.array(out, dtype=np.uint16)


@settings(max_examples=80)
@given(words=evt3_words(), cap=st.integers(12, 40))
def test_evt3_kernel_matches_twin_on_random_words(words, cap):
    got, trig, bad, state = run_evt(evt.evt3_decode, words, cap)
    want, wtrig, wbad, held = twin_evt3(words)
    assert (got, trig, bad) == (want, wtrig, wbad)
    assert state[evt.S_HELD] == held


def test_evt3_wraps_past_24_bits():
    # TIME_HIGH 0xFFF then 0x000: the 24-bit counter wrapped, time goes on past 2^24 µs
    words = np.array([0x8FFF, 0x6FF0, 0x0005, 0x2001, 0x8000, 0x6003, 0x2002], dtype=np.uint16)
    got, _, _, state = run_evt(evt.evt3_decode, words, 16)
    assert [e[2] for e in got] == [(0xFFF << 12) + 0xFF0, (1 << 24) + 3]
    assert state[evt.S_WRAPS] == 1
    assert twin_evt3(words)[0] == got


def test_evt2_wraps_past_34_bits():
    top = (1 << 28) - 1
    words = np.array([(8 << 28) | top, (1 << 28) | (5 << 22), 8 << 28, (7 << 22)], dtype=np.uint32)
    got, _, _, state = run_evt(evt.evt2_decode, words, 4)
    assert [e[2] for e in got] == [(top << 6) + 5, (1 << 34) + 7]
    assert state[evt.S_WRAPS] == 1


@settings(max_examples=60)
@given(data=st.binary(max_size=400), atis=st.booleans(), cap=st.integers(1, 30))
def test_es_kernel_matches_twin(data, atis, cap):
    arr = np.frombuffer(data, np.uint8)
    state = np.zeros(es.ES_STATE_SIZE, np.int64)
    parts = []
    pos = 0
    while pos < arr.shape[0]:
        out = np.empty(cap, DVS_EVENT)
        pos, k = es.es_decode(arr, pos, out, state, atis, 240)
        parts.append(out[:k].copy())
    ev = np.concatenate(parts) if parts else np.empty(0, DVS_EVENT)
    got = list(zip(ev["x"].tolist(), ev["y"].tolist(), ev["t"].tolist(), ev["p"].tolist()))
    assert got == twin_es(data, atis, 240)


def test_es_kernel_matches_twin_on_real_file(shared_data):
    data = (shared_data / "vision" / "dvs_faery.es").read_bytes()[20:60_020]
    arr = np.frombuffer(data, np.uint8)
    out = np.empty(20_000, DVS_EVENT)
    pos, k = es.es_decode(arr, 0, out, np.zeros(es.ES_STATE_SIZE, np.int64), False, 240)
    got = list(zip(out["x"][:k].tolist(), out["y"][:k].tolist(), out["t"][:k].tolist(), out["p"][:k].tolist()))
    assert got == twin_es(data, False, 240) and k > 10_000


@settings(max_examples=60)
@given(t=st.lists(st.integers(-50, 50), max_size=40), last=st.integers(-60, 60))
def test_order_kernels_match_twins(t, last):
    arr = np.array(t, dtype=np.int64)
    want_first = next((i for i in range(len(t)) if t[i] < (last if i == 0 else t[i - 1])), -1)
    assert common.first_disorder(arr, last) == want_first
    running, moved = last, 0
    for v in t:
        if v < running:
            moved += 1
        running = max(running, v)
    sorted_t = np.sort(arr, kind="stable")
    n = common.repair_chunk_order(arr, sorted_t, last)
    assert n == moved
    assert sorted_t.tolist() == [max(v, last) for v in sorted(t)]


@settings(max_examples=60)
@given(v=st.lists(st.integers(-5, 40), max_size=30), limit=st.integers(1, 35))
def test_bounds_kernel_matches_twin(v, limit):
    arr = np.array(v, dtype=np.int16)
    want = next((i for i, x in enumerate(v) if x < 0 or x >= limit), -1)
    assert common.first_out_of_bounds(arr, limit) == want


@settings(max_examples=60)
@given(raw=st.lists(st.integers(0, (1 << 32) - 1), max_size=40), split=st.integers(0, 40))
def test_unwrap_u32_matches_twin(raw, split):
    arr = np.array(raw, dtype=np.uint32)
    want, wraps, last = [], 0, None
    for r in raw:
        if last is not None and last - r > (1 << 31):
            wraps += 1
        last = r
        want.append(r + (wraps << 32))
    out = np.empty(len(raw), np.int64)
    state = np.array([-1, 0], np.int64)
    a = min(split, len(raw))
    found = common.unwrap_u32(arr[:a], out[:a], state) + common.unwrap_u32(arr[a:], out[a:], state)
    assert out.tolist() == want and found == wraps


# -- AEDAT 4.0: LZ4 frames and packets --------------------------------------------------------------------------
def twin_lz4_frame(data: bytes) -> bytes | None:
    """LZ4 frame decoding written from the LZ4 frame and block format descriptions; None when malformed."""
    import struct

    if len(data) < 7 or struct.unpack_from("<I", data, 0)[0] != 0x184D2204:
        return None
    flg = data[4]
    if flg >> 6 != 1:
        return None
    i = 6 + (8 if flg & 8 else 0) + (4 if flg & 1 else 0) + 1
    out = bytearray()
    while True:
        if i + 4 > len(data):
            return None
        size = struct.unpack_from("<I", data, i)[0]
        i += 4
        if size == 0:
            return bytes(out)
        raw, size = size >> 31, size & 0x7FFFFFFF
        if i + size > len(data):
            return None
        block = data[i : i + size]
        i += size + (4 if flg & 0x10 else 0)
        if raw:
            out += block
            continue
        j = 0
        while j < len(block):
            token = block[j]
            j += 1
            lit = token >> 4
            if lit == 15:
                while True:
                    if j >= len(block):
                        return None
                    lit += block[j]
                    j += 1
                    if block[j - 1] != 255:
                        break
            if j + lit > len(block):
                return None
            out += block[j : j + lit]
            j += lit
            if j >= len(block):
                break
            if j + 2 > len(block):
                return None
            offset = block[j] | (block[j + 1] << 8)
            j += 2
            length = (token & 15)
            if length == 15:
                while True:
                    if j >= len(block):
                        return None
                    length += block[j]
                    j += 1
                    if block[j - 1] != 255:
                        break
            length += 4
            if offset == 0 or offset > len(out):
                return None
            for _ in range(length):
                out.append(out[-offset])


def _aedat4_packets(path):
    import struct

    data = path.read_bytes()
    n = struct.unpack_from("<i", data, 14)[0]
    pos = 18 + n
    packets = []
    while pos + 8 <= len(data):
        sid, size = struct.unpack_from("<ii", data, pos)
        if size < 0 or pos + 8 + size > len(data) or data[pos + 8 : pos + 12] != b"\x04\x22\x4d\x18":
            break
        packets.append(data[pos + 8 : pos + 8 + size])
        pos += 8 + size
    return packets


def _kernel_lz4(frame: bytes):
    from sensors.formats.kernels import aedat4 as A

    src = np.frombuffer(frame, np.uint8)
    bound = A.lz4_frame_bound(src, 0, src.shape[0])
    if bound < 0:
        return None
    dst = np.empty(bound + 8, np.uint8)
    n = A.lz4_frame_decode(src, 0, src.shape[0], dst)
    return None if n < 0 else dst[:n].tobytes()


def test_lz4_kernel_matches_twin_on_real_packets(shared_data):
    frames = _aedat4_packets(shared_data / "vision" / "dvxplorer_tonic.aedat4")[:8]
    frames += _aedat4_packets(shared_data / "vision" / "davis346_evlib.aedat4")
    assert len(frames) > 30
    for frame in frames:
        want = twin_lz4_frame(frame)
        assert want is not None and _kernel_lz4(frame) == want


@settings(max_examples=80)
@given(data=st.data())
def test_lz4_kernel_matches_twin_on_damaged_frames(shared_data, data):
    frames = _aedat4_packets(shared_data / "vision" / "davis346_evlib.aedat4")
    frame = bytearray(data.draw(st.sampled_from(frames)))
    for _ in range(data.draw(st.integers(1, 4))):
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(len(frame) // 2, len(frame)))
    frame = bytes(frame[:cut])
    want = twin_lz4_frame(frame)
    got = _kernel_lz4(frame)
    # the kernel checks a little more than the twin (output bound from the frame header), never less
    assert got == want or (got is None and want is not None)


@settings(max_examples=60)
@given(
    rows=st.lists(st.tuples(st.integers(-20, 20), st.integers(-3, 12), st.integers(-3, 12)), max_size=30),
    last=st.integers(-25, 25),
)
def test_check_chunk_matches_twin(rows, last):
    t = np.array([r[0] for r in rows], np.int64)
    x = np.array([r[1] for r in rows], np.int16)
    y = np.array([r[2] for r in rows], np.int16)
    want_t = next((i for i in range(len(rows)) if rows[i][0] < (last if i == 0 else rows[i - 1][0])), -1)
    want_xy = next((i for i, r in enumerate(rows) if not (0 <= r[1] < 10 and 0 <= r[2] < 8)), -1)
    assert common.check_chunk(t, x, y, last, 10, 8) == (want_t, want_xy)


@settings(max_examples=60)
@given(
    rows=st.lists(
        st.tuples(st.integers(-(1 << 31), (1 << 31) - 1), st.integers(-40_000, 40_000), st.integers(-(1 << 62), 1 << 62),
                  st.booleans()),
        max_size=30,
    )
)
def test_pack_dvs_matches_twin(rows):
    from sensors.formats.kernels.pack import pack_dvs

    x = np.array([r[0] for r in rows], np.int32)
    y = np.array([r[1] for r in rows], np.int32)
    t = np.array([r[2] for r in rows], np.int64)
    p = np.array([r[3] for r in rows], np.bool_)
    out = np.empty(len(rows), DVS_EVENT)
    assert pack_dvs(x, y, t, p, out.view(np.uint8)) == len(rows)
    fit = lambda v: v if -32768 <= v <= 32767 else -1  # noqa: E731
    assert out.tolist() == [(fit(a), fit(b), c, d) for a, b, c, d in rows]
