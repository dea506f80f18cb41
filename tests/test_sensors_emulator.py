"""DVS emulator: kernels against slow reference twins, analytic expectations, noise statistics, real video."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from runtime.errors import StreamOrderError
from runtime.events import DVS_EVENT
from runtime.packet import concat_events
from sensors import emulator_kernels as K
from sensors.emulator import DvsConfig, DvsEmulator, EmulatorSource, emulate_frames, lin_log
from sensors.frames import FrameSource

CLEAN = DvsConfig.preset("clean")  # no noise, no filter, no refractory; thresholds still mismatched


# -- slow, obviously-correct reference twins ---------------------------------------------------------------------


def ref_lin_log(i: float, dn: float = 20.0) -> float:
    i = max(float(i), 0.0)
    return i * math.log(dn) / dn if i <= dn else math.log(i)


def ref_crossing_time(level, r0, slope, t_prev, dt):
    # offset into the interval = (level - r0) / slope of dt, written as (level - r0) · (dt / slope) like the kernel
    # (which divides once per pixel), so that the two round alike
    off = (level - r0) * (dt / slope) if slope != 0.0 else float(dt)
    off = min(max(off, 0.0), float(dt))
    return max(t_prev + int(math.floor(off + 0.5)), t_prev + 1)


def ref_frame(log_new, eps, use_lowpass, lp, base, th_on, th_off, leak, t_prev, dt, refractory, t_last, width):
    """One frame interval, pixel by pixel, in plain Python (float32 storage as in the kernels)."""
    f32 = np.float32
    events = []
    for i in range(len(lp)):
        lp0 = f32(lp[i])
        lp1 = f32(float(lp0) + float(eps[i]) * (float(log_new[i]) - float(lp0))) if use_lowpass else f32(log_new[i])
        b = f32(float(base[i]) - float(leak[i]))
        lp[i], base[i] = lp1, b
        d = float(lp1) - float(b)
        if d >= float(th_on[i]):
            th, sign = float(th_on[i]), 1
        elif d <= -float(th_off[i]):
            th, sign = float(th_off[i]), -1
        else:
            continue
        k = int(abs(d) / th)
        t_free = int(t_last[i]) + refractory
        # the change lp - base moves linearly over the interval: lp ramps up, base leaks down
        r0 = float(lp0) - (float(b) + float(leak[i]))
        slope = float(lp1) - float(lp0) + float(leak[i])
        for q in range(1, k + 1):
            t = ref_crossing_time(sign * q * th, r0, slope, t_prev, dt)
            if t >= t_free:
                events.append((i % width, i // width, t, sign > 0))
                t_last[i] = t
                t_free = t + refractory
        base[i] = f32(float(b) + sign * k * th)
    return events


def ref_sort(events):
    return sorted(events, key=lambda e: e[2])  # Python's sort is stable


def as_tuples(ev: np.ndarray):
    return [(int(e["x"]), int(e["y"]), int(e["t"]), bool(e["p"])) for e in ev]


def ref_emulate(frames, t_us, config: DvsConfig):
    """The whole model without shot noise, written from the module docstring with the twins above."""
    emu = DvsEmulator(config)  # used only for the seeded per-pixel draws
    h, w = frames[0].shape
    st = emu.init(w, h)
    th_on, th_off = st.th_on.copy(), st.th_off.copy()
    log_new = np.array([ref_lin_log(v, config.lin_log_dn) for v in frames[0].reshape(-1)], np.float32)
    lp = log_new.copy()
    base = (lp - (st.phase * th_on if config.leak_rate_hz > 0 else 0)).astype(np.float32)
    t_last = np.full(w * h, -(1 << 60), np.int64)
    out = []
    for k in range(1, len(frames)):
        dt = int(t_us[k]) - int(t_us[k - 1])
        vals = frames[k].reshape(-1).astype(np.float64)
        log_new = np.array([ref_lin_log(v, config.lin_log_dn) for v in vals], np.float32)
        rate = 2 * math.pi * config.cutoff_hz * dt * 1e-6
        eps = np.array([1 - math.exp(-rate * (v + 20) / 275) for v in vals], np.float32)
        leak = (st.leak_per_s.astype(np.float64) * (dt * 1e-6)).astype(np.float32)
        ev = ref_frame(log_new, eps, config.cutoff_hz > 0, lp, base, th_on, th_off, leak, int(t_us[k - 1]), dt,
                       config.refractory_us, t_last, w)
        out.extend(ref_sort(ev))
    return out


# -- kernels vs twins -------------------------------------------------------------------------------------------


def test_lin_log_table_matches_formula():
    st = DvsEmulator(CLEAN).init(2, 2)
    for v in range(256):
        assert st.log_lut[v] == np.float32(ref_lin_log(v))
    x = np.array([-3.0, 0.0, 7.5, 20.0, 20.5, 1e4])
    assert np.allclose(lin_log(x), [ref_lin_log(v) for v in x], rtol=0, atol=1e-12)
    # continuous at the knee, and logarithmic above it
    assert abs(ref_lin_log(20.0) - math.log(20.0)) < 1e-12


@pytest.mark.parametrize("use_lowpass", [False, True])
@pytest.mark.parametrize("refractory", [0, 3000])
def test_frame_kernels_match_reference_twin(use_lowpass, refractory):
    rng = np.random.default_rng(11)
    w, h = 23, 7
    npx = w * h
    log_lut = lin_log(np.arange(256)).astype(np.float32)
    eps_lut = (1 - np.exp(-rng.uniform(0.1, 3.0) * (np.arange(256) + 20) / 275)).astype(np.float32)
    lp = log_lut[rng.integers(0, 256, npx)]
    base = (lp + rng.normal(0, 0.15, npx)).astype(np.float32)
    th_on = rng.uniform(0.1, 0.3, npx).astype(np.float32)
    th_off = rng.uniform(0.1, 0.3, npx).astype(np.float32)
    leak = rng.uniform(0, 0.05, npx).astype(np.float32)
    t_last = rng.integers(-20_000, 9_000, npx).astype(np.int64)
    frame = rng.integers(0, 256, npx).astype(np.uint8)
    # kernels, with tiny output buffers so the resume path runs many times
    klp, kbase, ktl = lp.copy(), base.copy(), t_last.copy()
    cand_idx, cand_lp0 = np.empty(npx, np.int32), np.empty(npx, np.float32)
    m = K.frame_update(frame, log_lut, eps_lut, np.empty(0, np.float32), np.empty(0, np.float32), True, use_lowpass,
                       klp, kbase, th_on, th_off, True, leak, cand_idx, cand_lp0)
    got = []
    start = 0
    cap = 3
    counts = np.zeros(5_001, np.int32)  # histogram of t - t_prev, built only from events kept
    while start < m:
        bx, by, bt, bp = np.empty(cap, np.int16), np.empty(cap, np.int16), np.empty(cap, np.int64), np.empty(cap, bool)
        n, start = K.frame_crossings(cand_idx, cand_lp0, m, start, klp, kbase, th_on, th_off, True, leak, 10_000,
                                     5_000, refractory, ktl, w, bx, by, bt, bp, counts)
        got.extend((int(bx[j]), int(by[j]), int(bt[j]), bool(bp[j])) for j in range(n))
        cap += 7
    rlp, rbase, rtl = lp.copy(), base.copy(), t_last.copy()
    want = ref_frame(log_lut[frame], eps_lut[frame], use_lowpass, rlp, rbase, th_on, th_off, leak, 10_000, 5_000,
                     refractory, rtl, w)
    assert len(want) > 50
    assert got == want
    assert np.array_equal(counts, np.bincount([e[2] - 10_000 for e in want], minlength=5_001))
    assert np.array_equal(klp, rlp) and np.array_equal(kbase, rbase) and np.array_equal(ktl, rtl)


def test_float_kernel_path_matches_twin():
    rng = np.random.default_rng(12)
    npx = 300
    log_new = rng.uniform(0, 5.5, npx).astype(np.float32)
    eps = rng.uniform(0, 1, npx).astype(np.float32)
    lp = rng.uniform(0, 5.5, npx).astype(np.float32)
    base = lp.copy()
    th = np.full(npx, 0.2, np.float32)
    leak = np.zeros(npx, np.float32)
    t_last = np.full(npx, -(1 << 60), np.int64)
    klp, kbase, ktl = lp.copy(), base.copy(), t_last.copy()
    ci, cl = np.empty(npx, np.int32), np.empty(npx, np.float32)
    m = K.frame_update(np.empty(0, np.uint8), log_new, log_new, log_new, eps, False, True, klp, kbase, th, th, False,
                       leak, ci, cl)
    out = [np.empty(10_000, np.int16), np.empty(10_000, np.int16), np.empty(10_000, np.int64), np.empty(10_000, bool)]
    n, nxt = K.frame_crossings(ci, cl, m, 0, klp, kbase, th, th, False, leak, 0, 1000, 0, ktl, 20, *out,
                               np.zeros(0, np.int32))
    assert nxt == m
    got = [(int(out[0][j]), int(out[1][j]), int(out[2][j]), bool(out[3][j])) for j in range(n)]
    want = ref_frame(log_new, eps, True, lp, base, th, th, leak, 0, 1000, 0, t_last, 20)
    assert got == want and len(want) > 100


@pytest.mark.parametrize("n_counted", [0, 1234])
def test_counting_sort_matches_stable_sort(n_counted):
    rng = np.random.default_rng(13)
    n = 5000
    x = rng.integers(0, 300, n).astype(np.int16)
    y = rng.integers(0, 200, n).astype(np.int16)
    t = rng.integers(101, 101 + 777, n).astype(np.int64)
    p = rng.random(n) < 0.5
    out = np.empty(n, DVS_EVENT)
    counts = np.bincount(t[:n_counted] - 100, minlength=778).astype(np.int32)  # as the crossing kernel leaves it
    K.sort_by_time(x, y, t, p, 101, 777, counts, n_counted, out)
    want = ref_sort(list(zip(x.tolist(), y.tolist(), t.tolist(), p.tolist())))
    assert as_tuples(out) == want


@pytest.mark.parametrize("config", [
    CLEAN,
    DvsConfig(shot_noise_rate_hz=0.0, leak_rate_hz=3.0, seed=5),  # low-pass, refractory, leak, mismatch
    DvsConfig.preset("noisy", shot_noise_rate_hz=0.0, seed=9),
])
def test_whole_emulator_matches_reference_model(config):
    rng = np.random.default_rng(14)
    frames = [rng.integers(0, 256, (9, 13)).astype(np.uint8)]
    for _ in range(6):
        nxt = frames[-1].astype(int) + rng.integers(-60, 61, (9, 13))
        frames.append(np.clip(nxt, 0, 255).astype(np.uint8))
    t_us = np.cumsum([0, 5_000, 7_000, 5_000, 20_000, 1_000, 33_333])
    got = as_tuples(emulate_frames(frames, t_us, config))
    want = ref_emulate(frames, t_us, config)
    assert len(want) > 100
    assert got == want


def test_long_gap_between_frames_sorts_by_comparison_with_the_same_result():
    rng = np.random.default_rng(20)
    frames = [rng.integers(0, 256, (5, 6)).astype(np.uint8) for _ in range(3)]
    t_us = [0, 5_000_000, 5_000_100]  # 5 s: beyond the counting sort's span, then 100 µs
    cfg = DvsConfig(shot_noise_rate_hz=0.0, leak_rate_hz=0.5, seed=3)
    got = as_tuples(emulate_frames(frames, t_us, cfg))
    want = ref_emulate(frames, t_us, cfg)
    assert len(want) > 20 and got == want


# -- analytic expectations ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("contrast", [1.5, 2.0, 3.0, 4.5, 1 / 1.5, 0.5, 0.3, 0.22])
def test_contrast_step_gives_floor_log_c_over_theta_events(contrast):
    """A step of contrast C at every pixel gives ⌊|ln C| / θ⌋ events per pixel, of the sign of ln C, at the
    times where the linear ramp between the frames crosses each threshold level."""
    w, h = 40, 30
    emu = DvsEmulator(CLEAN)
    st = emu.init(w, h)
    i0 = 100.0 if contrast < 1 else 50.0  # both levels stay in the logarithmic range (> 20 DN)
    f0 = np.full((h, w), i0)
    f1 = np.full((h, w), i0 * contrast)
    st, ev = emu.step(st, f0, 1_000)
    assert ev.shape[0] == 0
    st, ev = emu.step(st, f1, 11_000)
    ln_c = math.log(contrast)
    th = (st.th_on if ln_c > 0 else st.th_off).astype(np.float64)
    ratio = abs(ln_c) / th
    expected = np.floor(ratio).astype(int)
    clear = np.abs(ratio - np.round(ratio)) > 1e-4  # float32 storage decides exact ties; skip those pixels
    assert clear.mean() > 0.99
    counts = np.zeros(w * h, int)
    np.add.at(counts, ev["y"].astype(int) * w + ev["x"], 1)
    assert np.array_equal(counts[clear], expected[clear])
    assert expected.sum() > 0
    assert np.all(ev["p"] == (ln_c > 0))
    assert np.all(np.diff(ev["t"]) >= 0) and ev["t"].min() > 1_000 and ev["t"].max() <= 11_000
    # k-th event of a pixel at t0 + k·θ/|ln C|·dt (± 1 µs rounding)
    for pix in [0, 17, w * h - 1]:
        mine = ev["t"][(ev["y"].astype(int) * w + ev["x"]) == pix]
        want = [1_000 + k * th[pix] / abs(ln_c) * 10_000 for k in range(1, expected[pix] + 1)]
        assert np.allclose(mine, want, atol=1.0)


def test_moving_bar_gives_edge_events_at_predicted_times():
    """A bright bar (contrast 3 over the background) moving v = 2 px/frame: each pixel gets ON events in the
    interval its leading edge arrives and OFF events in the interval the trailing edge leaves, ⌊ln 3 / θ⌋ of
    each, at the interpolated crossing times; the stream is time-ordered."""
    w, h, v, bar, dt = 48, 3, 2, 5, 10_000
    lo, hi = 50.0, 150.0
    n_frames = 18

    def render(n):
        f = np.full((h, w), lo)
        x0 = 4 + v * n
        f[:, x0:x0 + bar] = hi
        return f

    frames = [render(n) for n in range(n_frames)]
    t_us = [dt * n for n in range(n_frames)]
    emu = DvsEmulator(CLEAN)
    st = emu.init(w, h)
    parts = []
    for f, t in zip(frames, t_us):
        st, ev = emu.step(st, f, t)
        parts.append(ev)
    ev = np.concatenate(parts)
    assert np.all(np.diff(ev["t"]) >= 0)
    ln3 = math.log(hi) - math.log(lo)
    checked = 0
    for y in range(h):
        for x in range(w):
            i = y * w + x
            mine = ev[(ev["x"] == x) & (ev["y"] == y)]
            # frame index at which the bar first covers / last covers the pixel
            covered = [n for n in range(n_frames) if 4 + v * n <= x < 4 + v * n + bar]
            on_frame = covered[0] if covered and covered[0] > 0 else None
            off_frame = covered[-1] + 1 if covered and covered[-1] + 1 < n_frames else None
            want = []
            k_on = int(ln3 / float(st.th_on[i]))
            if on_frame is not None:
                t0 = t_us[on_frame - 1]
                want += [(round(t0 + q * float(st.th_on[i]) / ln3 * dt), True) for q in range(1, k_on + 1)]
            if off_frame is not None:
                t0 = t_us[off_frame - 1]
                # level remembered (above the background) when the bar leaves: k_on thresholds, or the bar itself
                # for pixels the bar covered in the first frame
                top = k_on * float(st.th_on[i]) if on_frame is not None else ln3
                k_off = int(top / float(st.th_off[i]))
                want += [(round(t0 + (ln3 - (top - q * float(st.th_off[i]))) / ln3 * dt), False)
                         for q in range(1, k_off + 1)]
            assert len(mine) == len(want), (x, y)
            for e, (t, pol) in zip(mine, want):
                assert bool(e["p"]) == pol and abs(int(e["t"]) - t) <= 1
            checked += len(want)
    assert checked > 200


def test_lowpass_follows_the_exponential_step_response():
    """With cutoff f_c the filtered log value after n frames of a held step is
    L1 + (L0 - L1)·exp(-n·dt·2π f_c·(I1 + 20)/275), and the events count the thresholds it has crossed."""
    cfg = DvsConfig.preset("clean", cutoff_hz=20.0, mismatch_sigma=0.0)
    emu = DvsEmulator(cfg)
    st = emu.init(1, 1)
    i0, i1, dt = 40, 200, 5_000
    st, _ = emu.step(st, np.array([[i0]], np.uint8), 0)
    l0, l1 = math.log(i0), math.log(i1)
    total = 0
    for n in range(1, 30):
        st, ev = emu.step(st, np.array([[i1]], np.uint8), n * dt)
        total += ev.shape[0]
        want = l1 + (l0 - l1) * math.exp(-n * dt * 1e-6 * 2 * math.pi * 20.0 * (i1 + 20) / 275)
        assert abs(float(st.lp[0]) - want) < 2e-5 * n
        crossed = (want - l0) / 0.2  # thresholds the filtered value has passed so far
        if abs(crossed - round(crossed)) > 1e-3:  # away from a tie that float32 storage decides
            assert total == math.floor(crossed)
    assert total == int((l1 - l0) / 0.2)


def test_refractory_period_limits_event_spacing():
    cfg = DvsConfig.preset("clean", refractory_us=3_000, mismatch_sigma=0.0)
    emu = DvsEmulator(cfg)
    st = emu.init(1, 1)
    st, _ = emu.step(st, np.array([[20.5]]), 0)
    st, ev = emu.step(st, np.array([[20.5 * math.exp(2.1)]]), 10_000)  # 10 crossings, 952 µs apart
    crossings = [round(k * 0.2 / 2.1 * 10_000) for k in range(1, 11)]
    want = []
    for t in crossings:  # an event, then nothing for 3 ms
        if not want or t >= want[-1] + 3_000:
            want.append(t)
    assert want == [952, 4762, 8571]
    assert ev["t"].tolist() == want
    assert float(st.base[0]) == pytest.approx(math.log(20.5) + 10 * 0.2, abs=1e-5)  # held in reset, level followed


def test_static_scene_without_noise_is_silent():
    rng = np.random.default_rng(15)
    scene = rng.integers(0, 256, (48, 64)).astype(np.uint8)
    for cfg in (CLEAN, DvsConfig(seed=3).with_noise(False), DvsConfig.preset("noisy").with_noise(False)):
        emu = DvsEmulator(cfg)
        st = emu.init(64, 48)
        for n in range(40):
            st, ev = emu.step(st, scene if n % 2 else scene.astype(np.float32), n * 33_333)
            assert ev.shape[0] == 0


def _count_static(cfg: DvsConfig, frames: int, dt: int):
    emu = DvsEmulator(cfg)
    w, h = 64, 48
    st = emu.init(w, h)
    scene = np.random.default_rng(16).integers(30, 230, (h, w)).astype(np.uint8)
    parts = []
    for n in range(frames + 1):
        st, ev = emu.step(st, scene, n * dt)
        parts.append(ev)
    return np.concatenate(parts), w * h, frames * dt * 1e-6, st


def test_static_scene_shot_noise_has_the_configured_poisson_rate():
    rate = 5.0
    ev, npx, seconds, st = _count_static(DvsConfig(leak_rate_hz=0.0, shot_noise_rate_hz=rate, seed=21), 100, 10_000)
    mu = npx * rate * seconds
    assert abs(ev.shape[0] - mu) < 5 * math.sqrt(mu)  # Poisson: variance = mean
    on = int(ev["p"].sum())
    assert abs(on - ev.shape[0] / 2) < 5 * math.sqrt(ev.shape[0] / 4)  # half ON, half OFF (binomial)
    assert np.all(np.diff(ev["t"]) >= 0)
    # spread over the pixels: per-pixel counts are Poisson(rate · T), so their variance ≈ their mean
    counts = np.bincount(ev["y"].astype(int) * 64 + ev["x"], minlength=npx)
    assert abs(counts.var() / counts.mean() - 1) < 0.15
    assert st.noise_events == ev.shape[0]


def test_static_scene_leak_events_have_the_configured_rate():
    rate = 2.0
    cfg = DvsConfig(leak_rate_hz=rate, shot_noise_rate_hz=0.0, refractory_us=0, seed=22)
    ev, npx, seconds, st = _count_static(cfg, 100, 10_000)
    mu = npx * rate * seconds
    assert abs(ev.shape[0] - mu) < 5 * math.sqrt(mu)  # no worse than Poisson (uniform phases make it tighter)
    assert np.all(ev["p"])  # leak moves the level down: ON events only
    # timed where the drift reaches the threshold, not on frame times; a pixel repeats every θ_on / leak rate
    assert np.mean(ev["t"] % 10_000 == 0) < 0.01
    pix = ev["y"].astype(int) * 64 + ev["x"]
    periods = []
    for i in np.unique(pix):
        t = ev["t"][pix == i]
        if t.shape[0] >= 2:
            want = float(st.th_on[i]) / float(st.leak_per_s[i]) * 1e6
            assert np.allclose(np.diff(t), want, rtol=1e-3, atol=2), (i, np.diff(t), want)
            periods.append(want)
    assert len(periods) > 100


def test_same_seed_same_events_and_other_seed_differs():
    rng = np.random.default_rng(17)
    frames = rng.integers(0, 256, (6, 20, 30)).astype(np.uint8)
    t = np.arange(6) * 20_000
    cfg = DvsConfig.preset("noisy", seed=4)
    a = emulate_frames(frames, t, cfg)
    b = emulate_frames(list(frames), t, cfg)
    c = emulate_frames(frames, t, DvsConfig.preset("noisy", seed=5))
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_float_and_colour_frames_match_grey_uint8():
    rng = np.random.default_rng(18)
    bgr = rng.integers(0, 256, (5, 24, 32, 3)).astype(np.uint8)
    grey = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2GRAY) for f in bgr])
    t = np.arange(5) * 10_000
    cfg = DvsConfig(shot_noise_rate_hz=0.0, seed=2)
    ref = emulate_frames(grey, t, cfg)
    assert ref.shape[0] > 0
    assert np.array_equal(emulate_frames(bgr, t, cfg), ref)
    assert np.array_equal(emulate_frames(grey.astype(np.float32), t, cfg), ref)


def test_burst_larger_than_the_buffers_loses_nothing():
    w, h = 120, 100
    emu = DvsEmulator(CLEAN)
    st = emu.init(w, h)
    st, _ = emu.step(st, np.zeros((h, w), np.uint8), 0)
    st, ev = emu.step(st, np.full((h, w), 255, np.uint8), 1_000)
    ratio = (math.log(255) - 0.0) / st.th_on.astype(np.float64)
    assert ev.shape[0] == int(np.floor(ratio).sum()) > 4 * max(4096, w * h // 8)
    assert np.all(np.diff(ev["t"]) >= 0)


def test_frontend_macs_counts_per_pixel_and_per_event():
    cfg = DvsConfig(shot_noise_rate_hz=0.0, leak_rate_hz=1.0)  # low-pass on, leak on: 3 per pixel
    emu = DvsEmulator(cfg)
    st = emu.init(10, 10)
    rng = np.random.default_rng(19)
    st, _ = emu.step(st, rng.integers(0, 256, (10, 10)).astype(np.uint8), 0)
    st, ev = emu.step(st, rng.integers(0, 256, (10, 10)).astype(np.uint8), 30_000)
    assert emu.counters(st)["frontend_macs"] == 100 * 3 + 2 * ev.shape[0]


def test_bad_input_gives_clear_errors():
    emu = DvsEmulator(CLEAN)
    st = emu.init(8, 6)
    with pytest.raises(ValueError, match=r"frame shape expected \(6, 8\).*got \(6, 9\)"):
        emu.step(st, np.zeros((6, 9), np.uint8), 0)
    with pytest.raises(ValueError, match="dtype expected uint8 or float, got int32"):
        emu.step(st, np.zeros((6, 8), np.int32), 0)
    st, _ = emu.step(st, np.zeros((6, 8), np.uint8), 100)
    with pytest.raises(StreamOrderError, match="t_us=100 must be later than the previous frame's 100"):
        emu.step(st, np.zeros((6, 8), np.uint8), 100)
    with pytest.raises(ValueError, match="threshold_on: expected a positive threshold"):
        DvsConfig(threshold_on=0.0)
    with pytest.raises(ValueError, match="unknown preset 'loud'"):
        DvsConfig.preset("loud")
    with pytest.raises(ValueError, match="2 frames but 3 timestamps"):
        emulate_frames(np.zeros((2, 4, 4), np.uint8), [0, 1, 2])


def test_noise_presets():
    assert not DvsConfig().with_noise(False).noisy
    on = DvsConfig().with_noise(False).with_noise(True)
    assert on.leak_rate_hz == DvsConfig().leak_rate_hz and on.shot_noise_rate_hz == DvsConfig().shot_noise_rate_hz
    assert DvsConfig.preset("noisy").shot_noise_rate_hz > DvsConfig().shot_noise_rate_hz
    assert DvsConfig.preset("clean", seed=3).seed == 3


# -- the real video --------------------------------------------------------------------------------------------


def _video_frames(path):
    cap = cv2.VideoCapture(str(path))
    fps = cap.get(cv2.CAP_PROP_FPS)
    frames = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        frames.append(cv2.cvtColor(f, cv2.COLOR_BGR2GRAY))
    cap.release()
    return frames, fps


def test_vid2e_sample_converts_end_to_end(shared_data):
    path = shared_data / "vision" / "vid2e_sample.mp4"
    frames, fps = _video_frames(path)
    assert len(frames) >= 9 and fps == 25.0
    t_us = [round(i * 1e6 / fps) for i in range(len(frames))]
    cfg = DvsConfig(seed=7)
    events = emulate_frames(frames, t_us, cfg)
    assert events.dtype == DVS_EVENT
    assert events.shape[0] > 10_000
    assert np.all(np.diff(events["t"]) >= 0)
    assert events["t"].min() > 0 and events["t"].max() <= t_us[-1]
    assert events["x"].min() >= 0 and events["x"].max() < 346 and events["y"].min() >= 0 and events["y"].max() < 260
    assert 0.2 < events["p"].mean() < 0.8
    # the source (frames grabbed in a thread, packets with watermarks) gives exactly the same stream
    src = EmulatorSource(FrameSource(path), cfg, max_events=5000).open()
    try:
        assert src.blocking and src.spec.shape == (346, 260, 2)
        packets = list(src)
    finally:
        src.close()
    assert np.array_equal(concat_events(packets, DVS_EVENT), events)
    assert packets[-1].t_end_us == t_us[-1] + 1
    info = src.info()
    assert info["ended"] == "end of video" and info["emulated_frames"] == len(frames)
    assert info["events"] == events.shape[0] and info["frontend_macs"] > 0


# -- the source ------------------------------------------------------------------------------------------------


class _Capture:
    """Minimal cv2.VideoCapture stand-in at the OpenCV boundary: frames, then read() fails (unplug/end)."""

    def __init__(self, frames, fps=100.0):
        self.frames = list(frames)
        self.fps = fps

    def isOpened(self):
        return True

    def get(self, prop):
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def read(self):
        return (True, self.frames.pop(0)) if self.frames else (False, None)

    def release(self):
        pass


def test_static_video_sends_only_sparse_heartbeats():
    scene = np.random.default_rng(30).integers(0, 256, (24, 32)).astype(np.uint8)
    frames = FrameSource("static.mp4", capture_factory=lambda _: _Capture([scene] * 100, fps=100.0))
    src = EmulatorSource(frames, CLEAN, heartbeat_us=50_000).open()
    packets = list(src)
    src.close()
    assert all(len(p) == 0 for p in packets)
    wms = [p.t_end_us for p in packets]
    assert wms[0] == 1 and wms[-1] == 99 * 10_000 + 1  # first frame, then the end of the stream
    assert all(b - a >= 50_000 for a, b in zip(wms[:-2], wms[1:-1]))
    assert len(packets) <= 2 + 990_000 // 50_000  # one per heartbeat interval, not one per frame (100)
    assert src.info()["events"] == 0 and src.info()["emulated_frames"] == 100


def test_camera_source_ends_cleanly_when_unplugged_and_reports_it():
    rng = np.random.default_rng(31)
    frames = [rng.integers(0, 256, (24, 32, 3)).astype(np.uint8) for _ in range(6)]
    src = EmulatorSource(FrameSource(0, capture_factory=lambda _: _Capture(frames)), CLEAN).open()
    assert src.blocking and src.live and src.spec.shape == (32, 24, 2)
    packets = list(src)
    src.close()
    ev = concat_events(packets, DVS_EVENT)
    assert ev.shape[0] > 0 and np.all(np.diff(ev["t"]) >= 0)
    wms = [p.t_end_us for p in packets]
    assert wms == sorted(wms)
    info = src.info()
    assert info["ended"] == "camera unplugged" and info["emulated_frames"] == 6
    assert src.counters()["frontend_macs"] == info["frontend_macs"] > 0


def test_source_runs_in_the_trio_executor(shared_data):
    from runtime.executor import run
    from runtime.graph import Graph
    from runtime.stages import CollectSink

    path = shared_data / "vision" / "vid2e_sample.mp4"
    g = Graph("emulate")
    ev = g.source("video", EmulatorSource.video(str(path), size=(173, 130), config=DvsConfig(seed=1)))
    g.sink("collect", CollectSink(), ev)
    report = run(g, keep_outputs=True)
    frames, fps = _video_frames(path)
    small = [cv2.resize(f, (173, 130), interpolation=cv2.INTER_AREA) for f in frames]
    want = emulate_frames(small, [round(i * 1e6 / fps) for i in range(len(small))], DvsConfig(seed=1))
    got = concat_events(report["_outputs"]["collect"], DVS_EVENT)
    assert want.shape[0] > 1000 and np.array_equal(got, want)
    assert report["input"]["ended"] == "end of video"
    assert report["ops"]["frontend_macs"] == report["input"]["frontend_macs"] > 0
