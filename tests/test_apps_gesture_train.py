"""Trainer pieces: label-honest symmetries, per-bin targets, the runtime's gates on events, and a tiny end-to-end
run that writes a loadable network file and a confusion-matrix PNG."""

from __future__ import annotations

import itertools
import json

import numpy as np
import pytest

from apps.gesture.model import from_network_file
from apps.gesture.train import Batcher, dihedral, gate_mask, main
from graphs.gesture import DVS_GESTURE_LABELS, INPUT_PX, LABELS, default_gates, load_network_file
from runtime.engine.gates import SpatialGate, TemporalGate
from runtime.events import SPIKE_EVENT
from runtime.spec import spike_spec
from runtime.testing import cut_at, run_stage

HW = INPUT_PX * INPUT_PX


def _path_events(xs, ys):
    """One ON event per point of a path, 10 ms apart."""
    x = np.round(np.asarray(xs)).astype(np.int64)
    y = np.round(np.asarray(ys)).astype(np.int64)
    return np.arange(x.shape[0]) * 10_000, HW + y * INPUT_PX + x


def _motion(x, y):
    """('swipe', direction) or ('circle', +1 clockwise on screen / -1)."""
    dx, dy = x[-1] - x[0], y[-1] - y[0]
    if abs(dx) + abs(dy) > 8:
        return ("swipe_right" if dx > 0 else "swipe_left") if abs(dx) > abs(dy) else \
            ("swipe_down" if dy > 0 else "swipe_up")
    ang = np.unwrap(np.arctan2(y - y.mean(), x - x.mean()))
    return "circle_cw" if ang[-1] > ang[0] else "circle_ccw"


@pytest.mark.parametrize("flips", list(itertools.product([False, True], repeat=3)))
def test_symmetries_move_the_events_the_way_the_new_label_says(flips):
    s = np.linspace(0, 1, 40)
    paths = {
        "swipe_right": (4 + 24 * s, np.full_like(s, 10.0)),
        "swipe_up": (np.full_like(s, 20.0), 28 - 24 * s),
        "circle_cw": (16 + 8 * np.cos(2 * np.pi * s), 16 + 8 * np.sin(2 * np.pi * s)),
    }
    for name, (xs, ys) in paths.items():
        _, addr = _path_events(xs, ys)
        p, x, y, label = dihedral(addr, LABELS.index(name), *flips)
        assert np.all(p == 1)
        assert _motion(x.astype(float), y.astype(float)) == LABELS[label]
    _, addr = _path_events([16, 17], [16, 16])
    for keep in ("zoom_in", "zoom_out", "none"):
        assert LABELS[dihedral(addr, LABELS.index(keep), *flips)[3]] == keep


def test_targets_are_none_before_the_gesture_and_the_label_from_40_percent_of_it():
    b = Batcher(None, 20_000, 2_000_000)
    tgt = b.targets(LABELS.index("zoom_in"), 400_000, 900_000)
    assert np.all(tgt[:20] == LABELS.index("none"))
    assert np.all(tgt[20:30] == -1)  # 400–600 ms: too early to ask for the label
    assert np.all(tgt[30:60] == LABELS.index("zoom_in"))  # 600 ms .. offset + 300 ms
    assert np.all(tgt[60:] == -1)
    assert np.all(b.targets(LABELS.index("none"), 0, 2_000_000) == LABELS.index("none"))
    # a DVS128 Gesture sample is one gesture throughout: its label from a fixed time after the onset, none last
    d = Batcher(None, 20_000, 2_000_000, labels=DVS_GESTURE_LABELS, label_from_us=100_000)
    tgt = d.targets(DVS_GESTURE_LABELS.index("arm_roll"), 0, 1_500_000)
    assert np.all(tgt[:5] == -1) and np.all(tgt[5:90] == DVS_GESTURE_LABELS.index("arm_roll"))
    assert np.all(tgt[90:] == -1)
    assert np.all(d.targets(11, 0, 2_000_000) == 11) and DVS_GESTURE_LABELS[11] == "none"


