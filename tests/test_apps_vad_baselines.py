"""Baseline VADs: WebRTC wired as its upstream test expects; Silero runs offline and its MACs are counted."""

from __future__ import annotations

import numpy as np
import pytest

from apps.vad.baselines import SileroVad, webrtc_frames
from apps.vad.data import load_mono


def test_webrtc_matches_upstream_expectations(shared_data):
    raw = (shared_data / "audio" / "webrtcvad_test_8k_s16le.raw").read_bytes()
    native = np.frombuffer(raw, "<i2")
    x = native.astype(np.float32) / 32768
    expected = {}
    for line in (shared_data / "audio" / "webrtcvad_expected.txt").read_text().splitlines():
        if line.startswith("mode"):
            name, bits = line.split()
            expected[int(name[4:])] = bits
    assert sorted(expected) == [0, 1, 2, 3]
    for mode, bits in expected.items():
        per10 = webrtc_frames(x, 8000, mode, frame_ms=30, native=native)
        got = "".join("1" if d else "0" for d in per10[::3])
        assert got == bits, f"mode {mode}"
        # our float → int16 conversion gives the same decisions as the file's own samples
        assert np.array_equal(webrtc_frames(x, 8000, mode, frame_ms=30), per10)


def test_webrtc_resamples_unsupported_rates(shared_data):
    x, rate = load_mono(shared_data / "audio" / "speech" / "LJ050-0131.wav")  # 22.05 kHz
    n = len(x) * 100 // rate
    d = webrtc_frames(x, rate, 3, n_frames=n)
    assert d.shape == (n,) and 0.2 < d.mean() < 1.0


@pytest.fixture(scope="module")
def silero():
    return SileroVad(threads=1)


def test_silero_runs_offline_and_separates_speech_from_silence(shared_data, silero):
    x, rate = load_mono(shared_data / "audio" / "speech" / "jfk.wav")
    n = len(x) * 100 // rate
    s = silero.frame_scores(x, rate, n)
    assert s.shape == (n,) and 0 <= s.min() and s.max() <= 1
    assert s.mean() > 0.5
    quiet = silero.frame_scores(np.zeros(rate, np.float32), rate, 100)
    assert quiet.max() < 0.2


def test_silero_macs_are_counted_not_guessed(silero):
    n_params = sum(p.numel() for name, p in silero.model.named_parameters() if name.startswith("_model."))
    macs = silero.macs_per_chunk(16000)
    assert macs == silero.macs_per_chunk(16000)  # deterministic
    # every weight is used at least once per chunk, the convolutions many times over
    assert n_params < macs < 100 * n_params
    assert silero.macs_per_second(16000) == pytest.approx(macs * 16000 / 512)
