"""PipelinedNetwork: two halves in two threads compute exactly what the unsplit network does."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from runtime import Packet, dvs_spec, make_dvs_events, spike_spec
from runtime.engine import ChannelGate, Conv2d, Flatten, Linear, Network, Neuron, SpatialGate, SumPool2d
from runtime.engine.gain import InputGain
from runtime.engine.pipeline import PipelinedNetwork, balanced_split
from runtime.testing import cut_at, run_stage, valid_cuts


def _net(rng, *, gain=False):
    layers = [
        Conv2d("conv1", rng.normal(0.5, 0.6, (6, 2, 3, 3)), (1, 1), (1, 1), Neuron(1.0, 3000.0, reset="zero")),
        Conv2d("conv2", rng.normal(0.3, 0.6, (8, 6, 3, 3)), (2, 2), (1, 1), Neuron(1.0, 4000.0, reset="zero"),
               channel_gate=ChannelGate.relative(8, 0.5, 3000.0)),
        SumPool2d("pool", (2, 2), neuron=Neuron(1.0, 2000.0, reset="zero")),
        Flatten(),
        Linear("fc", rng.normal(0.2, 0.5, (5, 8 * 4 * 4)), Neuron(1.0, 5000.0, reset="zero"),
               recurrent_weight=rng.normal(0.0, 0.4, (5, 5)), recurrent_delay_us=300, delay_us=50),
    ]
    gates = (SpatialGate(4, 5000.0, 1.0, 0.5),)
    return Network(layers, (2, 16, 16), name="pipe", input_gates=gates, labels=tuple("abcde"),
                   input_gain=InputGain(ref_rate_hz=20_000.0, tau_us=20_000.0, window_us=2000) if gain else None)


def _stream(rng, n=20_000, t_max=60_000):
    t = np.sort(rng.integers(0, t_max, n))
    return make_dvs_events(rng.integers(0, 16, n), rng.integers(0, 16, n), t, rng.integers(0, 2, n))


def _halves(net, k, packets):
    """The two halves one after the other in this thread: what the pipeline must reproduce exactly."""
    front, back = net.split_at(k)
    spec = dvs_spec(16, 16)
    _, fs, mid = run_stage(front, spec, packets)
    out, bs, outs = run_stage(back, front.out_spec(spec), mid)
    counts = dict(front.counters(fs))
    for key, v in back.counters(bs).items():
        counts[key] = counts.get(key, 0) + v if "." not in key else v
    return out, outs, counts


@pytest.mark.parametrize("split", [1, 2, 3])
@pytest.mark.parametrize("min_events, batch_events", [(0, 0), (40, 0), (40, 400), (10**9, 0)])
def test_pipelined_output_equals_the_two_halves_in_sequence(split, min_events, batch_events):
    rng = np.random.default_rng(split)
    net = _net(rng, gain=split == 2)
    ev = _stream(rng)
    packets = cut_at(ev, valid_cuts(ev["t"])[::150], t_end_us=60_000)
    ref, ref_outs, ref_counts = _halves(net, split, packets)
    pipe = PipelinedNetwork(net, split=split, min_events=min_events, batch_events=batch_events)
    out, state, outs = run_stage(pipe, dvs_spec(16, 16), packets)  # also checks order and watermarks
    assert ref.shape[0] > 200
    assert np.array_equal(out, ref)
    assert outs[-1].t_end_us == ref_outs[-1].t_end_us == 60_000 + net.delay_us
    assert pipe.out_spec(dvs_spec(16, 16)) == net.out_spec(dvs_spec(16, 16))
    c = pipe.counters(state)
    assert all(c[k] == v for k, v in ref_counts.items())
    assert state.handed_off + state.inline == len(packets)
    if min_events == 0:
        assert state.handed_off == len(packets)
    elif min_events == 10**9:
        assert state.handed_off == 0
    else:
        assert state.handed_off > 0 and state.inline > 0
    # and the unsplit network computes the same up to float rounding (summation order within a timestamp)
    fused, fused_state, _ = run_stage(net, dvs_spec(16, 16), packets)
    assert abs(fused.shape[0] - out.shape[0]) <= 1e-3 * fused.shape[0]
    assert abs(net.counters(fused_state)["synaptic_ops"] - c["synaptic_ops"]) <= 1e-3 * c["synaptic_ops"]


def test_the_worker_thread_runs_the_second_half_and_stops_at_finish():
    rng = np.random.default_rng(5)
    net = _net(rng)
    pipe = PipelinedNetwork(net, split=2, min_events=0, batch_events=0)
    state = pipe.init(dvs_spec(16, 16))
    ev = _stream(rng, 4000, 10_000)
    ev.flags.writeable = False
    state, first = pipe.step(state, Packet(ev, 10_000))
    assert first == []  # its second half is still in the worker
    assert state.worker.thread.is_alive() and state.worker.thread is not threading.current_thread()
    rest = pipe.finish(state)
    assert rest and sum(p.events.shape[0] for p in rest) > 0
    state.worker.thread.join(timeout=5)
    assert not state.worker.thread.is_alive()
    with pytest.raises(RuntimeError, match="step after finish"):
        pipe.step(state, Packet(ev[:0], 20_000))


def test_an_error_in_the_worker_is_raised_in_the_caller():
    loop = Network([Linear("in", np.ones((1, 1)), Neuron(0.5)),
                    Linear("r", np.ones((2, 1)), Neuron(1.0), recurrent_weight=np.full((2, 2), 3.0),
                           recurrent_delay_us=1)], (1,), name="loop")
    pipe = PipelinedNetwork(loop, split=1, min_events=0, batch_events=0)
    state = pipe.init(spike_spec((1,)))
    ev = np.zeros(1, dtype=[("t", "<i8"), ("addr", "<i4")])
    ev.flags.writeable = False
    state, _ = pipe.step(state, Packet(ev, 10_000))  # the runaway happens in the worker ...
    with pytest.raises(RuntimeError, match="network 'loop\\[1:\\]': layer 'r' emitted over .* runaway"):
        pipe.finish(state)  # ... and surfaces here
    state.worker.thread.join(timeout=5)
    assert not state.worker.thread.is_alive()


def test_bad_splits_are_refused_and_the_balanced_split_minimises_the_larger_half():
    net = _net(np.random.default_rng(0))
    for k in (0, 5):  # an empty half
        with pytest.raises(ValueError, match="cannot split its 5 layers after layer"):
            PipelinedNetwork(net, split=k)
    assert [x.name for x in net.split_at(4)[1].layers] == ["fc"]  # Flatten may end the first half
    with pytest.raises(ValueError, match="cannot split"):
        Network([Flatten(), Linear("a", np.ones((1, 4)), Neuron(1.0))], (4,)).split_at(1)
    assert balanced_split(net, [10.0, 50.0, 5.0, 0.0, 40.0]) == 2  # 60 | 45
    assert balanced_split(net, [80.0, 10.0, 5.0, 0.0, 5.0]) == 1
    with pytest.raises(ValueError, match="4 layer costs for the 5 layers"):
        balanced_split(net, [1.0, 1.0, 1.0, 1.0])