def test_gate_mask_equals_the_runtime_gate_stages():
    rng = np.random.default_rng(5)
    n = 4000
    t = np.sort(rng.integers(0, 1_000_000, n))
    hot = rng.random(n) < 0.6  # a busy corner and sparse noise elsewhere
    x = np.where(hot, rng.integers(0, 8, n), rng.integers(0, 32, n))
    y = np.where(hot, rng.integers(0, 8, n), rng.integers(0, 32, n))
    addr = (rng.integers(0, 2, n) * HW + y * INPUT_PX + x).astype(np.int32)
    gates = (SpatialGate(8, 50_000.0, 1.0, 1.5), TemporalGate(10_000, 4))
    keep = gate_mask(gates, t, addr)
    ev = np.empty(n, SPIKE_EVENT)
    ev["t"], ev["addr"] = t, addr
    spec = spike_spec((2, INPUT_PX, INPUT_PX))
    packets = cut_at(ev, [], t_end_us=1_000_000)
    for g in gates:
        out, _, packets = run_stage(g, spec, packets)
    assert 0.2 < keep.mean() < 0.95
    assert np.array_equal(ev[keep], out)


def test_tiny_training_run_writes_a_loadable_network_file(tmp_path):
    out = tmp_path / "net"
    png = tmp_path / "conf.png"
    rc = main(["--out", str(out), "--confusion", str(png), "--data-dir", str(tmp_path / "data"),
               "--train-clips", "9", "--val-clips", "6", "--calib-clips", "9", "--test-clips", "9", "--epochs", "1",
               "--batch", "9",
               "--workers", "1", "--clip-us", "1000000", "--channels", "4", "8", "12", "--input-gain-ref", "300",
               "--temporal-gate-min", "6", "--channel-gates", "conv3", "--gate-keep", "0.6", "--gate-tau-ms", "80",
               "--quiet"])
    assert rc == 0 and png.is_file()
    # the 6 epoch-picking val clips are the first of the 9 calibration clips: one val set is rendered, not two
    assert sorted(p.name.split("_")[1] for p in (tmp_path / "data").rglob("val_*")) == ["9"]
    net = load_network_file(out)
    convs = [layer for layer in net.network().layers if layer.name.startswith("conv")]
    assert [layer.weight.shape[0] for layer in convs] == [4, 8, 12]  # --channels sets the conv widths
    gain = net.network().input_gain  # 300 events per 50 ms bin: 6000 events/s get gain 1
    assert gain is not None and gain.ref_rate_hz == pytest.approx(6000.0) and gain.tau_us == 500_000.0
    model, _ = from_network_file(out)
    assert model.cfg.gain_ref == pytest.approx(300.0)  # the training framework reads the same gain back
    assert net.labels == LABELS and [type(g).__name__ for g in net.gates] == ["SpatialGate", "TemporalGate"]
    # --channel-gates: a trained channel gate on conv3 in the file, read back by both sides, off when gates are off
    assert net.channel_gated == ("conv3",) and model.cfg.channel_gates == ("conv3",)
    gate = net.network().layer("conv3").channel_gate
    assert gate.tau_us == 80_000.0 and np.array_equal(gate.bias, model.gate_b["conv3"].detach().numpy())
    assert all(layer.channel_gate is None for layer in net.network(channel_gates=False).layers if hasattr(layer, "channel_gate"))
    meta = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert set(meta["decision"]) >= {"p_on", "p_off", "beta", "none_bias", "tau_us"}
    tf = meta["metrics"]["train_framework"]
    assert set(tf) == {"gates_on", "gates_off", "val_accuracy"} and len(tf["gates_on"]["confusion"]) == 9
    assert default_gates()[0].rel_threshold == net.gates[0].rel_threshold
    assert net.gates[1].min_events == 6 != default_gates()[1].min_events  # --temporal-gate-min reaches the file
    # the default: the motion stage before the network, 4 directions in an OFF and an ON bank, two delay lines
    assert net.motion is not None and (net.motion.n_dir, net.motion.polarity, net.motion.channels) == (4, 1, 8)
    assert net.network().input_shape == (16, INPUT_PX, INPUT_PX)
    assert meta["decision_learned"]["p_on"] == 0.7  # the learned gain and prior, kept before calibration

    # --recalibrate: same weights, the decision chosen again from the learned settings, the file still loads
    npz = out.with_suffix(".npz").read_bytes()
    png.unlink()
    rc = main(["--out", str(out), "--confusion", str(png), "--data-dir", str(tmp_path / "data"), "--calib-clips", "9",
               "--test-clips", "9", "--workers", "1", "--clip-us", "1000000", "--recalibrate", "--quiet"])
    assert rc == 0 and png.is_file() and out.with_suffix(".npz").read_bytes() == npz
    again = json.loads(out.with_suffix(".json").read_text())["meta"]
    assert again["decision"] == meta["decision"] and again["decision_learned"] == meta["decision_learned"]
    assert again["metrics"]["recalibrated"] == {"val_clips": 9, "test_clips": 9}
    assert again["metrics"]["history"] == meta["metrics"]["history"]
    load_network_file(out)


