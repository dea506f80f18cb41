"""Clockless against clock-driven SNN frameworks: the same network, the same weights, the same stream, on the CPU.

The network is the one of the measurement issue: ``conv 2→8, 3×3 → LIF → conv 8→16, 3×3 → LIF`` on 128×128 DVS
input (padding 1, no bias), τ = 20 ms, reset by subtraction, weights drawn from a seeded generator, thresholds set
so that 1 M ev/s makes both layers busy (about 0.6 conv1 and 0.85 conv2 spikes per input event; sparser input
makes fewer, denser more, which the ops/event column shows). clockless runs
it event by event (``runtime.engine.Network`` inside the trio executor: packets of ≤ 1 ms / 4096 events); each peer
is built here from the very same numpy weights and steps a 1 ms clock over dense tensors, batch 1:

* **snnTorch** (``snntorch.Leaky``, ``reset_mechanism="subtract"``, ``reset_delay=False``): the snnTorch idiom, one
  call per layer per time step. It emits at most one spike per neuron per step, and fires on ``v > θ`` where the
  engine and Sinabs fire on ``v ≥ θ`` (equal only with weights on a grid, never with these float weights).
* **Sinabs** (``sinabs.layers.LIFSqueeze`` / ``IAFSqueeze`` with ``MultiSpike`` and ``MembraneSubtract``,
  ``norm_input=False``): the Sinabs idiom, convolutions batched over the time steps of a chunk.
* **torch loop**: a hand-written PyTorch loop with the engine's own neuron rule at bin resolution (batched
  convolutions, in-place membrane updates): the strongest clock-driven baseline we could write.

Peers receive the events binned into dense ``(T, 2, 128, 128)`` count tensors, ``CHUNK_BINS`` bins at a time; the
binning is part of their measured time, as packetizing is part of clockless's. Every figure is measured in one run
on this machine, repeats interleaved, medians printed with their spread. Because a shared machine can make two
OpenMP threads slower than one, each peer is timed at 1 and at ``TORCH_THREADS`` threads at 1 M ev/s and keeps its
faster setting for the whole run (reported). Wall-time ratios are the figures; process CPU-time ratios are printed
beside them, since on a loaded machine each side gets only part of a core.

Streams: synthetic DVS-like streams (a smooth random texture drifting sideways; each event falls on a pixel with
probability ∝ the texture's horizontal gradient, polarity its sign) swept from 1 k to 10 M ev/s, and the shared
recordings scaled onto 128×128 (every event kept, so their rates are preserved). The crossover is the input rate
at which the fastest peer's wall time equals clockless's (log-log interpolation between measured rates; when
none is inside the sweep an extrapolation is printed and labelled as one).

Output agreement: spikes of each layer counted per (1 ms bin, neuron) and compared as
``matched = Σ min(clockless, peer)`` over ``max(Σ clockless, Σ peer)``. On the raw stream the engine tests
thresholds at every distinct timestamp with exact decay, the peers once per bin: their difference is the
binning's. The same stream with timestamps moved to their bin's start removes it (only float32 rounding and
snnTorch's one-spike-per-step rule remain).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from runtime.engine import Conv2d, Network, Neuron
from runtime.events import DVS_EVENT
from runtime.executor import run as run_graph
from runtime.graph import Graph
from runtime.packet import Packetizer
from runtime.sources import ArraySource
from runtime.spec import StreamSpec, dvs_spec
from runtime.stages import CountSink

from . import median_spread

__all__ = [
    "NetConfig", "SIZE", "BIN_US", "CHUNK_BINS", "TORCH_THREADS", "make_weights", "engine_network", "texture_stream",
    "bursty_stream", "bin_aligned", "scale_to_grid", "bin_events", "PEERS", "make_peer", "available_peers",
    "run_peer", "run_engine", "engine_layer_spikes", "spike_agreement", "crossover", "Settings", "run",
]

SIZE = 128  # input is SIZE × SIZE, 2 polarities
BIN_US = 1000
CHUNK_BINS = 32
TORCH_THREADS = 2
HEADLINE_RATE = 1_000_000
RECORDINGS = (  # file under shared/data, seconds kept in full / quick mode (a peer costs the same per bin at any rate)
    ("vision/dvs128_walking.aedat", 0.1, 0.03),
    ("vision/dvs_faery.es", 0.2, 0.04),
    ("vision/gen3_faery_evt2.raw", 0.1, 0.02),
    ("vision/gen3_expelliarmus_evt2.raw", 0.1, 0.02),
)


@dataclass(frozen=True)
class NetConfig:
    """Neuron parameters shared by clockless and every peer (``tau_us=None``: IAF)."""

    theta1: float = 4.0
    theta2: float = 2.0
    tau_us: float | None = 20_000.0
    channels: tuple[int, int, int] = (2, 8, 16)
    kernel: int = 3
    size: int = SIZE

    @property
    def beta(self) -> float:
        """Decay of one 1 ms clock step (1.0 for IAF)."""
        return 1.0 if self.tau_us is None else math.exp(-BIN_US / self.tau_us)


def make_weights(cfg: NetConfig = NetConfig(), seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Seeded float32 conv weights ``(8, 2, 3, 3)`` and ``(16, 8, 3, 3)``, excitatory on average."""
    rng = np.random.default_rng(seed)
    c0, c1, c2 = cfg.channels
    k = cfg.kernel
    w1 = rng.normal(0.15, 0.3, (c1, c0, k, k)).astype(np.float32)
    w2 = rng.normal(0.05, 0.3, (c2, c1, k, k)).astype(np.float32)
    return w1, w2


