"""``clockless bench gesture``: the shipped gesture network on held-out clips, in the runtime and in the training
framework, side by side in one run.

Measured on the ``test`` split (clips the training never saw): its first 270 clips, 30 per label, so that
``clockless bench all`` stays under 15 minutes (``run_suite(n_test=900)`` takes the whole split); ``--quick``: 90.

* accuracy per label of the **runtime** (event-driven engine + decision sink on the trio executor, clip answer =
  highest-scoring decision or ``none``) and of the **training framework** (the PyTorch model at its time bins,
  same decision rule) on the same clips, gates on; and the runtime with the attention gates off;
* the runtime on the same clips joined back to back into streams of six (no pause, no reset between clips, as a
  live camera delivers gestures; each clip alone starts from rest): a clip's answer is the best decision made in
  its own time span;
* time to decision (decision time − true gesture onset) p50/p90 over correctly answered gesture clips;
* synaptic ops per input event, gated fraction (events the input gates dropped / events in; a network file's channel
  gates: the share of their layer's spikes they dropped), synaptic ops gates on vs off (input and channel gates
  together), in all and per layer (where the work lives bounds what input gates can save);
* realtime factor (stream time / wall time) of the network path, and of the whole graph from sensor events
  (front end included) on the built-in demo clip and on rendered 640×480 videos through the emulator, which is
  what ``clockless replay VIDEO --app gesture`` runs (accuracy on those videos is reported too).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

from apps.gesture.app import build_gesture_graph, demo_clip, demo_source, run_network_input
from apps.gesture.dataset import build_split
from apps.gesture.render import render_clip
from graphs.gesture import LABELS, WEIGHTS_PATH, load_network_file
from graphs.gesture_decision import DecisionConfig, clip_answer
from runtime.executor import run as run_graph

BACK_TO_BACK = 6  # clips per stream in the back-to-back run

__all__ = ["run", "run_suite"]


def run(quick: bool, plots_dir: Path | None, *, weights: str | Path | None = None) -> dict:
    return run_suite(quick, plots_dir, weights=weights)


def run_suite(quick: bool = False, plots_dir: Path | None = None, *, n_test: int | None = None,
              n_videos: int | None = None, weights: str | Path | None = None, workers: int = 2,
              cache_dir: Path | None = None) -> dict:
    weights = Path(weights) if weights is not None else WEIGHTS_PATH
    net = load_network_file(weights)
    if net.labels != LABELS:
        raise ValueError(f"bench gesture: {weights} answers {len(net.labels) - 1} other gestures "
                         f"({', '.join(net.labels[:3])}, ...); this suite measures the rendered clips' labels "
                         f"({', '.join(LABELS[:3])}, ...). A DVS128 Gesture network is measured by the trainer "
                         "(`clockless train gesture --dvs-gesture ROOT` prints its test accuracy in the runtime)")
    # 270 of the 900 test clips (30 per label) keep `clockless bench all` under 15 minutes; the trainer reports the
    # training framework on all 900 (n_test=900 runs the whole split here too)
    n_test = n_test if n_test is not None else (90 if quick else 270)
    n_videos = n_videos if n_videos is not None else (9 if quick else 18)
    if n_test > 90:  # a prefix of the full split (the trainer's cache)
        full = build_split("test", 900, workers=workers, cache_dir=cache_dir)
        test = full.subset(range(min(n_test, len(full))))
    else:
        test = build_split("test", n_test, workers=workers, cache_dir=cache_dir)
    cfg = DecisionConfig(**net.decision)

    on = _runtime(net, test, cfg, gates=True)
    off = _runtime(net, test, cfg, gates=False)
    streams = _back_to_back(net, test, cfg)
    train_fw = _training_framework(weights, test, cfg, net)
    demo = _demo(net)
    videos = _videos(net, n_videos)

    out = {
        "weights": str(weights), "clips": len(test), "labels": list(LABELS),
        "runtime": on["summary"], "runtime_gates_off": off["summary"], "runtime_back_to_back": streams,
        "training_framework": train_fw,
        "accuracy_gap_points": (round(100 * (on["summary"]["accuracy"] - train_fw["accuracy"]), 2)
                                if train_fw.get("accuracy") is not None else None),
        "gates": {
            "accuracy_on": on["summary"]["accuracy"], "accuracy_off": off["summary"]["accuracy"],
            "accuracy_delta_points": round(100 * (on["summary"]["accuracy"] - off["summary"]["accuracy"]), 2),
            "synaptic_ops_on": on["ops"], "synaptic_ops_off": off["ops"],
            "ops_reduction": round(1 - on["ops"] / off["ops"], 4) if off["ops"] else None,
            "gated_fraction": round(on["gated"] / on["events"], 4) if on["events"] else None,
            "channel_gates": on["channel_gates"],
            "ops_by_layer": {name: {"on": on["ops_by_layer"].get(name, 0), "off": n_off}
                             for name, n_off in off["ops_by_layer"].items()},
        },
        "ops_per_event": round(on["ops"] / on["events"], 2) if on["events"] else None,
        "ops_per_event_gates_off": round(off["ops"] / off["events"], 2) if off["events"] else None,
        "realtime_factor_network": round(on["stream_s"] / on["wall_s"], 1) if on["wall_s"] else None,
        "demo": demo, "videos": videos,
    }
    _print(out)
    if plots_dir is not None:
        _plots(Path(plots_dir), on, out)
    return out


def _runtime(net, clips, cfg: DecisionConfig, gates: bool) -> dict:
    true, pred, ttd, first = [], [], [], []
    ops = events = gated = 0
    by_layer: dict[str, int] = {}
    channel: dict[str, dict] = {}
    channel_gated = net.channel_gated if gates else ()
    wall = stream = 0.0
    for i in range(len(clips)):
        t, addr = clips.events(i)
        dur = int(clips.duration_us[i])
        keep = t < dur
        report = run_network_input(net, t[keep], addr[keep], dur, gates=gates, decision=cfg)
        ans = clip_answer(report["decisions"])
        y = LABELS[int(clips.label[i])]
        true.append(y)
        pred.append(ans)
        if ans == y and y != "none":
            best = max(report["decisions"], key=lambda d: d["score"])
            ttd.append(best["t_us"] - int(clips.onset_us[i]))
            # the label's first decision: earlier than the answer's when rises reported it again, more certain
            first.append(min(d["t_us"] for d in report["decisions"] if d["label"] == y) - int(clips.onset_us[i]))
        ops += report["ops"]["synaptic_ops"]
        for key, n in report["nodes"]["snn"].items():
            if key.startswith("synaptic_ops."):
                layer = key.removeprefix("synaptic_ops.")
                by_layer[layer] = by_layer.get(layer, 0) + int(n)
            for what in ("spikes", "gated_events"):
                if key.startswith(what + ".") and key.removeprefix(what + ".") in channel_gated:
                    cg = channel.setdefault(key.removeprefix(what + "."), {"spikes": 0, "gated_events": 0})
                    cg[what] += int(n)
        events += report["input"]["events"]
        # the input gates' drops (the network's channel gates drop spikes, counted per layer in `channel`)
        gated += report["ops"]["gated_events"] - int(report["nodes"]["snn"].get("gated_events", 0))
        wall += report["wall_s"]
        stream += dur / 1e6
    summary = _summary(true, pred, ttd)
    summary["time_to_first_decision_ms"] = {
        "p50": round(float(np.percentile(first, 50)) / 1e3, 1) if first else None,
        "p90": round(float(np.percentile(first, 90)) / 1e3, 1) if first else None, "count": len(first)}
    return {"summary": summary, "ops": int(ops), "ops_by_layer": by_layer, "events": int(events), "gated": int(gated),
            "channel_gates": {k: {**v, "gated_fraction": round(v["gated_events"] / max(1, v["spikes"]), 4)}
                              for k, v in channel.items()},
            "wall_s": wall, "stream_s": stream, "true": true, "pred": pred, "ttd": ttd}


def _back_to_back(net, clips, cfg: DecisionConfig, run_length: int = BACK_TO_BACK) -> dict:
    """The same clips joined into streams of ``run_length``, one after another with no pause and no reset, as
    gestures come from a live camera (each test clip alone starts from rest). A clip's answer is the best
    decision made during its own time span, or ``none``."""
    true, pred = [], []
    for s0 in range(0, len(clips), run_length):
        ts, addrs, spans, t0 = [], [], [], 0
        for i in range(s0, min(s0 + run_length, len(clips))):
            t, addr = clips.events(i)
            dur = int(clips.duration_us[i])
            keep = t < dur
            ts.append(t[keep].astype(np.int64) + t0)
            addrs.append(addr[keep])
            spans.append((t0, t0 + dur, LABELS[int(clips.label[i])]))
            t0 += dur
        report = run_network_input(net, np.concatenate(ts), np.concatenate(addrs), t0, gates=True, decision=cfg)
        for a, b, y in spans:
            true.append(y)
            pred.append(clip_answer([d for d in report["decisions"] if a <= d["t_us"] < b]))
    summary = _summary(true, pred, [])
    return {"accuracy": summary["accuracy"], "per_class": summary["per_class"], "clips": len(true),
            "run_length": run_length}


def _summary(true, pred, ttd) -> dict:
    true, pred = np.array(true), np.array(pred)
    per = {lab: (round(float((pred[true == lab] == lab).mean()), 4) if (true == lab).any() else None) for lab in LABELS}
    return {
        "accuracy": round(float((true == pred).mean()), 4) if true.shape[0] else None, "per_class": per,
        "time_to_decision_ms": {"p50": round(float(np.percentile(ttd, 50)) / 1e3, 1) if ttd else None,
                                "p90": round(float(np.percentile(ttd, 90)) / 1e3, 1) if ttd else None,
                                "count": len(ttd)},
    }


def _training_framework(weights: Path, clips, cfg: DecisionConfig, net) -> dict:
    try:
        import torch  # noqa: F401
    except ModuleNotFoundError:
        return {"accuracy": None, "note": "PyTorch is not installed (the train extra)"}
    from apps.gesture.model import from_network_file
    from apps.gesture.train import Batcher, evaluate

    model, topo = from_network_file(weights)
    batcher = Batcher(clips, int(topo["bin_us"]), int(clips.duration_us.max()), net.gates, net.motion, threads=2)
    ev = evaluate(model, batcher, cfg, gate_prob=1.0)
    return {"accuracy": round(ev["accuracy"], 4), "per_class": ev["per_class"], "bin_us": int(topo["bin_us"]),
            "time_to_decision_ms": {k: (round(v / 1e3, 1) if v is not None else None)
                                    for k, v in ev["time_to_decision_us"].items()}}


def _demo(net) -> dict:
    clip = demo_clip()
    t0 = time.perf_counter()
    report = run_graph(build_gesture_graph(demo_source(clip), weights=net))
    wall = time.perf_counter() - t0
    return {
        "truth": [t[0] for t in clip.truth], "decisions": report["decisions"], "events": report["input"]["events"],
        "ops_per_event": report["ops"]["ops_per_event"], "realtime_factor": report["realtime_factor"],
        "wall_s_with_setup": round(wall, 3),
    }


def _videos(net, n: int) -> dict:
    """Render ``n`` clips (labels in turn) as 640×480 30 fps MP4 files and replay them as `clockless replay` does:
    OpenCV decode → emulator (default settings) → the whole gesture graph."""
    if n <= 0:
        return {"clips": 0}
    import cv2

    from sensors.emulator import EmulatorSource

    true, pred, rtf = [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            label = LABELS[i % len(LABELS)]
            clip = render_clip(label, 90_000_000 + i, 640, 480, fps=30.0, duration_s=2.5)
            path = Path(tmp) / f"{i}.mp4"
            writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), 30.0, (640, 480), False)
            for f in clip.frames:
                writer.write(f)
            writer.release()
            report = run_graph(build_gesture_graph(EmulatorSource.video(str(path)), weights=net))
            true.append(label)
            pred.append(clip_answer(report["decisions"]))
            if report["realtime_factor"]:
                rtf.append(report["realtime_factor"])
    true_a, pred_a = np.array(true), np.array(pred)
    return {"clips": n, "size": "640x480", "fps": 30, "accuracy": round(float((true_a == pred_a).mean()), 4),
            "answers": [{"true": a, "answer": b} for a, b in zip(true, pred)],
            "realtime_factor_median": round(float(np.median(rtf)), 2) if rtf else None}


def _print(out: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    rt, tf, off = out["runtime"], out["training_framework"], out["runtime_gates_off"]
    t = Table(title=f"gesture: {out['clips']} held-out clips (test split)")
    t.add_column("label")
    t.add_column("runtime, gates on", justify="right")
    t.add_column("runtime, gates off", justify="right")
    t.add_column("training framework", justify="right")

    def pct(v):
        return "—" if v is None else f"{100 * v:.1f} %"

    for lab in LABELS:
        t.add_row(lab, pct(rt["per_class"][lab]), pct(off["per_class"][lab]), pct((tf.get("per_class") or {}).get(lab)))
    t.add_row("all", pct(rt["accuracy"]), pct(off["accuracy"]), pct(tf.get("accuracy")))
    Console(width=120).print(t)
    g = out["gates"]
    print(f"runtime − training framework: {out['accuracy_gap_points']} points "
          f"(training bins {tf.get('bin_us', '?')} µs)")
    print(f"time to decision (runtime, correct gesture clips): p50 {rt['time_to_decision_ms']['p50']} ms, "
          f"p90 {rt['time_to_decision_ms']['p90']} ms (n = {rt['time_to_decision_ms']['count']}; the answer's decision); "
          f"first decision of that label p50 {rt['time_to_first_decision_ms']['p50']} ms, "
          f"p90 {rt['time_to_first_decision_ms']['p90']} ms")
    print(f"synaptic ops per input event: gates on {out['ops_per_event']}, off {out['ops_per_event_gates_off']}; "
          f"ops gates on / off = {g['synaptic_ops_on']:,} / {g['synaptic_ops_off']:,} "
          f"(reduction {100 * (g['ops_reduction'] or 0):.1f} %), gated fraction {100 * (g['gated_fraction'] or 0):.1f} %"
          " of the input events" + "".join(f"; channel gate on {name}: {100 * c['gated_fraction']:.1f} % of its spikes"
                                           for name, c in g.get("channel_gates", {}).items()))
    layers = [(name, n["on"], n["off"]) for name, n in g["ops_by_layer"].items() if n["off"]]
    total_off = sum(n for _, _, n in layers) or 1
    print("synaptic ops by layer, share of gates off and change with gates on: " + ", ".join(
        f"{name} {100 * n_off / total_off:.0f} % ({100 * (n_on / n_off - 1):+.0f} %)" for name, n_on, n_off in layers))
    print(f"accuracy gates on − off: {g['accuracy_delta_points']} points")
    b = out["runtime_back_to_back"]
    print(f"the same clips back to back (streams of {b['run_length']}, no pause, no reset; gates on): accuracy "
          f"{pct(b['accuracy'])} (each clip alone: {pct(rt['accuracy'])})")
    print(f"realtime factor, network path: {out['realtime_factor_network']}×; whole graph on the demo clip: "
          f"{out['demo']['realtime_factor']}× ({out['demo']['ops_per_event']} ops per sensor event)")
    v = out["videos"]
    if v.get("clips"):
        print(f"rendered 640×480 videos through the emulator: accuracy {pct(v['accuracy'])} on {v['clips']} clips, "
              f"realtime factor median {v['realtime_factor_median']}×")


def _plots(plots: Path, on: dict, out: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from apps.gesture.train import plot_confusion

    idx = {lab: i for i, lab in enumerate(LABELS)}
    conf = np.zeros((len(LABELS), len(LABELS)), np.int64)
    for a, b in zip(on["true"], on["pred"]):
        conf[idx[a], idx[b]] += 1
    plot_confusion(conf, plots / "gesture_confusion_runtime.png",
                   f"gesture, runtime (event-driven), gates on: {100 * out['runtime']['accuracy']:.1f} %")
    if on["ttd"]:
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.hist(np.array(on["ttd"]) / 1e3, bins=30)
        ax.set_xlabel("time to decision (ms after the true onset)")
        ax.set_ylabel("clips")
        fig.tight_layout()
        fig.savefig(plots / "gesture_time_to_decision.png", dpi=110)
        plt.close(fig)
