"""Compile (or load from numba's cache) every reader kernel on tiny inputs, so no packet pays for it."""

from __future__ import annotations

import functools

import numpy as np

from runtime.events import DVS_EVENT

from . import aedat4, common, es, evt, pack

__all__ = ["warm_up"]


@functools.cache  # compiled code is process-wide: once is enough
def warm_up() -> None:
    out = np.empty(64, DVS_EVENT)
    tt, ti, tp = np.empty(4, np.int64), np.empty(4, np.uint8), np.empty(4, np.bool_)
    outb = out.view(np.uint8)
    evt.evt2_decode(np.zeros(1, np.uint32), 0, outb, tt, ti, tp, evt.new_state(), 1, 1)
    evt.evt21_decode(np.zeros(1, np.uint64), 0, outb, tt, ti, tp, evt.new_state(), 1, 1, False)
    evt.evt3_decode(np.zeros(1, np.uint16), 0, outb, tt, ti, tp, evt.new_state(), 1, 1)
    es.es_decode(np.zeros(1, np.uint8), 0, out, np.zeros(es.ES_STATE_SIZE, np.int64), False, 1)
    data = np.zeros(16, np.uint8)
    aedat4.walk_packets(data, 0, 0, 0, -1, True, np.zeros(64, np.uint8), outb, 0, np.zeros(4, np.int64),
                        np.zeros(4, np.int64), 1, 1)
    aedat4.lz4_frame_decode(data, 0, 0, data)
    pack.pack_dvs(np.zeros(1, np.int32), np.zeros(1, np.int32), np.zeros(1, np.int64), np.zeros(1, np.bool_), outb)
    common.first_disorder(out["t"][:1], 0)
    common.check_chunk(out["t"][:1], out["x"][:1], out["y"][:1], 0, 1, 1)
    common.first_out_of_bounds(out["x"][:1], 1)
    common.repair_chunk_order(out["t"][:1], np.zeros(1, np.int64), 0)
    common.unwrap_u32(np.zeros(1, np.uint32), np.zeros(1, np.int64), np.array([-1, 0], np.int64))
