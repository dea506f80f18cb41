"""Event filters: each numba-backed stage against a slow pure-Python twin, packet invariance, counters, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.errors import GraphError
from runtime.events import DVS_EVENT, make_dvs_events
from runtime.packet import Packet
from runtime.spec import audio_spec, dvs_spec
from runtime.testing import check_packet_invariance, cut_at, run_stage
from sensors import filter_kernels as K
from sensors.filters import (
    BackgroundActivityFilter,
    Downsample,
    EventRangeError,
    HotPixelFilter,
    RefractoryFilter,
    RegionOfInterest,
    ToImageOrientation,
    Transform,
    check_in_sensor,
    transform_events,
    transformed_spec,
)

# ----------------------------------------------------------------------------------------------------------------
# random streams: small sensors so neighbours meet, time steps of 0 so simultaneous runs happen


@st.composite
def streams(draw, max_events=150):
    w = draw(st.integers(1, 9))
    h = draw(st.integers(1, 9))
    n = draw(st.integers(0, max_events))
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    steps = rng.choice([0, 0, 1, 3, 40, 400, 3000], size=n)
    t = 1_000 + np.cumsum(steps)
    ev = make_dvs_events(rng.integers(0, w, n), rng.integers(0, h, n), t, rng.integers(0, 2, n).astype(bool))
    return dvs_spec(w, h), ev


def random_cuts(draw_list, n):
    return sorted(set(c for c in draw_list if 0 < c < n))


def run_whole(stage, spec, events):
    if events.shape[0] == 0:
        out, state, _ = run_stage(stage, spec, [])
        return out, state
    out, state, _ = run_stage(stage, spec, cut_at(events, []))
    return out, state


# ----------------------------------------------------------------------------------------------------------------
# slow, obviously-correct twins


def ref_background_activity(events, window_us):
    keep = []
    for i, e in enumerate(events):
        ok = False
        for f in events:  # any event at a neighbouring pixel that fired in (t - window, t], same t included
            if f["t"] > e["t"]:
                break
            if f["x"] == e["x"] and f["y"] == e["y"]:
                continue
            if abs(int(f["x"]) - int(e["x"])) <= 1 and abs(int(f["y"]) - int(e["y"])) <= 1:
                if e["t"] - window_us < f["t"] <= e["t"]:
                    ok = True
                    break
        keep.append(ok)
    return events[np.array(keep, dtype=bool)] if len(events) else events


def ref_refractory(events, period_us):
    last_kept = {}
    keep = []
    for e in events:
        key = (int(e["x"]), int(e["y"]))
        if key not in last_kept or e["t"] - last_kept[key] >= period_us:
            last_kept[key] = int(e["t"])
            keep.append(True)
        else:
            keep.append(False)
    return events[np.array(keep, dtype=bool)] if len(events) else events


def ref_hot_pixels(events, fixed, threshold_hz, calibration_us):
    hot = set(fixed)
    if threshold_hz is not None and len(events):
        t0 = int(events["t"][0])
        end = t0 + calibration_us
        final_watermark = int(events["t"][-1]) + 1
        span = min(calibration_us, final_watermark - t0)
        counts = {}
        for e in events:
            if e["t"] < end:
                key = (int(e["x"]), int(e["y"]))
                counts[key] = counts.get(key, 0) + 1
        for key, c in counts.items():
            if c / (span * 1e-6) > threshold_hz:
                hot.add(key)
    keep = [(int(e["x"]), int(e["y"])) not in hot for e in events]
    return events[np.array(keep, dtype=bool)] if len(events) else events


def ref_crop(events, x0, y0, w, h):
    rows = []
    for e in events:
        if x0 <= e["x"] < x0 + w and y0 <= e["y"] < y0 + h:
            rows.append((e["x"] - x0, e["y"] - y0, e["t"], e["p"]))
    return np.array(rows, dtype=DVS_EVENT)


def ref_transform(events, w, h, flip_x, flip_y, rotate):
    """Move pixel ids around an image (rows = y, top row first) with numpy's flips and rotations."""
    grid = np.arange(w * h).reshape(h, w)  # grid[y, x] = pixel id of (x, y)
    if flip_x:
        grid = grid[:, ::-1]
    if flip_y:
        grid = grid[::-1, :]
    grid = np.rot90(grid, k=-(rotate // 90))  # k < 0: clockwise on screen
    where = {}
    for yy in range(grid.shape[0]):
        for xx in range(grid.shape[1]):
            where[int(grid[yy, xx])] = (xx, yy)
    out = np.array(events)
    for i, e in enumerate(events):
        out[i]["x"], out[i]["y"] = where[int(e["y"]) * w + int(e["x"])]
    return out


def ref_downsample(events, fx, fy):
    out = np.array(events)
    for i in range(len(out)):
        out[i]["x"] = int(events[i]["x"]) // fx
        out[i]["y"] = int(events[i]["y"]) // fy
    return out


# ----------------------------------------------------------------------------------------------------------------
# kernels against twins, via the stages


@given(streams(), st.sampled_from([1, 2, 5, 50, 500, 5000]))
def test_background_activity_matches_reference(stream, window_us):
    spec, ev = stream
    stage = BackgroundActivityFilter(window_us=window_us)
    out, state = run_whole(stage, spec, ev)
    expected = ref_background_activity(ev, window_us)
    np.testing.assert_array_equal(out, expected)
    assert stage.counters(state)["filtered_events"] == len(ev) - len(expected)


@given(streams(), st.sampled_from([1, 2, 4, 41, 1000, 10_000]))
def test_refractory_matches_reference(stream, period_us):
    spec, ev = stream
    stage = RefractoryFilter(period_us=period_us)
    out, state = run_whole(stage, spec, ev)
    expected = ref_refractory(ev, period_us)
    np.testing.assert_array_equal(out, expected)
    assert stage.counters(state)["filtered_events"] == len(ev) - len(expected)


@given(streams(), st.sampled_from([None, 500.0, 5_000.0, 50_000.0]), st.sampled_from([100, 2_000, 30_000]),
       st.lists(st.tuples(st.integers(0, 8), st.integers(0, 8)), max_size=3))
def test_hot_pixels_match_reference(stream, threshold_hz, calibration_us, fixed):
    spec, ev = stream
    w, h = spec.shape[:2]
    fixed = [(x, y) for x, y in fixed if x < w and y < h]
    stage = HotPixelFilter(pixels=tuple(fixed), rate_threshold_hz=threshold_hz, calibration_us=calibration_us)
    out, state = run_whole(stage, spec, ev)
    expected = ref_hot_pixels(ev, fixed, threshold_hz, calibration_us)
    np.testing.assert_array_equal(out, expected)
    assert stage.counters(state)["filtered_events"] == len(ev) - len(expected)


def test_count_pixels_kernel_matches_reference():
    rng = np.random.default_rng(3)
    ev = make_dvs_events(rng.integers(0, 7, 500), rng.integers(0, 5, 500), np.arange(500), True)
    counts = np.zeros((7, 5), dtype=np.int64)
    K.count_pixels_kernel(ev["x"], ev["y"], counts)
    expected = np.zeros((7, 5), dtype=np.int64)
    for e in ev:
        expected[e["x"], e["y"]] += 1
    np.testing.assert_array_equal(counts, expected)


@given(streams(), st.data())
def test_crop_matches_reference(stream, data):
    spec, ev = stream
    w, h = spec.shape[:2]
    x0 = data.draw(st.integers(0, w - 1))
    y0 = data.draw(st.integers(0, h - 1))
    cw = data.draw(st.integers(1, w - x0))
    ch = data.draw(st.integers(1, h - y0))
    stage = RegionOfInterest(x0, y0, cw, ch)
    out, state = run_whole(stage, spec, ev)
    expected = ref_crop(ev, x0, y0, cw, ch)
    np.testing.assert_array_equal(out, expected)
    assert stage.out_spec(spec).shape == (cw, ch, 2)
    assert stage.counters(state)["filtered_events"] == len(ev) - len(expected)


@given(streams(), st.booleans(), st.booleans(), st.sampled_from([0, 90, 180, 270]))
def test_transform_matches_reference(stream, flip_x, flip_y, rotate):
    spec, ev = stream
    w, h = spec.shape[:2]
    stage = Transform(flip_x, flip_y, rotate)
    out, state = run_whole(stage, spec, ev)
    np.testing.assert_array_equal(out, ref_transform(ev, w, h, flip_x, flip_y, rotate))
    new = stage.out_spec(spec)
    assert new.shape[:2] == ((h, w) if rotate in (90, 270) else (w, h))
    check_in_sensor(out, new, where="test")  # every output event fits the new geometry
    assert stage.counters(state)["filtered_events"] == 0


@given(streams(), st.integers(1, 4), st.integers(1, 4))
def test_downsample_matches_reference(stream, fx, fy):
    spec, ev = stream
    stage = Downsample(fx, fy)
    out, _ = run_whole(stage, spec, ev)
    np.testing.assert_array_equal(out, ref_downsample(ev, fx, fy))
    new = stage.out_spec(spec)
    assert new.shape[:2] == (-(-spec.shape[0] // fx), -(-spec.shape[1] // fy))
    check_in_sensor(out, new, where="test")


def test_downsample_agrees_with_tonic():
    import tonic.transforms

    rng = np.random.default_rng(11)
    ev = make_dvs_events(rng.integers(0, 128, 2000), rng.integers(0, 96, 2000), np.arange(2000) * 7, True)
    ours, _ = run_whole(Downsample(2), dvs_spec(128, 96), ev)
    theirs = tonic.transforms.Downsample(spatial_factor=0.5)(np.array(ev))
    np.testing.assert_array_equal(ours["x"], theirs["x"])
    np.testing.assert_array_equal(ours["y"], theirs["y"])


# ----------------------------------------------------------------------------------------------------------------
# packet invariance (hypothesis chooses the cuts)

STAGES = {
    "baf": lambda spec: BackgroundActivityFilter(window_us=300),
    "refractory": lambda spec: RefractoryFilter(period_us=50),
    "hot_fixed": lambda spec: HotPixelFilter(pixels=((0, 0),)),
    "hot_calibrated": lambda spec: HotPixelFilter(rate_threshold_hz=2_000.0, calibration_us=5_000),
    "crop": lambda spec: RegionOfInterest(0, 0, max(1, spec.shape[0] // 2), spec.shape[1]),
    "transform": lambda spec: Transform(True, False, 90),
    "image": lambda spec: ToImageOrientation(),
    "downsample": lambda spec: Downsample(2, 3),
}


@pytest.mark.parametrize("name", list(STAGES))
@given(stream=streams(), cuts=st.lists(st.integers(1, 149), max_size=12))
def test_packet_invariance(name, stream, cuts):
    spec, ev = stream
    if ev.shape[0] == 0:
        return
    if name == "image":
        spec = dvs_spec(*spec.shape[:2], x_mirrored=True, y_up=True)
    check_packet_invariance(STAGES[name](spec), spec, ev, cuts)


def test_hot_pixel_calibration_holds_events_until_window_closes():
    spec = dvs_spec(4, 4)
    t = np.arange(0, 4000, 10)
    ev = make_dvs_events(np.where(np.arange(t.size) % 2, 3, 1), np.ones(t.size, int), t, True)
    stage = HotPixelFilter(rate_threshold_hz=60_000.0, calibration_us=1000)
    state = stage.init(spec)
    packets = cut_at(ev, [50, 100, 200])  # first packet ends at t=500 < 1000: still calibrating
    state, out = stage.step(state, packets[0])
    assert len(out) == 1 and len(out[0]) == 0 and out[0].t_end_us == 0  # held; watermark stays at first event
    for p in packets[1:]:
        state, more = stage.step(state, p)
        out += more
    out += stage.finish(state)
    # both pixels fire at 50 kHz < 60 kHz: nothing is hot, every event comes out, in order
    got = np.concatenate([p.events for p in out])
    np.testing.assert_array_equal(got, ev)


def test_hot_pixel_from_recording_finds_the_hot_pixel():
    rng = np.random.default_rng(5)
    n = 3000
    x = rng.integers(0, 16, n)
    y = rng.integers(0, 16, n)
    x[::3] = 7
    y[::3] = 9  # a third of all events from one pixel
    ev = make_dvs_events(x, y, np.arange(n) * 100, True)  # 0.3 s
    f = HotPixelFilter.from_recording(ev, dvs_spec(16, 16), rate_threshold_hz=1_000.0)
    assert f.pixels == ((7, 9),)
    out, state = run_whole(f, dvs_spec(16, 16), ev)
    assert not np.any((out["x"] == 7) & (out["y"] == 9))
    assert f.counters(state)["filtered_events"] == int(np.sum((x == 7) & (y == 9)))


# ----------------------------------------------------------------------------------------------------------------
# orientation semantics


def test_to_image_orientation_turns_jaer_dvs128_by_180():
    spec = dvs_spec(128, 128, x_mirrored=True, y_up=True)
    ev = make_dvs_events([0, 127, 5], [0, 0, 100], [1, 2, 3], True)
    stage = ToImageOrientation()
    out, _ = run_whole(stage, spec, ev)
    np.testing.assert_array_equal(out["x"], [127, 0, 122])
    np.testing.assert_array_equal(out["y"], [127, 127, 27])
    new = stage.out_spec(spec)
    assert (new.x_mirrored, new.y_up, new.shape) == (False, False, (128, 128, 2))
    # already image-oriented: nothing changes
    plain = dvs_spec(10, 8)
    ev2 = make_dvs_events([1], [2], [3], True)
    out2, _ = run_whole(stage, plain, ev2)
    np.testing.assert_array_equal(out2, ev2)


def test_rotation_flags_and_compositions():
    spec = dvs_spec(7, 3, x_mirrored=True)
    r90 = transformed_spec(spec, rotate=90)
    assert r90.shape[:2] == (3, 7) and r90.y_up and not r90.x_mirrored
    assert transformed_spec(spec, flip_x=True).x_mirrored is False
    rng = np.random.default_rng(2)
    ev = make_dvs_events(rng.integers(0, 7, 50), rng.integers(0, 3, 50), np.arange(50), True)
    once = transform_events(ev, 7, 3, rotate=90)
    back = transform_events(once, 3, 7, rotate=270)
    np.testing.assert_array_equal(back, ev)
    four = ev
    w, h = 7, 3
    for _ in range(4):
        four = transform_events(four, w, h, rotate=90)
        w, h = h, w
    np.testing.assert_array_equal(four, ev)
    assert np.array_equal(transform_events(ev, 7, 3, flip_x=True, flip_y=True), transform_events(ev, 7, 3, rotate=180))


def test_stages_never_write_into_input_packets():
    spec = dvs_spec(8, 8)
    rng = np.random.default_rng(9)
    ev = make_dvs_events(rng.integers(0, 8, 300), rng.integers(0, 8, 300), np.sort(rng.integers(0, 5000, 300)), True)
    for make in STAGES.values():
        packets = cut_at(ev, [100, 200])
        before = [np.array(p.events) for p in packets]
        run_stage(make(spec), spec, packets)
        for p, b in zip(packets, before):
            np.testing.assert_array_equal(p.events, b)


# ----------------------------------------------------------------------------------------------------------------
# errors


@pytest.mark.parametrize("name", list(STAGES))
def test_event_outside_sensor_names_stage_field_value_and_size(name):
    spec = dvs_spec(8, 6)
    ev = make_dvs_events([1, 2, 3], [1, 6, 2], [10, 20, 30], True)  # y = 6 on a 6-row sensor
    stage = STAGES[name](spec)
    state = stage.init(spec)
    with pytest.raises(EventRangeError, match=rf"{type(stage).__name__}: field 'y' = 6 at event 1 .*8×6.*0 ≤ y < 6"):
        stage.step(state, Packet(ev, 31))


def test_negative_x_is_outside_too():
    with pytest.raises(EventRangeError, match=r"field 'x' = -1 at event 0"):
        check_in_sensor(make_dvs_events([-1], [0], [0], True), dvs_spec(4, 4), where="here")


def test_bad_configs_are_rejected():
    with pytest.raises(GraphError, match=r"RegionOfInterest: rectangle x=\[6, 10\).*does not fit the sensor 8×8"):
        RegionOfInterest(6, 0, 4, 2).out_spec(dvs_spec(8, 8))
    with pytest.raises(GraphError, match=r"HotPixelFilter: pixel \(9, 0\).*outside the sensor 8×8"):
        HotPixelFilter(pixels=((9, 0),)).init(dvs_spec(8, 8))
    with pytest.raises(GraphError, match=r"BackgroundActivityFilter: expects a camera stream.*'audio'"):
        BackgroundActivityFilter().out_spec(audio_spec(32))
    with pytest.raises(ValueError, match="rotate must be one of"):
        Transform(rotate=45)
    with pytest.raises(ValueError, match="window_us must be ≥ 1"):
        BackgroundActivityFilter(window_us=0)
