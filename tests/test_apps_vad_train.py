"""VAD trainer: a tiny run writes a loadable VAD network, and the same options give the same weights again (the
shipped weights are reproducible by ``clockless train vad``); its segmenter settings come from validation mixtures."""

from __future__ import annotations

import json

import numpy as np
import pytest

from apps.vad.train import main
from graphs.vad import load_vad

TINY = ["--synth", "0", "--steps", "3", "--batch", "2", "--clip-s", "1.0", "--val-clips", "2", "--val-every", "3",
        "--hidden", "8", "--tau-ms", "30", "100", "--recurrent", "1", "0", "--reset", "zero", "none", "--quiet"]


@pytest.mark.usefixtures("shared_data")
def test_tiny_training_is_reproducible_and_loads(tmp_path, shared_data):
    outs = []
    for name in ("a", "b"):
        out = tmp_path / name / "vad.json"
        assert main([*TINY, "--audio-dir", str(shared_data / "audio"), "--out", str(out)]) == 0
        outs.append(out)
    a, b = (np.load(o.with_suffix(".npz")) for o in outs)
    assert sorted(a.files) == sorted(b.files) and a.files
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])
    seg_a, seg_b = (json.loads(o.read_text())["meta"]["vad"]["segmenter"] for o in outs)
    assert seg_a == seg_b
    model = load_vad(outs[0])
    assert json.loads(outs[0].read_text())["bin_us"] == model.frontend.frame_us  # one front-end frame per bin
    assert 0 < model.segmenter["off"] <= model.segmenter["on"] < 1
    train = model.meta["train"]
    assert train["steps"] == 3 and train["argv"][:2] == ["--synth", "0"]


@pytest.mark.usefixtures("shared_data")
def test_retune_of_a_written_network_finds_the_same_segmenter(tmp_path, shared_data):
    out = tmp_path / "a" / "vad.json"
    assert main([*TINY, "--audio-dir", str(shared_data / "audio"), "--out", str(out)]) == 0
    again = tmp_path / "b" / "vad.json"
    assert main(["--retune", str(out), "--audio-dir", str(shared_data / "audio"), "--out", str(again), "--quiet"]) == 0
    seg_a, seg_b = (json.loads(o.read_text())["meta"]["vad"]["segmenter"] for o in (out, again))
    assert seg_a == seg_b
    a, b = (np.load(o.with_suffix(".npz")) for o in (out, again))
    for k in a.files:
        np.testing.assert_array_equal(a[k], b[k])


def test_retune_refuses_a_network_without_integrator_readout(tmp_path, shared_data):
    from runtime.errors import FormatError

    out = tmp_path / "spike" / "vad.json"
    tiny = [*TINY[:TINY.index("--tau-ms")], "--tau-ms", "30", "40", "--recurrent", "1", "0", "--reset", "zero", "zero",
            "--readout", "2", "--quiet"]
    assert main([*tiny, "--audio-dir", str(shared_data / "audio"), "--out", str(out)]) == 0
    with pytest.raises(FormatError, match="integrator readout"):
        main(["--retune", str(out), "--audio-dir", str(shared_data / "audio"), "--out", str(tmp_path / "x.json")])


@pytest.mark.usefixtures("shared_data")
def test_weight_average_changes_what_is_saved_and_bad_decays_are_refused(tmp_path, shared_data):
    """With --ema the validated and saved weights are the average, not the last step's: a tiny run differs from
    the same run without it (and is itself reproducible); a decay outside [0, 1) is refused by name."""
    runs = {}
    for name, extra in (("plain", []), ("ema", ["--ema", "0.5"]), ("ema2", ["--ema", "0.5"])):
        out = tmp_path / name / "vad.json"
        assert main([*TINY, "--steps", "6", "--val-every", "6", *extra, "--audio-dir", str(shared_data / "audio"),
                     "--out", str(out)]) == 0
        runs[name] = np.load(out.with_suffix(".npz"))
    keys = runs["plain"].files
    assert any(not np.array_equal(runs["plain"][k], runs["ema"][k]) for k in keys)
    for k in keys:
        np.testing.assert_array_equal(runs["ema"][k], runs["ema2"][k])
    with pytest.raises(SystemExit, match="--ema"):
        main([*TINY, "--ema", "1.0", "--out", str(tmp_path / "x" / "vad.json")])
