"""Helpers shared by the benchmarks: data, timing, table printing, JSON results."""

from __future__ import annotations

import datetime
import functools
import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from rotaquant.contrib import data

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]

T = TypeVar("T")

# A table column: (row key, header, format spec); missing / None values print blank.
Column = tuple[str, str, str]


HELD_OUT = 1000  # queries held out of the data sets below
MPNET_TEXTS = 201_000  # WordNet texts embedded: 200,000 database rows + the held-out queries
CLUSTERS = 1000


def mpnet(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(database (n, 768), queries (1000, 768)) of MPNet embeddings; n <= 200,000."""
    x = data.mpnet_embeddings(data.wordnet_texts(MPNET_TEXTS))
    order = np.random.default_rng(0).permutation(x.shape[0])
    queries, base = order[:HELD_OUT], order[HELD_OUT:]
    return np.ascontiguousarray(x[np.sort(base[:n])]), np.ascontiguousarray(x[queries])


def clustered(n: int, d: int = 768, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n + 1000 unit vectors: a cluster centre (one of 1,000, uniform on the sphere) plus
    Gaussian noise of the same norm, normalized; (database, queries)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n + HELD_OUT, d), np.float32)
    for start in range(0, out.shape[0], 100_000):
        stop = min(out.shape[0], start + 100_000)
        x = centres[rng.integers(0, CLUSTERS, stop - start)]
        x += rng.standard_normal(x.shape, dtype=np.float32) / np.sqrt(d, dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:]


def unit_gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 Gaussian vectors scaled to unit norm (uniform on the sphere)."""
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def best_of(fn: Callable[[], T], repeat: int = 3, warmup: Callable[[], Any] | None = None):
    """(best wall time in seconds over ``repeat`` calls, the last call's result)."""
    if warmup is not None:
        warmup()
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def call_ms(fn: Callable[[Any], Any], items: Sequence[Any]) -> np.ndarray:
    """Milliseconds of ``fn(item)`` for each item, one call at a time (latency percentiles)."""
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return 1e3 * np.array(times)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Fixed-width text table: numbers right-aligned, text left-aligned."""

    def cell(row: dict[str, Any], key: str, spec: str) -> str:
        value = row.get(key)
        return "" if value is None else format(value, spec)

    body = [[cell(row, key, spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(headers)]
    numeric = [not any(isinstance(row.get(key), str) for row in rows) for key, *_ in columns]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(cells) for cells in body)])


def _git(*args: str) -> str | None:
    try:
        run = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return None
    return run.stdout.strip()


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "Model", "CPU part")):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


# ---------------------------------------------------------------------- instruction sets
HIDE_AVX512 = ROOT / "tools" / "hide_avx512.c"
ISA_ENV = "ROTAQUANT_BENCH_ISA"  # set in a run re-executed under --isa avx2


def add_isa_argument(parser: Any) -> None:
    """``--isa native|avx2`` for a benchmark's argument parser (see :func:`apply_isa`)."""
    parser.add_argument(
        "--isa",
        choices=("native", "avx2"),
        default="native",
        help="avx2: AVX-512 hidden from every library in the process (tools/hide_avx512.c), "
        "so rotaquant, turbovec, FAISS, numpy and torch all run their AVX2 code, as on an "
        "AVX2-only CPU (default: whatever this CPU runs)",
    )


def hide_avx512_library() -> Path:
    """tools/hide_avx512.c built (once, with the system C compiler) into build/."""
    out = ROOT / "build" / "hide_avx512.so"
    if not out.exists() or out.stat().st_mtime < HIDE_AVX512.stat().st_mtime:
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(f".{os.getpid()}.tmp")
        cc = os.environ.get("CC", "cc")
        subprocess.run(
            [cc, "-O2", "-shared", "-fPIC", "-o", str(tmp), str(HIDE_AVX512), "-ldl"], check=True
        )
        os.replace(tmp, out)
    return out


def apply_isa(isa: str) -> None:
    """Make this process run as on a CPU of ``isa``: for ``avx2`` on a CPU with AVX-512,
    re-execute the same command with tools/hide_avx512.c preloaded (CPUID then reports no
    AVX-512 to anything in the process: the peers choose their AVX2 kernels too, which
    ROTAQUANT_SIMD=avx2 alone would not make them do). No-op for ``native``, or where there
    is no AVX-512 to hide."""
    if isa == "native" or os.environ.get(ISA_ENV) == isa or not cpu_has_avx512():
        return  # (an AVX2 machine already: nothing to hide, nothing hidden)
    env = {**os.environ, ISA_ENV: isa}
    env["LD_PRELOAD"] = " ".join(filter(None, [str(hide_avx512_library()), env.get("LD_PRELOAD")]))
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def cpu_has_avx512() -> bool:
    """Whether the CPU has AVX-512 Foundation (the kernel's view, /proc/cpuinfo: what hiding
    it from CPUID does not change), whatever extensions rotaquant's own variant needs."""
    try:
        with open("/proc/cpuinfo") as f:
            return any(line.startswith("flags") and " avx512f" in line for line in f)
    except OSError:
        return False


def peer_isa() -> str:
    """The SIMD the peers (turbovec, FAISS) can choose in this process: they read CPUID
    themselves, so it follows what this process sees, not ROTAQUANT_SIMD."""
    from rotaquant import _core

    config = _core.config()
    if os.environ.get(ISA_ENV) == "avx2":
        return "avx2 (AVX-512 hidden)"
    if cpu_has_avx512():
        return "avx512" + (" with VBMI/VNNI" if config["avx512"] else "")
    if config["avx2"]:
        return "avx2"
    return "neon" if config["neon"] else "scalar"


@functools.cache
def provenance() -> dict[str, Any]:
    """Where a run's numbers come from, taken when the run starts (the tree may change while it
    goes on): commit, whether the code measured differs from it, the command, CPU and ISA."""
    from rotaquant import _native

    commit = _git("rev-parse", "HEAD")
    # the code measured: results written by earlier runs (bench/results) do not count
    changed = _git(
        "status", "--porcelain", "src", "csrc", "bench", "CMakeLists.txt", ":!bench/results"
    )
    return {
        "commit": commit,
        "dirty": bool(changed) if changed is not None else None,
        "argv": [Path(sys.argv[0]).name, *sys.argv[1:]],
        "cpu": _cpu_model(),
        "isa": _native.active_variant(),
        "isa_available": _native.variants(),
        "isa_hidden": "avx512" if os.environ.get(ISA_ENV) == "avx2" else None,
        "peer_isa": peer_isa(),
        "threads": _native.threads(),
    }


def metadata(**extra: Any) -> dict[str, Any]:
    """Run context stored next to the results: provenance, versions, machine, ``extra``."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        **provenance(),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **extra,
    }


def _json_path(name_or_path: str | Path) -> Path:
    """``bench/results/<name>.json``, or an explicit ``*.json`` path."""
    path = Path(name_or_path)
    return path if path.suffix == ".json" else RESULTS / f"{name_or_path}.json"


def write_json(name_or_path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` (its ``meta`` given the run's provenance) to its JSON path."""
    path = _json_path(name_or_path)
    payload = {**payload, "meta": {**metadata(), **payload.get("meta", {})}}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def publish(name_or_path: str | Path, payload: dict[str, Any], text: str) -> Path:
    """A run's results: ``<name>.json`` (``payload`` + provenance) and ``<name>.txt`` (the
    tables as printed, under one line saying commit, dirty flag, command, CPU and ISA)."""
    path = write_json(name_or_path, payload)
    p = provenance()
    commit = (p["commit"] or "unknown commit")[:12] + (
        " (uncommitted changes)" if p["dirty"] else ""
    )
    hidden = " (AVX-512 hidden: tools/hide_avx512.c)" if p["isa_hidden"] else ""
    header = (
        f"# {' '.join(p['argv'])} · {commit} · {p['cpu']} · ISA {p['isa']} "
        f"(of {', '.join(p['isa_available'])}){hidden} · peers {p['peer_isa']} · "
        f"{p['threads']} threads"
    )
    path.with_suffix(".txt").write_text(f"{header}\n\n{text.strip()}\n")
    print(f"wrote {path} and {path.with_suffix('.txt')}")
    return path


provenance()  # taken now, as the run starts: commits made while it runs do not count