def test_batcher_feeds_the_motion_stage_output_on_its_direction_channels():
    from apps.gesture.dataset import ClipSet, bin_events
    from graphs.motion import MotionDirections, directions_of

    rng = np.random.default_rng(3)
    n = 2000
    t = np.sort(rng.integers(0, 400_000, n)).astype(np.int64)
    addr = rng.integers(0, 2 * INPUT_PX * INPUT_PX, n).astype(np.int32)
    clips = ClipSet("x", t, addr, np.array([0, n]), np.array([0], np.int8), np.array([50_000]), np.array([300_000]),
                    np.array([400_000]), np.array([32]), np.array([32]), np.array([30.0], np.float32),
                    np.array([n]))
    motion = MotionDirections(4)
    b = Batcher(clips, 50_000, 400_000, gates=(), motion=motion)
    x, _, _, _, _ = b.batch([0], None, gate_prob=0.0)
    assert x.shape == (8, 1, 4, INPUT_PX, INPUT_PX)
    mt, ma = directions_of(motion, t, addr, INPUT_PX)
    assert 0 < mt.shape[0] < n
    assert np.array_equal(x[:, 0].reshape(8, -1), bin_events(mt, ma, 50_000, 8, 4 * INPUT_PX * INPUT_PX))


def test_batches_made_on_threads_equal_batches_made_in_order():
    """The random draws (augmentation, gate choice) stay in the calling thread in a fixed order; only the
    deterministic gates and motion stage run on the threads, so a batch is the same whatever the thread count."""
    from apps.gesture.dataset import ClipSet
    from graphs.motion import MotionDirections

    rng = np.random.default_rng(4)
    lens = rng.integers(500, 3000, 12)
    ts, addrs = [], []
    for n in lens:
        ts.append(np.sort(rng.integers(0, 2_000_000, n)).astype(np.int64))
        addrs.append(rng.integers(0, 2 * HW, n).astype(np.int32))
    k = len(lens)
    clips = ClipSet("x", np.concatenate(ts), np.concatenate(addrs), np.concatenate([[0], np.cumsum(lens)]),
                    (np.arange(k) % len(LABELS)).astype(np.int8), np.full(k, 500_000), np.full(k, 1_300_000),
                    np.full(k, 2_000_000), np.full(k, 32), np.full(k, 32), np.full(k, 30.0, np.float32), lens)
    made = []
    for threads in (1, 2, 3):
        b = Batcher(clips, 50_000, 2_000_000, gates=default_gates(), motion=MotionDirections(4, polarity=1),
                    threads=threads)
        draw = np.random.default_rng(9)
        made.append([b.batch(idx, draw, gate_prob=0.5) for idx in ([0, 3, 5, 7, 9, 11], [1, 2, 4, 6, 8, 10])])
    for other in made[1:]:
        for got, want in zip(other, made[0]):
            assert all(np.array_equal(g, w) for g, w in zip(got, want))
    x = made[0][0][0]
    assert x.shape == (40, 6, 8, INPUT_PX, INPUT_PX) and x.sum() > 0


