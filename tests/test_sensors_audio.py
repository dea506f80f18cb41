"""Audio sources on the real files in ../shared/data/audio: every container, raw PCM, windows, mono mixing,
the microphone's error when there is none, and cochlea spike files."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from runtime.errors import DeviceError, FormatError
from runtime.events import AUDIO_EVENT
from runtime.packet import concat_events
from sensors.audio import (
    PCM_FORMATS, AudioFileSource, MicrophoneSource, RawPcmSource, audio_file_source, cochlea_source,
)
from sensors.audio_frontend import PCM_SAMPLE


def _drain(source):
    opened = source.open()
    try:
        packets = list(opened)
    finally:
        opened.close()
    return opened, packets


def _check_stream(packets, rate):
    last_end = 0
    n = 0
    for p in packets:
        t = p.events["t"]
        assert not p.events.flags.writeable
        assert t[0] >= last_end and np.all(np.diff(t) > 0) and t[-1] < p.t_end_us
        last_end = p.t_end_us
        n += len(p)
    return n


@pytest.mark.parametrize("rel", [
    "speech/jfk.wav",  # WAV PCM_16
    "labelled/ami_trn03.wav",  # WAV float
    "speech/mix_cut_test_audio_storage_2412-153948-0001.flac",
    "speech/198-209-0000.ogg",
    "speech/common_voice_en_651325.mp3",
    "noise/car_engine.wav",  # stereo 44.1 kHz
])
def test_file_source_decodes_every_container(shared_data, rel):
    path = shared_data / "audio" / rel
    ref, rate = sf.read(str(path), dtype="float32", always_2d=True)
    opened, packets = _drain(AudioFileSource(path, block_ms=20))
    assert opened.spec.kind == "pcm" and opened.spec.dtype == PCM_SAMPLE and opened.spec.meta["rate_hz"] == rate
    assert _check_stream(packets, rate) == ref.shape[0]
    samples = concat_events(packets, PCM_SAMPLE)
    np.testing.assert_allclose(samples["v"], ref.mean(axis=1), atol=1e-6)
    np.testing.assert_array_equal(samples["t"], np.arange(ref.shape[0]) * 1_000_000 // rate)
    assert packets[-1].t_end_us == ref.shape[0] * 1_000_000 // rate
    assert opened.info()["duration_us"] == ref.shape[0] * 1_000_000 // rate
    assert opened.info().get("samples_missing_vs_header", 0) == (sf.info(str(path)).frames - ref.shape[0])


def test_channel_selection_and_window(shared_data):
    path = shared_data / "audio" / "noise" / "car_engine.wav"
    ref, rate = sf.read(str(path), dtype="float32", always_2d=True)
    _, packets = _drain(AudioFileSource(path, channel=1, start_us=1_000_000, duration_us=250_000))
    samples = concat_events(packets, PCM_SAMPLE)
    assert samples.shape[0] == rate // 4
    np.testing.assert_array_equal(samples["v"], ref[rate: rate + rate // 4, 1])
    assert samples["t"][0] == 1_000_000  # time stays measured from the file's first sample
    with pytest.raises(FormatError, match="channel 5 requested"):
        AudioFileSource(path, channel=5).open()


def test_raw_pcm_matches_numpy(shared_data):
    path = shared_data / "audio" / "webrtcvad_test_8k_s16le.raw"
    ref = np.frombuffer(path.read_bytes(), "<i2").astype(np.float32) / 32768
    opened, packets = _drain(audio_file_source(path, fmt="pcm", rate_hz=8000))
    assert opened.spec.meta["rate_hz"] == 8000
    samples = concat_events(packets, PCM_SAMPLE)
    np.testing.assert_array_equal(samples["v"], ref)
    assert _check_stream(packets, 8000) == ref.size


@pytest.mark.parametrize("fmt", sorted(PCM_FORMATS))
def test_raw_pcm_formats_round_trip(tmp_path, fmt):
    rng = np.random.default_rng(0)
    x = np.round(rng.uniform(-0.9, 0.9, 500) * 100) / 128  # exactly representable in every format
    dt, scale, offset = PCM_FORMATS[fmt]
    if dt == "s24le":
        v = np.round(x * scale).astype(np.int32) & 0xFFFFFF
        raw = np.stack([v & 0xFF, (v >> 8) & 0xFF, (v >> 16) & 0xFF], axis=1).astype(np.uint8).tobytes()
    else:
        raw = np.round(x * scale + offset).astype(dt).tobytes() if scale != 1.0 else x.astype(dt).tobytes()
    path = tmp_path / "a.pcm"
    path.write_bytes(raw)
    _, packets = _drain(RawPcmSource(path, 16000, fmt))
    np.testing.assert_allclose(concat_events(packets, PCM_SAMPLE)["v"], x, atol=1e-7)


def test_raw_pcm_stereo_is_averaged(tmp_path):
    x = np.array([[1000, -1000], [2000, 0], [0, 4000]], "<i2")
    path = tmp_path / "s.raw"
    path.write_bytes(x.tobytes())
    _, packets = _drain(RawPcmSource(path, 8000, "s16le", channels=2))
    np.testing.assert_allclose(concat_events(packets, PCM_SAMPLE)["v"], x.mean(axis=1) / 32768)


def test_errors_are_clear(tmp_path, shared_data):
    with pytest.raises(FormatError, match="no such file"):
        AudioFileSource(tmp_path / "missing.wav").open()
    junk = tmp_path / "junk.wav"
    junk.write_bytes(b"this is not audio at all" * 10)
    with pytest.raises(FormatError, match="junk.wav: not an audio file"):
        AudioFileSource(junk).open()
    odd = tmp_path / "odd.pcm"
    odd.write_bytes(b"\x00" * 7)
    with pytest.raises(FormatError, match="not a whole number of s16le frames"):
        RawPcmSource(odd, 16000).open()
    with pytest.raises(FormatError, match="unknown PCM sample format 'u12'"):
        RawPcmSource(odd, 16000, "u12").open()
    with pytest.raises(FormatError, match="--rate-hz"):
        audio_file_source(odd)
    with pytest.raises(FormatError, match="sample rate must be"):
        RawPcmSource(odd, 100, "u8").open()


def test_microphone_that_is_not_there_raises_device_error():
    # device 987654 exists nowhere: without PortAudio the import fails, with it the device lookup does
    with pytest.raises(DeviceError, match="microphone"):
        MicrophoneSource(device=987654).open()


def test_cochlea_file_is_audio_events(shared_data):
    opened, packets = _drain(cochlea_source(shared_data / "audio" / "nas_mono_32ch.aedat"))
    assert opened.spec.kind == "audio" and opened.spec.dtype == AUDIO_EVENT
    ev = concat_events(packets, AUDIO_EVENT)
    assert ev.size == (shared_data / "audio" / "nas_mono_32ch.aedat").stat().st_size // 6
    assert ev["x"].min() >= 0 and ev["x"].max() < 32 and np.all(np.diff(ev["t"]) >= 0)
    assert 0 < ev["p"].mean() < 1
