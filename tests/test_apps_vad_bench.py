"""Smoke run of ``clockless bench vad`` on one short labelled clip: every detector reports, counts are consistent."""

from __future__ import annotations

import math

import numpy as np
import pytest

from apps.bench.vad import run
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
    assert (tmp_path / "vad_roc.png").stat().st_size > 1000