def engine_network(w1: np.ndarray, w2: np.ndarray, cfg: NetConfig = NetConfig()) -> Network:
    pad = cfg.kernel // 2
    n1 = Neuron(threshold=cfg.theta1, tau_us=cfg.tau_us, reset="subtract")
    n2 = Neuron(threshold=cfg.theta2, tau_us=cfg.tau_us, reset="subtract")
    return Network(
        (Conv2d("conv1", w1, padding=pad, neuron=n1), Conv2d("conv2", w2, padding=pad, neuron=n2)),
        (cfg.channels[0], cfg.size, cfg.size),
        name="peers_net",
    )


# ------------------------------------------------------------------------------------------------- streams
def _texture_gradient(seed: int, size: int, sigma_px: float = 3.0) -> np.ndarray:
    """Horizontal gradient of a smooth periodic random texture (Gaussian-filtered noise, via the FFT)."""
    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size, size))
    f = np.fft.fftfreq(size)
    g = np.exp(-2.0 * (math.pi * sigma_px) ** 2 * (f[:, None] ** 2 + f[None, :] ** 2))
    img = np.fft.ifft2(np.fft.fft2(noise) * g).real
    return np.roll(img, -1, 1) - np.roll(img, 1, 1)


def texture_stream(rate_hz: float, duration_us: int, *, seed: int = 1, size: int = SIZE,
                   drift_px_per_ms: float = 0.5, active: np.ndarray | None = None,
                   patch_px: int | None = None) -> np.ndarray:
    """A DVS-like stream at ``rate_hz`` mean events/s: a texture drifting sideways at ``drift_px_per_ms``.

    Per 1 ms bin a Poisson number of events; each lands on a pixel with probability ∝ |∂texture/∂x| at the shifted
    position, polarity = sign of the gradient, time uniform inside the bin. ``active`` (bool per bin) silences
    the bins where it is False (for idle stretches); ``patch_px`` keeps only a square textured object of that side
    (drifting with the texture), so the same rate is denser where it falls."""
    if rate_hz < 0 or duration_us < BIN_US:
        raise ValueError(f"texture_stream: need rate_hz ≥ 0 and duration_us ≥ {BIN_US}, got {rate_hz}, {duration_us}")
    if patch_px is not None and not 1 <= patch_px <= size:
        raise ValueError(f"texture_stream: patch_px must lie in [1, {size}], got {patch_px}")
    rng = np.random.default_rng(seed)
    gx = _texture_gradient(seed, size)
    weight = np.abs(gx)
    if patch_px is not None:
        lo = (size - patch_px) // 2
        mask = np.zeros((size, size), bool)
        mask[lo: lo + patch_px, lo: lo + patch_px] = True
        weight = np.where(mask, weight, 0.0)
    cdf = np.cumsum(weight.ravel())
    cdf /= cdf[-1]
    n_bins = int(duration_us // BIN_US)
    counts = rng.poisson(rate_hz * BIN_US / 1e6, n_bins)
    if active is not None:
        counts = np.where(np.asarray(active, bool)[:n_bins], counts, 0)
    n = int(counts.sum())
    b = np.repeat(np.arange(n_bins, dtype=np.int64), counts)
    idx = np.minimum(np.searchsorted(cdf, rng.random(n)), cdf.shape[0] - 1)
    y, x0 = np.divmod(idx, size)
    ev = np.empty(n, DVS_EVENT)
    ev["x"] = (x0 + (drift_px_per_ms * b).astype(np.int64)) % size
    ev["y"] = y
    ev["t"] = b * BIN_US + rng.integers(0, BIN_US, n)
    ev["p"] = gx.ravel()[idx] < 0
    return ev[np.argsort(ev["t"], kind="stable")]


def bursty_stream(duration_us: int, *, rate_hz: float = 300_000, on_ms: int = 150, off_ms: int = 250,
                  seed: int = 2, size: int = SIZE, patch_px: int | None = None) -> np.ndarray:
    """Bursts of texture events (``on_ms``) separated by silences (``off_ms``), starting and ending with a burst
    (a replay ends at its last event, so a trailing silence would never be seen): whole burst + silence periods
    fitting in ``duration_us``, plus a closing burst (at least one silence)."""
    period = on_ms + off_ms
    n_periods = max(1, (int(duration_us // BIN_US) - on_ms) // period)
    n_bins = n_periods * period + on_ms
    active = np.arange(n_bins) % period < on_ms
    return texture_stream(rate_hz, n_bins * BIN_US, seed=seed, size=size, active=active, patch_px=patch_px)


def bin_aligned(events: np.ndarray, t0_us: int = 0) -> np.ndarray:
    """The same events with each timestamp moved to the start of its 1 ms bin (removes binning differences)."""
    out = events.copy()
    out["t"] = t0_us + (out["t"] - t0_us) // BIN_US * BIN_US
    return out


def scale_to_grid(events: np.ndarray, spec: StreamSpec, size: int = SIZE) -> np.ndarray:
    """Map a recording onto ``size × size`` by uniform scaling of its sensor geometry; every event is kept."""
    w, h = int(spec.shape[0]), int(spec.shape[1])
    big = max(w, h)
    out = np.empty(events.shape[0], DVS_EVENT)
    out["x"] = events["x"].astype(np.int64) * size // big
    out["y"] = events["y"].astype(np.int64) * size // big
    out["t"] = events["t"]
    out["p"] = events["p"]
    return out


def bin_events(events: np.ndarray, t0_us: int, n_bins: int, size: int = SIZE):
    """Dense float32 count tensor ``(n_bins, 2, size, size)`` of the events in ``[t0, t0 + n_bins ms)``."""
    import torch

    b = (events["t"] - t0_us) // BIN_US
    flat = ((b * 2 + events["p"].astype(np.int64)) * size + events["y"].astype(np.int64)) * size + events["x"]
    counts = np.bincount(flat, minlength=n_bins * 2 * size * size).astype(np.float32)
    return torch.from_numpy(counts).view(n_bins, 2, size, size)


# ------------------------------------------------------------------------------------------------- peers
class _Peer:
    """A clock-driven peer: ``reset()`` zeroes its state, ``chunk(x) -> (s1, s2)`` runs ``x`` (T, 2, H, W) and
    returns both layers' spike tensors (T, C, H, W)."""

    label = ""
    requires = ("torch",)

    def __init__(self, w1: np.ndarray, w2: np.ndarray, cfg: NetConfig):
        import torch

        self.cfg = cfg
        self.w1 = torch.from_numpy(np.ascontiguousarray(w1, np.float32))
        self.w2 = torch.from_numpy(np.ascontiguousarray(w2, np.float32))
        self.pad = cfg.kernel // 2

    def _conv(self, w):
        import torch

        conv = torch.nn.Conv2d(w.shape[1], w.shape[0], w.shape[2], padding=self.pad, bias=False)
        with torch.no_grad():
            conv.weight.copy_(w)
        conv.weight.requires_grad_(False)
        return conv

    def reset(self) -> None:
        raise NotImplementedError

    def chunk(self, x):
        raise NotImplementedError


class SnnTorchPeer(_Peer):
    label = "snnTorch"
    requires = ("torch", "snntorch")

    def __init__(self, w1, w2, cfg):
        super().__init__(w1, w2, cfg)
        import snntorch

        self.c1, self.c2 = self._conv(self.w1), self._conv(self.w2)
        # reset_delay=False: the threshold is subtracted in the step that spikes, as in the engine
        self.l1 = snntorch.Leaky(beta=cfg.beta, threshold=cfg.theta1, reset_mechanism="subtract", reset_delay=False)
        self.l2 = snntorch.Leaky(beta=cfg.beta, threshold=cfg.theta2, reset_mechanism="subtract", reset_delay=False)
        self.reset()

    def reset(self) -> None:
        self.m1 = self.l1.reset_mem()
        self.m2 = self.l2.reset_mem()

    def chunk(self, x):
        import torch

        s1s, s2s = [], []
        with torch.no_grad():
            for k in range(x.shape[0]):
                s1, self.m1 = self.l1(self.c1(x[k: k + 1]), self.m1)
                s2, self.m2 = self.l2(self.c2(s1), self.m2)
                s1s.append(s1)
                s2s.append(s2)
        return torch.cat(s1s), torch.cat(s2s)


class SinabsPeer(_Peer):
    label = "Sinabs"
    requires = ("torch", "sinabs")

    def __init__(self, w1, w2, cfg):
        super().__init__(w1, w2, cfg)
        from sinabs.activation import MembraneSubtract, MultiSpike
        from sinabs.layers import IAFSqueeze, LIFSqueeze

        def neuron(theta):
            common = dict(spike_threshold=float(theta), spike_fn=MultiSpike, reset_fn=MembraneSubtract(),
                          min_v_mem=None, batch_size=1)
            if cfg.tau_us is None:
                return IAFSqueeze(**common)
            return LIFSqueeze(tau_mem=cfg.tau_us / BIN_US, norm_input=False, **common)

        self.c1, self.c2 = self._conv(self.w1), self._conv(self.w2)
        self.n1, self.n2 = neuron(cfg.theta1), neuron(cfg.theta2)

    def reset(self) -> None:
        self.n1.reset_states()
        self.n2.reset_states()

    def chunk(self, x):
        import torch

        with torch.no_grad():
            s1 = self.n1(self.c1(x))
            s2 = self.n2(self.c2(s1))
        return s1, s2


class TorchLoopPeer(_Peer):
    label = "torch loop"

    def __init__(self, w1, w2, cfg):
        super().__init__(w1, w2, cfg)
        self.reset()

    def reset(self) -> None:
        self.v = [None, None]

    def _layer(self, i: int, current, theta: float):
        import torch

        beta = self.cfg.beta
        v = self.v[i]
        if v is None:
            v = self.v[i] = torch.zeros_like(current[0])
        out = torch.empty_like(current)
        for k in range(current.shape[0]):
            if beta != 1.0:
                v.mul_(beta)
            v.add_(current[k])
            s = out[k]
            torch.div(v, theta, rounding_mode="floor", out=s)
            s.clamp_(min=0.0)
            v.sub_(s, alpha=theta)
        return out

    def chunk(self, x):
        import torch
        import torch.nn.functional as F

        with torch.no_grad():
            s1 = self._layer(0, F.conv2d(x, self.w1, padding=self.pad), self.cfg.theta1)
            s2 = self._layer(1, F.conv2d(s1, self.w2, padding=self.pad), self.cfg.theta2)
        return s1, s2


PEERS = {"snntorch": SnnTorchPeer, "sinabs": SinabsPeer, "torch": TorchLoopPeer}


def available_peers() -> tuple[list[str], list[str]]:
    """(names of peers whose packages import, missing packages)."""
    import importlib.util

    ok, missing = [], []
    for name, cls in PEERS.items():
        lacking = [m for m in cls.requires if importlib.util.find_spec(m) is None]
        if lacking:
            missing.extend(m for m in lacking if m not in missing)
        else:
            ok.append(name)
    return ok, missing


def make_peer(name: str, w1: np.ndarray, w2: np.ndarray, cfg: NetConfig = NetConfig()) -> _Peer:
    if name not in PEERS:
        raise ValueError(f"unknown peer {name!r}; choose from {', '.join(PEERS)}")
    return PEERS[name](w1, w2, cfg)


@dataclass
class PeerRun:
    wall_s: float
    cpu_s: float  # CPU time of the whole process (all torch threads, spin-waits included)
    spikes: tuple[int, int]  # per layer
    records: list | None = None  # per layer (bin, addr) arrays, one row per spike, when recorded


def run_peer(peer: _Peer, events: np.ndarray, t0_us: int, n_bins: int, *, record: bool = False,
             chunk_bins: int = CHUNK_BINS) -> PeerRun:
    """Bin and run the whole stream through ``peer`` from a zero state; wall time covers binning and compute."""
    import torch

    peer.reset()
    t = events["t"]
    totals = [0.0, 0.0]
    recs: list[list] = [[], []]
    t_start = time.perf_counter()
    c_start = time.process_time()
    for b0 in range(0, n_bins, chunk_bins):
        nb = min(chunk_bins, n_bins - b0)
        lo, hi = np.searchsorted(t, [t0_us + b0 * BIN_US, t0_us + (b0 + nb) * BIN_US])
        x = bin_events(events[lo:hi], t0_us + b0 * BIN_US, nb, peer.cfg.size)
        s1, s2 = peer.chunk(x)
        for i, s in enumerate((s1, s2)):
            totals[i] += float(s.sum())
            if record:
                flat = s.reshape(nb, -1)
                idx = torch.nonzero(flat).numpy()
                k = flat[idx[:, 0], idx[:, 1]].numpy().astype(np.int64)
                recs[i].append((np.repeat(idx[:, 0] + b0, k), np.repeat(idx[:, 1], k)))
    wall = time.perf_counter() - t_start
    cpu = time.process_time() - c_start
    records = None
    if record:
        records = [(np.concatenate([r[0] for r in rr]) if rr else np.empty(0, np.int64),
                    np.concatenate([r[1] for r in rr]) if rr else np.empty(0, np.int64)) for rr in recs]
    return PeerRun(wall, cpu, (int(round(totals[0])), int(round(totals[1]))), records)


# ------------------------------------------------------------------------------------------------- clockless
def _graph(net: Network, events: np.ndarray, spec: StreamSpec, t_end_us: int) -> Graph:
    g = Graph("peers")
    s = g.source("stream", ArraySource(events, spec, max_events=4096, max_span_us=BIN_US, t_end_us=t_end_us))
    s = g.stage("snn", net, s)
    g.sink("out", CountSink(), s)
    return g


def run_engine(net: Network, events: np.ndarray, t_end_us: int, spec: StreamSpec | None = None) -> dict:
    """Run the stream through the executor (source → network → sink). ``wall_s`` is the executor's (stage init
    excluded); ``cpu_s`` is the process CPU time of the whole call (init, whose kernels come from numba's cache,
    included)."""
    spec = spec or dvs_spec(net.input_shape[2], net.input_shape[1])
    graph = _graph(net, events, spec, t_end_us)
    c0 = time.process_time()
    report = run_graph(graph)
    cpu = time.process_time() - c0
    node = report["nodes"]["snn"]
    return {
        "wall_s": report["wall_s"],
        "cpu_s": cpu,
        "synaptic_ops": node["synaptic_ops"],
        "neuron_updates": node.get("neuron_updates", 0),
        "spikes": (node.get("spikes.conv1", 0), node.get("spikes.conv2", 0)),
        "dense_macs": report["ops"]["dense_macs_equivalent"],
    }


def engine_layer_spikes(net: Network, events: np.ndarray, t_end_us: int, t0_us: int = 0,
                        spec: StreamSpec | None = None) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per layer, the (1 ms bin, flat address) of every spike, from one single-layer stage per layer."""
    spec = spec or dvs_spec(net.input_shape[2], net.input_shape[1])
    stages = net.split()
    states, specs = [], [spec]
    for st in stages:
        states.append(st.init(specs[-1]))
        specs.append(st.out_spec(specs[-1]))
    out: list[list[np.ndarray]] = [[] for _ in stages]
    pk = Packetizer(DVS_EVENT, 4096, BIN_US)
    packets = list(pk.feed(events)) + list(pk.flush(t_end_us))

    def push(i: int, packets_in: list) -> None:
        if i == len(stages):
            return
        nxt = []
        for p in packets_in:
            states[i], o = stages[i].step(states[i], p)
            nxt.extend(o)
        for p in nxt:
            if p.events.shape[0]:
                out[i].append(p.events)
        push(i + 1, nxt)

    push(0, packets)
    for i, st in enumerate(stages):
        push(i + 1, [p for p in st.finish(states[i])])
    res = []
    for chunks in out:
        ev = np.concatenate(chunks) if chunks else np.empty(0, stages[0].out_spec(spec).dtype)
        res.append((((ev["t"] - t0_us) // BIN_US).astype(np.int64), ev["addr"].astype(np.int64)))
    return res


def spike_agreement(a: tuple[np.ndarray, np.ndarray], b: tuple[np.ndarray, np.ndarray], window_bins: int = 1) -> dict:
    """Compare two spike trains given as (bin, addr) rows, counted per (window of ``window_bins`` bins, neuron):
    matched = Σ min(count_a, count_b); ``agreement`` = matched / max(total_a, total_b) (1.0 when both are silent)."""
    if window_bins < 1:
        raise ValueError(f"spike_agreement: window_bins must be ≥ 1, got {window_bins}")
    n_addr = int(max(a[1].max(initial=0), b[1].max(initial=0))) + 1
    ka = a[0] // window_bins * n_addr + a[1]
    kb = b[0] // window_bins * n_addr + b[1]
    ua, ca = np.unique(ka, return_counts=True)
    ub, cb = np.unique(kb, return_counts=True)
    _, ia, ib = np.intersect1d(ua, ub, assume_unique=True, return_indices=True)
    matched = int(np.minimum(ca[ia], cb[ib]).sum())
    na, nb = int(ka.shape[0]), int(kb.shape[0])
    top = max(na, nb)
    return {"clockless": na, "peer": nb, "matched": matched, "agreement": 1.0 if top == 0 else matched / top}


def crossover(rates: list[float], engine_s: list[float], peer_s: list[float]) -> dict:
    """Input rate where the peer's wall time equals clockless's, by log-log interpolation between measured rates.

    Without a sign change inside the sweep: extrapolate from the highest rate, taking clockless's cost as
    proportional to events and the peer's as fixed per stream second (labelled ``extrapolated``)."""
    r = np.asarray(rates, float)
    ratio = np.log(np.asarray(peer_s, float) / np.asarray(engine_s, float))  # > 0: clockless faster
    for i in range(len(r) - 1):
        if ratio[i] > 0 >= ratio[i + 1]:
            f = ratio[i] / (ratio[i] - ratio[i + 1])
            return {"rate_hz": float(math.exp(math.log(r[i]) + f * (math.log(r[i + 1]) - math.log(r[i])))),
                    "kind": "measured"}
    if ratio[0] <= 0:
        return {"rate_hz": None, "kind": "peer faster at every measured rate"}
    speedup = math.exp(ratio[-1])
    return {"rate_hz": float(r[-1] * speedup), "kind": "extrapolated"}


# ------------------------------------------------------------------------------------------------- the suite
@dataclass
class _Stream:
    name: str
    events: np.ndarray
    t0_us: int
    n_bins: int
    rate_hz: float  # nominal (synthetic) or measured (recording)
    note: str = ""

    @property
    def t_end_us(self) -> int:
        return self.t0_us + self.n_bins * BIN_US


def _synthetic(rate: float, duration_us: int, size: int = SIZE, seed: int = 1) -> _Stream:
    ev = texture_stream(rate, duration_us, seed=seed, size=size)
    return _Stream(f"texture {_si(rate)} ev/s", ev, 0, duration_us // BIN_US, rate)


def _recordings(data_dir: Path, files: tuple[tuple[str, float], ...], size: int = SIZE) -> list[_Stream]:
    from sensors.formats import open_reader

    out = []
    for rel, keep_s in files:
        path = data_dir / rel
        if not path.exists():
            continue
        reader = open_reader(path)
        raw = reader.read_all()
        if raw.shape[0] == 0:
            continue
        ev = scale_to_grid(raw, reader.spec, size)
        t0 = int(ev["t"][0]) // BIN_US * BIN_US
        span_bins = int((int(ev["t"][-1]) - t0) // BIN_US + 1)
        n_bins = min(span_bins, max(1, int(round(keep_s * 1000))))
        ev = ev[ev["t"] < t0 + n_bins * BIN_US]
        w, h = reader.spec.shape[:2]
        note = f"{w}×{h} scaled onto {size}×{size}" + ("" if n_bins == span_bins else f", first {n_bins} ms")
        out.append(_Stream(Path(rel).name, ev, t0, n_bins, ev.shape[0] / (n_bins * BIN_US / 1e6), note))
    return out


def _si(v: float) -> str:
    for div, suffix in ((1e6, "M"), (1e3, "k")):
        if v >= div:
            x = v / div
            return f"{x:.0f}{suffix}" if x == int(x) else f"{x:.1f}{suffix}"
    return f"{v:.0f}"


def _measure(stream: _Stream, net: Network, peers: dict[str, _Peer], threads: dict[str, int], repeats: int,
             setup_cpu_s: float = 0.0) -> dict:
    """Time clockless and every peer on one stream, repeats interleaved. ``setup_cpu_s``: CPU seconds the same
    graph costs on an empty stream (trio start, stage init), taken off clockless's CPU time, as its wall time
    excludes them too."""
    import torch

    eng_walls: list[float] = []
    eng_cpus: list[float] = []
    peer_walls: dict[str, list[float]] = {k: [] for k in peers}
    peer_cpus: dict[str, list[float]] = {k: [] for k in peers}
    peer_spikes: dict[str, tuple[int, int]] = {}
    eng = None
    for _ in range(repeats):  # interleaved, so drifting machine load hits everyone alike
        eng = run_engine(net, stream.events, stream.t_end_us)
        eng_walls.append(eng["wall_s"])
        eng_cpus.append(eng["cpu_s"] - setup_cpu_s)
        for name, peer in peers.items():
            torch.set_num_threads(threads[name])
            pr = run_peer(peer, stream.events, stream.t0_us, stream.n_bins)
            peer_walls[name].append(pr.wall_s)
            peer_cpus[name].append(pr.cpu_s)
            peer_spikes[name] = pr.spikes
    n = int(stream.events.shape[0])
    dur_s = stream.n_bins * BIN_US / 1e6
    e_med, e_spread = median_spread(eng_walls)
    e_cpu = median_spread(eng_cpus)[0]
    if e_cpu < max(1e-3, 0.5 * setup_cpu_s):  # lost in the setup cost's own variation
        e_cpu = None
    row: dict[str, Any] = {
        "stream": stream.name, "note": stream.note, "rate_hz": stream.rate_hz, "events": n, "duration_s": dur_s,
        "clockless": {
            "wall_s": e_med, "spread": e_spread, "cpu_s": e_cpu, "events_per_s": n / e_med if e_med > 0 else None,
            "realtime_factor": dur_s / e_med if e_med > 0 else None,
            "synaptic_ops": eng["synaptic_ops"], "ops_per_event": eng["synaptic_ops"] / n if n else 0.0,
            "ns_per_event": e_med / n * 1e9 if n else None,
            "ns_per_op": e_med / eng["synaptic_ops"] * 1e9 if eng["synaptic_ops"] else None,
            "cpu_ns_per_op": e_cpu / eng["synaptic_ops"] * 1e9 if eng["synaptic_ops"] and e_cpu else None,
            "dense_macs": eng["dense_macs"], "spikes": list(eng["spikes"]),
        },
        "peers": {},
    }
    for name, walls in peer_walls.items():
        med, spread = median_spread(walls)
        cpu = median_spread(peer_cpus[name])[0]
        row["peers"][name] = {
            "wall_s": med, "spread": spread, "cpu_s": cpu, "events_per_s": n / med if med > 0 else None,
            "realtime_factor": dur_s / med, "speedup": med / e_med if e_med > 0 else None,
            "cpu_speedup": cpu / e_cpu if e_cpu else None,
            "ns_per_dense_mac": med / eng["dense_macs"] * 1e9 if eng["dense_macs"] else None,
            "spikes": list(peer_spikes[name]), "threads": threads[name],
        }
    if row["peers"]:
        fastest = min(row["peers"], key=lambda k: row["peers"][k]["wall_s"])
        row["fastest_peer"] = fastest
        row["speedup_vs_fastest"] = row["peers"][fastest]["speedup"]
        lean = min(row["peers"], key=lambda k: row["peers"][k]["cpu_s"])
        row["leanest_peer"] = lean
        row["cpu_speedup_vs_leanest"] = row["peers"][lean]["cpu_speedup"]  # None: clockless's CPU too small to measure
    return row


def _pick_threads(stream: _Stream, peers: dict[str, _Peer], repeats: int) -> dict:
    """Time each peer at 1 and TORCH_THREADS threads on a short slice; keep the faster setting (on a loaded
    machine OpenMP threads that wait for each other can be many times slower than one thread, so a setting whose
    first run is over twice the best so far is not repeated)."""
    import torch

    choice, timings = {}, {}
    for name, peer in peers.items():
        best = None
        for n_threads in sorted({1, TORCH_THREADS}):
            torch.set_num_threads(n_threads)
            walls = []
            for _ in range(repeats):
                walls.append(run_peer(peer, stream.events, stream.t0_us, stream.n_bins).wall_s)
                if best is not None and walls[0] > 2 * best[1]:
                    break
            med = median_spread(walls)[0]
            timings[f"{name}@{n_threads}"] = med / stream.n_bins * 1000
            if best is None or med < best[1]:
                best = (n_threads, med)
        choice[name] = best[0]
    return {"threads": choice, "ms_per_bin": timings, "bins": stream.n_bins}


def _agreement(net: Network, peers: dict[str, _Peer], threads: dict[str, int], stream: _Stream) -> dict:
    """Per layer: spike totals and agreement per (1 ms bin, neuron) and per (10 ms window, neuron), on the raw
    stream and on the same stream with timestamps moved to their bin's start."""
    import torch

    out = {}
    for label, ev in (("raw", stream.events), ("bin_aligned", bin_aligned(stream.events, stream.t0_us))):
        eng = engine_layer_spikes(net, ev, stream.t_end_us, stream.t0_us)
        out[label] = {}
        for name, peer in peers.items():
            torch.set_num_threads(threads[name])
            pr = run_peer(peer, ev, stream.t0_us, stream.n_bins, record=True)
            layers = []
            for i in range(2):
                one = spike_agreement(eng[i], pr.records[i])
                one["agreement_10ms"] = spike_agreement(eng[i], pr.records[i], 10)["agreement"]
                layers.append(one)
            out[label][name] = layers
    return out


@dataclass(frozen=True)
class Settings:
    """How much the suite measures (``for_mode`` gives the full and ``--quick`` settings; tests pass tiny ones)."""

    rates: tuple[float, ...]
    bins: int  # stream length of each synthetic rate, in 1 ms bins ...
    max_events: int  # ... shortened at high rates to about this many events (at least min_bins)
    min_bins: int
    repeats: int
    headline_extra_repeats: int
    thread_probe_bins: int
    thread_probe_repeats: int
    agreement_bins: int
    recordings: tuple[tuple[str, float], ...]  # (file under shared/data, seconds kept)
    plot_duration_us: int
    cfg: NetConfig = NetConfig()

    @classmethod
    def for_mode(cls, quick: bool) -> "Settings":
        if quick:
            return cls((1e3, 1e5, 1e6, 1e7), 60, 100_000, 10, 3, 2, 4, 1, 30,
                       tuple((f, q) for f, _, q in RECORDINGS), 1_200_000)
        return cls((1e3, 1e4, 1e5, 3e5, 1e6, 3e6, 1e7), 100, 400_000, 30, 3, 2, 10, 3, 100,
                   tuple((f, full) for f, full, _ in RECORDINGS), 3_000_000)

    def bins_at(self, rate_hz: float) -> int:
        return int(min(self.bins, max(self.min_bins, self.max_events / max(rate_hz, 1.0) * 1e6 / BIN_US)))


def run(quick: bool = False, plots_dir: Path | None = None, *, data_dir: Path | None = None,
        settings: Settings | None = None) -> dict:
    settings = settings or Settings.for_mode(quick)
    names, missing = available_peers()
    section: dict[str, Any] = {"network": _describe(settings.cfg), "missing": missing, "quick": quick}
    if "torch" not in names:
        print("[peers] PyTorch is not installed: no clock-driven peer can run (pip install 'clockless[peers]')")
        section["available"] = False
        return section
    import torch

    threads_before = torch.get_num_threads()
    try:
        return _run(settings, plots_dir, data_dir, names, missing, section)
    finally:
        torch.set_num_threads(threads_before)


def _run(st: Settings, plots_dir, data_dir, names, missing, section) -> dict:
    cfg = st.cfg
    w1, w2 = make_weights(cfg)
    net = engine_network(w1, w2, cfg)
    peers = {n: make_peer(n, w1, w2, cfg) for n in names}
    if missing:
        print(f"[peers] not installed: {', '.join(missing)} (pip install 'clockless[peers]'); running {names}")

    # warm-up: kernels, torch allocators, OpenMP pools
    warm = _synthetic(HEADLINE_RATE, 10 * BIN_US, cfg.size, seed=9)
    run_engine(net, warm.events, warm.t_end_us)
    for peer in peers.values():
        run_peer(peer, warm.events, 0, warm.n_bins)

    empty = np.empty(0, DVS_EVENT)
    setup_cpu = median_spread([run_engine(net, empty, BIN_US)["cpu_s"] for _ in range(3)])[0]
    section["clockless_setup_cpu_s"] = setup_cpu

    probe = _synthetic(HEADLINE_RATE, st.thread_probe_bins * BIN_US, cfg.size, seed=4)
    picked = _pick_threads(probe, peers, st.thread_probe_repeats)
    threads = picked["threads"]
    section["threads"] = picked

    sweep = []
    for rate in st.rates:
        stream = _synthetic(rate, st.bins_at(rate) * BIN_US, cfg.size)
        extra = st.headline_extra_repeats if rate == HEADLINE_RATE else 0
        sweep.append(_measure(stream, net, peers, threads, st.repeats + extra, setup_cpu))
    section["sweep"] = sweep
    eng_s = [r["clockless"]["wall_s"] for r in sweep]
    section["crossover"] = {name: crossover(list(st.rates), eng_s, [r["peers"][name]["wall_s"] for r in sweep])
                            for name in peers}
    fastest_s = [min(p["wall_s"] for p in r["peers"].values()) for r in sweep]
    section["crossover"]["fastest"] = crossover(list(st.rates), eng_s, fastest_s)

    data_dir = data_dir or Path(__file__).resolve().parents[3] / "shared" / "data"
    recs = _recordings(data_dir, st.recordings, cfg.size)
    section["recordings"] = [_measure(s, net, peers, threads, st.repeats, setup_cpu) for s in recs]
    if not recs:
        section["recordings_note"] = f"no shared recordings under {data_dir}"

    agree_stream = _synthetic(HEADLINE_RATE, st.agreement_bins * BIN_US, cfg.size, seed=3)
    section["agreement"] = {"stream": agree_stream.name, "bins": agree_stream.n_bins,
                            **_agreement(net, peers, threads, agree_stream)}
    head = next((r for r in sweep if r["rate_hz"] == HEADLINE_RATE), None)
    measured = head.get("speedup_vs_fastest") if head else None
    section["goal"] = {"speedup_vs_fastest_at_1M_min": 5.0, "measured": measured,
                       "cpu_speedup_vs_leanest": head.get("cpu_speedup_vs_leanest") if head else None,
                       "fastest_peer": head.get("fastest_peer") if head else None,
                       "met": bool(measured is not None and measured >= 5.0)}
    section["repeats"] = st.repeats
    section["headline_repeats"] = st.repeats + st.headline_extra_repeats
    _print(section)
    if plots_dir is not None:
        from . import plots

        section["plots"] = plots.write_engine_plots(net, plots_dir, duration_us=st.plot_duration_us)
    return section


def _describe(cfg: NetConfig) -> dict:
    c0, c1, c2 = cfg.channels
    return {
        "layers": f"conv {c0}→{c1} {cfg.kernel}×{cfg.kernel} pad {cfg.kernel // 2} → "
                  f"{'IAF' if cfg.tau_us is None else 'LIF'} → conv {c1}→{c2} → "
                  f"{'IAF' if cfg.tau_us is None else 'LIF'}",
        "input": [c0, cfg.size, cfg.size], "tau_us": cfg.tau_us, "thresholds": [cfg.theta1, cfg.theta2],
        "reset": "subtract", "bin_us": BIN_US, "chunk_bins": CHUNK_BINS, "batch": 1, "weights": "seeded normal, seed 0",
    }


def _print(section: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=200)
    peer_names = list(section["sweep"][0]["peers"]) if section["sweep"] else []
    labels = {n: PEERS[n].label for n in peer_names}

    def table(title: str, rows: list[dict]) -> Table:
        t = Table(title=title)
        for col in ("stream", "events", "ms", "clockless ev/s", "RT×", "ops/ev", "dense MAC/ev",
                    *[f"{labels[n]} ev/s (×)" for n in peer_names], "wall: clockless vs fastest", "CPU: vs leanest",
                    "spread"):
            t.add_column(col, justify="right")
        for r in rows:
            c = r["clockless"]
            spread = max([c["spread"], *[p["spread"] for p in r["peers"].values()]])
            n = max(r["events"], 1)
            t.add_row(
                r["stream"], f"{r['events']:,}", f"{r['duration_s'] * 1000:.0f}",
                _fmt_rate(c["events_per_s"]), f"{c['realtime_factor']:.2f}", f"{c['ops_per_event']:.0f}",
                f"{c['dense_macs'] / n:,.0f}",
                *[f"{_fmt_rate(r['peers'][p]['events_per_s'])} ({r['peers'][p]['speedup']:.1f}×)" for p in peer_names],
                f"{r['speedup_vs_fastest']:.2f}× {labels[r['fastest_peer']]}",
                (f"{r['cpu_speedup_vs_leanest']:.2f}× {labels[r['leanest_peer']]}"
                 if r["cpu_speedup_vs_leanest"] else "too small"), f"{spread:.0%}",
            )
        return t

    thr = section["threads"]["threads"]
    console.print(table(
        f"peers: clockless (event-driven) vs clock-driven 1 ms bins, same weights and stream "
        f"(median of {section['repeats']}; torch threads {', '.join(f'{labels[k]} {v}' for k, v in thr.items())})",
        section["sweep"]))
    if section["recordings"]:
        console.print(table("peers on the shared recordings (scaled onto 128×128)", section["recordings"]))
        for r in section["recordings"]:
            if r["note"]:
                print(f"  {r['stream']}: {r['note']}, {r['rate_hz'] / 1e6:.2f} M ev/s")
    cx = section["crossover"]
    for name, c in cx.items():
        label = "fastest peer" if name == "fastest" else labels[name]
        if c["rate_hz"] is None:
            print(f"crossover vs {label}: none ({c['kind']})")
        else:
            print(f"crossover vs {label}: {c['rate_hz'] / 1e6:.2f} M ev/s ({c['kind']})")
    ag = section["agreement"]
    t = Table(title=f"spikes per layer, clockless vs peer on {ag['stream']} ({ag['bins']} ms): totals, and "
                    "agreement = Σ min / max(total) per (1 ms bin, neuron) | per (10 ms, neuron)")
    for col in ("peer", "input times", "conv1 clockless", "conv1 peer", "conv1 agree 1 ms | 10 ms",
                "conv2 clockless", "conv2 peer", "conv2 agree 1 ms | 10 ms"):
        t.add_column(col, justify="right")
    for kind, label in (("raw", "as recorded"), ("bin_aligned", "bin starts")):
        for name, layers in ag[kind].items():
            cells = []
            for L in layers:
                cells += [f"{L['clockless']:,}", f"{L['peer']:,}",
                          f"{L['agreement']:.2%} | {L['agreement_10ms']:.2%}"]
            t.add_row(labels[name], label, *cells)
    console.print(t)
    print("'as recorded': the engine tests thresholds at every distinct µs timestamp with exact decay, the peers "
          "once per 1 ms bin; 'bin starts': the same events moved to their bin's start, so only float32 rounding "
          "and snnTorch's one spike per step differ.")
    thr = section["threads"]
    print(f"torch threads (ms per 1 ms bin at 1 M ev/s, {thr['bins']} bins): "
          + "; ".join(f"{labels[k.split('@')[0]]} {k.split('@')[1]} thr {v:.1f}" for k, v in thr["ms_per_bin"].items()))
    head = next((r for r in section["sweep"] if r["rate_hz"] == HEADLINE_RATE), None)
    if head and head["clockless"]["ns_per_op"]:
        c = head["clockless"]
        fp = head["peers"][head["fastest_peer"]]
        budget = fp["wall_s"] / 5.0 / c["synaptic_ops"] * 1e9
        cpu = f" ({c['cpu_ns_per_op']:.1f} CPU)" if c["cpu_ns_per_op"] else ""
        print(f"at 1 M ev/s: clockless {c['ns_per_event']:,.0f} ns/event = {c['ops_per_event']:.0f} ops × "
              f"{c['ns_per_op']:.1f} ns/op wall{cpu}; {labels[head['fastest_peer']]} {fp['ns_per_dense_mac']:.2f} ns per dense MAC "
              f"× {c['dense_macs'] / max(head['events'], 1):,.0f} MACs/event; 5× needs ≤ {budget:.1f} ns/op")
    g = section["goal"]
    print("ev/s = input events per wall second (the same events for everyone); RT× = stream seconds per wall second; "
          "(×) = peer wall time / clockless wall time; CPU = the same ratio in process CPU seconds against the peer "
          "using the least (robust to a shared machine's load when every side runs one thread; 'too small' where "
          "clockless's CPU is below the variation of its fixed start-up cost); "
          "spread = (max − min) / median of wall times over the repeats, worst column")
    print(f"goal: ≥ 5× faster than the fastest peer at 1 M ev/s; measured {g['measured']:.2f}× vs "
          f"{labels[g['fastest_peer']]} in wall time ({'met' if g['met'] else 'NOT met'}), "
          + (f"{g['cpu_speedup_vs_leanest']:.2f}× in CPU time" if g["cpu_speedup_vs_leanest"] else ""))


def _fmt_rate(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v / 1e6:.2f} M" if v >= 1e6 else f"{v / 1e3:.0f} k" if v >= 1e3 else f"{v:.0f}"
