"""Fuzz every parser with random byte mutations and truncations of real files (or, for the formats without a real
sample, files built from their documentation): each run either decodes to sorted, in-sensor events or raises
FormatError / StreamOrderError -- never another exception, never a hang, never unbounded memory."""

from __future__ import annotations

import signal
import tracemalloc
from contextlib import contextmanager

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from runtime.errors import FormatError, StreamOrderError
from sensors.formats import open_reader
from tests.conftest import SHARED_DATA

PREFIX = 48_000  # bytes of each real file to mutate: keeps an example to milliseconds
MEMORY_LIMIT = 96 << 20


def _evt21_sample() -> bytes:
    rng = np.random.default_rng(7)
    words = []
    for i in range(400):
        if i % 20 == 0:
            words.append((8 << 60) | ((1000 + i) << 32))
        words.append((int(rng.integers(0, 2)) << 60) | (int(rng.integers(0, 64)) << 54) | (32 * int(rng.integers(0, 40)) << 43)
                     | (int(rng.integers(0, 720)) << 32) | int(rng.integers(0, 1 << 32)))
    return b"% format EVT21;width=1280;height=720\n% end\n" + np.array(words, np.uint64).tobytes()


def _aedat31_sample() -> bytes:
    rng = np.random.default_rng(8)
    header = b"#!AER-DAT3.1\r\n#Source 1: DVS128\r\n#!END-HEADER\r\n"
    body = b""
    t = 0
    for _ in range(20):
        n = 50
        ev = np.empty(n, [("d", "<u4"), ("t", "<i4")])
        x, y = rng.integers(0, 128, n), rng.integers(0, 128, n)
        ev["d"] = (x << 17) | (y << 2) | (rng.integers(0, 2, n) << 1) | 1
        ev["t"] = t + np.sort(rng.integers(0, 1000, n))
        t += 1000
        h = np.zeros(1, [("a", "<i2"), ("b", "<i2"), ("c", "<i4", 6)])
        h["a"], h["b"], h["c"] = 1, 1, [8, 4, 0, n, n, n]
        body += h.tobytes() + ev.tobytes()
    return header + body


# format -> (file name, how to get the bytes); read with an explicit format so a mutated magic stays in family
CASES = {
    "evt2": lambda d: (d / "vision" / "gen3_expelliarmus_evt2.raw").read_bytes()[:PREFIX],
    "evt21": lambda d: _evt21_sample(),
    "evt3": lambda d: (d / "vision" / "gen4_triggers_evt3.raw").read_bytes()[:PREFIX],
    "dat": lambda d: (d / "vision" / "ncars_tonic.dat").read_bytes(),
    "aedat2": lambda d: (d / "vision" / "dvs128_walking.aedat").read_bytes()[:PREFIX],
    "aedat31": lambda d: _aedat31_sample(),
    "aedat4": lambda d: (d / "vision" / "davis346_evlib.aedat4").read_bytes()[:PREFIX * 2],
    "es": lambda d: (d / "vision" / "dvs_faery.es").read_bytes()[:PREFIX],
    "nmnist_bin": lambda d: (d / "vision" / "nmnist_tonic.bin").read_bytes(),
    "nas_aedat": lambda d: (d / "audio" / "nas_mono_32ch.aedat").read_bytes()[:PREFIX],
    "hdf5": lambda d: (d / "vision" / "events_evlib.hdf5").read_bytes(),
    "npy": None,  # built from a real file in the test (tonic layout)
    "npz": None,
}
EXT = {"evt2": ".raw", "evt21": ".raw", "evt3": ".raw", "dat": ".dat", "aedat2": ".aedat", "aedat31": ".aedat",
       "aedat4": ".aedat4", "es": ".es", "nmnist_bin": ".bin", "nas_aedat": ".aedat", "hdf5": ".h5", ".npy": ".npy",
       "npy": ".npy", "npz": ".npz"}


