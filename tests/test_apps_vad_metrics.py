"""Frame metrics: labels from the labelled clips' files, ROC-AUC vs a brute-force pair count, P/R/F1/BA."""

from __future__ import annotations

import numpy as np
import pytest

from apps.vad.metrics import frame_labels, frame_metrics, frames_from_segments, read_spans, roc_auc
from runtime.errors import FormatError


def brute_auc(labels, scores):
    pos = scores[labels]
    neg = scores[~labels]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def test_auc_matches_pair_count_with_ties():
    rng = np.random.default_rng(0)
    for _ in range(5):
        labels = rng.random(300) < 0.4
        scores = np.round(rng.random(300) + 0.5 * labels, 1)  # many ties
        assert roc_auc(labels, scores) == pytest.approx(brute_auc(labels, scores), abs=1e-12)
    assert np.isnan(roc_auc(np.ones(4, bool), np.arange(4.0)))


def test_metrics_by_hand():
    labels = np.array([1, 1, 1, 1, 0, 0, 0, 0, 0, 0], bool)
    dec = np.array([1, 1, 1, 0, 1, 0, 0, 0, 0, 0], bool)
    m = frame_metrics(labels, dec)
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["f1"] == pytest.approx(0.75) and m["balanced_accuracy"] == pytest.approx((0.75 + 5 / 6) / 2)
    always = frame_metrics(labels, np.ones(10, bool))
    assert always["balanced_accuracy"] == 0.5 and always["recall"] == 1.0


def test_labels_of_a_clip_with_uem(shared_data):
    wav = shared_data / "audio" / "labelled" / "speechbrain_vad_train.wav"
    speech, scored = frame_labels(wav, 580)
    uem = read_spans(wav.with_name(wav.name + ".uem.txt"))
    segs = read_spans(wav.with_name(wav.name + ".segments.txt"))
    centres = (np.arange(580) + 0.5) * 0.01
    assert scored.sum() == ((centres >= uem[0, 0]) & (centres < uem[0, 1])).sum() < 580
    assert speech.sum() == sum(((centres >= a) & (centres < b)).sum() for a, b in segs)


def test_frames_from_segments_half_open():
    segs = [{"start_us": 10_000, "end_us": 30_000}, {"start_us": 45_000, "end_us": 45_001}]
    np.testing.assert_array_equal(frames_from_segments(segs, 6), [0, 1, 1, 0, 1, 0])


def test_bad_span_file(tmp_path):
    p = tmp_path / "x.segments.txt"
    p.write_text("0.5 0.2\n")
    with pytest.raises(FormatError, match="before start"):
        read_spans(p)
    p.write_text("abc\n")
    with pytest.raises(FormatError, match="line 1"):
        read_spans(p)
