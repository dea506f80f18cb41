"""The VADs clockless is compared with, behind one interface: 10 ms frame decisions / scores for a mono signal.

* WebRTC VAD (``webrtcvad-wheels``): modes 0..3, frames of 10, 20 or 30 ms at 8, 16, 32 or 48 kHz (other rates are
  resampled to 16 kHz). Each decision covers its frame's 10 ms sub-frames.
* Silero VAD (``silero-vad``, the TorchScript model shipped inside the package, offline): 512-sample chunks at
  16 kHz (256 at 8 kHz; other rates resampled to 16 kHz), streamed with its state; each 10 ms frame takes the
  probability of the chunk that holds the frame's centre. ``silero_macs_per_chunk`` counts its multiply-accumulates
  with PyTorch's FlopCounterMode (every convolution and matrix product the model actually runs; MACs = FLOPs / 2).
"""

from __future__ import annotations

import numpy as np

from .metrics import FRAME_US

__all__ = ["webrtc_frames", "SileroVad", "WEBRTC_RATES"]

WEBRTC_RATES = (8000, 16000, 32000, 48000)


def _resample(x: np.ndarray, rate: int, to: int) -> np.ndarray:
    from .data import resample

    return resample(x, rate, to)


def _pcm16(x: np.ndarray) -> bytes:
    return (np.clip(x, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def webrtc_frames(x: np.ndarray, rate_hz: int, mode: int, frame_ms: int = 30, n_frames: int | None = None,
                  native: np.ndarray | None = None) -> np.ndarray:
    """WebRTC VAD decisions per 10 ms frame (bool). ``native``: the int16 samples when the input is 16-bit PCM."""
    import webrtcvad

    if frame_ms not in (10, 20, 30):
        raise ValueError(f"webrtc_frames: frame_ms must be 10, 20 or 30, got {frame_ms}")
    if rate_hz not in WEBRTC_RATES:
        x, rate_hz, native = _resample(x, rate_hz, 16000), 16000, None
    pcm = native.astype("<i2").tobytes() if native is not None else _pcm16(x)
    vad = webrtcvad.Vad(mode)
    step = rate_hz * frame_ms // 1000
    n_big = len(pcm) // 2 // step
    dec = np.array([vad.is_speech(pcm[2 * i * step: 2 * (i + 1) * step], rate_hz) for i in range(n_big)], bool)
    per10 = np.repeat(dec, frame_ms // 10)
    n = n_frames if n_frames is not None else per10.size
    out = np.zeros(n, bool)
    out[: min(n, per10.size)] = per10[:n]
    return out


class SileroVad:
    """Silero VAD from the installed ``silero_vad`` package (no network access needed)."""

    def __init__(self, threads: int = 1):
        import warnings

        import torch

        with warnings.catch_warnings():  # torch 2.13 deprecates torch.jit.load, which silero-vad 6 still uses
            warnings.simplefilter("ignore", DeprecationWarning)
            from silero_vad import load_silero_vad

            self.model = load_silero_vad()
        torch.set_num_threads(threads)  # importing silero_vad sets 1 thread; the caller decides
        self.torch = torch

    def chunk(self, rate_hz: int) -> int:
        return 512 if rate_hz == 16000 else 256

    def probabilities(self, x: np.ndarray, rate_hz: int) -> tuple[np.ndarray, int]:
        """(probability per chunk, chunk length in samples at ``rate``) after resampling to 8/16 kHz if needed."""
        if rate_hz not in (8000, 16000):
            x, rate_hz = _resample(x, rate_hz, 16000), 16000
        n = self.chunk(rate_hz)
        x = np.ascontiguousarray(x, np.float32)
        self.model.reset_states()
        out = np.empty(len(x) // n, np.float32)
        with self.torch.no_grad():
            for i in range(out.size):
                out[i] = float(self.model(self.torch.from_numpy(x[i * n:(i + 1) * n]), rate_hz))
        return out, rate_hz

    def frame_scores(self, x: np.ndarray, rate_hz: int, n_frames: int) -> np.ndarray:
        probs, rate = self.probabilities(x, rate_hz)
        chunk_us = self.chunk(rate) * 1_000_000 / rate
        centre = (np.arange(n_frames) * FRAME_US + FRAME_US / 2) / chunk_us
        idx = np.minimum(centre.astype(np.int64), max(probs.size - 1, 0))
        return probs[idx] if probs.size else np.zeros(n_frames, np.float32)

    def macs_per_chunk(self, rate_hz: int = 16000, chunks: int = 4) -> int:
        """Multiply-accumulates of one streaming call, counted by torch's FlopCounterMode (MACs = FLOPs / 2)."""
        from torch.utils.flop_counter import FlopCounterMode

        n = self.chunk(rate_hz)
        rng = np.random.default_rng(0)
        self.model.reset_states()
        self.model(self.torch.zeros(n), rate_hz)  # the first call also sets up the context buffer
        counter = FlopCounterMode(display=False)
        with counter, self.torch.no_grad():
            for _ in range(chunks):
                self.model(self.torch.from_numpy(rng.standard_normal(n).astype(np.float32) * 0.1), rate_hz)
        return int(counter.get_total_flops() // (2 * chunks))

    def macs_per_second(self, rate_hz: int = 16000) -> float:
        return self.macs_per_chunk(rate_hz) * rate_hz / self.chunk(rate_hz)
