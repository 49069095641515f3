"""Vector index: recall, speed, size and persistence against turbovec, FAISS and exact search.

Four data sets, inner product everywhere, ground truth from FAISS's exact IndexFlatIP:
GloVe 6B 50-d (399,000 rows + the last 1,000 as queries), all-MiniLM-L6-v2 384-d embeddings
of the WordNet glosses (116,648 + 1,000 queries), all-mpnet-base-v2 768-d embeddings of
WordNet texts (200,000 + 1,000 held-out queries: bench.speed's set) and unit Gaussian vectors
at d=1536 (100,000 + 1,000 queries). For b = 2, 3, 4 bits per value, in the same run:
rotaquant's VectorIndex (no training), the same with a float16 copy and exact re-ranking of
4·k candidates, turbovec's TurboQuantIndex (uncalibrated), FAISS IndexPQFastScan with bytes
matched to b·d/8 and FAISS IndexRaBitQ with b bits per value (both trained on up to 50,000
database rows).

    python -m bench.index [--quick] [--isa native|avx2] [--sets MiniLM-384 ...]
                          [--out bench/results/index.json] [--plot docs/...png]

``--isa avx2``: AVX-512 hidden from the whole process, peers included (bench/_common.py).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rotaquant.contrib import data
from rotaquant.index import VectorIndex

from ._common import (
    RESULTS,
    Column,
    add_isa_argument,
    apply_isa,
    best_of,
    format_table,
    metadata,
    mpnet,
    publish,
    unit_gaussian,
)

try:
    import faiss
except ImportError:  # the core install has no faiss: the exact ground truth needs it
    faiss = None
try:
    import turbovec
except ImportError:
    turbovec = None

BITS = (2, 3, 4)
KS = (1, 10, 100)
N_QUERIES = 1000
GAUSS_N, GAUSS_D = 100_000, 1536
QUICK_N, QUICK_QUERIES = 20_000, 200
TRAIN_N = 50_000  # FAISS training rows (a sample of the database)
RERANK_FACTOR = 4  # rotaquant +rerank: rerank = 4·k candidates
SINGLE_QUERIES = 200  # single-query latency: at most this many queries ...
LATENCY_BUDGET_S = 10.0  # ... or as many as fit in this time (at least MIN_SINGLE)
MIN_SINGLE = 20
SLOW_SEARCH_S = 10.0  # a batched search slower than this is timed once, not best of 3
CHECK_QUERIES = 20  # queries compared before and after a save/load round trip


# ---------------------------------------------------------------------- data
SETS = ("GloVe-50", "MiniLM-384", "MPNet-768", "Gaussian-1536")


def datasets(quick: bool, names: Sequence[str] = SETS) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """name -> (database, queries), float32, C-contiguous."""
    sets = {}
    for name in names:
        if name == "MPNet-768":
            db, queries = mpnet(200_000)
        else:
            if name == "GloVe-50":
                x = np.asarray(data.glove_50d(), dtype=np.float32)
            elif name == "MiniLM-384":
                x = data.minilm_embeddings(data.wordnet_glosses())
            else:
                n = (QUICK_N if quick else GAUSS_N) + N_QUERIES
                x = unit_gaussian(n, GAUSS_D, seed=0)
            db, queries = x[:-N_QUERIES], x[-N_QUERIES:]
        if quick:
            rng = np.random.default_rng(0)
            db = db[np.sort(rng.choice(db.shape[0], min(QUICK_N, db.shape[0]), replace=False))]
            queries = queries[:QUICK_QUERIES]
        sets[name] = (np.ascontiguousarray(db), np.ascontiguousarray(queries))
    return sets


# ---------------------------------------------------------------------- methods under test
class Method:
    """One index under test: ``build`` it, ``search`` it, ``save`` it and ``reload`` it."""

    name = ""
    note = ""

    def __init__(self, bits: float):
        self.bits = bits
        self.train_s: float | None = None

    def build(self, db: np.ndarray) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        """ids (m, k) int64."""
        raise NotImplementedError

    def memory_bytes(self) -> int | None:
        """Bytes held in memory, where the library reports it (else the file size is used)."""
        return None

    def save(self, path: Path) -> None:
        raise NotImplementedError

    def reload(self, path: Path, verify: bool = True) -> None:
        """Replace the index by the one saved at ``path``."""
        raise NotImplementedError

    verify_modes: tuple[bool, ...] = (True,)


class Rotaquant(Method):
    def __init__(self, dim: int, bits: float, rerank: bool = False, width: float | None = None):
        """``width``: the codec's bits per value when it differs from the row's nominal
        ``bits`` (the "=tv bytes" rows: as many code bytes as turbovec stores at ``bits``)."""
        super().__init__(bits)
        self.rerank = rerank
        self.name = "rotaquant +rerank" if rerank else "rotaquant"
        self.note = f"rerank={RERANK_FACTOR}k, f16 copy" if rerank else ""
        if width is not None:
            self.name, self.note = "rotaquant =tv bytes", f"bits={width:g}: turbovec's code bytes"
        self.index = VectorIndex(dim, width or bits, metric="ip", keep_vectors=rerank)

    def build(self, db: np.ndarray) -> None:
        self.index.add(db)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        rerank = RERANK_FACTOR * k if self.rerank else None
        return self.index.search(queries, k, rerank=rerank)[1]

    def memory_bytes(self) -> int:
        return self.index.nbytes

    def save(self, path: Path) -> None:
        self.index.save(path)

    def reload(self, path: Path, verify: bool = True) -> None:
        self.index = VectorIndex.load(path, verify=verify)

    verify_modes = (True, False)


class Turbovec(Method):
    name = "turbovec"

    def __init__(self, dim: int, bits: float):
        super().__init__(bits)
        self.pad = -dim % 8  # turbovec takes dimensions that are multiples of 8 only
        if self.pad:
            self.note = f"zero-padded to d={dim + self.pad}"
        self.index = turbovec.TurboQuantIndex(dim=dim + self.pad, bit_width=int(bits))

    def _padded(self, x: np.ndarray) -> np.ndarray:
        return np.pad(x, ((0, 0), (0, self.pad))) if self.pad else x

    def build(self, db: np.ndarray) -> None:
        self.index.add(self._padded(db))

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return np.asarray(self.index.search(self._padded(queries), k)[1])

    def save(self, path: Path) -> None:
        self.index.write(str(path))

    def reload(self, path: Path, verify: bool = True) -> None:
        self.index = turbovec.TurboQuantIndex.load(str(path))


class Faiss(Method):
    def __init__(self, name: str, bits: float, index: Any, train: bool = False, note: str = ""):
        super().__init__(bits)
        self.name, self.index, self.train, self.note = name, index, train, note

    def build(self, db: np.ndarray) -> None:
        if self.train:
            rng = np.random.default_rng(0)
            sample = db[np.sort(rng.choice(db.shape[0], min(TRAIN_N, db.shape[0]), replace=False))]
            start = time.perf_counter()
            self.index.train(sample)
            self.train_s = time.perf_counter() - start
        self.index.add(db)

    def search(self, queries: np.ndarray, k: int) -> np.ndarray:
        return self.index.search(queries, k)[1]

    def save(self, path: Path) -> None:
        faiss.write_index(self.index, str(path))

    def reload(self, path: Path, verify: bool = True) -> None:
        self.index = faiss.read_index(str(path))


def pq_subquantizers(dim: int, bits: float) -> int:
    """Divisor of ``dim`` nearest to b·d/4 (4-bit sub-quantizers: b·d/8 bytes); ties go up."""
    target = bits * dim / 4
    return min((m for m in range(1, dim + 1) if dim % m == 0), key=lambda m: (abs(m - target), -m))


def exact(dim: int) -> Method:
    return Faiss("exact (IndexFlatIP)", 32, faiss.IndexFlatIP(dim), note="float32")


def pq_fastscan(dim: int, bits: float) -> Method:
    m = pq_subquantizers(dim, bits)
    index = faiss.IndexPQFastScan(dim, m, 4, faiss.METRIC_INNER_PRODUCT)
    return Faiss("faiss PQFastScan", bits, index, train=True, note=f"M={m}x4b={m // 2}B code")


def rabitq(dim: int, bits: float) -> Method:
    index = faiss.IndexRaBitQ(dim, faiss.METRIC_INNER_PRODUCT, int(bits))
    note = f"1+{int(bits) - 1} bits, qb={index.qb}"
    return Faiss("faiss RaBitQ", bits, index, train=True, note=note)


def rabitq_fastscan(dim: int, bits: float) -> Method:
    index = faiss.IndexRaBitQFastScan(dim, faiss.METRIC_INNER_PRODUCT, 32, int(bits))
    return Faiss("faiss RaBitQFastScan", bits, index, train=True, note=f"{int(bits)} bits")


def methods(dim: int) -> Iterator[Callable[[], Method]]:
    """Constructors, so that one index at a time is held (method-major, then bits)."""
    yield lambda: exact(dim)
    makers: list[Callable[[int, float], Method]] = [
        lambda d, b: Rotaquant(d, b),
        lambda d, b: Rotaquant(d, b, rerank=True),
    ]

    def equal_bytes(d: int, b: float) -> Method:
        return Rotaquant(d, b, width=turbovec_width(d, b))

    if turbovec is not None:
        makers += [Turbovec, equal_bytes]
    makers += [pq_fastscan, rabitq]
    for make in makers:
        for bits in BITS:
            if make is equal_bytes and turbovec_width(dim, bits) == bits:
                continue  # the plain rotaquant row already matches turbovec's bytes
            yield lambda make=make, bits=bits: make(dim, bits)


def turbovec_width(dim: int, bits: int) -> float:
    """rotaquant bits per value that store as many code bytes as turbovec does at ``bits``
    (it pads dim to a multiple of 8 and stores 3-bit codes in 4 bits), rounded down to a
    width realisable at ``dim`` (a multiple of 1/dim)."""
    stored = (dim + -dim % 8) * (4 if bits == 3 else bits)
    return (stored // dim) + (stored % dim) / dim


# ---------------------------------------------------------------------- measurements
def recall(found: np.ndarray, truth: np.ndarray, k: int) -> float:
    """Mean |found top-k ∩ true top-k| / k."""
    hits = (found[:, :k, None] == truth[:, None, :k]).any(axis=2)
    return float(hits.sum() / (truth.shape[0] * k))


def timed_search(method: Method, queries: np.ndarray, k: int) -> tuple[float, np.ndarray]:
    """(best seconds for the batch, ids): best of 3, or a single run when one is slow."""
    first, ids = best_of(lambda: method.search(queries, k), repeat=1)
    if first >= SLOW_SEARCH_S:
        return first, ids
    rest, ids = best_of(lambda: method.search(queries, k), repeat=2)
    return min(first, rest), ids


def single_latency(method: Method, queries: np.ndarray, k: int = 10) -> dict[str, Any]:
    method.search(queries[:1], k)  # warm-up: single queries may take another code path (JIT)
    times: list[float] = []
    start = time.perf_counter()
    for i in range(min(SINGLE_QUERIES, queries.shape[0])):
        t0 = time.perf_counter()
        method.search(queries[i : i + 1], k)
        times.append(time.perf_counter() - t0)
        if time.perf_counter() - start > LATENCY_BUDGET_S and len(times) >= MIN_SINGLE:
            break
    ms = np.array(times) * 1e3
    return {
        "p50_ms": float(np.percentile(ms, 50)),
        "p99_ms": float(np.percentile(ms, 99)),
        "single_n": len(times),
    }


def persistence(method: Method, queries: np.ndarray) -> dict[str, Any]:
    """Save and load times, file size, and whether the reloaded index answers the same."""
    before = method.search(queries[:CHECK_QUERIES], 10)
    out: dict[str, Any] = {"reload_same": True}
    with tempfile.TemporaryDirectory(prefix="bench_index_") as tmp:
        path = Path(tmp) / "index.bin"
        start = time.perf_counter()
        method.save(path)
        out["save_s"] = time.perf_counter() - start
        out["file_bytes"] = path.stat().st_size
        for verify in method.verify_modes:
            start = time.perf_counter()
            method.reload(path, verify=verify)
            key = "load_s" if verify else "load_noverify_s"
            out[key] = time.perf_counter() - start
            same = np.array_equal(method.search(queries[:CHECK_QUERIES], 10), before)
            out["reload_same"] = out["reload_same"] and same
    return out


def search_row(
    method: Method, db: np.ndarray, queries: np.ndarray, truth: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray]:
    """Build ``method`` on ``db``, then time and score its searches: the row's build, recall
    and speed fields, and its top-100 ids (the ground truth, for the exact method)."""
    n = db.shape[0]
    start = time.perf_counter()
    method.build(db)
    build_s = time.perf_counter() - start
    t10, ids10 = timed_search(method, queries, 10)
    t100, ids100 = timed_search(method, queries, 100)
    truth = ids100 if truth is None else truth
    row: dict[str, Any] = {
        "method": method.name,
        "bits": method.bits,
        "recall@1": recall(ids10, truth, 1),
        "recall@10": recall(ids10, truth, 10),
        "recall@100": recall(ids100, truth, 100),
        "recall@10_of_k100": recall(ids100, truth, 10),  # = recall@10 (+rerank: rerank=400)
        "qps_k10": queries.shape[0] / t10,
        "qps_k100": queries.shape[0] / t100,
        **single_latency(method, queries),
        "build_s": build_s,
        "add_vps": n / (build_s - (method.train_s or 0.0)),
        "train_s": method.train_s,
    }
    return row, ids100


def measure(
    method: Method, db: np.ndarray, queries: np.ndarray, truth: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray]:
    """One row of results (search_row, then memory and a save/load round trip), and the
    method's top-100 ids."""
    n = db.shape[0]
    row, ids100 = search_row(method, db, queries, truth)
    memory = method.memory_bytes()
    saved = persistence(method, queries)
    row["bytes_per_vector"] = (memory if memory is not None else saved["file_bytes"]) / n
    row["file_bytes_per_vector"] = saved.pop("file_bytes") / n
    row.update(saved)
    row["note"] = method.note
    return row, ids100


