"""Every numba kernel of the SNN engine against a slow, obviously-correct pure-Python twin."""

from __future__ import annotations

import math

import numpy as np
import pytest

from runtime.engine import Conv2d, Flatten, Linear, Network, Neuron, SumPool2d
from runtime.engine.kernels import gates as gk
from runtime.engine.kernels import snn as sk

# ---------------------------------------------------------------- slow twin of run_chain


def _targets(layer, s_in, s_out, a):
    """(neuron flat index in C order, weight) pairs reached by input address ``a``: brute force over outputs."""
    if isinstance(layer, Linear):
        return [(o, float(layer.weight[o, a])) for o in range(layer.weight.shape[0])]
    c_in, h_in, w_in = s_in
    c, rem = divmod(a, h_in * w_in)
    y, x = divmod(rem, w_in)
    oc, oh, ow = s_out
    out = []
    if isinstance(layer, Conv2d):
        kh, kw = layer.weight.shape[2:]
        (sh, sw), (ph, pw) = layer.stride, layer.padding
    else:
        kh, kw = layer.kernel_size
        (sh, sw), (ph, pw) = layer.stride, (0, 0)
    for oy in range(oh):
        for ox in range(ow):
            ky = y + ph - oy * sh
            kx = x + pw - ox * sw
            if 0 <= ky < kh and 0 <= kx < kw:
                if isinstance(layer, Conv2d):
                    for o in range(oc):
                        out.append((o * oh * ow + oy * ow + ox, float(layer.weight[o, c, ky, kx])))
                else:
                    out.append((c * oh * ow + oy * ow + ox, 1.0))
    return out


