"""Smoke run of ``clockless bench vad`` on one short labelled clip: every detector reports, counts are consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.bench.vad import _energy_rise_after_labels, run
from apps.vad.baselines import SileroVad
from graphs.vad import DEFAULT_WEIGHTS, load_vad


@pytest.mark.usefixtures("shared_data")
def test_bench_vad_smoke(tmp_path):
    res = run(True, tmp_path, clips=("ami_ES2011a_40s-46s.wav",))
    _, fe_state = load_vad(DEFAULT_WEIGHTS).frontend.run_array(np.zeros(6 * 16000, np.float32), 16000)
    fe_macs_6s = fe_state.frontend_macs
    assert res["clips"] == ["ami_ES2011a_40s-46s.wav"]
    assert res["silero_macs_per_s"] == round(SileroVad().macs_per_second(16000))
    for name in ("labelled", "noisy_5dB"):
        s = res["sets"][name]
        assert s["audio_s"] == 6.0 and s["frames"] == 600
        assert set(s["detectors"]) == {"clockless", "webrtc0", "webrtc1", "webrtc2", "webrtc3", "silero"}
        for d in s["detectors"].values():
            for k in ("precision", "recall", "f1", "balanced_accuracy"):
                assert 0.0 <= d[k] <= 1.0
            assert d["realtime_factor"] > 0
        cl = s["detectors"]["clockless"]
        # the front end's work is fixed by the audio's length and rate, whatever it holds
        assert cl["frontend_macs_per_s"] == round(fe_macs_6s / 6)
        ratio = s["ratios"]["silero_macs_over_frontend_plus_snn"]
        assert math.isclose(ratio, res["silero_macs_per_s"] / (cl["frontend_macs_per_s"] + cl["synaptic_ops_per_s"]),
                            rel_tol=0.01)
        assert set(s["goals"]) >= {"f1_ge_best_webrtc", "median_onset_within_50ms"}
        # one clip: its source group holds all its frames and the same figures as the pooled set
        (source, group), = s["by_source"].items()
        assert source == "ami" and group["frames"] == s["frames"] and group["clips"] == 1
        for det in ("clockless", "silero"):
            assert group["detectors"][det]["balanced_accuracy"] == s["detectors"][det]["balanced_accuracy"]
            assert group["detectors"][det]["onsets"] == s["detectors"][det]["onset"]["onsets"]
    assert set(res["sets"]["noisy_5dB"]["by_noise"]) == {"music_kevin_macleod_vibe_ace.ogg"}  # the first held-out
    assert "by_noise" not in res["sets"]["labelled"]
    assert (tmp_path / "vad_roc.png").stat().st_size > 1000


def test_energy_rise_after_labels_measures_how_far_a_label_leads_the_sound():
    rate = 16000
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(3 * rate) * 1e-3).astype(np.float32)  # a quiet room (-60 dB)
    t = np.arange(rate) / rate
    x[int(1.57 * rate):int(2.57 * rate)] += (0.1 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)  # loud at 1.57 s
    speech = np.zeros(300, bool)
    speech[150:250] = True  # the label opens 70 ms before the sound
    speech[10:20] = True  # too soon after the start of the clip: no 300 ms of silence before it
    rise = _energy_rise_after_labels(x, rate, speech, np.ones(300, bool))
    assert len(rise) == 1 and 65 <= rise[0] <= 72  # the 10 ms power window reaches +10 dB a few ms early
    early = speech.copy()
    early[150:160] = False  # a label that opens 30 ms after the sound
    assert -38 <= _energy_rise_after_labels(x, rate, early, np.ones(300, bool))[0] <= -28
    quiet = x.copy()
    quiet[int(1.57 * rate):] = quiet[:int(1.43 * rate)]  # nothing but the room: never 10 dB up
    assert _energy_rise_after_labels(quiet, rate, speech, np.ones(300, bool)) == [None]
