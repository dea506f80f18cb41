"""SNN engine: event-driven cost per event and per synaptic op, real recordings vs the same network clock-driven.

1. First layer alone (Conv2d 2→8, 5×5, 128×128, LIF with exact decay) on a 1 M-event DVS-like stream: ns per
   input event and per synaptic op, for each way of computing the decay (time-invariant frame: one exp per
   distinct timestamp; one exp per neuron touched; a decay table) and for IAF (no decay at all).
2. A 4-layer conv net (random weights scaled to fan-in, LIF) on the shared recordings: realtime factor, synaptic
   ops vs dense-equivalent MACs at 1 ms bins, the same network clock-driven in numpy (``runtime.engine.dense``)
   timed in the same run, and the input rate at which event-driven work would equal clock-driven work.
   Also the fused network (one stage, one kernel call per packet) vs the same layers as per-layer stages.
3. Attention gates on vs off (spatial + temporal input gates calibrated to keep about half of the events, a
   channel gate on conv2): events dropped, ops saved (direct count and measured difference), the gates' own
   work, and the latency they add (compute per event, and stream time held by the temporal gate).
"""

from __future__ import annotations

import dataclasses
import math
import time
from pathlib import Path

import numpy as np

from runtime.engine import ChannelGate, Conv2d, Network, Neuron, SpatialGate, TemporalGate
from runtime.engine.dense import bin_addresses, run_dense
from runtime.engine.pipeline import PipelinedNetwork, balanced_split
from runtime.events import DVS_EVENT
from runtime.packet import Packet, packetize
from runtime.spec import dvs_spec

from . import median_spread

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "vision"
FILES = ("dvs128_walking.aedat", "dvs128_right_clamp.aedat", "dvs_faery.es", "gen3_faery_evt2.raw",
         "gen3_expelliarmus_evt2.raw")
GOALS = {"dvs128_walking.aedat": 100.0, "dvs128_right_clamp.aedat": 100.0, "dvs_faery.es": 5.0,
         "gen3_faery_evt2.raw": 1.0, "gen3_expelliarmus_evt2.raw": 1.0}
PJ_ACC, PJ_MAC = 0.9, 4.6  # 45 nm estimate: pJ per accumulate, per multiply-accumulate


def dvs_like_stream(n: int, width: int = 128, height: int = 128, duration_us: int = 1_000_000, seed: int = 0
                    ) -> np.ndarray:
    """A moving-edge scene plus background noise: µs timestamps (so runs of equal times occur as in real
    recordings), 85 % of events along two bars that sweep the field, 15 % uniform noise."""
    rng = np.random.default_rng(seed)
    t = np.sort(rng.integers(0, duration_us, n))
    bar = rng.random(n) < 0.85
    phase = (t / duration_us * 3.0) % 1.0
    x = np.where(bar, (phase * (width + 20) - 10 + rng.normal(0, 2.0, n)), rng.integers(0, width, n))
    y = np.where(bar & (rng.random(n) < 0.5), (phase * height + rng.normal(0, 2.0, n)), rng.integers(0, height, n))
    ev = np.empty(n, DVS_EVENT)
    ev["x"] = np.clip(np.round(x), 0, width - 1)
    ev["y"] = np.clip(np.round(y), 0, height - 1)
    ev["t"] = t
    ev["p"] = rng.integers(0, 2, n).astype(bool)
    return ev


def _weights(rng, shape, gain):
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0.0, 1.0, shape) * gain / math.sqrt(fan_in)


def first_layer(decay: str, tau_us: float | None, seed: int = 1, state_dtype: str = "float64") -> Network:
    rng = np.random.default_rng(seed)
    conv = Conv2d("conv1", _weights(rng, (8, 2, 5, 5), 2.0), (1, 1), (2, 2), Neuron(1.0, tau_us))
    return Network((conv,), (2, 128, 128), name="first-layer", decay=decay, state_dtype=state_dtype)


