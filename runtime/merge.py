"""Fan-in: merge several packet streams into one by timestamp, ties in the declared order of the inputs."""

from __future__ import annotations

import numpy as np

from .packet import Packet

__all__ = ["Merge"]


class Merge:
    """Holds events of each input until every open input's watermark has passed them, then releases them sorted.

    The output watermark is the minimum watermark over inputs that are still open; a closed input no longer holds
    the others back. Which packets arrive first does not change the merged events, only how they are packed.
    """

    def __init__(self, n_ports: int, dtype: np.dtype):
        self.n = n_ports
        self.dtype = dtype
        self._buf: list[list[np.ndarray]] = [[] for _ in range(n_ports)]
        self._wm: list[int | None] = [None] * n_ports
        self._open = [True] * n_ports
        self._released_wm: int | None = None

    def push(self, port: int, packet: Packet) -> list[Packet]:
        if packet.events.shape[0]:
            self._buf[port].append(packet.events)
        self._wm[port] = packet.t_end_us
        return self._release()

    def close(self, port: int) -> list[Packet]:
        self._open[port] = False
        return self._release()

    def _release(self) -> list[Packet]:
        open_wms = [w for w, o in zip(self._wm, self._open) if o]
        if any(w is None for w in open_wms):
            return []
        if open_wms:
            wm = min(open_wms)
        else:
            closed = [w for w in self._wm if w is not None]
            if not closed:
                return []
            wm = max(closed)
        if self._released_wm is not None and wm <= self._released_wm:
            return []
        parts = []
        for port in range(self.n):
            if not self._buf[port]:
                continue
            ev = np.concatenate(self._buf[port]) if len(self._buf[port]) > 1 else self._buf[port][0]
            cut = int(np.searchsorted(ev["t"], wm, "left"))
            if cut:
                parts.append(ev[:cut])
            self._buf[port] = [ev[cut:]] if cut < ev.shape[0] else []
        if parts:
            merged = np.concatenate(parts)
            # stable sort keeps port order among equal timestamps, as the parts are concatenated in port order
            merged = merged[np.argsort(merged["t"], kind="stable")]
        else:
            merged = np.empty(0, dtype=self.dtype)
        merged.flags.writeable = False
        self._released_wm = wm
        return [Packet(merged, wm)]
