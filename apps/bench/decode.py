"""File decoding speed: clockless readers next to faery, aedat, expelliarmus (and tonic, h5py, a memory copy)
on the shared real recordings, in the same run.

Each decoder reads the whole file from disk (page cache) and produces every event, again and again until at
least 10 M events (1 M with ``quick``) have been decoded, its output consumed and dropped packet by packet; the rate is events / wall time, median of 3 trials,
spread printed; the decoders of one file take turns trial by trial, so load changes on a shared machine hit
them alike. Every decoder's output is first checked against ours (count, first/last t, Σx, Σy, ON count);
a peer that decodes a file differently is marked ✗ and left out of the "fastest correct peer" ratio. Ours reads
through the public reader API (``open_reader(path).chunks()``), so the figure includes header parsing, order and
bounds checks and building ``DVS_EVENT`` arrays. ``.npy`` is compared with a plain memory copy of the same bytes
(``ndarray.copy`` of their uint8 view: a memcpy into a new allocation) and with ``np.load`` (one read of the
whole file, no checks).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np

from sensors.formats import open_reader
from sensors.formats.kernels.warm import warm_up

from . import median_spread

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"

# format -> (file under shared/data, extra reader kwargs)
CASES = (
    ("evt2", "vision/gen3_expelliarmus_evt2.raw", {}),
    ("evt2", "vision/gen3_faery_evt2.raw", {}),
    ("evt3", "vision/gen4_expelliarmus_evt3.raw", {}),
    ("evt3", "vision/gen4_triggers_evt3.raw", {}),
    ("aedat4", "vision/dvxplorer_tonic.aedat4", {}),
    ("aedat4", "vision/davis346_evlib.aedat4", {}),
    ("aedat2", "vision/dvs128_right_clamp.aedat", {}),
    ("dat", "vision/ncars_tonic.dat", {}),
    ("es", "vision/dvs_faery.es", {}),
    ("nmnist_bin", "vision/nmnist_tonic.bin", {}),
    ("nas_aedat", "audio/nas_mono_32ch.aedat", {"format": "nas_aedat"}),
)


def _stats(parts: list[np.ndarray], y_flip_height: int | None = None) -> tuple:
    ev = np.concatenate([p for p in parts if p.shape[0]]) if parts else np.empty(0, [("t", "i8")])
    n = int(ev.shape[0])
    if n == 0:
        return (0,)
    on_field = "p" if "p" in ev.dtype.names else "on"
    sum_y = int(ev["y"].astype(np.int64).sum()) if "y" in ev.dtype.names else 0
    if y_flip_height is not None:
        sum_y = n * (y_flip_height - 1) - sum_y
    return (
        n,
        int(ev["t"][0]),
        int(ev["t"][-1]),
        int(ev["x"].astype(np.int64).sum()),
        sum_y,
        int(np.count_nonzero(ev[on_field])),
    )


# -- decoders: each returns a callable that decodes the whole file and returns its event arrays -----------------
# -- decoders: each returns a generator function yielding the file's event arrays. Timing consumes and drops
# them (as a streaming consumer does: decoders that hand out packets can reuse memory); the correctness check
# collects them.
def ours(path: Path, kwargs: dict) -> Callable[[], Iterator[np.ndarray]]:
    def run():
        yield from open_reader(path, **kwargs).chunks()

    return run


def _peers(fmt: str, path: Path, spec_height: int) -> dict[str, tuple[Callable[[], Iterator[np.ndarray]], dict]]:
    out: dict = {}
    try:
        from faery.extension import aedat as f_aedat, dat as f_dat, es as f_es, evt as f_evt
    except ImportError:
        f_evt = None
    if f_evt is not None:
        if fmt in ("evt2", "evt3"):
            def faery_evt():
                with f_evt.Decoder(path, (1280, 720), fmt) as d:
                    for packet in d:
                        if "events" in packet:
                            yield packet["events"]

            out["faery"] = (faery_evt, {})
        if fmt == "aedat4":
            def faery_aedat():
                with f_aedat.Decoder(path) as d:
                    for track, packet in d:
                        if track.data_type == "events":
                            yield packet

            out["faery"] = (faery_aedat, {})
        if fmt == "dat":
            def faery_dat():
                with f_dat.Decoder(path, (304, 240), "dat2") as d:
                    yield from d

            out["faery"] = (faery_dat, {"dat_payload": True})
        if fmt == "es":
            def faery_es():
                with f_es.Decoder(path, 0) as d:
                    yield from d

            # faery's Python layer flips y to image orientation; its Rust decoder (timed here) does not
            out["faery"] = (faery_es, {"y_flip": spec_height})
    if fmt == "aedat4":
        try:
            import aedat
        except ImportError:
            aedat = None
        if aedat is not None:
            def aedat_pkg():
                for p in aedat.Decoder(str(path)):
                    if "events" in p:
                        yield p["events"]

            out["aedat"] = (aedat_pkg, {})
    if fmt in ("evt2", "evt3", "dat"):
        try:
            from expelliarmus import Wizard
        except ImportError:
            Wizard = None
        if Wizard is not None:
            def expelliarmus():
                yield Wizard(encoding=fmt).read(path)

            out["expelliarmus"] = (expelliarmus, {})
    if fmt == "nmnist_bin":
        try:
            import tonic.io
        except ImportError:
            tonic = None
        if tonic is not None:
            from runtime.events import DVS_EVENT

            def tonic_nmnist():
                yield tonic.io.read_mnist_file(str(path), dtype=DVS_EVENT)

            out["tonic"] = (tonic_nmnist, {})
    return out


def _drain(gen_fn: Callable[[], Iterator[np.ndarray]]) -> None:
    for _ in gen_fn():
        pass


def _rates(fns: dict[str, Callable[[], Iterator]], events_per_call: int, target: int, trials: int) -> dict:
    """{name: (events/s median, relative spread)}: the decoders take turns, trial by trial, so a change in the
    machine's load during the run hits them alike (this machine is shared)."""
    reps = max(1, math.ceil(target / max(1, events_per_call)))
    for fn in fns.values():
        _drain(fn)  # warm-up (compilation, page cache)
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(trials):
        for name, fn in fns.items():
            t0 = time.perf_counter()
            for _ in range(reps):
                _drain(fn)
            samples[name].append(time.perf_counter() - t0)
    out = {}
    for name, times in samples.items():
        med, spread = median_spread(times)
        out[name] = (reps * events_per_call / med, spread)
    return out


