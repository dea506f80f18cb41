"""Frame-level VAD scoring: 10 ms frames, human labels from ``.segments.txt``/``.uem.txt``, and the metrics.

Frame k covers [k·10 ms, (k+1)·10 ms) of stream time; it is speech when its centre lies inside a labelled segment
and it counts only when its centre lies inside the annotated span (``.uem.txt``; the whole clip when absent).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from runtime.errors import FormatError

__all__ = ["FRAME_US", "read_spans", "frame_labels", "frames_from_segments", "frame_metrics", "roc_auc"]

FRAME_US = 10_000


def read_spans(path: Path) -> np.ndarray:
    """``start_s end_s`` lines → (N, 2) float array of seconds."""
    rows = []
    for i, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        try:
            a, b = float(parts[0]), float(parts[1])
        except (ValueError, IndexError):
            raise FormatError(path, f"line {i}: expected 'start_s end_s', got {line!r}") from None
        if b < a:
            raise FormatError(path, f"line {i}: end {b} s is before start {a} s")
        rows.append((a, b))
    return np.array(rows, dtype=np.float64).reshape(-1, 2)


def _centres_s(n_frames: int) -> np.ndarray:
    return (np.arange(n_frames) + 0.5) * FRAME_US / 1e6


def frame_labels(wav_path: Path, n_frames: int) -> tuple[np.ndarray, np.ndarray]:
    """(speech, scored) booleans per 10 ms frame of a labelled clip ``X.wav`` (``X.wav.segments.txt``...)."""
    c = _centres_s(n_frames)
    speech = np.zeros(n_frames, bool)
    for a, b in read_spans(Path(str(wav_path) + ".segments.txt")):
        speech |= (c >= a) & (c < b)
    uem = Path(str(wav_path) + ".uem.txt")
    scored = np.ones(n_frames, bool)
    if uem.exists():
        scored[:] = False
        for a, b in read_spans(uem):
            scored |= (c >= a) & (c < b)
    return speech, scored


def frames_from_segments(segments, n_frames: int) -> np.ndarray:
    """Boolean per 10 ms frame: its centre lies in one of the half-open ``[start_us, end_us)`` segments."""
    c_us = (np.arange(n_frames) * FRAME_US + FRAME_US // 2).astype(np.int64)
    out = np.zeros(n_frames, bool)
    for s in segments:
        a, b = (s["start_us"], s["end_us"]) if isinstance(s, dict) else s
        out |= (c_us >= a) & (c_us < b)
    return out


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (probability a random speech frame outscores a random non-speech one; ties ½)."""
    labels = np.asarray(labels, bool)
    scores = np.asarray(scores, np.float64)
    n_pos = int(labels.sum())
    n_neg = labels.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    _, first, counts = np.unique(scores[order], return_index=True, return_counts=True)
    ranks = np.repeat(first + (counts + 1) / 2.0, counts)  # 1-based ranks, averaged over ties
    r = np.empty_like(ranks)
    r[order] = ranks
    return float((r[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def frame_metrics(labels: np.ndarray, decisions: np.ndarray, scores: np.ndarray | None = None) -> dict:
    """Precision, recall, F1, balanced accuracy (mean of speech and non-speech recall) and ROC-AUC."""
    labels = np.asarray(labels, bool)
    d = np.asarray(decisions, bool)
    tp = int((d & labels).sum())
    fp = int((d & ~labels).sum())
    fn = int((~d & labels).sum())
    tn = int((~d & ~labels).sum())
    precision = tp / (tp + fp) if tp + fp else 0.0
    recall = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    spec = tn / (tn + fp) if tn + fp else 0.0
    out = {"precision": precision, "recall": recall, "f1": f1, "balanced_accuracy": 0.5 * (recall + spec),
           "frames": int(labels.size), "speech_frames": int(labels.sum())}
    out["roc_auc"] = roc_auc(labels, d.astype(float) if scores is None else scores)
    return out
