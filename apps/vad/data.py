"""Training and test audio for the VAD: loading, speech synthesis, clean-speech labels, noisy mixtures.

Sources (see ../shared/data/README.md): real speech in ``audio/speech`` (about 3 minutes), speech synthesised with
espeak-ng (many voices, languages, rates, pitches), real noise and music in ``audio/noise`` (the files in
``HELD_OUT_NOISE`` are kept for the bench's noisy test mixtures and never used in training), and synthetic noise
(white, pink, brown, babble, mains hum). ``audio/labelled`` is validation data and is never read here.

Labels are per millisecond, from the energy of the clean (dry) speech track before it is mixed.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy.signal import fftconvolve, resample_poly

from runtime.errors import FormatError

__all__ = [
    "HELD_OUT_NOISE", "AUDIO_SUFFIXES", "default_audio_dir", "load_mono", "resample", "clean_speech_labels",
    "synthesise_espeak", "Pools", "SYNTHETIC_NOISE", "load_pools", "make_mixture", "synthetic_noise", "mix_at_snr",
    "distant_talkers",
]

HELD_OUT_NOISE = (
    "music_kevin_macleod_vibe_ace.ogg",
    "running_tap.wav",
    "city.mp3",
    "typing.wav",
    "noise5.wav",
)
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".mp3")
SYNTHETIC_NOISE = ("white", "pink", "brown", "babble", "hum", "clicks", "music")


def default_audio_dir() -> Path:
    return Path(__file__).resolve().parents[2].parent / "shared" / "data" / "audio"


def resample(x: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    if rate_in == rate_out:
        return x.astype(np.float32, copy=False)
    g = np.gcd(int(rate_in), int(rate_out))
    return resample_poly(x, rate_out // g, rate_in // g).astype(np.float32)


def load_mono(path: Path | str, rate_hz: int | None = None) -> tuple[np.ndarray, int]:
    """Decode an audio file (soundfile: WAV, FLAC, OGG, MP3...) to float32 mono, optionally resampled."""
    try:
        x, rate = sf.read(str(path), dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError) as exc:
        raise FormatError(path, f"cannot decode audio: {exc}") from exc
    x = x.mean(axis=1)
    if rate_hz is not None and rate != rate_hz:
        x, rate = resample(x, rate, rate_hz), rate_hz
    return np.ascontiguousarray(x, dtype=np.float32), int(rate)


def _frame_power_ms(x: np.ndarray, rate_hz: int, win_ms: int = 20) -> np.ndarray:
    """Mean power in a ``win_ms`` window centred on each millisecond."""
    n_ms = len(x) * 1000 // rate_hz
    edges = (np.arange(n_ms + 1) * rate_hz) // 1000
    c = np.concatenate([[0.0], np.cumsum(x.astype(np.float64) ** 2)])
    per_ms = (c[edges[1:]] - c[edges[:-1]]) / np.maximum(np.diff(edges), 1)
    k = np.ones(win_ms) / win_ms
    return np.convolve(per_ms, k, mode="same")


def clean_speech_labels(
    x: np.ndarray, rate_hz: int, rel_db: float = 35.0, abs_db: float = -65.0, fill_ms: int = 200, min_ms: int = 40
) -> np.ndarray:
    """Per-millisecond speech labels of a clean utterance from its energy.

    Speech where the 20 ms power is within ``rel_db`` of the utterance's loud level (95th percentile) and above
    ``abs_db``; gaps shorter than ``fill_ms`` are filled (a pause inside a phrase is still speech, as human
    annotators mark it), and islands shorter than ``min_ms`` removed.
    """
    p = _frame_power_ms(x, rate_hz)
    if p.size == 0:
        return np.zeros(0, bool)
    loud = np.percentile(p, 95)
    lab = (p > loud * 10 ** (-rel_db / 10)) & (p > 10 ** (abs_db / 10))
    return _close_gaps(lab, fill_ms, min_ms)


def _runs(b: np.ndarray) -> list[tuple[int, int]]:
    d = np.diff(np.concatenate([[0], b.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(d == 1), np.flatnonzero(d == -1)))


def _close_gaps(lab: np.ndarray, fill: int, min_len: int) -> np.ndarray:
    lab = lab.copy()
    runs = _runs(lab)
    for (a0, b0), (a1, _) in zip(runs[:-1], runs[1:]):
        if a1 - b0 < fill:
            lab[b0:a1] = True
    for a, b in _runs(lab):
        if b - a < min_len:
            lab[a:b] = False
    return lab


# ---- speech synthesis ---------------------------------------------------------------------------------------

_WORDS = (
    "the a one two three four five six seven eight nine ten time people year way day man thing woman life child "
    "world school state family student group country problem hand part place case week company system program "
    "question work government number night point home water room mother area money story fact month lot right "
    "study book eye job word business issue side kind head house service friend father power hour game line end "
    "member law car city community name president team minute idea kid body information back parent face others "
    "level office door health person art war history party result change morning reason research girl guy moment "
    "air teacher force education yes no maybe please thank you hello good bad new old great little own other big "
    "high different small large next early young important few public same able go come see know get make think "
    "take say tell find give ask work seem feel try leave call keep let begin help talk turn start show hear play "
    "run move like live believe hold bring happen write provide sit stand lose pay meet include continue set learn "
    "lead understand watch follow stop create speak read allow add spend grow open walk win offer remember love "
    "consider appear buy wait serve die send expect build stay fall cut reach kill remain suggest raise pass sell "
    "weather train station coffee tomorrow yesterday meeting design remote control button battery colour price"
).split()

_LANGS = ("en", "en-us", "en-gb-x-rp", "en-gb-scotland", "en-029", "fr-fr", "de", "es", "it", "pt-br", "nl", "pl",
          "sv", "ru", "hi", "cmn", "ja", "tr", "id", "fi")
_VARIANTS = ("", "m1", "m2", "m3", "m4", "m5", "m6", "m7", "f1", "f2", "f3", "f4", "f5", "croak", "klatt", "klatt2",
             "klatt3", "klatt4", "whisper", "Andy", "Annie", "Denis", "Alicia", "Gene", "Lee", "Mario", "Michael",
             "grandma", "grandpa", "john", "linda", "max", "paul", "steph", "iven", "adam", "belinda", "boris")


def _sentence(rng: np.random.Generator) -> str:
    if rng.random() < 0.5:
        words = rng.choice(_WORDS, rng.integers(3, 14))
    else:  # pseudo-words: any voice can say them, in its own phonology
        cons = list("bdfghklmnprstvwz") + ["sh", "ch", "th", "tr", "st", "pl"]
        vows = ["a", "e", "i", "o", "u", "ai", "ou", "ee"]
        words = ["".join(rng.choice(cons) + rng.choice(vows) for _ in range(rng.integers(1, 4)))
                 for _ in range(rng.integers(3, 12))]
    text = " ".join(words)
    if rng.random() < 0.4:
        cut = rng.integers(1, max(2, len(words)))
        text = " ".join(words[:cut]) + ", " + " ".join(words[cut:])
    return text + rng.choice([".", "?", "!", "."])


def synthesise_espeak(out_dir: Path, count: int, seed: int = 0, espeak: str = "espeak-ng") -> list[Path]:
    """Synthesise ``count`` utterances with random voices, languages, rates and pitches (cached in ``out_dir``).

    Raises FileNotFoundError with an install hint when espeak-ng is missing.
    """
    exe = shutil.which(espeak)
    if exe is None:
        raise FileNotFoundError(f"{espeak} not found: install it (Debian/Ubuntu: apt-get install -y espeak-ng) "
                                "or train with --no-synth")
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        lang = str(rng.choice(_LANGS))
        variant = str(rng.choice(_VARIANTS))
        voice = lang + ("+" + variant if variant else "")
        rate = int(rng.integers(110, 260))
        pitch = int(rng.integers(15, 90))
        amp = 100
        gap = int(rng.integers(0, 15))  # extra pause between words, units of 10 ms
        text = _sentence(rng)
        if rng.random() < 0.3:
            text += " " + _sentence(rng)
        key = hashlib.sha1(f"{voice}|{rate}|{pitch}|{gap}|{text}".encode()).hexdigest()[:16]
        path = out_dir / f"espeak_{i:04d}_{key}.wav"
        if not path.exists():
            tmp = path.with_suffix(".tmp.wav")
            subprocess.run([exe, "-v", voice, "-s", str(rate), "-p", str(pitch), "-a", str(amp), "-g", str(gap),
                            "-w", str(tmp), text], check=True, capture_output=True, timeout=60)
            tmp.rename(path)
        paths.append(path)
    return paths


# ---- pools and mixtures -------------------------------------------------------------------------------------

@dataclass
class Pools:
    rate_hz: int
    speech: list[np.ndarray]  # clean utterances
    speech_labels: list[np.ndarray]  # per-ms labels of each
    speech_real: np.ndarray  # bool per utterance: recorded (True) or synthesised
    noise: list[np.ndarray]  # recorded noise/music
    noise_names: list[str]


def _audio_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix.lower() in AUDIO_SUFFIXES)


def load_pools(audio_dir: Path, synth_paths: list[Path], rate_hz: int = 16000,
               noise_names: list[str] | None = None) -> Pools:
    speech, labels, real = [], [], []
    for paths, is_real in ((_audio_files(audio_dir / "speech"), True), (list(synth_paths), False)):
        for p in paths:
            x, _ = load_mono(p, rate_hz)
            x = x - x.mean()
            speech.append(x)
            labels.append(clean_speech_labels(x, rate_hz))
            real.append(is_real)
    noise, names = [], []
    for p in _audio_files(audio_dir / "noise"):
        if noise_names is None and p.name in HELD_OUT_NOISE:
            continue
        if noise_names is not None and p.name not in noise_names:
            continue
        x, _ = load_mono(p, rate_hz)
        noise.append(x - x.mean())
        names.append(p.name)
    return Pools(rate_hz, speech, labels, np.array(real), noise, names)


def _pink(rng: np.random.Generator, n: int, exponent: float) -> np.ndarray:
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.arange(spec.size, dtype=np.float64)
    f[0] = 1.0
    y = np.fft.irfft(spec / f ** (exponent / 2), n)
    return y / (y.std() + 1e-12)


def synthetic_noise(rng: np.random.Generator, kind: str, n: int, rate_hz: int, pools: Pools | None = None) -> np.ndarray:
    """Unit-RMS synthetic noise: white, pink, brown, hum (mains + harmonics), babble (many talkers), clicks
    (keyboard-like transients) or music (notes of steady pitch with harmonics, sometimes chords and drums)."""
    if kind == "white":
        y = rng.standard_normal(n)
    elif kind == "pink":
        y = _pink(rng, n, 1.0)
    elif kind == "brown":
        y = _pink(rng, n, 2.0)
    elif kind == "hum":
        f0 = rng.choice([50.0, 60.0]) * rng.uniform(0.98, 1.02)
        t = np.arange(n) / rate_hz
        y = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * f0 * k * t + rng.uniform(0, 6.3)) for k in range(1, 12)
                if f0 * k < 0.45 * rate_hz)
        y = y + 0.05 * rng.standard_normal(n)
    elif kind == "babble":
        if pools is None:
            raise ValueError("babble noise needs the speech pool")
        y = np.zeros(n)
        for _ in range(int(rng.integers(8, 16))):
            s = pools.speech[int(rng.integers(len(pools.speech)))]
            s = np.tile(s, int(np.ceil(n / max(len(s), 1))) + 1)
            o = int(rng.integers(0, max(1, len(s) - n)))
            seg = s[o:o + n]
            y += seg / (seg.std() + 1e-9)
        y = fftconvolve(y, _rir(rng, rate_hz, rng.uniform(0.4, 1.0)), mode="full")[:n]
    elif kind == "clicks":
        y = _clicks(rng, n, rate_hz, rate_per_s=rng.uniform(2, 14))
    elif kind == "music":
        y = _music(rng, n, rate_hz)
    else:
        raise ValueError(f"unknown synthetic noise kind {kind!r}: expected one of {', '.join(SYNTHETIC_NOISE)}")
    y = np.asarray(y, dtype=np.float64)
    y = y - y.mean()
    return (y / (np.sqrt(np.mean(y ** 2)) + 1e-12)).astype(np.float32)


def distant_talkers(rng: np.random.Generator, pools: Pools, n: int) -> np.ndarray:
    """Unit-RMS background of one to three talkers across a room: utterances with pauses, each through a long,
    reverberant room response (little direct sound) and a gentle low-pass (distance and the room take the
    highs). Unlike babble (many talkers, a steady murmur) single voices come and go like foreground speech."""
    from scipy.signal import lfilter

    y = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        track = np.zeros(n)
        pos = int(rng.uniform(0, 1.0) * pools.rate_hz)
        while pos < n:
            s = pools.speech[int(rng.integers(len(pools.speech)))]
            s = s[: n - pos] / (np.sqrt(np.mean(s.astype(np.float64) ** 2)) + 1e-9)
            track[pos:pos + len(s)] += s * 10 ** (rng.uniform(-6, 6) / 20)
            pos += len(s) + int(rng.exponential(1.0) * pools.rate_hz)
        h = _rir(rng, pools.rate_hz, rng.uniform(0.4, 1.0))
        h[0] = rng.uniform(0.05, 0.4)  # direct sound well below the reverberation
        track = fftconvolve(track, h, mode="full")[:n]
        a = np.exp(-2 * np.pi * rng.uniform(1500, 4000) / pools.rate_hz)
        y += lfilter([1 - a], [1, -a], track)
    return y / (np.sqrt(np.mean(y ** 2)) + 1e-12)


def _clicks(rng: np.random.Generator, n: int, rate_hz: int, rate_per_s: float) -> np.ndarray:
    """Short decaying bursts, each through its own resonance, at random times (typing, tapping, dishes)."""
    from scipy.signal import lfilter

    y = np.zeros(n)
    t = 0
    while True:
        t += int(rng.exponential(1.0 / rate_per_s) * rate_hz) + rate_hz // 100
        if t >= n:
            break
        m = int(rng.uniform(0.002, 0.03) * rate_hz)
        burst = rng.standard_normal(m) * np.exp(-np.arange(m) / (m / rng.uniform(2, 6)))
        f = rng.uniform(200, 0.4 * rate_hz) / rate_hz
        r = rng.uniform(0.8, 0.99)
        burst = lfilter([1.0], [1.0, -2 * r * np.cos(2 * np.pi * f), r * r], burst)
        k = min(m, n - t)
        y[t:t + k] += burst[:k] * 10 ** (rng.normal(0, 6) / 20) / (np.abs(burst).max() + 1e-12)
    return y + 1e-3 * rng.standard_normal(n)


def _music(rng: np.random.Generator, n: int, rate_hz: int) -> np.ndarray:
    """Notes of steady pitch (harmonic spectra, attack and decay) in one to three voices, sometimes with drums."""
    y = np.zeros(n)
    for _ in range(int(rng.integers(1, 4))):
        t = 0
        timbre = rng.uniform(0, 1, 12) / np.arange(1, 13) ** rng.uniform(0.5, 2.0)
        base = rng.uniform(np.log(80), np.log(900))
        while t < n:
            m = int(rng.uniform(0.1, 0.9) * rate_hz)
            f0 = np.exp(base + rng.normal(0, 0.3))
            k = np.arange(min(m, n - t))
            vib = 1 + 0.004 * np.sin(2 * np.pi * rng.uniform(4, 7) * k / rate_hz) * (rng.random() < 0.5)
            phase = 2 * np.pi * f0 * np.cumsum(vib) / rate_hz
            note = sum(a * np.sin(h * phase) for h, a in enumerate(timbre, 1) if h * f0 < 0.45 * rate_hz)
            env = np.minimum(1.0, k / (0.01 * rate_hz)) * np.exp(-k / (rng.uniform(0.1, 1.5) * rate_hz))
            y[t:t + k.size] += note * env * rng.uniform(0.3, 1.0)
            t += m if rng.random() < 0.85 else m + int(rng.uniform(0.05, 0.4) * rate_hz)
    if rng.random() < 0.4:
        drums = _clicks(rng, n, rate_hz, rate_per_s=rng.uniform(2, 6))
        y = y / (y.std() + 1e-12) + drums / (drums.std() + 1e-12) * rng.uniform(0.2, 1.0)
    return y


def _rir(rng: np.random.Generator, rate_hz: int, rt60_s: float) -> np.ndarray:
    n = max(8, int(rt60_s * rate_hz))
    t = np.arange(n) / rate_hz
    h = rng.standard_normal(n) * np.exp(-6.9 * t / rt60_s)
    h[0] = 0.0
    h *= 10 ** (-rng.uniform(0, 12) / 20) / (np.sqrt(np.sum(h ** 2)) + 1e-12)  # direct-to-reverberant ratio
    h[0] = 1.0
    return h


def mix_at_snr(speech: np.ndarray, labels_ms: np.ndarray, noise: np.ndarray, snr_db: float, rate_hz: int) -> np.ndarray:
    """speech + noise scaled so the speech power over labelled milliseconds is ``snr_db`` above the noise power."""
    if rate_hz % 1000:
        raise ValueError(f"mix_at_snr: rate_hz must be a multiple of 1000 Hz, got {rate_hz}")
    idx = np.repeat(labels_ms, rate_hz // 1000)[: len(speech)]
    active = speech[: len(idx)][idx] if idx.any() else speech
    ps = float(np.mean(active.astype(np.float64) ** 2)) + 1e-20
    pn = float(np.mean(noise.astype(np.float64) ** 2)) + 1e-20
    return (speech + noise * np.sqrt(ps / pn * 10 ** (-snr_db / 10))).astype(np.float32)


def _noise_track(rng: np.random.Generator, pools: Pools, n: int) -> np.ndarray:
    u = rng.random()
    if u < 0.5 and pools.noise:
        src = pools.noise[int(rng.integers(len(pools.noise)))]
        if len(src) < n:
            src = np.tile(src, n // len(src) + 1)
        o = int(rng.integers(0, len(src) - n + 1))
        y = src[o:o + n].astype(np.float64)
        y = y / (y.std() + 1e-9)
    else:
        kind = str(rng.choice(SYNTHETIC_NOISE, p=[0.12, 0.18, 0.1, 0.18, 0.1, 0.16, 0.16]))
        y = synthetic_noise(rng, kind, n, pools.rate_hz, pools).astype(np.float64)
    if rng.random() < 0.25:  # a second, independent noise on top
        y = y + rng.uniform(0.1, 1.0) * _noise_track(rng, pools, n)
    if rng.random() < 0.2:  # noise that comes and goes
        env = np.repeat(rng.random(n // 4000 + 1) < 0.6, 4000)[:n].astype(np.float64)
        env = np.convolve(env, np.ones(400) / 400, mode="same")
        y = y * env
    return y.astype(np.float32)


def make_mixture(rng: np.random.Generator, pools: Pools, duration_s: float, *, real_fraction: float = 0.4,
                 speech_prob: float = 0.8, level_db: tuple[float, float] = (-55.0, -8.0),
                 snr_db: tuple[float, float] = (-5.0, 20.0), distant_prob: float = 0.0,
                 distant_snr_db: tuple[float, float] = (6.0, 25.0)) -> tuple[np.ndarray, np.ndarray]:
    """One random training clip at ``pools.rate_hz``: (samples float32, per-ms speech labels).

    Utterances (real or synthesised; random speed, gain, reverberation) separated by random pauses, over a
    background of real or synthetic noise at ``snr_db`` (uniform, dB); the speech level is uniform in ``level_db``
    (dBFS rms over the speech; distant meeting speech lies near -50 dBFS). Some clips hold no speech.
    With probability ``distant_prob`` the background is instead one to three distant talkers (``distant_talkers``),
    ``distant_snr_db`` below the speech: in a meeting recording the other people across the room are not the
    speech a human labeller marks, so they are labelled non-speech.
    """
    distant = distant_prob > 0 and rng.random() < distant_prob
    rate = pools.rate_hz
    n = int(duration_s * rate)
    n_ms = n * 1000 // rate
    speech = np.zeros(n, np.float32)
    lab = np.zeros(n_ms, bool)
    if rng.random() < speech_prob:
        pos = int(rng.uniform(0, 1.5) * rate)
        real_idx = np.flatnonzero(pools.speech_real)
        synth_idx = np.flatnonzero(~pools.speech_real)
        while pos < n - rate // 5:
            use_real = real_idx.size and (rng.random() < real_fraction or synth_idx.size == 0)
            k = int(rng.choice(real_idx if use_real else synth_idx))
            s, sl = pools.speech[k], pools.speech_labels[k]
            speed = rng.uniform(0.85, 1.15)
            if abs(speed - 1) > 0.02:
                up = int(round(100 / speed))
                s = resample_poly(s, up, 100).astype(np.float32)
                m_ms = len(s) * 1000 // rate
                sl = sl[np.arange(m_ms) * len(sl) // max(m_ms, 1)]
            if len(s) > n - pos or rng.random() < 0.5:  # take a random piece (that fits)
                m = min(n - pos, len(s), int(rng.uniform(0.4, 4.0) * rate))
                step = rate // 1000
                m -= m % step
                o = int(rng.integers(0, len(s) - m + 1))
                o -= o % step
                s = s[o:o + m]
                sl = sl[o * 1000 // rate: o * 1000 // rate + m * 1000 // rate]
            s = s * (10 ** (rng.uniform(-10, 10) / 20) / (np.sqrt(np.mean(s ** 2)) + 1e-9))
            if rng.random() < 0.35:
                s = fftconvolve(s, _rir(rng, rate, rng.uniform(0.15, 0.9)))[: len(s)].astype(np.float32)
            speech[pos:pos + len(s)] += s
            a = pos * 1000 // rate
            lab[a:a + len(sl)] |= sl[: max(0, n_ms - a)]
            pos += len(s) + int(rng.exponential(1.5) * rate + 0.15 * rate)
    noise = distant_talkers(rng, pools, n) if distant else _noise_track(rng, pools, n)
    if lab.any():
        x = mix_at_snr(speech, lab, noise, rng.uniform(*(distant_snr_db if distant else snr_db)), rate)
        level = rng.uniform(*level_db)  # speech level, dBFS rms
        ref = np.sqrt(np.mean(speech.astype(np.float64)[np.repeat(lab, rate // 1000)[:n]] ** 2)) + 1e-12
    elif distant:  # alone, a distant talker is as quiet as across a room: below the loudest speech levels
        x = noise
        level = rng.uniform(level_db[0] - 10, 0.5 * (level_db[0] + level_db[1]))
        ref = np.sqrt(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    else:
        x = noise
        level = rng.uniform(level_db[0] - 10, level_db[1])
        ref = np.sqrt(np.mean(noise.astype(np.float64) ** 2)) + 1e-12
    x = x * (10 ** (level / 20) / ref)
    if rng.random() < 0.1:  # stretches of digital silence (muted microphone)
        a = int(rng.integers(0, n))
        x[a:a + int(rng.integers(rate // 10, rate))] = 0.0
    x = x + rng.standard_normal(n).astype(np.float32) * 10 ** (rng.uniform(-105, -80) / 20)  # sensor self-noise
    return np.clip(x, -1.0, 1.0).astype(np.float32), lab