def conv_net(width: int, height: int, seed: int = 2, *, gated: bool = False, events: np.ndarray | None = None
             ) -> Network:
    """4 conv layers, all LIF (τ 20 ms, threshold 1): 2→8 5×5/2, 8→16 3×3/2, 16→32 3×3/2, 32→11 3×3/2.
    Zero-mean random weights scaled to fan-in give sparse activity: on the shared recordings conv1 emits 1.0–1.5
    spikes per input event and the deeper layers 0.1–1.3 per input spike (``bench snn`` prints them per layer)."""
    rng = np.random.default_rng(seed)
    lif = Neuron(1.0, 20_000.0)
    cg = ChannelGate.relative(16, 0.5, 20_000.0) if gated else None
    layers = (
        Conv2d("conv1", _weights(rng, (8, 2, 5, 5), 3.0), (2, 2), (2, 2), lif),
        Conv2d("conv2", _weights(rng, (16, 8, 3, 3), 2.0), (2, 2), (1, 1), lif, channel_gate=cg),
        Conv2d("conv3", _weights(rng, (32, 16, 3, 3), 2.0), (2, 2), (1, 1), lif),
        Conv2d("conv4", _weights(rng, (11, 32, 3, 3), 2.0), (2, 2), (1, 1), lif),
    )
    gates = ()
    if gated and events is not None:
        addr = (events["p"].astype(np.int64) * width * height + events["y"].astype(np.int64) * width
                + events["x"]).astype(np.int32)
        sg = SpatialGate(16, 20_000.0, 1.0, 0.0).calibrate(dvs_spec(width, height), events["t"], addr, 0.7)
        st = sg.make_state((2, height, width))
        kept_t, _, _, _ = sg.apply(st, np.ascontiguousarray(events["t"]), addr, int(events["t"][-1]) + 1)
        tg = TemporalGate.calibrate(kept_t, 0.8, window_us=2000)  # on what the spatial gate lets through
        gates = (sg, tg)
    return Network(layers, (2, height, width), name=f"convnet-{width}x{height}", input_gates=gates)


def run_packets(net: Network, spec, packets: list[Packet]):
    state = net.init(spec)
    t0 = time.perf_counter()
    n_out = 0
    for p in packets:
        state, out = net.step(state, p)
        for o in out:
            n_out += o.events.shape[0]
    for o in net.finish(state):
        n_out += o.events.shape[0]
    return time.perf_counter() - t0, state, n_out


def per_layer(net: Network, spec, packets: list[Packet], repeats: int = 1) -> dict:
    """Each layer as its own stage, timed alone on the spikes the layer before it emitted (the same packets'
    worth): where a network's time goes. Per layer: input events, ops, spikes out, wall time (the median of
    ``repeats`` runs from a fresh state: the two-thread split is chosen from these times, and one run on a
    shared machine can move a layer's time by a third)."""
    out = {}
    n_first = sum(p.events.shape[0] for p in packets)
    for stage in net.split():
        walls = []
        for _ in range(max(1, int(repeats))):
            state = stage.init(spec)
            emitted = []
            t0 = time.perf_counter()
            for p in packets:
                state, o = stage.step(state, p)
                emitted.extend(o)
            walls.append(time.perf_counter() - t0)
        wall = float(np.median(walls))
        c = stage.counters(state)
        n_in = sum(p.events.shape[0] for p in packets)
        out[stage.layers[0].name] = {
            "events_in": n_in, "synaptic_ops": c["synaptic_ops"], "spikes_out": c["spikes"], "wall_s": round(wall, 4),
            "ns_per_network_input_event": round(wall / max(1, n_first) * 1e9, 1),
            "ns_per_layer_input_event": round(wall / max(1, n_in) * 1e9, 1),
            "ns_per_op": round(wall / max(1, c["synaptic_ops"]) * 1e9, 2)}
        spec = stage.out_spec(spec)
        packets = emitted
    return out