def _array_sample(fmt: str, tmp) -> bytes:
    import io

    ev = open_reader(SHARED_DATA / "vision" / "nmnist_tonic.bin").read_all()[:1500]
    buf = io.BytesIO()
    if fmt == "npy":
        np.save(buf, ev)
    else:
        np.savez(buf, events=ev, sensor_size=np.array([34, 34, 2]))
    return buf.getvalue()


@contextmanager
def _time_limit(seconds: int):
    def boom(signum, frame):
        raise TimeoutError(f"parser still running after {seconds} s")

    old = signal.signal(signal.SIGALRM, boom)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


_mutation = st.tuples(st.sampled_from(["flip", "set", "cut", "insert", "delete"]), st.floats(0, 1), st.integers(0, 255))


def _mutate(data: bytes, mutations) -> bytes:
    b = bytearray(data)
    for kind, where, value in mutations:
        if not b:
            break
        i = min(len(b) - 1, int(where * len(b)))
        if kind == "flip":
            b[i] ^= 1 << (value % 8)
        elif kind == "set":
            b[i] = value
        elif kind == "cut":
            del b[i:]
        elif kind == "insert":
            b[i:i] = bytes([value]) * (1 + value % 7)
        else:
            del b[i : i + 1 + value % 7]
    return bytes(b)


def _check_decodes_or_refuses(path, fmt: str, sensor_size) -> None:
    tracemalloc.start()
    try:
        with _time_limit(20):
            try:
                reader = open_reader(path, format=fmt, sensor_size=sensor_size)
                last = None
                for chunk in reader.chunks(max_events=4096):
                    assert 0 < chunk.shape[0] <= 4096
                    t = chunk["t"]
                    assert np.all(np.diff(t) >= 0) and (last is None or t[0] >= last)
                    last = int(t[-1])
                    assert chunk["x"].min() >= 0 and chunk["x"].max() < reader.spec.shape[0]
                    if reader.spec.kind == "dvs":
                        assert chunk["y"].min() >= 0 and chunk["y"].max() < reader.spec.shape[1]
                reader.triggers()
            except (FormatError, StreamOrderError):
                pass
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < MEMORY_LIMIT


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_parser_survives_mutations(shared_data, tmp_path_factory, fmt):
    tmp = tmp_path_factory.mktemp(f"fuzz_{fmt}")
    data = CASES[fmt](shared_data) if CASES[fmt] is not None else _array_sample(fmt, tmp)
    size = {"hdf5": (346, 260)}.get(fmt)
    counter = iter(range(10**9))

    @settings(max_examples=25, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(mutations=st.lists(_mutation, min_size=1, max_size=4))
    def run(mutations):
        path = tmp / f"m{next(counter)}{EXT[fmt]}"
        path.write_bytes(_mutate(data, mutations))
        try:
            _check_decodes_or_refuses(path, fmt, size)
        finally:
            path.unlink()

    run()


@pytest.mark.parametrize("fmt", sorted(CASES))
def test_truncations_and_empty_files(shared_data, tmp_path, fmt):
    data = CASES[fmt](shared_data) if CASES[fmt] is not None else _array_sample(fmt, tmp_path)
    size = {"hdf5": (346, 260)}.get(fmt)
    for n in sorted({0, 1, 5, 13, 17, 29, 64, 200, len(data) // 3, len(data) - 1}):
        path = tmp_path / f"t{n}{EXT[fmt]}"
        path.write_bytes(data[: max(0, min(n, len(data)))])
        _check_decodes_or_refuses(path, fmt, size)


def test_garbage_bytes_are_refused_with_a_clear_error(tmp_path):
    rng = np.random.default_rng(11)
    path = tmp_path / "noise.raw"
    path.write_bytes(b"% evt 3.0\n% geometry 1280x720\n" + rng.integers(0, 256, 20_000, dtype=np.uint8).tobytes())
    with pytest.raises(FormatError, match=r"noise.raw at byte \d+: EVT3 word 0x[0-9a-f]{4} has reserved type"):
        open_reader(path).read_all()
    empty = tmp_path / "empty.aedat4"
    empty.write_bytes(b"")
    with pytest.raises(FormatError, match="empty file"):
        open_reader(empty)
