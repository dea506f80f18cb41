"""The gesture app's live window: camera events, the attention heatmap, the current gesture and its confidence.

One ``GestureBoard`` is drawn from three sink taps on the gesture graph (``add_view``):

* ``view_events`` on the source: the sensor's ON/OFF events of the last display period;
* ``view_attention`` on the gated network input: how much of each 32 × 32 input pixel the attention gates let
  through lately (decaying with ``attention_tau_us``), as a heatmap — dark where the gates spend nothing;
* ``view_confidence`` on the network's output spikes: the decision sink's own rule (same settings), so the bars
  show the confidences the decisions are taken on, and the last decision with its time.

The board redraws at most ``display_hz`` times per wall-clock second, from whichever tap runs. A window is opened
only when the caller has checked a display exists (``apps.live_view.choose_window``); otherwise the board still
renders (``last_image``) and reports how many frames it drew. The view may be mirrored for the user
(``mirror=True``, like a mirror); the labels are never touched.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

from graphs.gesture import INPUT_PX
from graphs.gesture_decision import DecisionConfig, GestureDecision
from runtime.graph import Graph
from runtime.packet import Packet
from runtime.spec import StreamSpec

__all__ = ["GestureBoard", "add_view"]

PANEL_PX = 256


@dataclass
class GestureBoard:
    """What the window shows; the three taps write into it, ``draw`` composes it."""

    labels: tuple[str, ...]
    window: bool = False
    display_hz: float = 30.0
    mirror: bool = False
    attention_tau_us: float = 300_000.0
    title: str = "clockless gesture"
    sensor_hw: tuple[int, int] = (1, 1)
    on: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int32))
    off: np.ndarray = field(default_factory=lambda: np.zeros((1, 1), np.int32))
    attention: np.ndarray = field(default_factory=lambda: np.zeros((INPUT_PX, INPUT_PX)))
    attention_t_us: int = 0
    confidences: np.ndarray | None = None
    last_decision: tuple[str, float, int] | None = None
    t_us: int = 0
    frames_drawn: int = 0
    frames_shown: int = 0
    closed_by_user: bool = False
    last_image: np.ndarray | None = field(default=None, repr=False)
    _last_draw_s: float = float("-inf")
    _opened: bool = False

    def set_sensor(self, w: int, h: int) -> None:
        self.sensor_hw = (int(h), int(w))
        self.on = np.zeros((h, w), np.int32)
        self.off = np.zeros((h, w), np.int32)

    def maybe_draw(self) -> None:
        now = time.perf_counter()
        if now - self._last_draw_s >= 1.0 / self.display_hz:
            self.draw(now)

    def draw(self, now: float | None = None) -> np.ndarray:
        from apps.live_view import render_event_frame

        h, w = self.sensor_hw
        scale = PANEL_PX / max(h, w)
        events = render_event_frame(self.on, self.off)
        events = cv2.resize(events, (max(1, round(w * scale)), max(1, round(h * scale))),
                            interpolation=cv2.INTER_NEAREST if scale >= 1 else cv2.INTER_AREA)
        self.on[:] = 0
        self.off[:] = 0
        heat = self.attention / max(float(self.attention.max()), 1e-9)
        heat = cv2.applyColorMap((heat * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
        heat = cv2.resize(heat, (PANEL_PX, PANEL_PX), interpolation=cv2.INTER_NEAREST)
        if self.mirror:  # for the user's eyes only; labels stay in image coordinates
            events, heat = events[:, ::-1], heat[:, ::-1]
        bars = self._bars(PANEL_PX)
        canvas = np.full((PANEL_PX + 40, 3 * PANEL_PX + 20, 3), 24, np.uint8)
        canvas[40:40 + events.shape[0], 0:events.shape[1]] = events
        canvas[40:40 + PANEL_PX, PANEL_PX + 10:2 * PANEL_PX + 10] = heat
        canvas[40:40 + PANEL_PX, 2 * PANEL_PX + 20:] = bars
        for x, text in ((4, "events"), (PANEL_PX + 14, "attention (gated input)"), (2 * PANEL_PX + 24, "confidence")):
            cv2.putText(canvas, text, (x, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (200, 200, 200), 1, cv2.LINE_AA)
        head = f"t = {self.t_us / 1e6:7.2f} s"
        if self.last_decision is not None:
            label, score, t_us = self.last_decision
            head += f"   last decision: {label} ({score:.2f}) at {t_us / 1e6:.2f} s"
        cv2.putText(canvas, head, (4, 34), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (120, 230, 120), 1, cv2.LINE_AA)
        self.last_image = canvas
        self.frames_drawn += 1
        self._last_draw_s = time.perf_counter() if now is None else now
        if self.window and not self.closed_by_user:
            if not self._opened:
                cv2.namedWindow(self.title, cv2.WINDOW_NORMAL)
                self._opened = True
            cv2.imshow(self.title, canvas)
            self.frames_shown += 1
            if cv2.waitKey(1) & 0xFF in (27, ord("q")):
                self.closed_by_user = True
                cv2.destroyWindow(self.title)
        return canvas

    def _bars(self, size: int) -> np.ndarray:
        img = np.full((size, size, 3), 32, np.uint8)
        n = len(self.labels)
        row = size // n
        p = self.confidences if self.confidences is not None else np.zeros(n)
        best = int(np.argmax(p)) if p.any() else -1
        for i, label in enumerate(self.labels):
            y = i * row
            length = int(round(float(p[i]) * (size - 100)))
            colour = (80, 200, 80) if i == best and label != "none" else (150, 150, 150)
            cv2.rectangle(img, (96, y + 3), (96 + length, y + row - 3), colour, -1)
            cv2.putText(img, label, (2, y + row - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.38, (220, 220, 220), 1, cv2.LINE_AA)
        return img

    def close(self) -> None:
        if self._opened and not self.closed_by_user:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        self._opened = False

    def result(self) -> dict[str, Any]:
        return {"view_frames": self.frames_drawn, "window": self.window, "window_frames": self.frames_shown,
                "closed_by_user": self.closed_by_user}


@dataclass(frozen=True)
class _EventsTap:
    board: GestureBoard

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "dvs":
            raise ValueError(f"gesture view: the events tap expects a DVS stream, got {spec.describe()}")
        return spec

    def init(self, spec: StreamSpec) -> GestureBoard:
        self.board.set_sensor(int(spec.shape[0]), int(spec.shape[1]))
        return self.board

    def step(self, board: GestureBoard, packet: Packet) -> tuple[GestureBoard, list[Packet]]:
        ev = packet.events
        if ev.shape[0]:
            p = ev["p"]
            np.add.at(board.on, (ev["y"][p], ev["x"][p]), 1)
            np.add.at(board.off, (ev["y"][~p], ev["x"][~p]), 1)
        board.t_us = max(board.t_us, int(packet.t_end_us))
        board.maybe_draw()
        return board, []

    def finish(self, board: GestureBoard) -> list[Packet]:
        board.draw()
        board.close()
        return []

    def result(self, board: GestureBoard) -> dict[str, Any]:
        return board.result()


@dataclass(frozen=True)
class _AttentionTap:
    board: GestureBoard

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        if spec.kind != "spike" or tuple(spec.shape[1:]) != (INPUT_PX, INPUT_PX):
            raise ValueError(f"gesture view: the attention tap expects the (C, {INPUT_PX}, {INPUT_PX}) network "
                             f"input, got {spec.describe()}")
        return spec

    def init(self, spec: StreamSpec) -> GestureBoard:
        return self.board

    def step(self, board: GestureBoard, packet: Packet) -> tuple[GestureBoard, list[Packet]]:
        ev = packet.events
        t_end = int(packet.t_end_us)
        if t_end > board.attention_t_us:  # decay to the watermark once per packet, exactly
            board.attention *= math.exp(-(t_end - board.attention_t_us) / board.attention_tau_us)
            board.attention_t_us = t_end
        if ev.shape[0]:
            pos = ev["addr"] % (INPUT_PX * INPUT_PX)
            np.add.at(board.attention.reshape(-1), pos, 1.0)
        return board, []

    def finish(self, board: GestureBoard) -> list[Packet]:
        return []

    def result(self, board: GestureBoard) -> dict[str, Any]:
        return {}


@dataclass(frozen=True)
class _ConfidenceTap:
    board: GestureBoard
    decide: GestureDecision

    def out_spec(self, spec: StreamSpec) -> StreamSpec:
        self.decide.out_spec(spec)
        return spec

    def init(self, spec: StreamSpec) -> Any:
        return self.decide.init(spec)

    def step(self, state: Any, packet: Packet) -> tuple[Any, list[Packet]]:
        state, out = self.decide.step(state, packet)
        board = self.board
        if packet.events.shape[0]:
            board.confidences = state.core.confidences()
        for p in out:
            for e in p.events:
                board.last_decision = (self.decide.labels[int(e["label"])], float(e["score"]), int(e["t"]))
        return state, []

    def finish(self, state: Any) -> list[Packet]:
        return []

    def result(self, state: Any) -> dict[str, Any]:
        return {}  # the decisions are the decision sink's to report


def add_view(g: Graph, board: GestureBoard, *, source: str, network_input: str, network_output: str,
             decision: DecisionConfig) -> None:
    """Attach the three taps of ``board`` to an already built gesture graph (node names as in graphs.gesture)."""
    g.sink("view_events", _EventsTap(board), source)
    g.sink("view_attention", _AttentionTap(board), network_input)
    g.sink("view_confidence", _ConfidenceTap(board, GestureDecision(board.labels, decision)), network_output)