def _load(name: str) -> tuple[np.ndarray, tuple[int, int]] | None:
    path = DATA / name
    if not path.exists():
        return None
    from sensors.formats import open_reader

    reader = open_reader(path)
    ev = reader.read_all()
    w, h = reader.sensor_size[:2]
    ev = np.array(ev[(ev["x"] < w) & (ev["y"] < h)])
    ev["t"] -= ev["t"][0]  # stream time from the first event (bins and gate windows start there)
    ev.flags.writeable = False
    return ev, (int(w), int(h))


def bench_first_layer(quick: bool) -> dict:
    n = 200_000 if quick else 1_000_000
    ev = dvs_like_stream(n)
    packets = list(packetize(ev, max_events=4096, max_span_us=1000))
    spec = dvs_spec(128, 128)
    repeats = 2 if quick else 3
    rows = {}
    print(f"first layer: Conv2d 2→8 5×5 pad 2 on 128×128, {n:,} DVS-like events over 1 s "
          f"({len(packets)} packets of ≤ 4096 events / 1 ms)")
    print(f"{'neuron / decay':34s} {'ns/event':>9s} {'ns/op':>7s} {'ops/event':>9s} {'spikes':>9s} {'spread':>7s}")
    variants = (("LIF, time-invariant frame", "frame", 20_000.0, "float64"),
                ("LIF, exp per neuron touched", "exp", 20_000.0, "float64"),
                ("LIF, decay lookup table", "lut", 20_000.0, "float64"),
                ("IAF (no decay)", "frame", None, "float64"),
                ("LIF, frame, float32 potentials", "frame", 20_000.0, "float32"))
    for label, decay, tau, dtype in variants:
        net = first_layer(decay, tau, state_dtype=dtype)
        times = []
        for _ in range(repeats):
            wall, state, _ = run_packets(net, spec, packets)
            times.append(wall)
        med, spread = median_spread(times)
        c = net.counters(state)
        ns_ev = med / n * 1e9
        ns_op = med / max(1, c["synaptic_ops"]) * 1e9
        rows[label] = {"ns_per_event": round(ns_ev, 1), "ns_per_op": round(ns_op, 2),
                       "ops_per_event": round(c["synaptic_ops"] / n, 1), "spikes": c["spikes"],
                       "spread": round(spread, 3)}
        print(f"{label:34s} {ns_ev:9.0f} {ns_op:7.2f} {c['synaptic_ops'] / n:9.1f} {c['spikes']:9,d} {spread:7.1%}")
    base = rows["LIF, exp per neuron touched"]["ns_per_event"]
    for label in rows:
        rows[label]["speedup_vs_exp_per_neuron"] = round(base / rows[label]["ns_per_event"], 2)
    print(f"time-invariant frame vs one exp per neuron: {rows['LIF, exp per neuron touched']['ns_per_event'] / rows['LIF, time-invariant frame']['ns_per_event']:.2f}×; "
          f"vs decay table: {rows['LIF, decay lookup table']['ns_per_event'] / rows['LIF, time-invariant frame']['ns_per_event']:.2f}×  "
          "(goal ≤ 200 ns/event, ≤ 1 ns/op)")
    return {"events": n, "rows": rows}


