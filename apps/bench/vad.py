"""Voice activity detection: clockless next to WebRTC VAD (modes 0..3) and Silero VAD, in the same run.

Data (never used in training): the human-labelled clips of ``../shared/data/audio/labelled`` (AMI meetings,
Picovoice, SpeechBrain; frames outside a ``.uem.txt`` span are not scored), and the same clips mixed with the
noise files held out from training (``apps.vad.data.HELD_OUT_NOISE``) at 5 dB SNR (speech power measured over the
labelled frames), so labels stay human. Frames are 10 ms, pooled over all clips of a set.

clockless runs the real graph (file source → front end → SNN → segmenter) on the trio executor; its decisions are
its segments (with hangover), its ROC score the per-10 ms score track. WebRTC: 30 ms frames, binary. Silero:
probability per 32 ms chunk, speech at ≥ 0.5 (its default threshold), no post-processing.

Operations per second of audio: clockless synaptic ops (counted by the engine on the executed path) and front-end
MACs (counted by the front end), against Silero's MACs counted by PyTorch's FlopCounterMode. Real-time factor:
audio seconds / wall seconds, each detector on one thread. Onset delay: for each labelled speech onset that follows
≥ 300 ms of labelled non-speech, decision time − onset for the first decision of speech inside that segment
(clockless: ``decided_us``; frame VADs: end of the first frame called speech); onsets missed are counted.

Each set is also broken down by source (the clip name's prefix: ``ami`` far-field meeting microphones, ``cobra``
and ``speechbrain`` close talk) and the noisy set by noise file, so a pooled figure can be traced to where it comes
from. For the labelled onsets the bench measures how far the human label leads the sound: the delay from the label's
onset to the first millisecond whose 10 ms power is 10 dB above the median of the 300 ms before the onset (no
causal detector can commit before the speech is audible).
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import numpy as np

__all__ = ["run"]

NOISY_SNR_DB = 5.0
QUICK_CLIPS = ("ami_ES2011a_40s-46s.wav", "cobra_sample.wav", "speechbrain_vad_valid.wav", "ami_dev01.wav")
MIN_GAP_BEFORE_ONSET_US = 300_000
ENERGY_RISE_DB = 10.0


def run(quick: bool, plots_dir: Path | None, *, weights: str | Path | None = None, baselines: bool = True,
        clips: tuple[str, ...] | None = None) -> dict:
    """The suite (see the module docstring); ``weights`` picks another VAD network file, ``baselines=False``
    scores clockless alone (for comparing trained networks quickly), ``clips`` names labelled clips to use."""
    import soundfile as sf

    from apps.vad.baselines import SileroVad, webrtc_frames
    from apps.vad.data import HELD_OUT_NOISE, default_audio_dir, load_mono, mix_at_snr
    from apps.vad.metrics import frame_labels, frame_metrics, frames_from_segments
    from graphs.vad import DEFAULT_WEIGHTS, build, load_vad
    from graphs.vad_segmenter import read_scores
    from runtime.executor import run as run_graph
    from sensors.audio import AudioFileSource

    audio = default_audio_dir()
    names = clips
    clips = sorted((audio / "labelled").glob("*.wav"))
    if quick or names:
        clips = [c for c in clips if c.name in (names or QUICK_CLIPS)]
    noises = [load_mono(audio / "noise" / name, 16000)[0] for name in HELD_OUT_NOISE]
    silero = SileroVad(threads=1) if baselines else None
    silero_macs_s = silero.macs_per_second(16000) if baselines else float("nan")
    weights = Path(weights) if weights is not None else DEFAULT_WEIGHTS
    model = load_vad(weights)
    rng = np.random.default_rng(0)

    sets = {"labelled": [], "noisy_5dB": []}
    tmp = Path(tempfile.mkdtemp(prefix="clockless-bench-vad-"))
    for i, clip in enumerate(clips):
        x, rate = load_mono(clip)
        n_frames = len(x) * 100 // rate
        speech, scored = frame_labels(clip, n_frames)
        lab_ms = np.repeat(speech, 10)
        if rate != 16000:
            raise ValueError(f"{clip}: the bench expects 16 kHz labelled clips, found {rate} Hz")
        noise = noises[i % len(noises)]
        source = clip.name.split("_", 1)[0]
        o = int(rng.integers(0, max(1, len(noise) - len(x))))
        nz = np.resize(noise[o:], len(x))
        noisy = np.clip(mix_at_snr(x, lab_ms, nz, NOISY_SNR_DB, rate), -1, 1)
        noisy_path = tmp / f"noisy_{clip.stem}.wav"
        sf.write(str(noisy_path), noisy, rate, subtype="FLOAT")
        for set_name, path, signal in (("labelled", clip, x), ("noisy_5dB", noisy_path, noisy)):
            row = _run_clip(path, signal, rate, n_frames, speech, scored, silero, tmp, build, run_graph,
                            AudioFileSource, read_scores, webrtc_frames, frames_from_segments, weights)
            row["source"] = source
            row["noise"] = HELD_OUT_NOISE[i % len(noises)] if set_name == "noisy_5dB" else None
            row["energy_rise_ms"] = _energy_rise_after_labels(x, rate, speech, scored) if set_name == "labelled" else []
            sets[set_name].append(row)

    results: dict = {"clips": [c.name for c in clips], "noise_held_out": list(HELD_OUT_NOISE),
                     "noisy_snr_db": NOISY_SNR_DB, "weights": str(weights),
                     "silero_macs_per_s": round(silero_macs_s) if baselines else float("nan"), "sets": {}}
    for set_name, rows in sets.items():
        results["sets"][set_name] = _pool(rows, frame_metrics, silero_macs_s, baselines)
        results["sets"][set_name]["by_source"] = _breakdown(rows, "source", frame_metrics, baselines)
        if set_name == "noisy_5dB":
            results["sets"][set_name]["by_noise"] = _breakdown(rows, "noise", frame_metrics, baselines)
    results["frontend"] = {"channels": model.frontend.channels, "delta_db": model.frontend.delta_db,
                           "frame_us": model.frontend.frame_us, "noise_tau_us": model.frontend.noise_tau_us,
                           "noise_margin_db": model.frontend.noise_margin_db, "floor_db": model.frontend.floor_db}
    results["network"] = {"layers": [f"{layer.name} {layer.weight.shape[1]}→{layer.weight.shape[0]}"
                                      + (" recurrent" if getattr(layer, "recurrent_weight", None) is not None else "")
                                      for layer in model.network.layers],
                          "readout": "leaky integrator in the sink" if model.segmenter.get("readout_weights")
                          else "spike trace of the last layer"}
    _print(results)
    if plots_dir is not None:
        _plot(sets, plots_dir, frame_metrics, baselines)
    return results


def _run_clip(path, x, rate, n_frames, speech, scored, silero, tmp, build, run_graph, AudioFileSource, read_scores,
              webrtc_frames, frames_from_segments, weights) -> dict:
    scores_path = tmp / (Path(path).stem + ".scores.csv")
    graph = build(AudioFileSource(path), scores_path=str(scores_path), weights=weights)
    report = run_graph(graph)
    _, track = read_scores(scores_path)
    cl_scores = np.zeros(n_frames, np.float32)
    cl_scores[: min(n_frames, track.size)] = track[:n_frames]
    cl_dec = frames_from_segments(report["segments"], n_frames)
    row = {
        "duration_s": len(x) / rate,
        "speech": speech, "scored": scored,
        "clockless": {"dec": cl_dec, "score": cl_scores, "wall_s": report["wall_s"],
                      "synaptic_ops": report["ops"]["synaptic_ops"], "frontend_macs": report["ops"]["frontend_macs"],
                      "onsets": [s["decided_us"] for s in report["segments"]],
                      "segments": report["segments"]},
    }
    if silero is None:
        return row
    for mode in range(4):
        t0 = time.perf_counter()
        d = webrtc_frames(x, rate, mode, frame_ms=30, n_frames=n_frames)
        row[f"webrtc{mode}"] = {"dec": d, "score": d.astype(np.float32), "wall_s": time.perf_counter() - t0,
                                "frame_us": 30_000}
    t0 = time.perf_counter()
    s = silero.frame_scores(x, rate, n_frames)
    row["silero"] = {"dec": s >= 0.5, "score": s, "wall_s": time.perf_counter() - t0, "frame_us": 32_000}
    return row


def _onset_delays(rows, name) -> dict:
    """Delay from each labelled onset (after ≥ 300 ms of scored non-speech) to the detector's first new decision
    of speech inside that speech segment. Onsets where the detector was already on are counted apart."""
    delays, missed, total, already = [], 0, 0, 0
    for row in rows:
        for a, b in _qualifying_onsets(row["speech"], row["scored"]):
            total += 1
            onset_us, end_us = int(a) * 10_000, int(b) * 10_000
            if name == "clockless":
                segs = row["clockless"]["segments"]
                if any(s["decided_us"] <= onset_us < s["end_us"] for s in segs):
                    already += 1
                    continue
                hits = [s["decided_us"] for s in segs if onset_us <= s["decided_us"] < end_us]
            else:
                d = row[name]["dec"]
                if d[a - 1]:
                    already += 1
                    continue
                frame_us = row[name]["frame_us"]
                k = np.flatnonzero(d[a:b])
                # a frame VAD knows its decision at the end of the frame that holds the 10 ms frame
                hits = [int((((a + k[0]) * 10_000) // frame_us + 1) * frame_us)] if k.size else []
            if hits:
                delays.append((min(hits) - onset_us) / 1000)
            else:
                missed += 1
    out = {"onsets": total, "already_on": already, "detected": len(delays), "missed": missed}
    if delays:
        out.update(median_ms=round(float(np.median(delays)), 1), p90_ms=round(float(np.percentile(delays, 90)), 1))
    return out


def _qualifying_onsets(speech: np.ndarray, scored: np.ndarray):
    """(first frame, end frame) of each labelled speech run after ≥ 300 ms of scored, labelled non-speech."""
    gap = MIN_GAP_BEFORE_ONSET_US // 10_000
    starts = np.flatnonzero(np.diff(np.concatenate([[0], speech.astype(np.int8)])) == 1)
    ends = np.flatnonzero(np.diff(np.concatenate([speech.astype(np.int8), [0]])) == -1) + 1
    return [(int(a), int(b)) for a, b in zip(starts, ends)
            if a >= gap and not speech[a - gap:a].any() and scored[a - gap:a + 1].all()]


def _energy_rise_after_labels(x: np.ndarray, rate: int, speech: np.ndarray, scored: np.ndarray) -> list:
    """Per qualifying labelled onset: ms from the label's onset to the first ms (from 100 ms before it, within the
    labelled run) whose 10 ms power is ``ENERGY_RISE_DB`` above the median of the 300 ms before the onset; None
    where the power never rises that far."""
    from apps.vad.data import _frame_power_ms

    db = 10 * np.log10(_frame_power_ms(x, rate, win_ms=10) + 1e-20)
    n_ms = db.shape[0]
    out = []
    for a, b in _qualifying_onsets(speech, scored):
        a_ms, b_ms = a * 10, min(b * 10, n_ms)
        base = float(np.median(db[a_ms - MIN_GAP_BEFORE_ONSET_US // 1000:a_ms - 20]))
        lo = a_ms - 100
        above = np.flatnonzero(db[lo:b_ms] > base + ENERGY_RISE_DB)
        out.append(int(above[0]) - 100 if above.size else None)
    return out


def _breakdown(rows, key: str, frame_metrics, baselines: bool) -> dict:
    """Balanced accuracy, F1 and onset delay per group of clips (``row[key]``), clockless next to Silero."""
    out = {}
    for group in sorted({r[key] for r in rows}):
        part = [r for r in rows if r[key] == group]
        keep = np.concatenate([r["scored"] for r in part])
        labels = np.concatenate([r["speech"] for r in part])[keep]
        entry = {"clips": len(part), "frames": int(keep.sum()), "detectors": {}}
        rise = [v for r in part for v in r["energy_rise_ms"]]
        if rise:
            heard = [v for v in rise if v is not None]
            entry["label_to_energy_rise_ms"] = {"onsets": len(rise), "never": len(rise) - len(heard),
                                                "median": float(np.median(heard)) if heard else None}
        for name in ("clockless", "silero") if baselines else ("clockless",):
            dec = np.concatenate([r[name]["dec"] for r in part])[keep]
            score = np.concatenate([r[name]["score"] for r in part])[keep]
            m = frame_metrics(labels, dec, score)
            o = _onset_delays(part, name)
            entry["detectors"][name] = {"balanced_accuracy": round(float(m["balanced_accuracy"]), 4),
                                        "f1": round(float(m["f1"]), 4), "onset_median_ms": o.get("median_ms"),
                                        "onsets_detected": o["detected"], "onsets": o["onsets"]}
        out[group] = entry
    return out


def _pool(rows, frame_metrics, silero_macs_s, baselines: bool = True) -> dict:
    keep = np.concatenate([r["scored"] for r in rows])
    labels = np.concatenate([r["speech"] for r in rows])[keep]
    audio_s = sum(r["duration_s"] for r in rows)
    out = {"audio_s": round(audio_s, 2), "frames": int(keep.sum()), "speech_fraction": round(float(labels.mean()), 3),
           "detectors": {}}
    names = ["clockless", "webrtc0", "webrtc1", "webrtc2", "webrtc3", "silero"] if baselines else ["clockless"]
    for name in names:
        dec = np.concatenate([r[name]["dec"] for r in rows])[keep]
        score = np.concatenate([r[name]["score"] for r in rows])[keep]
        m = frame_metrics(labels, dec, score)
        wall = sum(r[name]["wall_s"] for r in rows)
        entry = {k: round(float(m[k]), 4) for k in ("precision", "recall", "f1", "balanced_accuracy", "roc_auc")}
        entry["realtime_factor"] = round(audio_s / wall, 1) if wall > 0 else None
        entry["onset"] = _onset_delays(rows, name)
        out["detectors"][name] = entry
    cl = out["detectors"]["clockless"]
    syn = sum(r["clockless"]["synaptic_ops"] for r in rows) / audio_s
    fe = sum(r["clockless"]["frontend_macs"] for r in rows) / audio_s
    cl["synaptic_ops_per_s"] = round(syn)
    cl["frontend_macs_per_s"] = round(fe)
    if not baselines:
        return out
    out["detectors"]["silero"]["macs_per_s"] = round(silero_macs_s)
    out["ratios"] = {
        "silero_macs_over_snn_synaptic_ops": round(silero_macs_s / max(syn, 1), 1),
        "silero_macs_over_frontend_plus_snn": round(silero_macs_s / max(syn + fe, 1), 1),
    }
    best = {k: max(out["detectors"][f"webrtc{m}"][k] for m in range(4)) for k in ("f1", "balanced_accuracy")}
    sil_ba = out["detectors"]["silero"]["balanced_accuracy"]
    onset = cl["onset"].get("median_ms")
    out["goals"] = {
        "f1_ge_best_webrtc": cl["f1"] >= best["f1"],
        "balanced_accuracy_ge_best_webrtc": cl["balanced_accuracy"] >= best["balanced_accuracy"],
        "balanced_accuracy_within_0.05_of_silero": cl["balanced_accuracy"] >= sil_ba - 0.05,
        "snn_ops_100x_fewer_than_silero_macs": out["ratios"]["silero_macs_over_snn_synaptic_ops"] >= 100,
        "frontend_plus_snn_10x_fewer": out["ratios"]["silero_macs_over_frontend_plus_snn"] >= 10,
        "realtime_factor_ge_100": (cl["realtime_factor"] or 0) >= 100,
        "median_onset_within_50ms": onset is not None and onset <= 50,
    }
    return out


def _print(results: dict) -> None:
    if results["silero_macs_per_s"] == results["silero_macs_per_s"]:  # not NaN: baselines ran
        print(f"Silero MACs per second of 16 kHz audio (counted): {results['silero_macs_per_s'] / 1e6:.2f} M")
    for set_name, s in results["sets"].items():
        print(f"\n[{set_name}] {s['audio_s']:.0f} s of audio, {s['frames']} scored 10 ms frames, "
              f"{s['speech_fraction']:.0%} speech")
        print(f"{'detector':<11}{'prec':>7}{'recall':>8}{'F1':>7}{'bal.acc':>9}{'AUC':>7}{'RTF':>9}"
              f"{'onset ms (med/p90)':>21}{'missed/on-already/onsets':>26}")
        for name, d in s["detectors"].items():
            o = d["onset"]
            on = f"{o.get('median_ms', float('nan')):.0f} / {o.get('p90_ms', float('nan')):.0f}"
            print(f"{name:<11}{d['precision']:>7.3f}{d['recall']:>8.3f}{d['f1']:>7.3f}{d['balanced_accuracy']:>9.3f}"
                  f"{d['roc_auc']:>7.3f}{(d['realtime_factor'] or 0):>8.0f}×{on:>21}"
                  f"{o['missed']:>14}/{o['already_on']}/{o['onsets']}")
        cl = s["detectors"]["clockless"]
        if "ratios" not in s:
            print(f"ops per second of audio: SNN synaptic ops {cl['synaptic_ops_per_s'] / 1e3:.1f} k, front-end MACs "
                  f"{cl['frontend_macs_per_s'] / 1e6:.2f} M")
            continue
        r = s["ratios"]
        print(f"ops per second of audio: SNN synaptic ops {cl['synaptic_ops_per_s'] / 1e3:.1f} k, front-end MACs "
              f"{cl['frontend_macs_per_s'] / 1e6:.2f} M; Silero MACs {s['detectors']['silero']['macs_per_s'] / 1e6:.2f} M"
              f" → Silero / SNN = {r['silero_macs_over_snn_synaptic_ops']:.0f}×, Silero / (front end + SNN) = "
              f"{r['silero_macs_over_frontend_plus_snn']:.1f}×")
        print("goals: " + ", ".join(f"{k} {'yes' if v else 'NO'}" for k, v in s["goals"].items()))
    for set_name, s in results["sets"].items():
        for by in ("by_source", "by_noise"):
            if by not in s:
                continue
            print(f"\n[{set_name}, {by.replace('_', ' ')}] balanced accuracy / F1 / median onset ms (detected of onsets)")
            for group, e in s[by].items():
                parts = [f"{name} {d['balanced_accuracy']:.3f} / {d['f1']:.3f} / {_ms(d['onset_median_ms'])} "
                         f"({d['onsets_detected']} of {d['onsets']})" for name, d in e["detectors"].items()]
                rise = e.get("label_to_energy_rise_ms")
                if rise:
                    parts.append(f"sound {ENERGY_RISE_DB:.0f} dB up {_ms(rise['median'])} ms after the label (median)")
                print(f"  {group:<34}" + "; ".join(parts))


def _ms(v) -> str:
    return "–" if v is None else f"{v:.0f}"


def _plot(sets, plots_dir: Path, frame_metrics, baselines: bool) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(sets), figsize=(5 * len(sets), 4.5))
    for ax, (set_name, rows) in zip(np.atleast_1d(axes), sets.items()):
        keep = np.concatenate([r["scored"] for r in rows])
        labels = np.concatenate([r["speech"] for r in rows])[keep]
        for name in ("clockless", "silero") if baselines else ("clockless",):
            score = np.concatenate([r[name]["score"] for r in rows])[keep]
            ths = np.unique(np.quantile(score, np.linspace(0, 1, 200)))
            tpr = [(score[labels] >= t).mean() for t in ths]
            fpr = [(score[~labels] >= t).mean() for t in ths]
            ax.plot(fpr, tpr, label=name)
        for name in ("clockless", "webrtc0", "webrtc1", "webrtc2", "webrtc3") if baselines else ("clockless",):
            dec = np.concatenate([r[name]["dec"] for r in rows])[keep]
            ax.plot([(dec[~labels]).mean()], [(dec[labels]).mean()], "o", label=f"{name} decisions")
        ax.set_xlabel("false positive rate")
        ax.set_ylabel("true positive rate")
        ax.set_title(f"VAD ROC, {set_name} (10 ms frames)")
        ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(plots_dir / "vad_roc.png", dpi=120)
    plt.close(fig)