def test_decision_calibration_finds_evidence_settings_that_answer_more_clips_right():
    """Clips of two labels: swipe_left's neuron fires 6 spikes in a burst, zoom_in's only 2. With the learned gain
    and `none` prior only a threshold can be chosen, and the zoom clips end as `none`; searching the gain, the
    prior and the trace's time constant too recovers them without turning the `none` clips into gestures."""
    from apps.gesture.train import calibrate_decision
    from graphs.gesture_decision import DecisionConfig

    rng = np.random.default_rng(3)
    left, zoom, none = LABELS.index("swipe_left"), LABELS.index("zoom_in"), LABELS.index("none")
    counts, labels = [], []
    for i in range(60):
        c = np.zeros((40, len(LABELS)))
        y = (left, zoom, none)[i % 3]
        if y != none:
            at = rng.integers(5, 30)
            c[at:at + (6 if y == left else 2), y] = 1
        c[rng.integers(0, 40), rng.integers(0, len(LABELS))] += 1  # one stray spike per clip
        counts.append(c)
        labels.append(y)
    base = DecisionConfig(beta=0.6, none_bias=3.0)
    plain, acc_plain = calibrate_decision(counts, np.array(labels), 50_000, base, evidence=False)
    tuned, acc_tuned = calibrate_decision(counts, np.array(labels), 50_000, base)
    assert (plain.beta, plain.none_bias, plain.tau_us) == (base.beta, base.none_bias, base.tau_us)
    assert acc_plain < 0.8  # the zoom clips are lost
    assert acc_tuned > acc_plain + 0.2
    # less evidence is needed against `none`: two zoom spikes alone are a decision now, not before
    from apps.gesture.train import clip_answers
    lone = np.zeros((1, 40, len(LABELS)))
    lone[0, 10:12, zoom] = 1
    assert clip_answers(lone, 50_000, base)[0] == none
    assert clip_answers(lone, 50_000, tuned)[0] == zoom
    # the grid split over processes finds the same setting, ties kept in grid order (many settings tie here)
    for workers in (2, 3):
        assert calibrate_decision(counts, np.array(labels), 50_000, base, workers=workers) == (tuned, acc_tuned)


def test_parallel_decision_search_takes_a_later_parts_better_setting_and_keeps_grid_order_on_ties():
    """Swipe clips with strong evidence and `none` clips with one stray burst: thresholds from p_on 0.4 up
    answer every clip, lower ones answer the strays too. Split over 2 or 3 processes, the search returns the first
    of the tied settings (p_on 0.4: in the second part, or inside the middle one) as one process does."""
    from apps.gesture.train import P_ON_GRID, calibrate_decision
    from graphs.gesture_decision import DecisionConfig

    rng = np.random.default_rng(4)
    left, none = LABELS.index("swipe_left"), LABELS.index("none")
    counts, labels = [], []
    for i in range(40):
        c = np.zeros((40, len(LABELS)))
        if i % 2 == 0:
            c[10:20, left] = 2
            labels.append(left)
        else:
            c[rng.integers(0, 40), rng.integers(0, 8)] += 3
            labels.append(none)
        counts.append(c)
    base = DecisionConfig(beta=0.6, none_bias=1.0)
    one = calibrate_decision(counts, np.array(labels), 50_000, base, evidence=False)
    assert one[1] == 1.0 and one[0].p_on == 0.4 and P_ON_GRID.index(0.4) == 5
    for workers in (2, 3):
        assert calibrate_decision(counts, np.array(labels), 50_000, base, evidence=False, workers=workers) == one


def test_clip_answers_equal_the_sink_rule_clip_by_clip():
    """The calibrator's vectorised rule against its slow twin: ``decide_counts`` (the sink's own DecisionCore) and
    ``clip_answer``, on random sparse output counts, with and without re-emission."""
    from apps.gesture.train import clip_answers
    from graphs.gesture_decision import DecisionConfig, clip_answer, decide_counts

    rng = np.random.default_rng(7)
    counts = (rng.random((300, 40, len(LABELS))) < 0.06) * rng.integers(1, 4, (300, 40, len(LABELS)))
    counts[:50] = 0  # silent clips
    for cfg in (DecisionConfig(), DecisionConfig(tau_us=400_000, beta=0.5, none_bias=1.0, p_on=0.4, p_off=0.15,
                                                 rise=0.05),
                DecisionConfig(tau_us=100_000, beta=1.3, none_bias=3.0, p_on=0.6, p_off=0.35, rise=0.1)):
        fast = clip_answers(counts.astype(np.float64), 50_000, cfg)
        slow = [LABELS.index(clip_answer(decide_counts(c, 50_000, LABELS, cfg))) for c in counts]
        assert fast.tolist() == slow
        assert len(set(slow)) > 3  # the clips do not all end the same way