def _npy_case(target: int, trials: int, tmp: Path) -> dict:
    """A large tonic-layout .npy (EVT3 events tiled with shifted time) against memory copy and np.load."""
    base = open_reader(DATA / "vision" / "gen4_expelliarmus_evt3.raw").read_all()
    reps = max(1, math.ceil(target / base.shape[0]))
    span = int(base["t"][-1] - base["t"][0]) + 1
    big = np.concatenate([base] * reps)
    big["t"] += np.repeat(np.arange(reps, dtype=np.int64) * span, base.shape[0])
    path = tmp / "events.npy"
    np.save(path, big)
    (tmp / "events.json").write_text('{"sensor_size": [1280, 720, 2]}')
    n = big.shape[0]
    rows = _rates(
        {
            "ours": ours(path, {}),
            "memory copy": lambda: iter([big.view(np.uint8).copy()]),
            "np.load": lambda: iter([np.load(path)]),
        },
        n, n, trials,
    )
    # the same events in the other generic containers, against the plain way to load each
    import h5py

    h5 = tmp / "events.h5"
    with h5py.File(h5, "w") as f:
        g = f.create_group("events")
        for name in ("x", "y", "t", "p"):
            g[name] = big[name]
        f.attrs["width"], f.attrs["height"] = 1280, 720
    npz = tmp / "events.npz"
    np.savez(npz, events=big, sensor_size=np.array([1280, 720, 2]))

    def h5py_columns():
        with h5py.File(h5, "r") as f:
            yield [f["events"][name][:] for name in ("x", "y", "t", "p")]

    containers = {
        "hdf5": _rates({"ours": ours(h5, {}), "h5py columns": h5py_columns}, n, n, trials),
        "npz": _rates({"ours": ours(npz, {}), "np.load": lambda: iter([np.load(npz)["events"]])}, n, n, trials),
    }
    return {"events": n, "rates": rows, "containers": containers}


