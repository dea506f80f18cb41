"""Clip specs, clip making (render → emulator → front end), caching, binning."""

from __future__ import annotations

import numpy as np
import pytest

from apps.gesture.dataset import (
    N_ADDR, SPLITS, ClipSet, bin_events, build_split, clip_spec, make_clip,
)
from graphs.gesture import LABELS, front_end
from runtime.events import DVS_EVENT
from runtime.packet import concat_events
from runtime.spec import dvs_spec
from runtime.testing import cut_at, valid_cuts


def test_clip_specs_are_fixed_balanced_and_splits_disjoint():
    a = [clip_spec("train", i) for i in range(27)]
    assert a == [clip_spec("train", i) for i in range(27)]
    assert [s.label for s in a] == list(LABELS) * 3
    seeds = {s: {clip_spec(s, i).seed for i in range(50)} for s in SPLITS}
    assert not (seeds["train"] & seeds["val"]) and not (seeds["train"] & seeds["test"])
    assert len({(s.width, s.height) for s in a}) >= 3  # several sensor sizes
    for s in a:
        if s.width * s.height > 50_000:
            assert s.fps <= 60


def test_bad_split_and_index():
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        clip_spec("dev", 0)
    with pytest.raises(ValueError, match="clip index must be ≥ 0"):
        clip_spec("val", -1)


def test_make_clip_gives_network_input_addresses_equal_to_the_graph_front_end_packet_by_packet():
    spec = next(s for s in (clip_spec("val", i) for i in range(40)) if s.width == 128 and s.label != "none")
    clip = make_clip(spec)
    assert clip.t_us.shape == clip.addr.shape and clip.t_us.shape[0] > 100
    assert np.all(np.diff(clip.t_us) >= 0) and clip.addr.min() >= 0 and clip.addr.max() < N_ADDR
    assert clip.sensor_events > clip.t_us.shape[0]  # 128×128: 4×4 pixels pooled, threshold 4
    # the same events through the front-end stages cut into many packets (as the runtime sees them)
    from apps.gesture.render import render_clip
    from sensors.emulator import emulate_frames

    r = render_clip(spec.label, spec.seed, spec.width, spec.height, fps=spec.fps)
    ev = emulate_frames(r.frames, r.t_us, spec.emulator)
    sensor = dvs_spec(spec.width, spec.height)
    packets = cut_at(ev, valid_cuts(ev["t"])[::97], t_end_us=clip.duration_us)
    s = sensor
    for _, stage in front_end():
        out_spec = stage.out_spec(s)
        state = stage.init(s)
        outs = []
        for p in packets:
            state, o = stage.step(state, p)
            outs.extend(o)
        outs.extend(stage.finish(state))
        packets, s = outs, out_spec
    got = concat_events(packets, s.dtype)
    assert np.array_equal(got["t"], clip.t_us) and np.array_equal(got["addr"], clip.addr)


def test_build_split_caches_and_subsets(tmp_path):
    a = build_split("val", 3, workers=1, cache_dir=tmp_path, start=9)
    files = list(tmp_path.glob("*.npz"))
    assert len(files) == 1
    b = build_split("val", 3, workers=1, cache_dir=tmp_path, start=9)
    assert np.array_equal(a.t_us, b.t_us) and np.array_equal(a.label, b.label)
    assert [LABELS[i] for i in a.label] == [LABELS[i % 9] for i in range(9, 12)]
    c = make_clip(clip_spec("val", 10))
    t, addr = a.events(1)
    assert np.array_equal(t, c.t_us) and np.array_equal(addr, c.addr)
    sub = a.subset([2, 0])
    assert np.array_equal(sub.events(1)[0], a.events(0)[0]) and list(sub.label) == [a.label[2], a.label[0]]
    loaded = ClipSet.load(files[0], "val")
    assert np.array_equal(loaded.offsets, a.offsets)


def _bin_reference(t, addr, bin_us, n_bins):
    out = np.zeros((n_bins, N_ADDR), np.float32)
    for ti, ai in zip(t, addr):
        k = ti // bin_us
        if 0 <= k < n_bins:
            out[k, ai] += 1
    return out


def test_bin_events_matches_reference():
    rng = np.random.default_rng(3)
    t = np.sort(rng.integers(0, 120_000, 500))
    addr = rng.integers(0, N_ADDR, 500)
    assert np.array_equal(bin_events(t, addr, 20_000, 5), _bin_reference(t, addr, 20_000, 5))


def test_empty_clip_set_round_trip(tmp_path):
    cs = build_split("test", 1, workers=1, cache_dir=tmp_path, start=8)  # a `none` clip
    assert LABELS[cs.label[0]] == "none" and cs.offsets.tolist() == [0, cs.t_us.shape[0]]
    assert DVS_EVENT.names == ("x", "y", "t", "p")