def test_calibration_chooses_a_rise_where_a_gesture_grows_past_an_early_burst():
    """A circle's first quarter looks like a swipe: here a burst on swipe_up's neuron comes first, then circle_cw's
    neuron fires steadily. Without re-emission the burst's decision outscores the circle's (crossing the threshold
    gradually, it is emitted just above it); with a rise the circle's growing confidence is reported and wins."""
    from apps.gesture.train import calibrate_decision, clip_answers
    from graphs.gesture_decision import DecisionConfig

    up, cw = LABELS.index("swipe_up"), LABELS.index("circle_cw")
    counts, labels = [], []
    for i in range(40):
        c = np.zeros((40, len(LABELS)))
        if i % 2:
            c[4 + i % 5, up] = 4  # a burst ...
            c[8 + i % 5:34, cw] = 1  # ... then the circle
            labels.append(cw)
        else:
            c[4 + i % 5, up] = 4
            labels.append(up)
        counts.append(c)
    base = DecisionConfig(beta=1.0, none_bias=1.0)
    stacked = np.stack(counts)
    tuned, acc = calibrate_decision(counts, np.array(labels), 50_000, base)
    assert acc == 1.0 and tuned.rise > 0
    for rise in (0.0,):
        cfg = DecisionConfig(tau_us=tuned.tau_us, beta=tuned.beta, none_bias=tuned.none_bias, p_on=tuned.p_on,
                             p_off=tuned.p_off, rise=rise)
        assert (clip_answers(stacked, 50_000, cfg) == np.array(labels)).mean() < 1.0


def test_label_weights_scale_each_bins_and_clips_share_of_the_loss():
    """A batch of one zoom_in clip and one none clip: weighing zoom_in by 3 leaves the none clip's loss as it was
    and multiplies the zoom clip's by 3 (both the per-bin and the per-clip terms); all-ones weights change
    nothing. Bad specifications are refused by name."""
    import torch

    from apps.gesture.train import _loss, label_weights

    torch.manual_seed(0)
    zoom, none = LABELS.index("zoom_in"), LABELS.index("none")
    out = torch.rand(20, 2, len(LABELS)) * 3
    tgt = np.full((20, 2), none, np.int64)
    tgt[:5, 0] = -1  # bins the loss ignores
    tgt[5:15, 0] = zoom
    labels = np.array([zoom, none])
    beta, nb = torch.tensor(0.5), torch.tensor(1.0)

    def loss(w, cols):
        return float(_loss(out[:, cols], tgt[:, cols], labels[cols], beta, nb, 200_000, 50_000, 1.0, w))

    assert loss(None, [0, 1]) == pytest.approx(loss([1.0] * len(LABELS), [0, 1]), rel=1e-6)
    w = label_weights(["zoom_in=3"])
    assert w[zoom] == 3.0 and w[none] == 1.0 and sum(w) == len(LABELS) + 2
    # the zoom clip's bins: 10 of its 15 valid ones are zoom_in, the rest none
    zoom_bins = _loss(out[:, [0]], np.where(tgt[:, [0]] == zoom, zoom, -1), labels[[0]], beta, nb, 200_000, 50_000,
                      0.0, None)
    assert loss(w, [1]) == pytest.approx(loss(None, [1]), rel=1e-6)
    # extra: 2 × the zoom bins' ce over the clip's 15 valid bins (4/3 × their mean over 10), plus 2 × the clip term
    assert loss(w, [0]) > loss(None, [0]) + float(zoom_bins)
    for bad in (["zoom"], ["zoom_in=x"], ["zoom_in=0"], ["zoom_in"]):
        with pytest.raises(SystemExit, match="--label-weight"):
            label_weights(bad)
    assert label_weights([]) is None


