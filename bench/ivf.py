"""IVF: recall@10 against queries per second for rotaquant's inverted lists and the peers.

Three data sets, unit vectors and inner product (cosine) everywhere, 1,000 held-out queries
(a seeded random sample, not in the base), ground truth from FAISS's exact IndexFlatIP:
GloVe 6B 50-d (399,000; ann-benchmarks' glove-50-angular), all-MiniLM-L6-v2 384-d of the
WordNet glosses (116,648) and, for scale, 1,000,000 clustered 768-d vectors (bench._common's
``clustered``: 1,000 centres on the sphere plus noise).

In the same run, each built once and swept over its search parameter:

* rotaquant ``VectorIndex(nlist=4√n)`` at 4 and 6 bits per value (``nprobe`` sweep), and at
  4 bits with a float16 copy re-ranking 40 candidates;
* FAISS 1.15 ``IndexIVFRaBitQFastScan`` (``RR{d},IVF{n},RaBitQfs{b}``: a random rotation
  first, as FAISS's RaBitQ does not rotate; ``qb=8``) at 4 and 6 bits, ``IndexIVFPQFastScan``
  (``IVF{n},PQ{d/2}x4fs``: 2 bits per value) and ``IndexIVFScalarQuantizer`` (``SQ8``), all
  with the same nlist (``nprobe`` sweep);
* ScaNN 1.4.2 (tree with the same number of leaves, asymmetric hashing with 2 dimensions per
  4-bit code, re-ordering 100 candidates with the float32 vectors: ann-benchmarks' setup;
  ``leaves_to_search`` sweep);
* hnswlib 0.8.0 (M=16, ef_construction=100, float32) and usearch 2.26.6 (connectivity 16,
  expansion_add 128, int8 vectors), graph indexes (``ef`` sweep); not on the 1 M set (their
  builds take tens of minutes on 2 cores).

Reported per point: recall@10, batched queries per second (1,000 queries, best of 2), single
query p50/p99 (200 queries, one call each), build time (train + add), and bytes per vector by
one rule for everyone: what the index stores per vector (codes, per-vector scalars, 8-byte id
or graph links, float vectors kept for re-ranking) plus its centroids spread over the vectors.
For rotaquant ``nbytes / n`` (what the process really holds: list spare capacity, the id
directory and row layout included) is reported beside it.

    python -m bench.ivf [--sets GloVe-50 MiniLM-384 Clustered-768] [--isa native|avx2]
                        [--out ivf] [--plot docs/ivf_pareto.png]
"""

from __future__ import annotations

import argparse
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rotaquant import VectorIndex
from rotaquant.contrib import data

from ._common import (
    HELD_OUT,
    RESULTS,
    Column,
    add_isa_argument,
    apply_isa,
    clustered,
    format_table,
    publish,
)

try:
    import faiss
except ImportError:
    faiss = None

SETS = ("GloVe-50", "MiniLM-384", "Clustered-768")
SCALE_N = 1_000_000
QUICK_N = 30_000
K = 10
SINGLE_QUERIES = 200
PROBES = (4, 8, 16, 32, 64, 128, 256)
EFS = (10, 20, 40, 80, 160, 320)
TARGETS = (0.90, 0.95)


# ---------------------------------------------------------------------- data
def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float32)
    return np.ascontiguousarray(x / np.linalg.norm(x, axis=1, keepdims=True))


