"""Voice activity detection graph: audio → spiking front end → SNN → speech segments.

    g = Graph("vad")
    pcm    = g.source("audio", source)                         # PCM sample packets (file, raw PCM, microphone)
    spikes = g.stage("frontend", AudioFrontEnd(...), pcm)      # filterbank → noise floor → delta-modulated spikes
    hidden = g.stage("snn", network, spikes)                   # recurrent LIF layers
    g.sink("segments", SpeechSegmenter(...), hidden)           # readout → score → segments with hangover

The network file (``graphs/weights/vad.json`` + ``vad.npz``, the ``graphs.network`` format) carries the weights,
the neuron constants, and in ``meta.vad`` the front-end settings the network was trained with and the segmenter's
constants (with a leaky-integrator readout, its weights, bias and time constant: the sink runs it, exactly and only
when a spike arrives), so training and run time cannot drift apart. A source that already emits cochlea events
(AUDIO_EVENT, e.g. a NAS recording) skips the front end; the network then needs as many channels as the cochlea has
(the shipped one is trained on its own front end).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.engine.network import Network
from runtime.errors import FormatError
from runtime.graph import Graph
from sensors.audio_frontend import AudioFrontEnd

from .network import load_network
from .vad_segmenter import SpeechSegmenter

__all__ = ["build", "build_default", "load_vad", "VadModel", "DEFAULT_WEIGHTS"]

DEFAULT_WEIGHTS = Path(__file__).resolve().parent / "weights" / "vad.json"


@dataclass(frozen=True)
class VadModel:
    frontend: AudioFrontEnd
    network: Network
    segmenter: dict  # SpeechSegmenter keyword arguments (tau_us, y_scale, on, off, hangover_us, onset_lead_us)
    meta: dict


def load_vad(path: str | Path = DEFAULT_WEIGHTS) -> VadModel:
    """Read a VAD network file (``graphs.network`` format) whose ``meta.vad`` holds the front end and segmenter."""
    network = load_network(path)
    vad = network.meta.get("vad")
    where = Path(path).with_suffix(".json")
    if not isinstance(vad, dict) or "frontend" not in vad or "segmenter" not in vad:
        raise FormatError(where, "field 'meta.vad' with 'frontend' and 'segmenter' is missing: this is not a VAD "
                                 "network (train one with 'clockless train vad')")
    try:
        frontend = AudioFrontEnd(**vad["frontend"])
    except (TypeError, ValueError) as exc:
        raise FormatError(where, f"field 'meta.vad.frontend': {exc}") from None
    n_in = 2 * frontend.channels
    if network.input_shape not in ((n_in,), (2, frontend.channels)):
        raise FormatError(where, f"input shape {network.input_shape} does not fit the front end's {frontend.channels} "
                                 f"channels (expected ({n_in},))")
    return VadModel(frontend, network, dict(vad["segmenter"]), dict(network.meta))


def build(source: Any, scores_path: str | None = None, weights: str | Path | None = None, **segmenter: Any) -> Graph:
    """The VAD graph on ``source`` (PCM packets, or AUDIO_EVENT cochlea events); ``segmenter`` overrides the
    network file's segmenter constants (e.g. ``hangover_us``)."""
    model = load_vad(weights or DEFAULT_WEIGHTS)
    g = Graph("vad")
    ev = g.source("audio", source)
    if _emits_pcm(source):
        ev = g.stage("frontend", model.frontend, ev)
    ev = g.stage("snn", model.network, ev)
    g.sink("segments", SpeechSegmenter(scores_path=scores_path, **{**model.segmenter, **segmenter}), ev)
    return g


def build_default() -> Graph:
    from sensors.audio import AudioFileSource

    clip = Path(__file__).resolve().parents[2] / "shared" / "data" / "audio" / "english.wav"
    return build(AudioFileSource(clip))


def _emits_pcm(source: Any) -> bool:
    from sensors.audio import AudioFileSource, MicrophoneSource, RawPcmSource

    return isinstance(source, (AudioFileSource, RawPcmSource, MicrophoneSource)) or \
        getattr(source, "emits", None) == "pcm"