def test_weight_average_follows_the_ema_rule_and_swap_restores_the_live_weights():
    """Against a plain-python twin of a ← d_k·a + (1 − d_k)·p with d_k = min(d, (1 + k) / (10 + k)); swap puts
    the average in the model and a second swap gives the live weights back unchanged."""
    import torch

    from apps.training.averaging import WeightAverage

    torch.manual_seed(1)
    p = torch.nn.Parameter(torch.randn(5))
    ema = WeightAverage([p], 0.9)
    twin = p.detach().numpy().astype(np.float64).copy()
    for k in range(40):
        with torch.no_grad():
            p.add_(torch.randn(5))
        ema.update()
        d = min(0.9, (1 + k) / (10 + k))
        twin = d * twin + (1 - d) * p.detach().numpy()
    live = p.detach().clone()
    ema.swap()
    assert np.allclose(p.detach().numpy(), twin, rtol=1e-5, atol=1e-5)
    assert not torch.equal(p.detach(), live)
    ema.swap()
    assert torch.equal(p.detach(), live)
    with pytest.raises(SystemExit, match="--ema"):
        main(["--ema", "1.0", "--out", "/nonexistent/x", "--train-clips", "1", "--quiet"])


def _conv3_gated_pair(seed: int):
    """A small model with a conv3 channel gate and busy layers, and one random input as a gated and an ungated
    sample: (model, x (T, 2, ...), gates_on [True, False])."""
    import torch

    from apps.gesture.model import GestureSNN, ModelConfig

    torch.manual_seed(seed)
    m = GestureSNN(ModelConfig(c1=4, c2=8, c3=8, hidden=16, bin_us=10_000, pool=2, c3_stride=1,
                               channel_gates=("conv3",)))
    with torch.no_grad():
        for p in (m.conv1.weight, m.conv2.weight, m.conv3.weight, m.fc1.weight):
            p.mul_(3.0)
    one = torch.poisson(torch.full((20, 1, 2, INPUT_PX, INPUT_PX), 0.4))
    return m, torch.cat([one, one], dim=1), torch.tensor([True, False])


def test_ops_penalty_asks_the_gates_to_save_work():
    """The same input as a gated and an ungated sample: a conv3 gate that keeps everything leaves the ops ratio at
    1 (penalty (1 - 0.5)²); one that drops every conv3 spike removes the hidden layer's input ops, the ratio falls
    and so does the penalty, to 0 once the ratio is under the target."""
    import torch

    from apps.gesture.train import _ops_penalty, sample_ops

    m, x, on = _conv3_gated_pair(0)
    results = []
    for bias in (5.0, -5.0):
        with torch.no_grad():
            m.gate_b["conv3"].fill_(bias)
            m.gate_w["conv3"].zero_()
            out, rec = m(x, record=True, gates_on=on)
            ops = sample_ops(m, x, rec)
            results.append((float(ops[0] / ops[1]), float(_ops_penalty(m, x, rec, on, 0.5))))
        assert rec[2].sum() > 0  # conv3 spikes, so the gate has something to drop
    (keep_ratio, keep_pen), (drop_ratio, drop_pen) = results
    assert keep_ratio == pytest.approx(1.0) and keep_pen == pytest.approx(0.25)
    assert drop_ratio < keep_ratio and drop_pen < keep_pen