def run(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    rows = []
    for name, (db, queries) in sets.items():
        truth = None
        for make in methods(db.shape[1]):
            start = time.perf_counter()
            method = make()
            row, ids = measure(method, db, queries, truth)
            del method
            truth = ids if truth is None else truth
            row = {"data": name, "n": db.shape[0], "d": db.shape[1], **row}
            row["load_avg_1min"] = os.getloadavg()[0]  # > cores: something else was running
            rows.append(row)
            print(
                f"{name} {row['method']} b={row['bits']:g}: recall@10 {row['recall@10']:.3f}, "
                f"{row['qps_k10']:,.0f} q/s, p50 {row['p50_ms']:.2f} ms "
                f"({time.perf_counter() - start:.0f} s)",
                flush=True,
            )
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rotaquant against turbovec and PQFastScan at the same data set and bits."""
    by = {(r["data"], r["method"], r["bits"]): r for r in rows}
    out = []
    for (name, method, bits), rq in by.items():
        if method != "rotaquant":
            continue
        rr = by.get((name, "rotaquant +rerank", bits))
        tv = by.get((name, "turbovec", bits))
        pq = by.get((name, "faiss PQFastScan", bits))
        entry: dict[str, Any] = {"data": name, "bits": bits}
        eq = by.get((name, "rotaquant =tv bytes", bits), rq)
        if tv is not None:
            entry["equal_bytes_recall10_minus_turbovec"] = eq["recall@10"] - tv["recall@10"]
            entry["qps_vs_turbovec"] = rq["qps_k10"] / tv["qps_k10"]
            entry["recall10_minus_turbovec"] = rq["recall@10"] - tv["recall@10"]
            if rr is not None:
                entry["rerank_qps_vs_turbovec"] = rr["qps_k10"] / tv["qps_k10"]
                entry["rerank_recall10_minus_turbovec"] = rr["recall@10"] - tv["recall@10"]
        if pq is not None:
            entry["qps_vs_pqfastscan"] = rq["qps_k10"] / pq["qps_k10"]
            entry["recall10_minus_pqfastscan"] = rq["recall@10"] - pq["recall@10"]
        out.append(entry)
    return out


COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("method", "method", ""),
    ("bits", "b", "g"),
    ("recall@1", "R@1", ".3f"),
    ("recall@10", "R@10", ".3f"),
    ("recall@100", "R@100", ".3f"),
    ("qps_k10", "q/s k=10", ",.0f"),
    ("qps_k100", "q/s k=100", ",.0f"),
    ("p50_ms", "p50 ms", ".2f"),
    ("p99_ms", "p99 ms", ".2f"),
    ("single_n", "n1", "d"),
    ("add_vps", "add vec/s", ",.0f"),
    ("train_s", "train s", ".2f"),
    ("bytes_per_vector", "B/vec", ".1f"),
    ("file_bytes_per_vector", "file B/vec", ".1f"),
    ("save_s", "save s", ".3f"),
    ("load_s", "load s", ".3f"),
    ("load_noverify_s", "load nv s", ".4f"),
    ("reload_same", "reload ok", ""),
    ("note", "note", ""),
]

RATIO_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("bits", "b", "g"),
    ("qps_vs_turbovec", "rq/tv q/s", ".2f"),
    ("equal_bytes_recall10_minus_turbovec", "rq-tv R@10 =B", "+.3f"),
    ("recall10_minus_turbovec", "rq-tv R@10", "+.3f"),
    ("rerank_qps_vs_turbovec", "rq+rr/tv q/s", ".2f"),
    ("rerank_recall10_minus_turbovec", "rq+rr-tv R@10", "+.3f"),
    ("qps_vs_pqfastscan", "rq/pq q/s", ".2f"),
    ("recall10_minus_pqfastscan", "rq-pq R@10", "+.3f"),
]


def notes(
    sets: dict[str, tuple[np.ndarray, np.ndarray]], rows: list[dict[str, Any]], elapsed: float
) -> str:
    sizes = ", ".join(
        f"{k}: {db.shape[0]:,} x {db.shape[1]}, {q.shape[0]:,} queries"
        for k, (db, q) in sets.items()
    )
    return "\n".join(
        [
            sizes,
            "Inner product; recall@k against FAISS IndexFlatIP's top-k (R@1, R@10 from a k=10 "
            "search, R@100 from k=100; +rerank takes rerank=4k candidates).",
            "q/s: 1000 (quick: 200) batched queries, best of 3 (one run when a batch takes "
            f">{SLOW_SEARCH_S:g} s). p50/p99: single queries at k=10, n1 of them "
            f"(up to {SINGLE_QUERIES}, or {LATENCY_BUDGET_S:g} s).",
            "add vec/s excludes training; train: FAISS, on a 50,000-row sample of the database.",
            "B/vec: rotaquant idx.nbytes/len (codes, norms, 8-byte ids, spare capacity of the "
            "last segment; no id map: not built without ids/remove), the others file size/n. "
            "file B/vec: saved file size / n.",
            "save/load: rotaquant save (fsynced) + load(verify=True) / load nv = verify=False "
            "(memory-mapped); turbovec write (fsynced) / load; FAISS write_index / read_index. "
            "reload ok: the reloaded index returns the same top-10 ids for 20 queries.",
            "turbovec uncalibrated (no calibrate()); GloVe zero-padded to 56 dims for it"
            + turbovec_width_note(rows)
            + ". "
            "RaBitQ: b bits/value = 1 sign bit + b-1 extra bits, plus per-vector factors. "
            "PQFastScan: M divides d, nearest to b*d/4 (ties: larger M).",
            *k_consistency_note(rows),
            f"wall time {elapsed:.0f} s; 1-min load average after each row: max "
            f"{max(r['load_avg_1min'] for r in rows):.2f} ({os.cpu_count()} CPUs)",
        ]
    )


def k_consistency_note(rows: list[dict[str, Any]]) -> list[str]:
    """Rows whose k=10 search is worse than the top 10 of their k=100 search."""
    odd = [
        f"{r['data']} {r['method']} b={r['bits']:g}: R@10 {r['recall@10']:.3f} from k=10, "
        f"{r['recall@10_of_k100']:.3f} from the top 10 of k=100"
        for r in rows
        if abs(r["recall@10"] - r["recall@10_of_k100"]) > 0.01 and "rerank" not in r["method"]
    ]
    return ["k=10 and k=100 searches disagree: " + "; ".join(odd)] if odd else []


def turbovec_width_note(rows: list[dict[str, Any]]) -> str:
    """Say so when turbovec's 3-bit files are as large as its 4-bit ones."""
    size = {
        (r["data"], r["bits"]): r["file_bytes_per_vector"]
        for r in rows
        if r["method"] == "turbovec"
    }
    names = {name for name, _ in size}
    if names and all(
        np.isclose(size.get((n, 3), 0), size.get((n, 4), 1), rtol=1e-3) for n in names
    ):
        return "; its b=3 files are as large as b=4 (3-bit codes stored in 4 bits)"
    return ""


# ---------------------------------------------------------------------- plot
MARKERS = {
    "rotaquant": "o-",
    "rotaquant +rerank": "s-",
    "turbovec": "^-",
    "faiss PQFastScan": "v--",
    "faiss RaBitQ": "D--",
    "exact (IndexFlatIP)": "k*",
}


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """recall@10 against bytes/vector (top) and against batched q/s (bottom), per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import NullFormatter

    names = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(2, len(names), figsize=(5 * len(names), 8), squeeze=False)
    for col, name in enumerate(names):
        n = next(r["n"] for r in rows if r["data"] == name)
        for method, style in MARKERS.items():
            points = [r for r in rows if r["data"] == name and r["method"] == method]
            if not points:
                continue
            recalls = [r["recall@10"] for r in points]
            for ax, key in ((axes[0, col], "bytes_per_vector"), (axes[1, col], "qps_k10")):
                ax.plot([r[key] for r in points], recalls, style, ms=6, mfc="none", label=method)
                for r in points:
                    if method != "exact (IndexFlatIP)":
                        ax.annotate(
                            f"{r['bits']:g}",
                            (r[key], r["recall@10"]),
                            fontsize=6,
                            xytext=(3, -8),
                            textcoords="offset points",
                        )
        axes[0, col].set_title(f"{name} ({n:,} vectors)")
        axes[0, col].set_xlabel("bytes / vector (log)")
        axes[1, col].set_xlabel("queries / s, batched, k=10 (log)")
        for ax in axes[:, col]:
            ax.set_xscale("log")
            ax.xaxis.set_minor_formatter(NullFormatter())
            ax.set_ylabel("recall@10")
            ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=7, loc="lower right")
    fig.suptitle("Inner-product search, 2-core CPU (numbers next to points: bits per value)")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- main
def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--quick", action="store_true", help=f"{QUICK_N:,} rows, {QUICK_QUERIES} queries"
    )
    add_isa_argument(parser)
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument("--out", help="JSON path or name in bench/results (index[_quick])")
    parser.add_argument(
        "--plot",
        help="plot path ('' to skip; default docs/index_recall_qps.png for the full native run "
        "of every set, else bench/results/<out>.png)",
    )
    args = parser.parse_args(argv)
    apply_isa(args.isa)
    if faiss is None:
        parser.error("faiss is needed (exact ground truth): pip install rotaquant[bench]")
    out = args.out or ("index_quick" if args.quick else "index") + (
        "_avx2" if args.isa == "avx2" else ""
    )
    plot_path = args.plot
    if plot_path is None:  # the docs' plot only from the full native run of every set
        full = not args.quick and args.isa == "native" and tuple(args.sets) == SETS
        plot_path = "docs/index_recall_qps.png" if full else str(RESULTS / f"{Path(out).stem}.png")

    start = time.perf_counter()
    sets = datasets(args.quick, args.sets)
    rows = run(sets)
    ratio_rows = ratios(rows)
    elapsed = time.perf_counter() - start

    text = "\n\n".join(
        [
            format_table(rows, COLUMNS),
            "rotaquant (rq) vs turbovec (tv), rq +rerank (rq+rr), PQFastScan (pq), "
            "q/s at k=10:\n" + format_table(ratio_rows, RATIO_COLUMNS),
            notes(sets, rows, elapsed),
        ]
    )
    print("\n" + text)
    from threadpoolctl import threadpool_info

    meta = metadata(
        faiss=faiss.__version__,
        turbovec=getattr(turbovec, "__version__", None),
        faiss_threads=faiss.omp_get_max_threads(),
        blas_threads={i["internal_api"]: i["num_threads"] for i in threadpool_info()},
        quick=args.quick,
        sizes={
            k: {"n": db.shape[0], "d": db.shape[1], "queries": q.shape[0]}
            for k, (db, q) in sets.items()
        },
        rerank_factor=RERANK_FACTOR,
        train_n=TRAIN_N,
        wall_s=elapsed,
    )
    publish(out, {"meta": meta, "rows": rows, "ratios": ratio_rows}, text)
    if plot_path:
        print(f"wrote {plot(rows, Path(plot_path))}")


if __name__ == "__main__":
    main()