def bench_files(quick: bool) -> dict:
    out = {}
    print("\n4-layer conv net (2→8 5×5/2, 8→16, 16→32, 32→11 3×3/2; LIF τ 20 ms) on the shared recordings")
    print("packets: ≤ 4096 events / 1 ms. dense: the same network in numpy at 1 ms bins, timed in this run"
          + (" on at most 40 bins, cost per bin extrapolated (clock-driven cost is the same every bin)" if quick
             else " on at most 150 bins, cost per bin extrapolated"))
    hdr = (f"{'file':28s} {'ev/s':>9s} {'RT×':>8s} {'RT×10ms':>8s} {'goal':>5s} {'ns/ev':>7s} {'ops/ev':>7s} {'syn ops':>11s} "
           f"{'dense MACs':>12s} {'MAC/op':>8s} {'dense RT×':>9s} {'ev/dense':>9s} {'x-over ev/s':>11s}")
    print(hdr)
    for name in FILES:
        loaded = _load(name)
        if loaded is None:
            print(f"{name:28s} (missing: {DATA / name})")
            continue
        ev, (w, h) = loaded
        duration_us = int(ev["t"][-1]) + 1
        if quick and duration_us > 2_000_000:
            ev = ev[ev["t"] < 2_000_000]
            duration_us = 2_000_000
        n = ev.shape[0]
        net = conv_net(w, h)
        spec = dvs_spec(w, h)
        packets = list(packetize(ev, max_events=4096, max_span_us=1000, t_end_us=duration_us))
        times = []
        for _ in range(1 if quick else 3):
            wall, state, n_out = run_packets(net, spec, packets)
            times.append(wall)
        wall = float(np.median(times))
        c = net.counters(state)
        packets10 = list(packetize(ev, max_events=16384, max_span_us=10_000, t_end_us=duration_us))
        wall10 = float(np.median([run_packets(net, spec, packets10)[0] for _ in range(1 if quick else 3)]))
        n_bins = -(-duration_us // 1000)
        macs_bin = net.dense_macs_per_bin(spec)
        dense_macs = macs_bin * n_bins
        # clock-driven numpy on a slice of bins, extrapolated
        k = min(n_bins, 40 if quick else 150)
        t_slice = ev["t"] < k * 1000
        addr = (ev["p"][t_slice].astype(np.int64) * w * h + ev["y"][t_slice].astype(np.int64) * w
                + ev["x"][t_slice])
        counts = bin_addresses(ev["t"][t_slice], addr, (2, h, w), 1000, k)
        t0 = time.perf_counter()
        run_dense(net, counts, 1000)
        dense_wall = (time.perf_counter() - t0) / k * n_bins
        rate = n / (duration_us / 1e6)
        rt = duration_us / 1e6 / wall
        ops_ev = c["synaptic_ops"] / n
        crossover = macs_bin * 1000 / max(ops_ev, 1e-9)  # input ev/s where event ops = clock-driven MACs
        ns_ev = wall / n * 1e9
        wall_crossover = (dense_wall / (duration_us / 1e6)) / (wall / n)  # ev/s where engine wall = dense wall
        row = {
            "events": n, "duration_s": duration_us / 1e6, "sensor": [w, h], "events_per_s": round(rate),
            "wall_s": round(wall, 4), "realtime_factor": round(rt, 2), "goal_realtime": GOALS.get(name),
            "packets": len(packets), "realtime_factor_10ms_packets": round(duration_us / 1e6 / wall10, 2),
            "ns_per_event": round(ns_ev, 1), "synaptic_ops": c["synaptic_ops"], "ops_per_event": round(ops_ev, 1),
            "neuron_updates": c["neuron_updates"], "spikes": {k2: v for k2, v in c.items() if k2.startswith("spikes")},
            "dense_macs_per_bin": macs_bin, "dense_macs": dense_macs, "dense_macs_per_op": round(dense_macs / max(1, c["synaptic_ops"]), 1),
            "dense_wall_s": round(dense_wall, 3), "dense_realtime_factor": round(duration_us / 1e6 / dense_wall, 4),
            "event_vs_dense_speedup": round(dense_wall / wall, 1), "dense_bins_timed": k,
            "crossover_ops_ev_per_s": round(crossover), "crossover_wall_ev_per_s": round(wall_crossover),
            "energy_uj_estimate": {"event_driven": round(c["synaptic_ops"] * PJ_ACC * 1e-6, 3),
                                   "dense": round(dense_macs * PJ_MAC * 1e-6, 1)},
        }
        row["per_layer"] = layers = per_layer(net, spec, packets, repeats=1 if quick else 3)
        # the same network as two halves in two threads, split where the measured per-layer costs balance
        k = balanced_split(net, [layers[x.name]["ns_per_network_input_event"] for x in net.layers])
        pipe = PipelinedNetwork(net, split=k)
        runs = [run_packets(pipe, spec, packets) for _ in range(1 if quick else 3)]
        wall2 = float(np.median([r[0] for r in runs]))
        row["two_threads"] = {
            "split": [[x.name for x in net.layers[:k]], [x.name for x in net.layers[k:]]],
            "wall_s": round(wall2, 4), "realtime_factor": round(duration_us / 1e6 / wall2, 2),
            "speedup": round(wall / wall2, 2), "spikes_out": runs[0][2], "spikes_out_one_thread": n_out,
            "packets_handed_off": runs[0][1].handed_off}
        out[name] = row
        print(f"{name:28s} {rate:9,.0f} {rt:8.1f} {duration_us / 1e6 / wall10:8.1f} {GOALS.get(name, 0):5.0f} {ns_ev:7.0f} {ops_ev:7.1f} "
              f"{c['synaptic_ops']:11,d} {dense_macs:12.3g} {dense_macs / max(1, c['synaptic_ops']):8.1f} "
              f"{duration_us / 1e6 / dense_wall:9.3f} {dense_wall / wall:8.0f}× {crossover:11.3g}")
        parts = [f"{k} {v['ns_per_network_input_event']:.0f} ({v['events_in'] / n:.2f} ev, {v['ns_per_op']:.2f} ns/op)"
                 for k, v in layers.items()]
        print(f"{'':28s} per layer, ns per input event: {' + '.join(parts)} = "
              f"{sum(v['ns_per_network_input_event'] for v in layers.values()):.0f}")
        two = row["two_threads"]
        print(f"{'':28s} two threads ({', '.join(two['split'][0])} | {', '.join(two['split'][1])}): RT× "
              f"{two['realtime_factor']:.1f}, {two['speedup']:.2f}× the one-thread run, "
              f"{two['packets_handed_off']} of {len(packets)} packets handed to the second thread; output spikes "
              f"{two['spikes_out']:,} (one thread {n_out:,})")
    print(f"per layer: each layer alone as a stage on the previous layer's spikes, {'one run' if quick else 'median of 3 runs'} (its input events per "
          "network input event, its ns per synaptic op); every stage pays its own per-packet cost, which the fused "
          "network pays once")
    print("two threads: runtime.engine.pipeline.PipelinedNetwork, the first half on packet k while a worker thread runs "
          "the second on earlier packets, handed over once they hold ≥ 2048 spikes (packets whose first half emits < 256 spikes stay in one thread)")
    print("RT× = stream duration / engine wall time (packets of ≤ 1 ms; RT×10ms: ≤ 10 ms); MAC/op = dense-equivalent MACs per synaptic op performed;"
          " ev/dense = how many times faster than the numpy clock-driven run;\nx-over = input rate at which this"
          " network's event-driven ops would equal its clock-driven MACs (at this file's ops per event)")
    return out


def bench_fused_vs_split(quick: bool) -> dict:
    loaded = _load("dvs_faery.es")
    if loaded is None:
        return {}
    ev, (w, h) = loaded
    net = conv_net(w, h)
    spec = dvs_spec(w, h)
    packets = list(packetize(ev, max_events=4096, max_span_us=1000))
    fused, split = [], []
    stages = net.split()
    for _ in range(1 if quick else 3):
        fused.append(run_packets(net, spec, packets)[0])
        states = []
        s = spec
        for st in stages:
            states.append(st.init(s))
            s = st.out_spec(s)
        t0 = time.perf_counter()
        for p in packets:
            batch = [p]
            for st, state in zip(stages, states):
                nxt = []
                for q in batch:
                    _, o = st.step(state, q)
                    nxt.extend(o)
                batch = nxt
        split.append(time.perf_counter() - t0)
    f, sp = float(np.median(fused)), float(np.median(split))
    print(f"\nfused network (1 stage) vs 4 per-layer stages on dvs_faery.es ({len(packets)} packets): "
          f"{f * 1e3:.1f} ms vs {sp * 1e3:.1f} ms ({sp / f:.2f}×; per packet {(sp - f) / len(packets) * 1e6:.1f} µs "
          "more, excluding the executor's own per-stage cost)")
    return {"fused_s": round(f, 4), "per_layer_s": round(sp, 4), "ratio": round(sp / f, 3), "packets": len(packets)}


def bench_gates(quick: bool) -> dict:
    out = {}
    print("\nattention gates on vs off (spatial 16-px tiles + temporal 2 ms windows calibrated to keep ~70 % / "
          "~80 % of events, channel gate on conv2 keeping channels above 0.5 × mean rate)")
    print(f"{'file':28s} {'dropped':>8s} {'ops off':>11s} {'ops on':>11s} {'saved':>7s} {'direct':>11s} "
          f"{'gate ops':>9s} {'gate ns/ev':>10s} {'hold µs mean/max':>17s}")
    for name in ("dvs128_right_clamp.aedat", "dvs_faery.es"):
        loaded = _load(name)
        if loaded is None:
            continue
        ev, (w, h) = loaded
        if quick:
            ev = ev[: min(len(ev), 100_000)]
        spec = dvs_spec(w, h)
        packets = list(packetize(ev, max_events=4096, max_span_us=1000))
        off = conv_net(w, h)
        on = conv_net(w, h, gated=True, events=ev)
        wall_off, s_off, _ = run_packets(off, spec, packets)
        wall_on, s_on, _ = run_packets(on, spec, packets)
        c_off, c_on = off.counters(s_off), on.counters(s_on)
        # the gates' own compute per event: both input gates as stages on the same packets
        g_time = 0.0
        for g in on.input_gates:
            st = g.init(spec)
            t0 = time.perf_counter()
            for p in packets:
                g.step(st, p)
            g.finish(st)
            g_time += time.perf_counter() - t0
        tg_state = next(gs for g, gs in zip(on.input_gates, s_on.gates) if g.kind == "temporal")
        kept_t = max(1, tg_state.events_in - tg_state.gated_events)
        hold_mean = tg_state.hold_us_sum / kept_t
        saved = c_off["synaptic_ops"] - c_on["synaptic_ops"]
        row = {
            "events": len(ev), "gated_events": c_on["gated_events"],
            "gated_fraction": round(c_on["gated_events"] / len(ev), 3),
            "gated_events_by_gate": {k: v for k, v in c_on.items() if k.startswith("gated_events.")},
            "synaptic_ops_off": c_off["synaptic_ops"], "synaptic_ops_on": c_on["synaptic_ops"],
            "ops_saved_measured": saved, "ops_saved_fraction": round(saved / max(1, c_off["synaptic_ops"]), 3),
            "gated_ops_saved_direct": c_on["gated_ops_saved"], "gate_ops": c_on["gate_ops"],
            "gate_ns_per_event": round(g_time / len(ev) * 1e9, 1),
            "wall_off_s": round(wall_off, 4), "wall_on_s": round(wall_on, 4),
            "temporal_hold_us_mean": round(hold_mean, 1), "temporal_hold_us_max": tg_state.hold_us_max,
            "spikes_out_off": c_off["spikes.conv4"], "spikes_out_on": c_on["spikes.conv4"],
        }
        out[name] = row
        print(f"{name:28s} {row['gated_fraction']:8.1%} {c_off['synaptic_ops']:11,d} {c_on['synaptic_ops']:11,d} "
              f"{row['ops_saved_fraction']:7.1%} {c_on['gated_ops_saved']:11,d} {c_on['gate_ops']:9,d} "
              f"{row['gate_ns_per_event']:10.1f} {hold_mean:8.0f}/{tg_state.hold_us_max:<8d}")
    print("saved = measured difference of all layers' ops, gates off vs on; direct = fan-out of the dropped events "
          "and spikes alone; hold = stream time the temporal gate keeps an event before deciding its window "
          "(added latency at real-time pacing)")
    return out


def run(quick: bool, plots_dir: Path | None) -> dict:
    section = {"first_layer": bench_first_layer(quick)}
    section["files"] = bench_files(quick)
    section["fused_vs_per_layer"] = bench_fused_vs_split(quick)
    section["gates"] = bench_gates(quick)
    section["energy_convention"] = {"pj_per_accumulate": PJ_ACC, "pj_per_mac": PJ_MAC, "label": "estimate (45 nm)"}
    return section