def run(quick: bool, plots_dir: Path | None) -> dict:
    from rich.console import Console
    from rich.table import Table

    warm_up()
    target = 1_000_000 if quick else 10_000_000
    trials = 5
    section: dict = {"target_events": target, "trials": trials, "load_avg_1min": os.getloadavg()[0], "formats": []}
    table = Table(title=f"decode: M events/s (median of {trials}, ≥{target / 1e6:g} M events each; ✗ = output differs)")
    for col in ("format", "file", "ours", "peers", "ours / fastest correct peer"):
        table.add_column(col, overflow="fold")
    for fmt, rel, kwargs in CASES:
        path = DATA / rel
        if not path.is_file():
            continue
        reader = open_reader(path, **kwargs)
        height = reader.spec.shape[1] if reader.spec.kind == "dvs" else 1
        mine = ours(path, kwargs)
        ref = _stats(list(mine()))
        n = ref[0]
        entry = {"format": fmt, "file": rel, "events_per_file": n, "peers": {}}
        fns = {"ours": mine}
        correct = {}
        for name, (fn, opts) in _peers(fmt, path, height).items():
            try:
                parts = list(fn())
                if opts.get("dat_payload"):
                    parts = [
                        np.rec.fromarrays([p["t"], p["x"], p["y"], np.clip(p["payload"], 0, 1)], names="t,x,y,p")
                        for p in parts
                    ]
                correct[name] = _stats(parts, opts.get("y_flip")) == ref
                fns[name] = fn
            except Exception as exc:  # a peer that cannot read the file is reported, not fatal
                entry["peers"][name] = {"error": f"{type(exc).__name__}: {exc}"[:200]}
        rates = _rates(fns, n, target, trials)
        r_ours, s_ours = rates.pop("ours")
        entry["ours_ev_per_s"], entry["ours_spread"] = r_ours, s_ours
        cells = [f"{name}: error" for name in entry["peers"]]
        best = None
        for name, (rate, spread) in rates.items():
            entry["peers"][name] = {"ev_per_s": rate, "spread": spread, "correct": correct[name]}
            cells.append(f"{name} {rate / 1e6:.1f}{'' if correct[name] else ' ✗'}")
            if correct[name] and (best is None or rate > best[1]):
                best = (name, rate)
        if best is not None:
            entry["fastest_correct_peer"] = best[0]
            entry["ratio_to_fastest_correct_peer"] = r_ours / best[1]
        ratio = "—" if best is None else f"{r_ours / best[1]:.2f}× {best[0]}"
        table.add_row(fmt, Path(rel).name, f"{r_ours / 1e6:.1f} ±{s_ours * 50:.0f}%", ", ".join(cells) or "—", ratio)
        section["formats"].append(entry)
    with tempfile.TemporaryDirectory() as tmp:
        npy = _npy_case(target, trials, Path(tmp))
    ours_npy = npy["rates"]["ours"][0]
    copy = npy["rates"]["memory copy"][0]
    section["npy"] = {
        "events": npy["events"],
        "ours_ev_per_s": ours_npy,
        "memory_copy_ev_per_s": copy,
        "np_load_ev_per_s": npy["rates"]["np.load"][0],
        "ours_over_memory_copy_time": copy / ours_npy,
    }
    table.add_row(
        "npy",
        f"{npy['events'] / 1e6:.1f} M-event .npy",
        f"{ours_npy / 1e6:.1f}",
        f"memory copy {copy / 1e6:.1f}, np.load {npy['rates']['np.load'][0] / 1e6:.1f}",
        f"{copy / ours_npy:.2f}× the copy's time",
    )
    for fmt, rates in npy["containers"].items():
        r_ours = rates.pop("ours")[0]
        (peer, (r_peer, _)), = rates.items()
        section[fmt] = {"events": npy["events"], "ours_ev_per_s": r_ours, f"{peer}_ev_per_s": r_peer,
                        "ratio": r_ours / r_peer}
        table.add_row(fmt, f"{npy['events'] / 1e6:.1f} M events (written here)", f"{r_ours / 1e6:.1f}",
                      f"{peer} {r_peer / 1e6:.1f}", f"{r_ours / r_peer:.2f}× {peer}")
    Console().print(table)
    if plots_dir is not None:
        _plot(section, Path(plots_dir) / "decode.png")
    return section


def _plot(section: dict, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = section["formats"]
    labels = [f"{r['format']}\n{Path(r['file']).stem[:18]}" for r in rows]
    names = ["ours"] + sorted({p for r in rows for p in r["peers"]})
    fig, ax = plt.subplots(figsize=(max(6, len(rows) * 1.2), 4), dpi=100)
    width = 0.8 / len(names)
    for j, name in enumerate(names):
        vals = []
        for r in rows:
            if name == "ours":
                vals.append(r["ours_ev_per_s"] / 1e6)
            else:
                vals.append(r["peers"].get(name, {}).get("ev_per_s", 0) / 1e6)
        ax.bar(np.arange(len(rows)) + j * width, vals, width, label=name)
    ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
    ax.set_xticklabels(labels, fontsize=7)
    ax.set_ylabel("M events/s")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(png)
    plt.close(fig)