def held_out(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(base, queries): 1,000 seeded random rows as queries, the rest (in order) as base."""
    order = np.random.default_rng(0).permutation(x.shape[0])
    return np.ascontiguousarray(x[np.sort(order[HELD_OUT:])]), np.ascontiguousarray(
        x[order[:HELD_OUT]]
    )


def dataset(name: str, quick: bool = False) -> tuple[np.ndarray, np.ndarray]:
    if name == "GloVe-50":
        return held_out(unit(data.glove_50d()))
    if name == "MiniLM-384":
        return held_out(unit(data.minilm_embeddings(data.wordnet_glosses(), progress=True)))
    return clustered(QUICK_N if quick else SCALE_N)


def exact_top(db: np.ndarray, queries: np.ndarray) -> np.ndarray:
    index = faiss.IndexFlatIP(db.shape[1])
    index.add(db)
    return index.search(queries, K)[1]


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = (found[:, :K, None] == truth[:, None, :K]).any(axis=2)
    return float(hits.sum() / (truth.shape[0] * K))


# ---------------------------------------------------------------------- methods
class Method:
    """An index under test: ``build`` (timed), ``set(param)`` then ``search``."""

    name = ""
    param = ""  # what the sweep varies
    sweep: Sequence[int] = PROBES

    def __init__(self, note: str = ""):
        self.note = note

    def build(self, db: np.ndarray) -> None:
        raise NotImplementedError

    def set(self, value: int) -> None:
        raise NotImplementedError

    def search(self, queries: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def bytes_per_vector(self, n: int, d: int) -> float:
        raise NotImplementedError

    def held_per_vector(self, n: int) -> float | None:
        return None


class Rotaquant(Method):
    param = "nprobe"

    def __init__(self, bits: int, nlist: int, rerank: int | None = None):
        self.bits, self.nlist, self.rerank = bits, nlist, rerank
        self.name = f"rotaquant IVF {bits}b" + (f" +rerank{rerank}" if rerank else "")
        note = "residual codes, float16 norm" + (", float16 copy" if rerank else "")
        super().__init__(note)

    def build(self, db: np.ndarray) -> None:
        self.index = VectorIndex(
            db.shape[1],
            self.bits,
            metric="cosine",
            nlist=self.nlist,
            keep_vectors=bool(self.rerank),
        )
        self.index.add(db)

    def set(self, value: int) -> None:
        self.nprobe = value

    def search(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search(queries, K, nprobe=self.nprobe, rerank=self.rerank).ids

    def bytes_per_vector(self, n: int, d: int) -> float:
        copy = 2 * d if self.rerank else 0
        return math.ceil(d * self.bits / 8) + 2 + 8 + copy + self.nlist * d * 4 / n

    def held_per_vector(self, n: int) -> float:
        return self.index.nbytes / n


class Faiss(Method):
    param = "nprobe"

    def __init__(self, name: str, factory: str, code_bytes: Callable[[int], float], note: str):
        super().__init__(note)
        self.name, self.factory, self.code_bytes = name, factory, code_bytes

    def build(self, db: np.ndarray) -> None:
        self.index = faiss.index_factory(db.shape[1], self.factory, faiss.METRIC_INNER_PRODUCT)
        self.ivf = faiss.downcast_index(faiss.extract_index_ivf(self.index))
        if hasattr(self.ivf, "qb"):
            self.ivf.qb = 8
        self.index.train(db)
        self.index.add(db)
        self.nlist = self.ivf.nlist

    def set(self, value: int) -> None:
        self.ivf.nprobe = value

    def search(self, queries: np.ndarray) -> np.ndarray:
        return self.index.search(queries, K)[1]

    def bytes_per_vector(self, n: int, d: int) -> float:
        return self.code_bytes(d) + 8 + self.nlist * d * 4 / n


def rabitq(bits: int, nlist: int, d: int) -> Faiss:
    def code(dim: int) -> float:  # sign bits, 3 floats, the extra bits, 2 floats (FastScan)
        return math.ceil(dim / 8) + 12 + math.ceil(dim * (bits - 1) / 8) + 8

    return Faiss(f"faiss IVF-RaBitQ-fs {bits}b", f"RR{d},IVF{nlist},RaBitQfs{bits}", code, "qb=8")


def pq_fastscan(nlist: int, d: int) -> Faiss:
    m = d // 2 if d % 2 == 0 else d
    return Faiss(
        "faiss IVF-PQ-fs", f"IVF{nlist},PQ{m}x4fs", lambda dim: m / 2, f"PQ{m}x4, by residual"
    )


def sq8(nlist: int, d: int) -> Faiss:
    return Faiss("faiss IVF-SQ8", f"IVF{nlist},SQ8", lambda dim: dim, "8 bits per value")


class Scann(Method):
    name = "ScaNN AH2 +reorder100"
    param = "leaves"

    def __init__(self, nlist: int):
        super().__init__("tree, AH 2 dims/4 bits, float32 re-order")
        self.nlist = nlist

    def build(self, db: np.ndarray) -> None:
        import scann

        builder = scann.scann_ops_pybind.builder(db, K, "dot_product")
        tree = builder.tree(self.nlist, 16, training_sample_size=min(db.shape[0], 250_000))
        self.searcher = (
            tree.score_ah(2, anisotropic_quantization_threshold=0.2).reorder(100).build()
        )

    def set(self, value: int) -> None:
        self.leaves = value

    def search(self, queries: np.ndarray) -> np.ndarray:
        if queries.shape[0] == 1:
            ids, _ = self.searcher.search(queries[0], leaves_to_search=self.leaves)
            return np.asarray(ids)[None]
        ids, _ = self.searcher.search_batched(queries, leaves_to_search=self.leaves)
        return np.asarray(ids)

    def bytes_per_vector(self, n: int, d: int) -> float:
        return d / 4 + 4 * d + 4 + self.nlist * d * 4 / n  # AH codes, float32, 4-byte index


def installed(module: str) -> bool:
    """Whether a peer's module imports (bench.ivf skips, and says so, those that do not)."""
    try:
        __import__(module)
    except ImportError:
        print(f"{module} is not installed: skipped (make setup installs it)", flush=True)
        return False
    return True


class Hnswlib(Method):
    name = "hnswlib M16"
    param = "ef"
    sweep = EFS

    def __init__(self):
        super().__init__("float32, ef_construction=100")

    def build(self, db: np.ndarray) -> None:
        import hnswlib

        self.index = hnswlib.Index(space="ip", dim=db.shape[1])
        self.index.init_index(max_elements=db.shape[0], M=16, ef_construction=100)
        self.index.set_num_threads(2)
        self.index.add_items(db, np.arange(db.shape[0]))

    def set(self, value: int) -> None:
        self.index.set_ef(max(value, K))

    def search(self, queries: np.ndarray) -> np.ndarray:
        return self.index.knn_query(queries, k=K)[0].astype(np.int64)

    def bytes_per_vector(self, n: int, d: int) -> float:
        return 4 * d + 2 * 16 * 4 + 4 + 8 + 8  # vector, level-0 links and count, label, upper


class Usearch(Method):
    name = "usearch i8 M16"
    param = "ef"
    sweep = EFS

    def __init__(self):
        super().__init__("int8 vectors, expansion_add=128")

    def build(self, db: np.ndarray) -> None:
        from usearch.index import Index

        self.index = Index(
            ndim=db.shape[1], metric="ip", dtype="i8", connectivity=16, expansion_add=128
        )
        self.index.add(np.arange(db.shape[0]), db, threads=2)

    def set(self, value: int) -> None:
        self.index.expansion_search = max(value, K)

    def search(self, queries: np.ndarray) -> np.ndarray:
        found = self.index.search(queries, K, threads=2)
        keys = np.asarray(found.keys)
        return keys.reshape(queries.shape[0], -1).astype(np.int64)

    def bytes_per_vector(self, n: int, d: int) -> float:
        return self.index.memory_usage / n


def methods(name: str, n: int, d: int) -> list[Callable[[], Method]]:
    """Constructors (one index held at a time)."""
    nlist = 4 * round(math.sqrt(n)) if n < SCALE_N else round(math.sqrt(n))
    out: list[Callable[[], Method]] = [
        lambda: Rotaquant(4, nlist),
        lambda: Rotaquant(6, nlist),
        lambda: Rotaquant(8, nlist),
        lambda: Rotaquant(4, nlist, rerank=40),
        lambda: rabitq(4, nlist, d),
        lambda: rabitq(6, nlist, d),
    ]
    if name != "Clustered-768":
        out += [lambda: pq_fastscan(nlist, d), lambda: sq8(nlist, d)]
        peers = (("scann", lambda: Scann(nlist)), ("hnswlib", Hnswlib), ("usearch", Usearch))
        out += [make for module, make in peers if installed(module)]
    return out


# ---------------------------------------------------------------------- measurement
def single(method: Method, queries: np.ndarray) -> tuple[float, float]:
    method.search(queries[:1])
    times = []
    for i in range(SINGLE_QUERIES):
        start = time.perf_counter()
        method.search(queries[i : i + 1])
        times.append(time.perf_counter() - start)
    ms = 1e3 * np.array(times)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def sweep(
    name: str, make: Callable[[], Method], db: np.ndarray, queries: np.ndarray, truth: np.ndarray
) -> list[dict[str, Any]]:
    method = make()
    start = time.perf_counter()
    method.build(db)
    build_s = time.perf_counter() - start
    n, d = db.shape
    rows = []
    for value in method.sweep:
        method.set(value)
        method.search(queries[:10])
        best, ids = float("inf"), None
        for _ in range(2):
            t0 = time.perf_counter()
            ids = method.search(queries)
            best = min(best, time.perf_counter() - t0)
        p50, p99 = single(method, queries)
        row = {
            "data": name,
            "method": method.name,
            "param": f"{method.param}={value}",
            "recall@10": recall(ids, truth),
            "qps": queries.shape[0] / best,
            "p50_ms": p50,
            "p99_ms": p99,
            "build_s": build_s,
            "bytes_per_vector": method.bytes_per_vector(n, d),
            "held_per_vector": method.held_per_vector(n),
            "note": method.note,
        }
        rows.append(row)
        print(format_table([row], COLUMNS).splitlines()[-1], flush=True)
        if row["recall@10"] >= 0.995:
            break
    return rows


def at_target(rows: list[dict[str, Any]], target: float, key: str) -> dict[str, Any] | None:
    """The fastest point (by ``key``: qps, or −p50) reaching ``target`` recall."""
    reached = [r for r in rows if r["recall@10"] >= target]
    if not reached:
        return None
    return max(reached, key=lambda r: r["qps"] if key == "qps" else -r["p50_ms"])


def summary(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per data set, target and method: the best batched q/s and single-query p50 reaching
    the target, and the ratio of rotaquant's best (at bytes/vector ≤ the peer's) to it."""
    out = []
    for name in dict.fromkeys(r["data"] for r in rows):
        here = [r for r in rows if r["data"] == name]
        for target in TARGETS:
            for method in dict.fromkeys(r["method"] for r in here):
                points = [r for r in here if r["method"] == method]
                fast, quick = at_target(points, target, "qps"), at_target(points, target, "p50")
                row = {
                    "data": name,
                    "target": target,
                    "method": method,
                    "bytes_per_vector": points[0]["bytes_per_vector"],
                    "build_s": points[0]["build_s"],
                }
                if fast is not None:
                    row.update(
                        qps=fast["qps"],
                        qps_at=fast["param"],
                        p50_ms=quick["p50_ms"],
                        p50_at=quick["param"],
                    )
                ours = [
                    r
                    for r in here
                    if r["method"].startswith("rotaquant")
                    and r["bytes_per_vector"] <= row["bytes_per_vector"] + 1e-9
                ]
                best_q, best_p = at_target(ours, target, "qps"), at_target(ours, target, "p50")
                if fast is not None and best_q is not None:
                    row["rq_qps_ratio"] = best_q["qps"] / fast["qps"]
                    row["rq_p50_ratio"] = quick["p50_ms"] / best_p["p50_ms"]
                out.append(row)
    return out


COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("method", "method", ""),
    ("param", "param", ""),
    ("recall@10", "R@10", ".3f"),
    ("qps", "q/s batched", ",.0f"),
    ("p50_ms", "p50 ms", ".3f"),
    ("p99_ms", "p99 ms", ".3f"),
    ("bytes_per_vector", "B/vec", ".1f"),
    ("held_per_vector", "held B/vec", ".1f"),
    ("build_s", "build s", ".1f"),
]
SUMMARY_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("target", "R@10 ≥", ".2f"),
    ("method", "method", ""),
    ("bytes_per_vector", "B/vec", ".1f"),
    ("build_s", "build s", ".1f"),
    ("qps", "best q/s", ",.0f"),
    ("qps_at", "at", ""),
    ("p50_ms", "best p50 ms", ".3f"),
    ("p50_at", "at", ""),
    ("rq_qps_ratio", "rq q/s ×", ".2f"),
    ("rq_p50_ratio", "rq p50 ×", ".2f"),
]


def plot(rows: list[dict[str, Any]], path: Path) -> Path:
    """Recall@10 against batched q/s (top) and single-query p50 (bottom), per data set."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(dict.fromkeys(r["data"] for r in rows))
    fig, axes = plt.subplots(2, len(names), figsize=(5.5 * len(names), 8), squeeze=False)
    for col, name in enumerate(names):
        here = [r for r in rows if r["data"] == name]
        for method in dict.fromkeys(r["method"] for r in here):
            points = [r for r in here if r["method"] == method]
            style = "-o" if method.startswith("rotaquant") else "--s"
            label = f"{method} ({points[0]['bytes_per_vector']:.0f} B/vec)"
            recalls = [r["recall@10"] for r in points]
            axes[0, col].plot(recalls, [r["qps"] for r in points], style, ms=4, label=label)
            axes[1, col].plot(recalls, [r["p50_ms"] for r in points], style, ms=4, label=label)
        axes[0, col].set_title(name)
        axes[0, col].set_ylabel("queries / s, 1,000 at once (log)")
        axes[1, col].set_ylabel("single query p50, ms (log)")
        for ax in axes[:, col]:
            ax.set_yscale("log")
            ax.set_xlabel("recall@10")
            ax.set_xlim(left=0.5)
            ax.grid(True, which="both", alpha=0.3)
            for target in TARGETS:
                ax.axvline(target, color="grey", lw=0.8, ls=":")
        axes[0, col].legend(fontsize=6, loc="lower left")
    fig.suptitle(
        "IVF and graph indexes, cosine, 2-core CPU: up and right is better on top, "
        "down and right below"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# ---------------------------------------------------------------------- filters and balance
FILTER_SHARES = (0.01, 0.1)
FILTER_BITS, FILTER_NPROBE = 6, 64


def filtered(name: str, db: np.ndarray, queries: np.ndarray) -> list[dict[str, Any]]:
    """``allow`` of 1 % and 10 % of the ids (seeded), rotaquant 6 bits at nprobe 64 against
    FAISS IVF-RaBitQ 6 bits with an ``IDSelectorBatch`` at the same nprobe (it filters inside
    the probed lists): recall@10 against the exact top 10 of the allowed vectors."""
    n, d = db.shape
    nlist = 4 * round(math.sqrt(n))
    ours = Rotaquant(FILTER_BITS, nlist)
    ours.build(db)
    ours.set(FILTER_NPROBE)
    peer = rabitq(FILTER_BITS, nlist, d)
    peer.build(db)
    rows = []
    rng = np.random.default_rng(0)
    for share in (1.0, *FILTER_SHARES):
        allow = np.sort(rng.choice(n, int(share * n), replace=False)) if share < 1 else None
        subset = db if allow is None else db[allow]
        truth = exact_top(subset, queries)
        truth = truth if allow is None else allow[truth]
        selector = None if allow is None else faiss.IDSelectorBatch(allow)
        params = faiss.IVFRaBitQSearchParameters(nprobe=FILTER_NPROBE, qb=8, sel=selector)

        def search_ours(q, allow=allow):
            return ours.index.search(q, K, nprobe=FILTER_NPROBE, allow=allow).ids

        def search_peer(q, params=params):
            return peer.index.search(q, K, params=params)[1]

        for method, search in ((ours.name, search_ours), (peer.name, search_peer)):
            start = time.perf_counter()
            ids = search(queries)
            seconds = time.perf_counter() - start
            singles = []
            for i in range(SINGLE_QUERIES):
                t0 = time.perf_counter()
                search(queries[i : i + 1])
                singles.append(time.perf_counter() - t0)
            rows.append(
                {
                    "data": name,
                    "method": method,
                    "allowed": share,
                    "recall@10": recall(ids, truth),
                    "qps": queries.shape[0] / seconds,
                    "p50_ms": 1e3 * float(np.median(singles)),
                }
            )
            print(format_table(rows[-1:], FILTER_COLUMNS).splitlines()[-1], flush=True)
    return rows


def balance(name: str, db: np.ndarray, queries: np.ndarray, truth: np.ndarray) -> list[dict]:
    """Lists that grow unbalanced: centroids trained on every vector against centroids
    trained on the first 10 % in file order (GloVe's are its most frequent words: a drifted
    sample), every vector added after; list sizes and recall/speed at 6 bits."""
    n, d = db.shape
    nlist = 4 * round(math.sqrt(n))
    rows = []
    for label, sample in (("all vectors", db), ("first 10 %", db[: n // 10])):
        index = VectorIndex(d, FILTER_BITS, metric="cosine", nlist=nlist)
        index.train(sample)
        index.add(db)
        sizes = index.list_sizes
        for nprobe in (32, 64, 128):
            start = time.perf_counter()
            ids = index.search(queries, K, nprobe=nprobe).ids
            seconds = time.perf_counter() - start
            rows.append(
                {
                    "data": name,
                    "trained on": label,
                    "largest / mean list": float(sizes.max() / sizes.mean()),
                    "empty lists": int((sizes == 0).sum()),
                    "size cv": float(sizes.std() / sizes.mean()),
                    "nprobe": nprobe,
                    "recall@10": recall(ids, truth),
                    "qps": queries.shape[0] / seconds,
                }
            )
            print(format_table(rows[-1:], BALANCE_COLUMNS).splitlines()[-1], flush=True)
    return rows


FILTER_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("method", "method", ""),
    ("allowed", "allowed", ".0%"),
    ("recall@10", "R@10 (of allowed)", ".3f"),
    ("qps", "q/s batched", ",.0f"),
    ("p50_ms", "p50 ms", ".3f"),
]
BALANCE_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("trained on", "centroids trained on", ""),
    ("largest / mean list", "largest/mean list", ".1f"),
    ("size cv", "size CV", ".2f"),
    ("empty lists", "empty", "d"),
    ("nprobe", "nprobe", "d"),
    ("recall@10", "R@10", ".3f"),
    ("qps", "q/s batched", ",.0f"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", choices=SETS, default=list(SETS))
    parser.add_argument(
        "--quick", action="store_true", help=f"a smoke run: {QUICK_N:,} rows, 200 queries"
    )
    parser.add_argument(
        "--sections",
        nargs="+",
        choices=("curves", "filtered", "balance"),
        default=["curves"],
        help="curves: the recall/speed sweep (default); filtered: allow of 1 %% and 10 %%; "
        "balance: centroids trained on a drifted sample",
    )
    add_isa_argument(parser)
    parser.add_argument("--out", help="JSON path or name in bench/results (default ivf)")
    parser.add_argument("--plot", help="plot path ('' to skip; default docs/ivf_pareto.png)")
    args = parser.parse_args(argv)
    apply_isa(args.isa)
    if faiss is None:
        parser.error("faiss is needed (ground truth and peers): pip install 'rotaquant[bench]'")
    faiss.omp_set_num_threads(2)
    sections = tuple(args.sections)
    suffix = "" if sections == ("curves",) else "_" + "_".join(sections)
    out = args.out or (
        "ivf" + suffix + ("_quick" if args.quick else "") + ("_avx2" if args.isa == "avx2" else "")
    )
    rows: list[dict[str, Any]] = []
    extra: dict[str, list[dict[str, Any]]] = {"filtered": [], "balance": []}
    for name in args.sets:
        db, queries = dataset(name, args.quick)
        if args.quick:
            db, queries = db[:QUICK_N], queries[:SINGLE_QUERIES]
        truth = exact_top(db, queries)
        print(f"{name}: {db.shape[0]:,} x {db.shape[1]}", flush=True)
        if "curves" in sections:
            for make in methods(name, *db.shape):
                rows += sweep(name, make, db, queries, truth)
        if "filtered" in sections:
            extra["filtered"] += filtered(name, db, queries)
        if "balance" in sections:
            extra["balance"] += balance(name, db, queries, truth)
        del db, queries
    parts = []
    if rows:
        best = format_table(summary(rows), SUMMARY_COLUMNS)
        parts += [
            format_table(rows, COLUMNS),
            "Best point reaching each recall target (rq ×: rotaquant's best at no more "
            f"bytes/vector over the peer's; > 1 is rotaquant faster):\n{best}",
        ]
    if extra["filtered"]:
        parts.append(
            f"Filtered search (nprobe {FILTER_NPROBE}, {FILTER_BITS} bits; recall against the "
            "exact top 10 of the allowed vectors):\n"
            + format_table(extra["filtered"], FILTER_COLUMNS)
        )
    if extra["balance"]:
        parts.append(
            "Unbalanced lists (centroids trained on every vector, or on the first 10 % in file "
            "order, then every vector added; 6 bits):\n"
            + format_table(extra["balance"], BALANCE_COLUMNS)
        )
    text = "\n\n".join(parts)
    print(text)
    payload = {"rows": rows, **extra}
    if rows:
        payload["summary"] = summary(rows)
    publish(out, payload, text)
    plot_path = args.plot
    if plot_path is None and rows:
        full = not args.quick and tuple(args.sets) == SETS
        plot_path = "docs/ivf_pareto.png" if full else str(RESULTS / f"{Path(out).stem}.png")
    if plot_path:
        print("plot:", plot(rows, Path(plot_path)))
    print(f"wrote {RESULTS / out}.json")


if __name__ == "__main__":
    main()
