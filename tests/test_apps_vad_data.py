"""VAD training data: clean-speech labels, SNR mixing, held-out noise never in training pools, mixtures."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from apps.vad.data import (
    HELD_OUT_NOISE, SYNTHETIC_NOISE, clean_speech_labels, distant_talkers, load_mono, load_pools, make_mixture,
    mix_at_snr, synthesise_espeak, synthetic_noise,
)


def test_labels_follow_energy_and_bridge_short_gaps():
    rate = 16000
    rng = np.random.default_rng(0)
    x = np.zeros(rate * 2, np.float32)
    x[4000:12000] = rng.standard_normal(8000) * 0.1  # 250..750 ms
    x[13600:20000] = rng.standard_normal(6400) * 0.1  # 850..1250 ms: a 100 ms gap → bridged
    x[28000:29600] = rng.standard_normal(1600) * 0.1  # 1750..1850 ms: after a 500 ms gap → its own run
    lab = clean_speech_labels(x, rate)
    assert lab.shape == (2000,)
    assert lab[300:1200].all() and not lab[:230].any() and not lab[1300:1700].any() and lab[1760:1840].all()


def test_mix_at_snr_hits_the_target():
    rate = 16000
    rng = np.random.default_rng(1)
    speech = np.zeros(rate, np.float32)
    speech[:8000] = rng.standard_normal(8000) * 0.3
    lab = np.zeros(1000, bool)
    lab[:500] = True
    noise = rng.standard_normal(rate).astype(np.float32)
    mix = mix_at_snr(speech, lab, noise, 5.0, rate)
    n = mix - speech
    snr = 10 * np.log10(np.mean(speech[:8000].astype(np.float64) ** 2) / np.mean(n.astype(np.float64) ** 2))
    assert snr == pytest.approx(5.0, abs=0.01)


@pytest.mark.parametrize("kind", [k for k in SYNTHETIC_NOISE if k != "babble"])
def test_synthetic_noise_is_unit_rms(kind):
    y = synthetic_noise(np.random.default_rng(2), kind, 16000, 16000)
    assert y.dtype == np.float32 and float(np.sqrt(np.mean(y.astype(np.float64) ** 2))) == pytest.approx(1, rel=1e-3)


def test_clicks_are_sparse_transients_and_music_has_steady_pitch():
    rate = 16000
    clicks = synthetic_noise(np.random.default_rng(4), "clicks", rate * 2, rate).astype(np.float64)
    power_ms = (clicks.reshape(-1, 16) ** 2).mean(axis=1)
    assert np.mean(power_ms > 0.1 * power_ms.max()) < 0.2  # energy sits in a few short bursts
    music = synthetic_noise(np.random.default_rng(5), "music", rate * 2, rate).astype(np.float64)
    spec = np.abs(np.fft.rfft(music[:4096] * np.hanning(4096)))
    assert spec.max() > 20 * np.median(spec)  # tonal: harmonic peaks far above the floor
    with pytest.raises(ValueError, match="clicks"):
        synthetic_noise(np.random.default_rng(0), "rattle", 100, rate)


def test_pools_exclude_held_out_noise_and_mixtures_are_sane(shared_data, tmp_path):
    synth = []
    if shutil.which("espeak-ng"):
        synth = synthesise_espeak(tmp_path / "espeak", 3, seed=0)
        x, rate = load_mono(synth[0])
        assert rate == 22050 and clean_speech_labels(x, rate).mean() > 0.3
    pools = load_pools(shared_data / "audio", synth, 16000)
    assert pools.noise and not set(pools.noise_names) & set(HELD_OUT_NOISE)
    assert int(pools.speech_real.sum()) == len(list((shared_data / "audio" / "speech").iterdir()))
    rng = np.random.default_rng(3)
    fractions = []
    for _ in range(8):
        x, lab = make_mixture(rng, pools, 3.0)
        assert x.shape == (48000,) and lab.shape == (3000,) and np.abs(x).max() <= 1.0 and np.isfinite(x).all()
        fractions.append(lab.mean())
    assert 0.1 < np.mean(fractions) < 0.9
    x, lab = make_mixture(np.random.default_rng(4), pools, 3.0, speech_prob=1.0, level_db=(-50.0, -50.0))
    speech_rms_db = 10 * np.log10(np.mean(x.astype(np.float64)[np.repeat(lab, 16)] ** 2))
    assert lab.any() and -52.0 < speech_rms_db < -40.0  # speech at -50 dBFS plus the noise under it


def test_distant_talkers_are_unlabelled_reverberant_speech_below_the_foreground(shared_data):
    pools = load_pools(shared_data / "audio", [], 16000)
    y = distant_talkers(np.random.default_rng(0), pools, 3 * 16000)
    assert y.shape == (48000,) and abs(float(np.sqrt(np.mean(y ** 2))) - 1.0) < 1e-6
    # a voice that comes and goes: its 50 ms power varies far more than steady noise's
    p = (y[: 47 * 1000].reshape(-1, 1000) ** 2).mean(axis=1)
    assert np.percentile(p, 90) > 10 * np.percentile(p, 10)
    # with no foreground speech the clip is labelled non-speech throughout, and stays below the loudest levels
    for seed in range(6):
        x, lab = make_mixture(np.random.default_rng(seed), pools, 3.0, speech_prob=0.0, distant_prob=1.0,
                              level_db=(-50.0, -10.0))
        assert not lab.any() and 10 * np.log10(np.mean(x.astype(np.float64) ** 2)) < -29.0
    # under foreground speech, only the foreground is labelled, and the talkers lie ≥ 6 dB below it
    x, lab = make_mixture(np.random.default_rng(7), pools, 3.0, speech_prob=1.0, distant_prob=1.0,
                          level_db=(-30.0, -30.0))
    fg = 10 * np.log10(np.mean(x.astype(np.float64)[np.repeat(lab, 16)] ** 2))
    bg = 10 * np.log10(np.mean(x.astype(np.float64)[~np.repeat(lab, 16)] ** 2))
    assert lab.any() and not lab.all() and fg - bg > 5.0
