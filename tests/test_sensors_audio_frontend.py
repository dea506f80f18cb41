"""Spiking audio front end: kernel vs slow reference twin, block invariance, silence, filter response, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from runtime.events import AUDIO_EVENT
from runtime.packet import Packet
from runtime.spec import audio_spec
from runtime.testing import run_stage
from sensors.audio import pcm_packet
from sensors.audio_frontend import PCM_SAMPLE, AudioFrontEnd, bandpass_coefs, center_frequencies, pcm_spec


def reference_frontend(x, rate, fe: AudioFrontEnd):
    """Slow, obviously-correct twin of sensors.audio_kernels.frontend_block over a whole signal."""
    fc = center_frequencies(fe.channels, fe.f_lo_hz, fe.f_hi_hz)
    b0, a1, a2, active = bandpass_coefs(fc, fe.q, rate)
    beta = 1.0 - math.exp(-fe.frame_us / fe.tau_env_us)
    floor = 10.0 ** (fe.floor_db / 10.0)
    ratio = 10.0 ** (fe.delta_db / 10.0)
    gamma = 1.0 - math.exp(-fe.frame_us / fe.noise_tau_us) if fe.noise_tau_us else 0.0
    kappa = 1.0 - math.exp(-fe.frame_us / fe.noise_smooth_us) if fe.noise_smooth_us else 1.0
    rise_db_per_frame = fe.noise_rise_db_per_s * fe.frame_us / 1e6
    margin = 10.0 ** (fe.noise_margin_db / 10.0)
    noise = [None] * fe.channels  # no floor before the channel's first frame
    slow = [0.0] * fe.channels
    events = []
    x1 = x2 = 0.0
    y1 = [0.0] * fe.channels
    y2 = [0.0] * fe.channels
    acc = [0.0] * fe.channels
    env = [0.0] * fe.channels
    ref = [floor] * fe.channels
    frame_len = 0
    for n, xs in enumerate(x):
        xs = float(xs)
        frame_len += 1
        for c in range(fe.channels):
            if active[c]:
                y = b0[c] * (xs - x2) - a1[c] * y1[c] - a2[c] * y2[c]
                y2[c], y1[c] = y1[c], y
                acc[c] += y * y
        x2, x1 = x1, xs
        per = rate * fe.frame_us
        if (n + 1) * 1_000_000 // per != n * 1_000_000 // per:  # last sample of a frame
            t = n * 1_000_000 // rate
            for c in range(fe.channels):
                if not active[c]:
                    continue
                env[c] = env[c] + beta * (acc[c] / frame_len - env[c])
                acc[c] = 0.0
                lo = floor
                if gamma:
                    if noise[c] is None:
                        noise[c] = slow[c] = env[c]
                    slow[c] = slow[c] + kappa * (env[c] - slow[c])
                    if slow[c] < noise[c]:
                        noise[c] = slow[c]
                    else:
                        up = noise[c] + gamma * (slow[c] - noise[c])
                        if rise_db_per_frame:
                            up = min(up, noise[c] * 10.0 ** (rise_db_per_frame / 10.0))
                        noise[c] = up
                    lo = max(floor, noise[c] * margin)
                e = max(env[c], lo)
                m = 0
                while m < fe.max_events_per_frame and e >= ref[c] * ratio:
                    ref[c] *= ratio
                    events.append((t, c, True))
                    m += 1
                while m < fe.max_events_per_frame and e * ratio <= ref[c]:
                    ref[c] /= ratio
                    events.append((t, c, False))
                    m += 1
            frame_len = 0
    out = np.zeros(len(events), AUDIO_EVENT)
    if events:
        out["t"], out["x"], out["p"] = zip(*events)
    return out, env


def _speechlike(rng, rate, seconds):
    """Bursts of harmonic tones with noise, separated by silence."""
    n = int(rate * seconds)
    t = np.arange(n) / rate
    f0 = 120 + 40 * np.sin(2 * np.pi * 0.7 * t)
    x = sum(np.sin(2 * np.pi * k * np.cumsum(f0) / rate) / k for k in range(1, 8))
    gate = (np.sin(2 * np.pi * 3 * t) > 0.2).astype(np.float64)
    x = 0.2 * x * gate + 0.01 * rng.standard_normal(n) * gate
    return x.astype(np.float32)


def _pcm(x, rate, n0=0):
    return pcm_packet(np.asarray(x, np.float32), n0, rate)


@pytest.mark.parametrize("rate, noise_tau_us, frame_us, smooth_us, rise_db_s", [
    (8000, 0, 1000, 0, 0), (16000, 0, 1000, 0, 0), (44100, 0, 1000, 0, 0), (16000, 50_000, 1000, 0, 0),
    (22050, 20_000, 1000, 30_000, 0), (16000, 100_000, 10_000, 0, 0), (22050, 0, 10_000, 0, 0),
    (44100, 30_000, 2500, 0, 20.0), (16000, 20_000, 10_000, 50_000, 10.0),
])
def test_kernel_matches_reference(rate, noise_tau_us, frame_us, smooth_us, rise_db_s):
    rng = np.random.default_rng(1)
    x = _speechlike(rng, rate, 0.3) + (rng.standard_normal(int(rate * 0.3)) * 0.02).astype(np.float32)
    fe = AudioFrontEnd(channels=8, max_events_per_frame=3, noise_tau_us=noise_tau_us, frame_us=frame_us,
                       noise_smooth_us=smooth_us, noise_rise_db_per_s=rise_db_s)
    fast, state = fe.run_array(x, rate)
    slow, env = reference_frontend(x, rate, fe)
    assert fast.size > 20
    np.testing.assert_array_equal(fast, slow)
    np.testing.assert_allclose(state.env, env, rtol=1e-12, atol=0)


@given(st.lists(st.integers(1, 900), min_size=1, max_size=12), st.sampled_from([1000, 10_000]))
def test_block_invariance(sizes, frame_us):
    rate = 16000
    x = _speechlike(np.random.default_rng(2), rate, 0.25)
    fe = AudioFrontEnd(frame_us=frame_us, noise_tau_us=50_000)
    whole, _ = fe.run_array(x, rate)
    packets, n0 = [], 0
    for s in sizes:
        if n0 >= x.size:
            break
        packets.append(_pcm(x[n0:n0 + s], rate, n0))
        n0 += s
    if n0 < x.size:
        packets.append(_pcm(x[n0:], rate, n0))
    out, state, outs = run_stage(fe, pcm_spec(rate), packets)
    np.testing.assert_array_equal(out, whole)
    assert [p.t_end_us for p in outs] == [p.t_end_us for p in packets]
    assert state.frontend_macs == fe.run_array(x, rate)[1].frontend_macs


def test_silence_and_noise_below_floor_produce_no_events():
    rate = 16000
    fe = AudioFrontEnd(floor_db=-70.0)
    zeros = np.zeros(rate, np.float32)
    assert fe.run_array(zeros, rate)[0].size == 0
    faint = (np.random.default_rng(3).standard_normal(rate) * 10 ** (-85 / 20)).astype(np.float32)
    assert fe.run_array(faint, rate)[0].size == 0
    loud = (np.random.default_rng(3).standard_normal(rate) * 10 ** (-30 / 20)).astype(np.float32)
    ev = fe.run_array(loud, rate)[0]
    assert ev.size > 0 and ev["p"][: fe.channels].all()  # the onset of a sound is ON events


def test_noise_floor_silences_a_steady_background_but_not_bursts_on_it():
    rate = 16000
    rng = np.random.default_rng(7)
    steady = (rng.standard_normal(rate * 4) * 0.05).astype(np.float32)
    plain = AudioFrontEnd()
    tracked = AudioFrontEnd(noise_tau_us=300_000, noise_margin_db=6.0)
    ev_plain = plain.run_array(steady, rate)[0]
    ev_tracked = tracked.run_array(steady, rate)[0]
    late = lambda ev: int((ev["t"] >= 2_000_000).sum())  # noqa: E731
    assert late(ev_plain) > 200 and late(ev_tracked) < late(ev_plain) / 10
    bursts = steady.copy()
    t = np.arange(rate * 4) / rate
    bursts += (0.5 * np.sin(2 * np.pi * 600 * t) * ((t % 0.5) < 0.15)).astype(np.float32)
    assert late(tracked.run_array(bursts, rate)[0]) > 10 * max(late(ev_tracked), 1)
    assert tracked.run_array(steady, rate)[1].frontend_macs == 16 * (4 * rate * 4 + 4 * 4000)


def test_tone_excites_its_channel_most():
    rate = 16000
    fe = AudioFrontEnd()
    fc = center_frequencies(fe.channels, fe.f_lo_hz, fe.f_hi_hz)
    n = np.arange(rate // 2)
    for k in (3, 8, 13):
        tone = (0.1 * np.sin(2 * np.pi * fc[k] * n / rate)).astype(np.float32)
        _, state = fe.run_array(tone, rate)
        assert int(np.argmax(state.env)) == k
        # 0 dB peak gain: the band at the tone holds the tone's power (0.1² / 2)
        assert state.env[k] == pytest.approx(0.005, rel=0.05)


def test_channels_above_nyquist_are_off_and_cost_nothing():
    fe = AudioFrontEnd()
    spec8 = fe.out_spec(pcm_spec(8000))
    active = np.array(spec8.meta["active"])
    assert spec8.shape == (16, 2) and 0 < active.sum() < 16
    x = (np.random.default_rng(4).standard_normal(8000) * 0.1).astype(np.float32)
    ev, state = fe.run_array(x, 8000)
    assert set(np.unique(ev["x"])) <= set(np.flatnonzero(active))
    assert state.frontend_macs == int(active.sum()) * (4 * 8000 + 2 * 1000)
    assert fe.dense_macs_per_bin(pcm_spec(8000)) == int(active.sum()) * (4 * 8 + 2)
    slow = AudioFrontEnd(frame_us=10_000, noise_tau_us=100_000)
    assert slow.run_array(x, 8000)[1].frontend_macs == int(active.sum()) * (4 * 8000 + 4 * 100)


def test_event_times_lie_on_the_frames_last_samples_and_below_watermark():
    rate = 22050
    x = _speechlike(np.random.default_rng(5), rate, 0.2)
    fe = AudioFrontEnd()
    ev, _, outs = run_stage(fe, pcm_spec(rate), [_pcm(x[:1000], rate), _pcm(x[1000:], rate, 1000)])
    frame_last = np.flatnonzero(np.diff((np.arange(x.size + 1) * 1000) // rate)) - 0
    allowed = set((frame_last * 1_000_000 // rate).tolist())
    assert ev.size and set(ev["t"].tolist()) <= allowed
    assert fe.out_spec(pcm_spec(rate)) == audio_spec(16)


def test_ten_ms_frames_put_events_on_a_ten_ms_grid():
    rate = 16000
    x = _speechlike(np.random.default_rng(8), rate, 0.5)
    ev, state = AudioFrontEnd(frame_us=10_000).run_array(x, rate)
    assert ev.size and np.all(ev["t"] % 10_000 == 9_937) and state.frames == 50


def test_late_start_keeps_the_stream_millisecond_grid():
    rate = 16000
    x = _speechlike(np.random.default_rng(6), rate, 0.3)
    fe = AudioFrontEnd()
    n0 = 1601  # a window that starts 100.06 ms into the file
    ev, state, _ = run_stage(fe, pcm_spec(rate), [_pcm(x[n0:], rate, n0)])
    assert state.resyncs == 0 and ev.size
    assert np.all(ev["t"] % 1000 == 937)  # last sample of each ms at 16 kHz: 15/16 ms


def test_errors_name_the_problem():
    fe = AudioFrontEnd()
    with pytest.raises(TypeError, match="PCM samples"):
        fe.init(audio_spec(16))
    with pytest.raises(ValueError, match="rate_hz"):
        fe.init(pcm_spec(1000))
    with pytest.raises(ValueError, match="channels must be"):
        AudioFrontEnd(channels=0)
    with pytest.raises(ValueError, match="noise_rise_db_per_s must be ≥ 0, got 0, 6.0, 0, -1.0"):
        AudioFrontEnd(noise_rise_db_per_s=-1.0)
    state = fe.init(pcm_spec(16000))
    bad = np.zeros(4, PCM_SAMPLE)
    bad["t"] = np.arange(4) * 62
    bad["v"][2] = np.nan
    bad.flags.writeable = False
    with pytest.raises(ValueError, match="finite"):
        fe.step(state, Packet(bad, 300))


def test_capped_rise_keeps_long_speech_from_lifting_the_noise_floor():
    rate = 16000
    rng = np.random.default_rng(11)
    quiet = (rng.standard_normal(rate) * 0.003).astype(np.float32)
    t = np.arange(rate * 3) / rate
    loud = (0.3 * np.sin(2 * np.pi * 700 * t) * (1 + 0.5 * np.sin(2 * np.pi * 4 * t))).astype(np.float32)
    x = np.concatenate([quiet, loud + quiet[0]])
    free = AudioFrontEnd(frame_us=10_000, noise_tau_us=300_000)
    capped = AudioFrontEnd(frame_us=10_000, noise_tau_us=300_000, noise_rise_db_per_s=3.0)
    late = lambda fe: int((fe.run_array(x, rate)[0]["t"] >= 2_500_000).sum())  # noqa: E731
    # the uncapped floor climbs to the loud tone within a second and its modulation stops firing; the capped one
    # rises at most 3 dB/s and keeps reporting it
    assert late(capped) > 3 * max(late(free), 1)
    assert capped.run_array(x, rate)[1].frontend_macs == 16 * (4 * x.size + (2 + 2 + 1) * 400)