def test_gate_penalty_to_gates_trains_the_weights_on_the_task_alone():
    """``backward(task, penalty, only=gates)``: every weight gets exactly the task's gradient, each gate parameter
    the task's plus the penalty's; without ``only`` the penalty reaches the weights too."""
    import torch

    from apps.gesture.train import _ops_penalty, backward, sample_ops

    m, x, on = _conv3_gated_pair(1)
    gates = [*m.gate_w.values(), *m.gate_b.values()]
    weights = [p for p in m.parameters() if all(p is not g for g in gates)]

    def grads(part):
        m.zero_grad(set_to_none=True)
        out, rec = m(x, record=True, gates_on=on)
        task, pen = out.square().mean(), 10.0 * _ops_penalty(m, x, rec, on, 0.3)
        assert float(pen.detach()) > 0 and float(sample_ops(m, x, rec)[1].detach()) > 0
        {"task": lambda: task.backward(), "pen": lambda: pen.backward(), "routed": lambda: backward(task, pen, gates),
         "all": lambda: backward(task, pen)}[part]()
        return [None if p.grad is None else p.grad.clone() for p in m.parameters()]

    task, pen, routed, both = grads("task"), grads("pen"), grads("routed"), grads("all")
    z = lambda g, p: torch.zeros_like(p) if g is None else g  # noqa: E731
    params = list(m.parameters())
    for i, p in enumerate(params):
        if any(p is g for g in gates):
            assert torch.allclose(z(routed[i], p), z(task[i], p) + z(pen[i], p), atol=1e-6)
        else:
            assert torch.allclose(z(routed[i], p), z(task[i], p), atol=1e-6)
    # the penalty has a gradient on the weights (so routing it away changes something) and "all" keeps it
    moved = [i for i, p in enumerate(params) if all(p is not g for g in gates) and z(pen[i], p).abs().sum() > 0]
    assert moved and all(torch.allclose(z(both[i], params[i]), z(task[i], params[i]) + z(pen[i], params[i]),
                                        atol=1e-6) for i in moved)
    assert len(weights) == len(params) - 2


def test_init_copies_a_network_files_parameters_and_refuses_other_sizes(tmp_path):
    """``--init``: the parameters of a written network file, exactly; channel gates the file lacks keep their fresh
    values; a model of other layer sizes is refused with the parameter named."""
    import torch

    from apps.gesture.model import GestureSNN, ModelConfig
    from apps.gesture.train import init_from

    src = GestureSNN(ModelConfig(c1=4, c2=8, c3=12, hidden=16, channel_gates=("conv3",)))
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))
    out = tmp_path / "net"
    _write(src, out)
    dst = GestureSNN(ModelConfig(c1=4, c2=8, c3=12, hidden=16, channel_gates=("conv2", "conv3")))
    fresh_b = dst.gate_b["conv2"].detach().clone()
    dec = init_from(dst, out.with_suffix(".json"))
    for k, v in src.state_dict().items():
        assert torch.allclose(dst.state_dict()[k], v), k
    assert torch.equal(dst.gate_b["conv2"].detach(), fresh_b)
    assert dec.p_on == 0.33
    with pytest.raises(SystemExit, match="conv3.weight") as e:
        init_from(GestureSNN(ModelConfig(c1=4, c2=8, c3=10, hidden=16)), out.with_suffix(".json"))
    assert "(12, 8, 3, 3)" in str(e.value) and "(10, 8, 3, 3)" in str(e.value)
    with pytest.raises(SystemExit, match="missing.json"):
        init_from(dst, tmp_path / "missing.json")


def test_gate_penalty_to_gates_needs_channel_gates(tmp_path):
    with pytest.raises(SystemExit, match="--gate-penalty-to gates: expected --channel-gates"):
        main(["--out", str(tmp_path / "net"), "--data-dir", str(tmp_path / "data"), "--train-clips", "1",
              "--gate-penalty-to", "gates", "--quiet"])


def test_gain_start_spread_and_calib_streams_are_checked(tmp_path):
    base = ["--out", str(tmp_path / "net"), "--data-dir", str(tmp_path / "data"), "--train-clips", "1", "--quiet"]
    with pytest.raises(SystemExit, match=r"--gain-start-spread: expected a spread in \[0, 20\)"):
        main(base + ["--gain-start-spread", "-1"])
    with pytest.raises(SystemExit, match="--gain-start-spread: expected an input gain"):
        main(base + ["--gain-start-spread", "1", "--input-gain-ref", "0"])
    with pytest.raises(SystemExit, match=r"--calib-streams: expected clips per stream ≥ 0 .* got -2"):
        main(base + ["--calib-streams", "-2"])


