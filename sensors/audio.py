"""Audio sources: files (WAV, FLAC, OGG, MP3... via soundfile), raw PCM, the microphone (sounddevice), and
neuromorphic-cochlea spike recordings.

Sources of sound emit **PCM packets** (``sensors.audio_frontend.PCM_SAMPLE``: one record per mono sample, ``t`` =
floor(n × 10⁶ / rate) µs from the file's first sample, ``v`` in [-1, 1]); the spiking front end
(``AudioFrontEnd``) is the next stage of the graph and turns them into AUDIO_EVENT spikes. Keeping it a stage
makes its work visible in the report (``frontend_macs``, busy time) like any other node. Each packet holds one
block of ``block_ms`` of audio and its watermark is the time of the next sample, so the front end sees every
sample exactly once whatever the block size. Multi-channel audio is averaged to mono unless ``channel`` picks one.

Cochlea recordings (NAS AEDAT) are already spikes: ``cochlea_source`` replays them as AUDIO_EVENT packets
through the readers of ``sensors.formats`` (no front end).

>>> from sensors.audio import AudioFileSource
>>> opened = AudioFileSource("../shared/data/audio/english.wav").open()   # doctest: +SKIP
>>> opened.spec.meta["rate_hz"], next(opened).events.dtype.names         # doctest: +SKIP
(8000, ('t', 'v'))
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from runtime.errors import DeviceError, FormatError
from runtime.packet import Packet
from runtime.sources import OpenIter

from .audio_frontend import MAX_RATE_HZ, MIN_RATE_HZ, PCM_SAMPLE, pcm_spec

__all__ = [
    "AudioFileSource", "RawPcmSource", "MicrophoneSource", "PCM_FORMATS", "audio_file_source", "cochlea_source",
    "pcm_packet", "SOUNDFILE_EXTS",
]

SOUNDFILE_EXTS = {".wav", ".flac", ".ogg", ".oga", ".mp3", ".aiff", ".aif", ".au", ".caf", ".w64", ".rf64"}

# name -> (numpy dtype, full-scale divisor, offset)
PCM_FORMATS: dict[str, tuple[str, float, float]] = {
    "u8": ("u1", 128.0, 128.0),
    "s8": ("i1", 128.0, 0.0),
    "s16le": ("<i2", 32768.0, 0.0),
    "s16be": (">i2", 32768.0, 0.0),
    "s24le": ("s24le", 8388608.0, 0.0),  # 3 bytes per sample, unpacked by hand
    "s32le": ("<i4", 2147483648.0, 0.0),
    "s32be": (">i4", 2147483648.0, 0.0),
    "f32le": ("<f4", 1.0, 0.0),
    "f32be": (">f4", 1.0, 0.0),
    "f64le": ("<f8", 1.0, 0.0),
}


def pcm_packet(samples: np.ndarray, n0: int, rate_hz: int) -> Packet:
    """A read-only PCM packet of mono ``samples`` starting at absolute sample index ``n0``."""
    n = np.arange(n0, n0 + samples.shape[0], dtype=np.int64)
    ev = np.empty(samples.shape[0], PCM_SAMPLE)
    ev["t"] = n * 1_000_000 // rate_hz
    ev["v"] = samples
    ev.flags.writeable = False
    return Packet(ev, (n0 + samples.shape[0]) * 1_000_000 // rate_hz)


def _check_rate(rate_hz: int, where: str) -> int:
    if int(rate_hz) != rate_hz or not MIN_RATE_HZ <= rate_hz <= MAX_RATE_HZ:
        raise FormatError(where, f"sample rate must be an integer in {MIN_RATE_HZ}..{MAX_RATE_HZ} Hz, got {rate_hz}")
    return int(rate_hz)


def _window(rate: int, total: int, start_us: int | None, duration_us: int | None, where: str) -> tuple[int, int]:
    """Sample range [first, stop) of the replay window."""
    if start_us is not None and start_us < 0:
        raise ValueError(f"{where}: start_us must be ≥ 0, got {start_us}")
    if duration_us is not None and duration_us < 1:
        raise ValueError(f"{where}: duration_us must be ≥ 1 µs, got {duration_us}")
    first = 0 if start_us is None else -((-start_us * rate) // 1_000_000)
    stop = total if duration_us is None else min(total, -((-(int(start_us or 0) + duration_us) * rate) // 1_000_000))
    return min(first, total), max(min(first, total), stop)


def _to_mono(block: np.ndarray, channel: int | None, path: str) -> np.ndarray:
    if block.ndim == 1:
        return block
    if block.shape[1] == 1 and channel in (None, 0):
        return block[:, 0]
    if channel is None:
        return block.mean(axis=1, dtype=np.float32)
    if not 0 <= channel < block.shape[1]:
        raise FormatError(path, f"channel {channel} requested, the file has {block.shape[1]} (0..{block.shape[1] - 1})")
    return np.ascontiguousarray(block[:, channel])


@dataclass(frozen=True)
class AudioFileSource:
    """An audio file decoded by soundfile (libsndfile: WAV, FLAC, OGG/Vorbis, MP3, AIFF...), one PCM packet per
    ``block_ms`` block. ``start_us``/``duration_us`` pick a window; time stays measured from the file's start."""

    path: str | Path
    start_us: int | None = None
    duration_us: int | None = None
    block_ms: float = 32.0
    channel: int | None = None  # None: average all channels
    name: str = "audio"

    def open(self) -> OpenIter:
        import soundfile as sf

        path = str(self.path)
        if not Path(path).is_file():
            raise FormatError(path, "no such file")
        try:
            f = sf.SoundFile(path)
        except (sf.LibsndfileError, RuntimeError, TypeError) as exc:
            raise FormatError(path, f"not an audio file soundfile can decode ({exc}); for headerless PCM use "
                                    "--format pcm --rate-hz RATE") from None
        try:
            rate = _check_rate(f.samplerate, path)
            total = f.frames
            first, stop = _window(rate, total, self.start_us, self.duration_us, self.name)
            if self.channel is not None and not 0 <= self.channel < f.channels:
                raise FormatError(path, f"channel {self.channel} requested, the file has {f.channels}")
            block = max(1, int(round(self.block_ms * rate / 1000)))
            if first:
                f.seek(first)
        except BaseException:
            f.close()
            raise
        info = {"source": self.name, "path": path, "format": f"{f.format}/{f.subtype}", "rate_hz": rate,
                "channels_in_file": f.channels, "samples": stop - first, "duration_us": (stop - first) * 10**6 // rate}
        spec = pcm_spec(rate, source=self.name, path=path)

        def packets() -> Iterator[Packet]:
            # decode about half a second per call (libsndfile calls cost more than the samples), emit blocks
            chunk = block * max(1, (rate // 2) // block)
            n = first
            while n < stop:
                try:
                    data = f.read(min(chunk, stop - n), dtype="float32", always_2d=True)
                except (sf.LibsndfileError, RuntimeError) as exc:
                    raise FormatError(path, f"decoding failed near sample {n}: {exc}") from None
                if data.shape[0] == 0:
                    # the header's frame count is an estimate for MP3 (and wrong for a truncated file): the
                    # stream ends at the last sample decoded, and info() says how many were missing
                    info["samples"] = n - first
                    info["duration_us"] = (n - first) * 10**6 // rate
                    info["samples_missing_vs_header"] = stop - n
                    return
                x = _to_mono(data, self.channel, path)
                for a in range(0, x.shape[0], block):
                    yield pcm_packet(x[a:a + block], n + a, rate)
                n += data.shape[0]

        return OpenIter(spec, packets(), info=info, on_close=f.close)


@dataclass(frozen=True)
class RawPcmSource:
    """Headerless PCM: ``rate_hz`` and ``sample_format`` (a key of ``PCM_FORMATS``) must be given; interleaved
    when ``channels`` > 1 (averaged to mono unless ``channel`` picks one)."""

    path: str | Path
    rate_hz: int
    sample_format: str = "s16le"
    channels: int = 1
    start_us: int | None = None
    duration_us: int | None = None
    block_ms: float = 32.0
    channel: int | None = None
    name: str = "pcm"

    def open(self) -> OpenIter:
        path = str(self.path)
        if self.sample_format not in PCM_FORMATS:
            raise FormatError(path, f"unknown PCM sample format {self.sample_format!r}; expected one of "
                                    f"{', '.join(PCM_FORMATS)}")
        rate = _check_rate(self.rate_hz, path)
        if self.channels < 1:
            raise FormatError(path, f"channels must be ≥ 1, got {self.channels}")
        p = Path(path)
        if not p.is_file():
            raise FormatError(path, "no such file")
        dt_name, scale, offset = PCM_FORMATS[self.sample_format]
        width = 3 if dt_name == "s24le" else np.dtype(dt_name).itemsize
        frame_bytes = width * self.channels
        size = p.stat().st_size
        if size % frame_bytes:
            raise FormatError(path, f"size {size} bytes is not a whole number of {self.sample_format} frames of "
                                    f"{frame_bytes} bytes ({self.channels} channel(s)); wrong format or channels?",
                              offset=size - size % frame_bytes)
        total = size // frame_bytes
        first, stop = _window(rate, total, self.start_us, self.duration_us, self.name)
        block = max(1, int(round(self.block_ms * rate / 1000)))
        f = open(path, "rb")
        f.seek(first * frame_bytes)
        info = {"source": self.name, "path": path, "format": f"raw {self.sample_format}", "rate_hz": rate,
                "channels_in_file": self.channels, "samples": stop - first,
                "duration_us": (stop - first) * 10**6 // rate}
        spec = pcm_spec(rate, source=self.name, path=path)

        def packets() -> Iterator[Packet]:
            n = first
            while n < stop:
                want = min(block, stop - n)
                raw = f.read(want * frame_bytes)
                got = len(raw) // frame_bytes
                if got == 0:
                    raise FormatError(path, "file shrank while it was read", offset=n * frame_bytes)
                x = _decode_pcm(raw[: got * frame_bytes], dt_name, scale, offset).reshape(got, self.channels)
                yield pcm_packet(_to_mono(x, self.channel, path), n, rate)
                n += got

        return OpenIter(spec, packets(), info=info, on_close=f.close)


def _decode_pcm(raw: bytes, dt_name: str, scale: float, offset: float) -> np.ndarray:
    if dt_name == "s24le":
        b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        v = np.where(v >= 1 << 23, v - (1 << 24), v)
        return (v / scale).astype(np.float32)
    v = np.frombuffer(raw, dt_name).astype(np.float64)
    return ((v - offset) / scale).astype(np.float32)


@dataclass(frozen=True)
class MicrophoneSource:
    """Live microphone via sounddevice (PortAudio). ``next()`` blocks until a block of ``block_ms`` arrives, so
    the executor reads it in a worker thread (``blocking=True``). Input overflows (samples the host dropped) are
    counted in ``info()['overflows']``; time keeps counting samples delivered."""

    rate_hz: int = 16000
    device: int | str | None = None
    block_ms: float = 10.0
    channels: int = 1
    name: str = "microphone"

    def open(self) -> OpenIter:
        rate = _check_rate(self.rate_hz, self.name)
        try:
            import sounddevice as sd
        except ImportError:
            raise DeviceError(f"{self.name}: the microphone needs sounddevice: pip install sounddevice") from None
        except OSError as exc:  # sounddevice raises OSError at import when the PortAudio library is missing
            raise DeviceError(f"{self.name}: cannot use the microphone: {exc} (install PortAudio, e.g. "
                              "apt-get install libportaudio2)") from None
        block = max(1, int(round(self.block_ms * rate / 1000)))
        try:
            stream = sd.InputStream(samplerate=rate, channels=self.channels, dtype="float32", blocksize=block,
                                    device=self.device)
            stream.start()
        except Exception as exc:  # PortAudioError, ValueError (no such device)
            raise DeviceError(f"{self.name}: cannot open input device {self.device!r} at {rate} Hz: {exc} "
                              "(list devices with: python -m sounddevice)") from None
        info: dict[str, Any] = {"source": self.name, "device": str(self.device), "rate_hz": rate, "overflows": 0}
        lock = threading.Lock()

        def packets() -> Iterator[Packet]:
            n = 0
            while True:
                with lock:
                    if stream.closed:
                        return
                    try:
                        data, overflowed = stream.read(block)
                    except Exception as exc:
                        raise DeviceError(f"{self.name}: input stream failed after {n} samples: {exc}") from None
                if overflowed:
                    info["overflows"] += 1
                yield pcm_packet(_to_mono(np.asarray(data, np.float32), None, self.name), n, rate)
                n += data.shape[0]

        def close() -> None:
            with lock:
                if not stream.closed:
                    stream.stop()
                    stream.close()
            info["ended"] = info.get("ended", "closed")

        return OpenIter(pcm_spec(rate, source=self.name), packets(), blocking=True, info=info, on_close=close)


def cochlea_source(path: str | Path, channels: int | None = None, **kwargs):
    """A NAS cochlea AEDAT recording replayed as AUDIO_EVENT packets (x = channel, p = ON), no front end."""
    from .replay import ReplaySource

    return ReplaySource(path, format="nas_aedat", sensor_size=channels, name="cochlea", **kwargs)


def audio_file_source(path: str | Path, fmt: str | None = None, rate_hz: int | None = None,
                      start_us: int | None = None, duration_us: int | None = None, **kwargs):
    """The right source for an audio path: soundfile containers, raw PCM (``fmt='pcm'`` or a ``.pcm``/``.raw``/
    ``.s16le`` name; needs ``rate_hz``; ``sample_format`` defaults to s16le), or a NAS cochlea file
    (``fmt='nas_aedat'``)."""
    p = Path(path)
    ext = p.suffix.lower()
    if fmt == "nas_aedat":
        return cochlea_source(p, start_us=start_us, duration_us=duration_us)
    if fmt in ("pcm", "raw") or fmt in PCM_FORMATS or ext in (".pcm", ".raw", ".s16le"):
        if rate_hz is None:
            raise FormatError(p, "headerless PCM needs its sample rate: pass --rate-hz (e.g. --rate-hz 16000)")
        sample_format = fmt if fmt in PCM_FORMATS else kwargs.pop("sample_format", "s16le")
        return RawPcmSource(p, rate_hz, sample_format, start_us=start_us, duration_us=duration_us, **kwargs)
    return AudioFileSource(p, start_us=start_us, duration_us=duration_us, **kwargs)
