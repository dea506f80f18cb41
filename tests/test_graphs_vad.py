"""The VAD graph: training model = PyTorch mirror = engine spike for spike; the graph runs on real audio (trio and
reference executors agree, any block size), silence costs no synaptic op, and the shipped weights detect speech."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf
import torch

from apps.training.torch_snn import SNN
from apps.vad.export import save_network, vad_topology
from apps.vad.metrics import frame_labels, frame_metrics, frames_from_segments
from apps.vad.model import SnnVad, VadConfig, layer_names
from graphs.network import read_topology, save_network as write_plain_network
from graphs.vad import DEFAULT_WEIGHTS, build, load_vad
from runtime.errors import FormatError
from runtime.executor import run
from runtime.reference import run_reference
from runtime.testing import cut_at, run_stage
from sensors.audio import AudioFileSource
from sensors.audio_frontend import AudioFrontEnd


def _random_vad(tmp_path, seed=0, kind="plain"):
    """A VAD network file with random weights: "plain" (recurrent hidden → spiking readout, 1 ms frames), "deep"
    (two multi-spike recurrent hidden layers), "integrator" (10 ms frames, leaky-integrator readout in the sink)."""
    frame_us = 10_000 if kind == "integrator" else 1000
    frontend = AudioFrontEnd(noise_tau_us=300_000, frame_us=frame_us)
    if kind == "deep":
        cfg = VadConfig(inputs=2 * frontend.channels, hidden=(24, 12), readout=3, tau_us=(20_000, 60_000, 10_000),
                        recurrent=(True, True, False), reset=("subtract", "subtract", "zero"))
    elif kind == "integrator":
        cfg = VadConfig(inputs=2 * frontend.channels, hidden=(24,), readout=1, tau_us=(30_000, 50_000),
                        recurrent=(True, False), reset=("zero", "none"), bin_us=frame_us)
    else:
        cfg = VadConfig(inputs=2 * frontend.channels, hidden=(24,), readout=3)
    net = SnnVad(cfg, seed=seed, init_gain=1.5)
    with torch.no_grad():
        net.weights[-1].abs_()
        net.bias.fill_(-3.0)
    path = tmp_path / "vad.json"
    save_network(path, net, frontend, {"note": "random weights for a test"})
    return path, net, frontend


def _events_of(shared_data, rel, seconds, frontend):
    x, rate = sf.read(str(shared_data / "audio" / rel), dtype="float32", always_2d=True)
    x = x.mean(axis=1)[: int(seconds * rate)]
    ev, _ = frontend.run_array(x, rate)
    return ev, len(x) * 1_000_000 // rate // frontend.frame_us


@pytest.mark.parametrize("kind", ["plain", "deep", "integrator"])
def test_training_kernel_mirror_and_engine_agree_spike_for_spike(shared_data, tmp_path, kind):
    path, net, frontend = _random_vad(tmp_path, kind=kind)
    bin_us = net.cfg.bin_us
    ev, n_bins = _events_of(shared_data, "speech/jfk.wav", 3.0, frontend)
    c = frontend.channels
    counts = np.zeros((1, n_bins, 2 * c), np.float32)
    keep = ev["t"] // bin_us < n_bins
    np.add.at(counts[0], (ev["t"][keep] // bin_us, ev["p"][keep].astype(np.int64) * c + ev["x"][keep]), 1)

    y_kernel, out_kernel = net.output_spikes(counts)
    assert np.allclose(y_kernel, net(torch.from_numpy(counts))[0].detach().numpy())

    topo = read_topology(path)
    mirror = SNN(topo).double()
    with torch.no_grad():
        for name, (w, r) in zip(layer_names(net.cfg), net.layer_weights()):
            if name in mirror.layers:
                mirror.layers[name].weight.copy_(torch.from_numpy(w))
                if r is not None:
                    mirror.layers[name].recurrent_weight.copy_(torch.from_numpy(r))
        out_mirror = mirror(torch.from_numpy(counts).permute(1, 0, 2).double())[:, 0].numpy()

    model = load_vad(path)
    spikes, _, _ = run_stage(model.network, model.frontend.out_spec(_pcm_spec(16000)),
                             cut_at(ev[keep], [], t_end_us=n_bins * bin_us))
    out_engine = np.zeros_like(out_mirror)
    np.add.at(out_engine, (spikes["t"] // bin_us, spikes["addr"]), 1)

    assert out_engine.sum() > 20
    np.testing.assert_array_equal(out_mirror, out_engine)
    np.testing.assert_array_equal(out_kernel[0], out_engine)
    # the quantity the sink scores: the readout spikes' trace, or the integrator readout's potential
    seg = model.segmenter
    if kind == "integrator":
        drive = out_engine @ np.asarray(seg["readout_weights"])
        a = np.exp(-bin_us / seg["tau_us"])
    else:
        drive = out_engine.sum(1)
        a = net.cfg.trace_decay()
    np.testing.assert_allclose(y_kernel[0], _trace(drive, a), rtol=1e-9, atol=1e-9)


def _trace(per_bin, a):
    y, out = 0.0, np.empty_like(per_bin)
    for i, s in enumerate(per_bin):
        y = a * y + s
        out[i] = y
    return out


def _pcm_spec(rate):
    from sensors.audio_frontend import pcm_spec

    return pcm_spec(rate)


def test_graph_on_a_real_clip_trio_equals_reference_and_block_size_does_not_matter(shared_data, tmp_path):
    path, _, _ = _random_vad(tmp_path, seed=1)
    clip = shared_data / "audio" / "english.wav"  # 8 kHz: the upper channels are off
    scores = tmp_path / "scores.csv"
    r1 = run(build(AudioFileSource(clip, block_ms=32), scores_path=str(scores), weights=path))
    r2 = run_reference(build(AudioFileSource(clip, block_ms=7), weights=path))
    assert r1["segments"] == r2["segments"]
    assert r1["ops"]["synaptic_ops"] == r2["ops"]["synaptic_ops"] > 0
    assert r1["ops"]["frontend_macs"] == r2["ops"]["frontend_macs"] > 0
    lines = scores.read_text().splitlines()
    assert lines[1] == "t_us,score" and len(lines) - 2 == int(sf.info(str(clip)).duration * 100)
    for s in r1["segments"]:
        assert 0 <= s["start_us"] <= s["decided_us"] < s["end_us"] and s["label"] == "speech"


@pytest.mark.parametrize("kind", ["plain", "integrator"])
def test_silence_costs_no_synaptic_op(tmp_path, kind):
    path, _, _ = _random_vad(tmp_path, seed=2, kind=kind)
    wav = tmp_path / "silence.wav"
    sf.write(str(wav), np.zeros(16000 * 3, np.float32), 16000)
    report = run(build(AudioFileSource(wav), weights=path))
    assert report["ops"]["synaptic_ops"] == 0 and report["segments"] == []
    assert report["nodes"]["snn"]["events_in"] == 0 and report["ops"]["frontend_macs"] > 0


def test_a_network_without_vad_meta_is_refused(tmp_path):
    frontend = AudioFrontEnd()
    topo = vad_topology(VadConfig(inputs=32, hidden=(4,), readout=1), frontend)
    topo["meta"] = {}
    arrays = {"hidden.weight": np.zeros((4, 32)), "hidden.recurrent_weight": np.zeros((4, 4)),
              "readout.weight": np.zeros((1, 4))}
    write_plain_network(topo, tmp_path / "plain.json", arrays)
    with pytest.raises(FormatError, match="meta.vad"):
        load_vad(tmp_path / "plain.json")


def test_shipped_weights_detect_speech_in_labelled_clips(shared_data):
    model = load_vad(DEFAULT_WEIGHTS)
    assert model.network.input_shape == (2 * model.frontend.channels,)
    labels, decisions = [], []
    for name in ("cobra_sample.wav", "speechbrain_vad_valid.wav"):
        clip = shared_data / "audio" / "labelled" / name
        report = run(build(AudioFileSource(clip)))
        n = int(sf.info(str(clip)).frames) * 100 // 16000
        speech, scored = frame_labels(clip, n)
        labels.append(speech[scored])
        decisions.append(frames_from_segments(report["segments"], n)[scored])
        onset_ms = [(s["decided_us"] - s["start_us"]) / 1000 for s in report["segments"]]
        assert all(0 <= d <= model.segmenter["onset_lead_us"] / 1000 for d in onset_ms)
    m = frame_metrics(np.concatenate(labels), np.concatenate(decisions))
    assert m["balanced_accuracy"] > 0.75 and m["f1"] > 0.7