def _write(model, out):
    """A network file of ``model`` written as the trainer writes it, with a learned decision of p_on 0.33."""
    from apps.gesture.decision import DecisionConfig
    from apps.gesture.model import gain_of, to_arrays
    from graphs.gesture import topology
    from graphs.network import save_network

    cfg = model.cfg
    arrays = to_arrays(model)
    topo = topology(arrays.pop("tau_us"), bin_us=cfg.bin_us, channels=(cfg.c1, cfg.c2, cfg.c3), hidden=cfg.hidden,
                    conv3_stride=cfg.c3_stride, pool=cfg.pool, input_gain=gain_of(cfg),
                    channel_gates={n: cfg.gate_tau_us for n in cfg.channel_gates},
                    meta={"decision_learned": DecisionConfig(p_on=0.33, p_off=0.2).to_dict()})
    save_network(topo, out, arrays)


def test_stream_answers_equal_the_sink_rule_on_clips_back_to_back():
    """The vectorised back-to-back rule against its slow twin: one ``decide_counts`` sink over the concatenated
    clips (no reset), each clip answered by ``clip_answer`` from the decisions made during its own bins; a last
    stream shorter than the others included."""
    from apps.gesture.train import stream_answers
    from graphs.gesture_decision import DecisionConfig, clip_answer, decide_counts

    rng = np.random.default_rng(8)
    n, n_bins, bin_us = 62, 40, 50_000
    counts = ((rng.random((n, n_bins, len(LABELS))) < 0.05) * rng.integers(1, 4, (n, n_bins, len(LABELS)))).astype(float)
    counts[::7] = 0  # silent clips
    for run in (1, 4, 6):
        for cfg in (DecisionConfig(), DecisionConfig(tau_us=1_600_000, beta=0.3, none_bias=1.5, p_on=0.15,
                                                     p_off=0.05, rise=0.1)):
            fast = stream_answers(counts, bin_us, cfg, run)
            slow = []
            for s0 in range(0, n, run):
                joined = np.concatenate(list(counts[s0:s0 + run]))
                dec = decide_counts(joined, bin_us, LABELS, cfg)
                for j in range(min(run, n - s0)):
                    a, b = j * n_bins * bin_us, (j + 1) * n_bins * bin_us
                    slow.append(LABELS.index(clip_answer([d for d in dec if a <= d["t_us"] < b])))
            assert fast.tolist() == slow
            assert len(set(slow)) > 3
    # streams of one are the clips alone
    from apps.gesture.train import clip_answers

    assert stream_answers(counts, bin_us, DecisionConfig(), 1).tolist() == clip_answers(counts, bin_us, DecisionConfig()).tolist()


def test_calibration_with_streams_keeps_one_gesture_from_outvoting_the_next():
    """Slow gestures (one spike every 150 ms to the clip's end), left and right alternating. Alone, the first
    setting of the grid that answers every clip has a short trace and a low threshold; back to back, what a
    gesture left in the sink then decides the next clip wrongly. With streams breaking the ties between settings
    that answer every clip alone, the search picks one that answers every clip both ways."""
    from apps.gesture.train import calibrate_decision, clip_answers, stream_answers
    from graphs.gesture_decision import DecisionConfig

    left, right, none = LABELS.index("swipe_left"), LABELS.index("swipe_right"), LABELS.index("none")
    rng = np.random.default_rng(5)
    counts, labels = [], []
    for i in range(60):
        c = np.zeros((40, len(LABELS)))
        y = (left, right, none)[i % 3] if i % 2 == 0 else (right, left, none)[i % 3]
        if y != none:
            c[rng.integers(2, 12):40:3, y] = 1
        counts.append(c)
        labels.append(y)
    labels = np.array(labels)
    stacked = np.stack(counts)
    base = DecisionConfig(beta=0.6, none_bias=2.0)

    def both(cfg):
        return ((clip_answers(stacked, 50_000, cfg) == labels).mean(),
                (stream_answers(stacked, 50_000, cfg, 6) == labels).mean())

    alone, score_alone = calibrate_decision(counts, labels, 50_000, base)
    tuned, score = calibrate_decision(counts, labels, 50_000, base, streams=6)
    assert score_alone == 1.0 and both(alone)[0] == 1.0 and both(alone)[1] < 0.8
    assert both(tuned) == (1.0, 1.0) and score == 1.0
    assert tuned != alone
