"""The VAD sink: spikes → speech score → speech segments with hangover, decided while the audio streams.

Score. The sink keeps one potential ``y`` that decays exactly, ``y(t) = y(t0) · exp(-(t - t0) / tau_us)``, and
that each incoming spike moves (the quantity the network was trained on). Two readouts:

* spike trace (``readout_weights`` None): the input is a readout population's spikes; each adds 1 to ``y`` and
  the score is ``1 - exp(-y / y_scale)``;
* leaky-integrator readout neuron (``readout_weights`` given): the input is the last hidden layer's spikes; a
  spike of neuron i adds ``readout_weights[i]`` (one synaptic op, counted) and the score is
  ``sigmoid(y + bias)``. ``sigmoid(bias)`` must lie below ``off``: with no input the score relaxes towards it,
  so silence always ends a segment.

Nothing happens between spikes: no spikes, no work. The score track (``scores_path``) holds, per 10 ms frame k
(stream time [k·10, (k+1)·10) ms), the score at the frame's end, written once the watermark has passed it.

Segments (half-open, stream time from the first sample), with hysteresis and hangover:

* a segment opens when the score reaches ``on`` at a spike at time t: ``decided_us = t``, ``start_us`` = t −
  ``onset_lead_us`` (the typical delay between a speech onset and the detector committing to it), never before
  the previous segment's end nor before 0;
* it stays open while the score is ≥ ``off``, and for ``hangover_us`` after it last fell below ``off`` (the fall
  time is computed in closed form from the trace); a spike that lifts the score back to ``off`` within the
  hangover continues the segment, so pauses between words do not chop it;
* ``end_us`` = the time the score fell below ``off`` + ``hangover_us``; at the end of the stream (or Ctrl-C) an
  open segment closes at the last processed sample (the input watermark).

Each onset and each end is also emitted as a DECISION_EVENT (label 1 "speech" at ``decided_us`` with ``onset`` =
``start_us``; label 0 "end" at the time the end was committed with ``onset`` = ``end_us``), so latency is measured
on them and live front ends can print them. Thresholds are evaluated once per distinct timestamp, after all
simultaneous spikes are integrated, so output does not depend on how the stream is cut into packets.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from runtime.events import DECISION_EVENT
from runtime.packet import Packet
from runtime.spec import StreamSpec, decision_spec

__all__ = ["SpeechSegmenter", "SegmenterState", "FRAME_US", "read_scores"]

FRAME_US = 10_000
LABELS = ("end", "speech")


@dataclass
class SegmenterState:
    y_on: float
    y_off: float
    y: float = 0.0
    t_y: int = 0
    spike_t: list = field(default_factory=list)  # distinct readout spike times ...
    spike_y: list = field(default_factory=list)  # ... and the trace right after each (the score track derives)
    open: bool = False
    start_us: int = 0
    decided_us: int = 0
    t_fall: int = 0  # when the score falls (fell) below `off` if no spike comes
    last_end_us: int = 0
    wm_us: int = 0
    segments: list = field(default_factory=list)
    spikes: int = 0
    synaptic_ops: int = 0
    finished: bool = False
    weights: np.ndarray | None = None


@dataclass(frozen=True)
class SpeechSegmenter:
    """Sink: readout spikes (any ``spike`` stream) → speech segments and a per-10 ms score track."""

    tau_us: float = 40_000.0
    y_scale: float = 4.0
    on: float = 0.5
    off: float = 0.3
    hangover_us: int = 200_000
    onset_lead_us: int = 40_000
    scores_path: str | None = None
    readout_weights: tuple | None = None  # leaky-integrator readout: one weight per input neuron
    bias: float = 0.0

    def __post_init__(self):
        if not 0 < self.off <= self.on < 1:
            raise ValueError(f"SpeechSegmenter: need 0 < off ≤ on < 1, got off={self.off}, on={self.on}")
        if self.readout_weights is not None:
            object.__setattr__(self, "readout_weights", tuple(float(w) for w in self.readout_weights))
            if not all(math.isfinite(w) for w in self.readout_weights) or not math.isfinite(self.bias):
                raise ValueError("SpeechSegmenter: readout_weights and bias must be finite")
            if 1.0 / (1.0 + math.exp(-self.bias)) >= self.off:
                raise ValueError(f"SpeechSegmenter: sigmoid(bias={self.bias}) must lie below off={self.off}, or "
                                 "silence would never end a segment")
        if not self.tau_us > 0 or not self.y_scale > 0:
            raise ValueError(f"SpeechSegmenter: tau_us and y_scale must be > 0, got {self.tau_us}, {self.y_scale}")
        if self.hangover_us < 0 or self.onset_lead_us < 0:
            raise ValueError("SpeechSegmenter: hangover_us and onset_lead_us must be ≥ 0")

    # ---- stage protocol -------------------------------------------------------------------------------------
    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "spike":
            raise TypeError(f"SpeechSegmenter: input must be the readout's spike stream, got {spec.describe()}")
        return decision_spec(LABELS)

    def init(self, spec: StreamSpec) -> SegmenterState:
        self.out_spec(spec)
        if self.readout_weights is None:
            return SegmenterState(y_on=-self.y_scale * math.log(1 - self.on),
                                  y_off=-self.y_scale * math.log(1 - self.off))
        n = int(np.prod(spec.shape))
        if n != len(self.readout_weights):
            raise ValueError(f"SpeechSegmenter: {len(self.readout_weights)} readout weights for a spike stream of "
                             f"{n} neurons {spec.describe()}")
        logit = lambda p: math.log(p / (1 - p)) - self.bias  # noqa: E731
        return SegmenterState(y_on=logit(self.on), y_off=logit(self.off),
                              weights=np.asarray(self.readout_weights, np.float64))

    def step(self, state: SegmenterState, packet: Packet) -> tuple[SegmenterState, list[Packet]]:
        out: list[tuple[int, int, float, int]] = []
        t = packet.events["t"]
        if t.shape[0]:
            first = np.flatnonzero(np.diff(t)) + 1  # events are sorted: runs of equal t are simultaneous
            bounds = np.concatenate(([0], first, [t.shape[0]]))
            times = t[bounds[:-1]].tolist()
            if state.weights is None:
                gains = np.diff(bounds).astype(np.float64).tolist()
            else:
                addr = packet.events["addr"]
                if addr.shape[0] and (addr.min() < 0 or addr.max() >= state.weights.shape[0]):
                    raise ValueError(f"SpeechSegmenter: spike address outside 0..{state.weights.shape[0] - 1}")
                gains = np.add.reduceat(state.weights[addr], bounds[:-1]).tolist()
                state.synaptic_ops += int(t.shape[0])
            for ti, gain, n in zip(times, gains, np.diff(bounds).tolist()):
                self._advance(state, ti, out, inclusive=True)
                state.y = state.y * math.exp(-(ti - state.t_y) / self.tau_us) + gain
                state.t_y = ti
                state.spike_t.append(ti)
                state.spike_y.append(state.y)
                state.spikes += n
                if state.open and state.y < state.y_off:  # an inhibitory spike pulled the score down now
                    state.t_fall = min(state.t_fall, ti)
                if state.y >= state.y_off and (state.open or state.y >= state.y_on):
                    state.t_fall = ti + int(math.ceil(self.tau_us * math.log(state.y / state.y_off)))
                    if not state.open:
                        state.open = True
                        state.decided_us = ti
                        state.start_us = max(state.last_end_us, ti - self.onset_lead_us, 0)
                        out.append((ti, 1, self._score(state.y), state.start_us))
        self._advance(state, packet.t_end_us, out, inclusive=False)
        state.wm_us = max(state.wm_us, packet.t_end_us)
        return state, [packet.derive(_decisions(out))] if out else []

    def finish(self, state: SegmenterState) -> list[Packet]:
        if state.finished:
            return []
        state.finished = True
        out: list[tuple[int, int, float, int]] = []
        if state.open:
            end = min(state.t_fall + self.hangover_us, state.wm_us)
            self._close(state, max(end, state.start_us), out, at=state.wm_us)
        if self.scores_path is not None:
            _write_scores(Path(self.scores_path), self.scores(state))
        if not out:
            return []
        return [Packet(_decisions(out), state.wm_us + 1)]  # committed at the end of the stream

    def result(self, state: SegmenterState) -> dict[str, Any]:
        res: dict[str, Any] = {"segments": list(state.segments), "score_frames": state.wm_us // FRAME_US,
                               "readout_spikes": state.spikes}
        if self.scores_path is not None:
            res["scores_path"] = str(self.scores_path)
        return res

    def counters(self, state: SegmenterState) -> dict[str, int]:
        return {"synaptic_ops": state.synaptic_ops}

    def scores(self, state: SegmenterState) -> np.ndarray:
        """Score per 10 ms frame whose end the watermark has passed (float32), from the spike history: the
        score at frame k's end (k+1)·10 ms is the trace after the last spike before it, decayed to that time."""
        n = state.wm_us // FRAME_US
        ends = (np.arange(n, dtype=np.int64) + 1) * FRAME_US
        if not state.spike_t:
            return self._scores_of(np.zeros(n)).astype(np.float32)
        st = np.asarray(state.spike_t, np.int64)
        sy = np.asarray(state.spike_y, np.float64)
        i = np.searchsorted(st, ends, side="left") - 1  # spikes at t < end
        y = np.where(i >= 0, sy[np.maximum(i, 0)] * np.exp(-(ends - st[np.maximum(i, 0)]) / self.tau_us), 0.0)
        return self._scores_of(y).astype(np.float32)

    # ---- internals ------------------------------------------------------------------------------------------
    def _score(self, y: float) -> float:
        if self.readout_weights is None:
            return 1.0 - math.exp(-y / self.y_scale)
        return 1.0 / (1.0 + math.exp(-(y + self.bias)))

    def _scores_of(self, y: np.ndarray) -> np.ndarray:
        if self.readout_weights is None:
            return 1.0 - np.exp(-y / self.y_scale)
        return 1.0 / (1.0 + np.exp(-(y + self.bias)))

    def _advance(self, state: SegmenterState, t_now: int, out: list, *, inclusive: bool) -> None:
        """Bring the segment up to ``t_now``: a spike at ``t_now`` (inclusive) or a watermark."""
        if state.open:
            deadline = state.t_fall + self.hangover_us
            if deadline < t_now or (inclusive and deadline == t_now):
                self._close(state, deadline, out, at=deadline)

    def _close(self, state: SegmenterState, end_us: int, out: list, *, at: int) -> None:
        state.open = False
        state.segments.append({"start_us": int(state.start_us), "end_us": int(end_us),
                               "decided_us": int(state.decided_us), "label": "speech"})
        state.last_end_us = int(end_us)
        y = state.y * math.exp(-(max(at, state.t_y) - state.t_y) / self.tau_us)
        out.append((int(at), 0, self._score(y), int(end_us)))


def _decisions(rows: list[tuple[int, int, float, int]]) -> np.ndarray:
    ev = np.zeros(len(rows), DECISION_EVENT)
    if rows:
        ev["t"], ev["label"], ev["score"], ev["onset"] = zip(*rows)
    ev.flags.writeable = False
    return ev


def _write_scores(path: Path, scores: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(scores.shape[0], dtype=np.int64) * FRAME_US
    with open(path, "w") as f:
        f.write("# per-10 ms speech score of clockless VAD: frame start (µs from the first sample), score in [0, 1)\n")
        f.write("t_us,score\n")
        for ti, s in zip(t.tolist(), scores.tolist()):
            f.write(f"{ti},{s:.5f}\n")


def read_scores(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """(frame start µs, score) arrays of a score track written with ``scores_path``."""
    data = np.loadtxt(path, delimiter=",", comments="#", skiprows=2, ndmin=2)
    return data[:, 0].astype(np.int64), data[:, 1].astype(np.float32)