def slow_run(net: Network, t, a, wm):
    """Event-driven simulation with per-neuron exact decay, written plainly: returns sorted (t, addr) spikes of the
    last layer, the per-layer potentials (dicts), and per-layer [ops, spikes]."""
    events = sorted(zip((int(x) for x in t), (int(x) for x in a)))
    shapes = net.shapes
    counts = {}
    pots = {}
    for layer, s_in, s_out in zip(net.layers, shapes[:-1], shapes[1:]):
        if isinstance(layer, Flatten):
            continue
        n = layer.neuron
        out = []
        ops = 0
        if n is None:
            for te, ae in events:
                for m, _ in _targets(layer, s_in, s_out, ae):
                    out.append((te + layer.delay_us, m))
            counts[layer.name] = [0, len(out)]
            events = sorted(out)
            continue
        v: dict[int, float] = {}
        tl: dict[int, int] = {}
        ru: dict[int, int] = {}
        rec = getattr(layer, "recurrent_weight", None)
        pending: list[tuple[int, int]] = []
        queue = list(events)
        while True:
            cands = [e[0] for e in queue[:1]] + [p[0] for p in pending if p[0] < wm][:1]
            if not cands:
                break
            tg = min(cands)
            group = sorted(ae for te, ae in queue if te == tg)
            rgroup = sorted(ae for te, ae in pending if te == tg)
            queue = [e for e in queue if e[0] != tg]
            pending = [p for p in pending if p[0] != tg]
            touched = []
            pairs = [p for ae in group for p in _targets(layer, s_in, s_out, ae)]
            pairs += [(to, float(rec[to, fr])) for fr in rgroup for to in range(rec.shape[0])]
            for m, w in pairs:
                if ru.get(m, -(10**18)) > tg:
                    continue
                if n.tau_us is not None and m in tl:
                    v[m] = v.get(m, 0.0) * math.exp(-(tg - tl[m]) / n.tau_us)
                tl[m] = tg
                v[m] = v.get(m, 0.0) + w
                ops += 1
                touched.append(m)
            for m in sorted(set(touched)):
                if v[m] >= n.threshold:
                    if n.reset == "subtract":
                        k = int(v[m] // n.threshold)
                        v[m] -= k * n.threshold
                    else:
                        k = 1
                        v[m] = 0.0
                    if n.refractory_us:
                        ru[m] = tg + n.refractory_us
                    out += [(tg + layer.delay_us, m)] * k
                    if rec is not None:
                        pending += [(tg + layer.recurrent_delay_us, m)] * k
            pending.sort()
        counts[layer.name] = [ops, len(out)]
        pots[layer.name] = (v, tl)
        events = sorted(out)
        wm = wm + layer.delay_us
    return events, pots, counts


def _kernel_run(net: Network, t, a, wm, decay="frame"):
    import dataclasses

    net = dataclasses.replace(net, decay=decay) if decay != net.decay else net
    from runtime import spike_spec

    state = net.init(spike_spec(net.input_shape))
    out = net._run(state, np.asarray(t, np.int64), np.asarray(a, np.int32).copy(), wm)
    return net, state, sorted(zip(out["t"].tolist(), out["addr"].tolist()))


def _stream(rng, n, size, t_max, *, ties=True):
    t = np.sort(rng.integers(0, t_max, n)) if ties else np.sort(rng.choice(t_max, n, replace=False))
    return t.astype(np.int64), rng.integers(0, size, n).astype(np.int32)


@pytest.mark.parametrize("decay", ["frame", "exp", "lut"])
def test_run_chain_matches_slow_twin_lif_conv_pool(decay):
    rng = np.random.default_rng(1)
    layers = [
        Conv2d("c1", rng.normal(0.3, 0.6, (3, 2, 3, 3)), stride=(2, 1), padding=(1, 2),
               neuron=Neuron(1.0, 3000.0, "subtract", refractory_us=400)),
        SumPool2d("p1", (2, 2), neuron=Neuron(2.0, 5000.0, "zero")),
        Flatten("f"),
        Linear("fc", rng.normal(0.2, 0.5, (4, 3 * 1 * 5)), Neuron(0.8, 8000.0)),
    ]
    net = Network(layers, (2, 5, 8), decay="frame")
    t, a = _stream(rng, 300, 2 * 5 * 8, 20_000)
    wm = 20_000
    net, state, spikes = _kernel_run(net, t, a, wm, decay)
    expected, pots, counts = slow_run(net, t, a, wm)
    assert spikes == expected
    assert len(spikes) > 5
    cnt = net.counters(state)
    for name in ("c1", "p1", "fc"):
        assert cnt[f"synaptic_ops.{name}"] == counts[name][0]
        assert cnt[f"spikes.{name}"] == counts[name][1]
    v_slow, tl_slow = pots["c1"]
    v_fast = net.potentials(state, "c1", wm).reshape(-1)
    ref = np.array([v_slow.get(m, 0.0) * math.exp(-(wm - tl_slow.get(m, wm)) / 3000.0) for m in range(v_fast.size)])
    np.testing.assert_allclose(v_fast, ref, rtol=1e-9, atol=1e-12)


def test_run_chain_matches_slow_twin_iaf_recurrent_delays():
    rng = np.random.default_rng(2)
    layers = [
        Linear("a", rng.integers(-2, 4, (6, 10)).astype(float), Neuron(3.0), delay_us=7),
        Linear("b", rng.integers(-2, 4, (5, 6)).astype(float), Neuron(2.0, reset="zero", refractory_us=50),
               recurrent_weight=rng.integers(-1, 3, (5, 5)).astype(float), recurrent_delay_us=13),
    ]
    net = Network(layers, (10,))
    t, a = _stream(rng, 200, 10, 3000)
    wm = 3000
    net, state, spikes = _kernel_run(net, t, a, wm)
    expected, _, counts = slow_run(net, t, a, wm)
    assert spikes == expected
    assert counts["b"][1] > 0
    assert net.counters(state)["synaptic_ops.b"] == counts["b"][0]
    # recurrent spikes at or after the watermark are still pending, not lost
    assert state.q_t.shape[0] == state.q_start[-1]
    assert np.all(state.q_t >= wm + 7)


def test_run_chain_pool_without_neuron_and_stride_3():
    rng = np.random.default_rng(3)
    layers = [SumPool2d("p", (3, 2), stride=(3, 2)), Conv2d("c", rng.normal(0.5, 0.5, (2, 2, 2, 2)), (1, 1),
                                                         neuron=Neuron(1.5))]
    net = Network(layers, (2, 9, 8))
    t, a = _stream(rng, 400, 2 * 9 * 8, 500)
    net, state, spikes = _kernel_run(net, t, a, 500)
    expected, _, counts = slow_run(net, t, a, 500)
    assert spikes == expected
    assert net.counters(state)["spikes.p"] == counts["p"][1] == 400


def test_encode_kernels_match_numpy():
    rng = np.random.default_rng(4)
    n = 500
    x, y, p = rng.integers(0, 13, n), rng.integers(0, 7, n), rng.integers(0, 2, n).astype(bool)
    t = np.sort(rng.integers(0, 10**6, n))
    tt, aa, bad = sk.encode_dvs(x.astype(np.int16), y.astype(np.int16), p, t, 13, 7)
    assert bad == -1
    np.testing.assert_array_equal(aa, p * 7 * 13 + y * 13 + x)
    np.testing.assert_array_equal(tt, t)
    x[17] = 13
    assert sk.encode_dvs(x.astype(np.int16), y.astype(np.int16), p, t, 13, 7)[2] == 17
    tt, aa, bad = sk.encode_audio(x.astype(np.int16) % 13, p, t, 13)
    np.testing.assert_array_equal(aa, p * 13 + x % 13)
    a = rng.integers(0, 50, n).astype(np.int32)
    a[3] = 50
    assert sk.encode_flat(a, t, 50)[2] == 3


def test_fanout_count_matches_brute_force():
    rng = np.random.default_rng(5)
    layers = [Conv2d("c", rng.normal(size=(4, 3, 5, 3)), stride=(2, 3), padding=(2, 1), neuron=Neuron())]
    net = Network(layers, (3, 11, 10))
    seg = [np.empty(64, np.int64) for _ in range(3)]
    for a in range(3 * 11 * 10):
        brute = len(_targets(layers[0], net.shapes[0], net.shapes[1], a))
        assert sk.fanout_count(net._c.desc, 0, a, *seg) == brute
    assert sk.fanout_sum(net._c.desc, 0, np.arange(330, dtype=np.int32)) == sum(
        len(_targets(layers[0], net.shapes[0], net.shapes[1], a)) for a in range(330))


# ---------------------------------------------------------------- gate kernels vs twins


def slow_temporal(t, wm, final, window, min_events, rel, beta, state):
    """state = [next window, ema]."""
    keep = []
    i = 0
    while i < len(t):
        k = t[i] // window
        if (k + 1) * window > wm and not final:
            break
        members = [x for x in t[i:] if x // window == k]
        if state[0] >= 0 and k > state[0]:
            state[1] *= beta ** (k - state[0])
        ok = len(members) >= min_events and len(members) >= rel * state[1]
        keep += [ok] * len(members)
        state[1] = beta * state[1] + (1 - beta) * len(members)
        state[0] = k + 1
        i += len(members)
    return keep


def test_temporal_gate_kernel_matches_twin():
    rng = np.random.default_rng(6)
    t = np.sort(np.concatenate([rng.integers(0, 50_000, 300), rng.integers(20_000, 22_000, 200)])).astype(np.int64)
    wst, fst = np.array([-1], np.int64), np.zeros(3)
    keep = np.empty(t.shape[0], np.bool_)
    k, kept, ops = gk.temporal_gate(t, 30_000, False, 1000, 3, 1.5, 0.9, wst, fst, keep)
    st = [-1, 0.0]
    ref = slow_temporal(t.tolist(), 30_000, False, 1000, 3, 1.5, 0.9, st)
    assert k == len(ref) and np.array_equal(keep[:k], ref) and kept == sum(ref)
    assert 0 < sum(ref) < len(ref)
    hold = [(x // 1000 + 1) * 1000 - x for x, ok in zip(t[:k].tolist(), ref) if ok]
    assert fst[1] == sum(hold) and fst[2] == max(hold)
    k2, _, _ = gk.temporal_gate(t[k:], 50_000, True, 1000, 3, 1.5, 0.9, wst, fst, keep[k:])
    ref2 = slow_temporal(t[k:].tolist(), 50_000, True, 1000, 3, 1.5, 0.9, st)
    assert np.array_equal(keep[k:k + k2], ref2) and k + k2 == t.shape[0]
    assert fst[0] == pytest.approx(st[1])


def test_spatial_gate_kernel_matches_twin():
    rng = np.random.default_rng(7)
    n = 400
    t = np.sort(rng.integers(0, 100_000, n)).astype(np.int64)
    tile = np.where(rng.random(n) < 0.7, 3, rng.integers(0, 12, n)).astype(np.int64)
    tw = rng.uniform(0.5, 1.5, 12)
    act, fst = np.zeros(12), np.zeros(2)
    keep = np.empty(n, np.bool_)
    kept, ops = gk.spatial_gate(t, tile, 5000.0, 0.8, 0.7, tw, act, fst, keep)
    assert kept == keep.sum() and ops == 2 * n
    # twin: traces summed over past and present events with exact decay
    ref = []
    for i in range(n):
        now = t[i]
        past = (t <= now)
        a = np.array([sum(math.exp(-(now - t[j]) / 5000.0) for j in np.flatnonzero(past & (tile == k)))
                      for k in range(12)])
        s = tw[tile[i]] * a[tile[i]]
        ref.append(s >= 0.8 * (1 - 1e-12) and s >= 0.7 * a.sum() / 12 * (1 - 1e-12))
    assert np.array_equal(keep, ref)
    assert 0 < keep.sum() < n
    tiles = gk.tiles_of(np.array([0, 5, 5 * 16 + 9, 2 * 20 * 16 + 19 * 16 + 15], np.int32), 20, 16, 4, 4)
    assert tiles.tolist() == [0, 1, 1 * 4 + 2, 4 * 4 + 3]


def test_kernel_spike_dtype_is_the_runtime_spike_event():
    from runtime import SPIKE_EVENT

    assert sk.SPIKE_DTYPE == SPIKE_EVENT
    ev, extra = sk._pack(np.array([5, 7], np.int64), np.array([1, 2], np.int32), np.array([9], np.int64),
                         np.array([3], np.int32), np.array([0, 1], np.int64), -1)
    assert ev.dtype == SPIKE_EVENT and ev["t"].tolist() == [5, 7] and ev["addr"].tolist() == [1, 2]
    assert extra.tolist() == [-1, 0, 1, 9, 3]


@pytest.mark.parametrize("stride, padding, divide", [((1, 1), (2, 1), False), ((2, 3), (1, 2), False),
                                                     ((3, 1), (0, 0), False), ((2, 3), (1, 2), True)])
def test_fast_conv_path_matches_slow_twin(stride, padding, divide):
    """Conv layers without refractoriness take the direct tap walk (alone and in groups of simultaneous events).
    ``divide``: without the multipliers that replace the address divisions (as for inputs too large for them)."""
    rng = np.random.default_rng(8)
    layers = [Conv2d("c", rng.normal(0.3, 0.6, (5, 2, 5, 3)), stride, padding, Neuron(1.0, 4000.0)),
              Conv2d("d", rng.normal(0.3, 0.6, (3, 5, 2, 2)), (1, 1), (0, 0), Neuron(1.2, reset="zero"))]
    net = Network(layers, (2, 13, 11))
    assert (net._c.desc[:, [sk.D_DIV_HW, sk.D_DIV_W]] > 0).all()
    if divide:
        net._c.desc[:, [sk.D_DIV_HW, sk.D_DIV_W]] = 0
    t, a = _stream(rng, 1500, 2 * 13 * 11, 30_000)  # about a third of the events share their timestamp
    net, state, spikes = _kernel_run(net, t, a, 30_000)
    expected, _, counts = slow_run(net, t, a, 30_000)
    assert spikes == expected and len(spikes) > 10
    assert net.counters(state)["synaptic_ops.c"] == counts["c"][0]


def test_fast_conv_group_with_more_candidates_than_neurons():
    """A burst of simultaneous events lists more neurons at threshold (with repeats) than the layer has: the
    kernel falls back to testing every tap of the group, with the same result as the slow twin."""
    rng = np.random.default_rng(9)
    layers = [Conv2d("c", rng.normal(0.5, 0.4, (4, 2, 3, 3)), (1, 1), (1, 1), Neuron(0.8, 5000.0))]
    net = Network(layers, (2, 6, 5))
    t = np.repeat(np.array([100, 300, 301], np.int64), [400, 3, 250])
    a = rng.integers(0, 2 * 6 * 5, t.shape[0]).astype(np.int32)
    net, state, spikes = _kernel_run(net, t, a, 1000)
    expected, _, counts = slow_run(net, t, a, 1000)
    assert spikes == expected and len(spikes) > 100
    assert net.counters(state)["synaptic_ops.c"] == counts["c"][0]


@pytest.mark.parametrize("d, n_max", [(1, 1000), (3, 10_000), (128, 32_767), (640, 307_199), (307_200, 614_399),
                                      (921_600, 1_843_199), (7, 1 << 40)])
def test_div_magic_equals_integer_division(d, n_max):
    m = sk.div_magic(d, n_max)
    q = np.unique(np.linspace(0, n_max // d, 20_000).astype(np.int64))  # quotients, then both sides of each step
    n = np.concatenate([np.arange(0, min(n_max, 5000) + 1), np.arange(max(0, n_max - 3000), n_max + 1),
                        q * d - 1, q * d, q * d + d - 1])
    n = n[(n >= 0) & (n <= n_max)].astype(np.int64)
    if m == 0:  # no multiplier fits: the kernel divides
        assert n_max * d > 1 << sk.DIV_SHIFT
        return
    assert np.array_equal((n * m) >> sk.DIV_SHIFT, n // d)
    with pytest.raises(ValueError, match="divisor must be ≥ 1"):
        sk.div_magic(0, 10)


@pytest.mark.parametrize("n", [1, 24, sk.ROW_PACK_MAX, sk.ROW_PACK_MAX + 5])
def test_row_add_matches_twin(n):
    """The row update: count and offset sum of the neurons at threshold (packed in one integer up to
    ROW_PACK_MAX neurons, two counters beyond)."""
    rng = np.random.default_rng(n)
    u = rng.normal(0.0, 1.0, n + 7)
    w = rng.normal(0.0, 1.0, n + 3)
    expected = u.copy()
    for m in range(n):
        expected[5 + m] = expected[5 + m] + w[2 + m] * 1.7
    at = [m for m in range(n) if expected[5 + m] >= 0.9]
    hits, offsets = sk._row_add(u, w, 5, 2, n, 1.7, 0.9)
    assert np.array_equal(u, expected)
    assert (hits, offsets) == (len(at), sum(at))


@pytest.mark.parametrize("n", [1, 2, 17, 63, 64])
def test_push_hits_lists_every_neuron_at_threshold_in_order(n):
    """A row with several neurons at threshold: one bit per neuron, then the set bits in ascending order (the
    top bit included), against a plain scan."""
    rng = np.random.default_rng(100 + n)
    for trial in range(50):
        u = rng.normal(0.0, 1.0, n + 9)
        u[3 + n - 1] = 2.0 if trial % 2 else -2.0  # the row's last neuron, on and off
        out = np.full(n + 4, -1, np.int64)
        count = sk._push_hits(u, 3, n, 0.5, out, 2)
        expected = [3 + m for m in range(n) if u[3 + m] >= 0.5]
        assert count == 2 + len(expected)
        assert out[2:count].tolist() == expected
        assert (out[:2] == -1).all() and (out[count:] == -1).all()


@pytest.mark.parametrize("n, top", [(2, 10), (32, 1000), (33, 2), (500, 153_600), (4000, 614_400), (300, (1 << 31) - 1),
                                    (100, 0)])
def test_sort_group_matches_numpy(n, top):
    """Groups of simultaneous events are sorted by address: insertion up to 32, byte-wise radix passes above."""
    rng = np.random.default_rng(n)
    buf = rng.integers(0, top + 1, n + 9).astype(np.int32)
    expected = buf.copy()
    expected[4:4 + n] = np.sort(expected[4:4 + n])
    sk.sort_group(buf, 4, 4 + n)
    assert np.array_equal(buf, expected)
