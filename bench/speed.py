"""Search speed per instruction set against turbovec and FAISS's fast-scan indexes.

Data: all-mpnet-base-v2 embeddings (768-d, real) of 201,000 WordNet texts (glosses, example
sentences, synonym lists: ``data.wordnet_texts``), 1,000 of them held out as queries, the
other 200,000 the database (20,000: a seeded subset of it); and 1,000,000 clustered synthetic
768-d unit vectors (1,000 Gaussian clusters on the sphere) for scale. For b = 2, 3, 4 bits:
rotaquant's VectorIndex, turbovec's TurboQuantIndex (uncalibrated), FAISS
IndexRaBitQFastScan (b bits per value) and IndexPQFastScan (4-bit sub-quantizers, b·d/8 code
bytes), and FAISS's exact IndexFlatIP, all in one process. Reported: batched queries/s (1,000
queries) at k=10 and k=100, single-query p50/p99 (k=10), recall@10 against the exact top 10,
and rotaquant's ratios to turbovec.

    python -m bench.speed [--isa native|avx2] [--sizes 20000 200000 1000000] [--quick]

``--isa avx2`` hides AVX-512 from the whole process (tools/hide_avx512.c): rotaquant, turbovec,
FAISS and BLAS all run their AVX2 code, the picture of an AVX2-only CPU (the header line of
the results says which ISA each side ran).
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rotaquant.contrib import data

from . import index as bi
from ._common import Column, add_isa_argument, apply_isa, format_table, metadata, publish

BITS = (2, 3, 4)
N_QUERIES = 1000
MPNET_TEXTS = 201_000
SYNTHETIC_N, SYNTHETIC_D, CLUSTERS = 1_000_000, 768, 1000
SINGLE = 200  # single queries timed (at most; or LATENCY_BUDGET_S)


def mpnet(n: int) -> tuple[np.ndarray, np.ndarray]:
    """(database (n, 768), queries (1000, 768)) of MPNet embeddings; n <= 200,000."""
    x = data.mpnet_embeddings(data.wordnet_texts(MPNET_TEXTS))
    order = np.random.default_rng(0).permutation(x.shape[0])
    queries, base = order[:N_QUERIES], order[N_QUERIES:]
    return np.ascontiguousarray(x[np.sort(base[:n])]), np.ascontiguousarray(x[queries])


def clustered(n: int, d: int = SYNTHETIC_D, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """n + 1000 unit vectors: a cluster centre (one of 1,000, uniform on the sphere) plus
    Gaussian noise of the same norm, normalized; (database, queries)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, d), dtype=np.float32)
    centres /= np.linalg.norm(centres, axis=1, keepdims=True)
    out = np.empty((n + N_QUERIES, d), np.float32)
    for start in range(0, out.shape[0], 100_000):
        stop = min(out.shape[0], start + 100_000)
        x = centres[rng.integers(0, CLUSTERS, stop - start)]
        x += rng.standard_normal(x.shape, dtype=np.float32) / np.sqrt(d, dtype=np.float32)
        out[start:stop] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out[:n], out[n:]


def rabitq_fastscan(dim: int, bits: float) -> bi.Method:
    index = bi.faiss.IndexRaBitQFastScan(dim, bi.faiss.METRIC_INNER_PRODUCT, 32, int(bits))
    return bi.Faiss("faiss RaBitQFastScan", bits, index, train=True, note=f"{int(bits)} bits")


def makers(dim: int) -> list[tuple[str, Callable[[float], bi.Method]]]:
    out: list[tuple[str, Callable[[float], bi.Method]]] = [
        ("rotaquant", lambda b: bi.Rotaquant(dim, b))
    ]
    if bi.turbovec is not None:
        out.append(("turbovec", lambda b: bi.Turbovec(dim, b)))
    out += [
        ("faiss RaBitQFastScan", lambda b: rabitq_fastscan(dim, b)),
        ("faiss PQFastScan", lambda b: bi.pq_fastscan(dim, b)),
    ]
    return out


def measure(
    name: str, method: bi.Method, db: np.ndarray, queries: np.ndarray, truth: np.ndarray | None
) -> tuple[dict[str, Any], np.ndarray]:
    """One row, and the top-10 ids found (the ground truth, for the exact index)."""
    start = time.perf_counter()
    method.build(db)
    build_s = time.perf_counter() - start
    t10, ids10 = bi.timed_search(method, queries, 10)
    t100, _ = bi.timed_search(method, queries, 100)
    row = {
        "method": name,
        "bits": method.bits,
        "recall@10": bi.recall(ids10, ids10 if truth is None else truth, 10),
        "qps_k10": queries.shape[0] / t10,
        "qps_k100": queries.shape[0] / t100,
        **bi.single_latency(method, queries),
        "build_s": build_s,
    }
    return row, ids10


def run(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    rows = []
    for name, (db, queries) in sets.items():
        row, truth = measure("exact (IndexFlatIP)", bi.exact(db.shape[1]), db, queries, None)
        rows.append({"data": name, "n": db.shape[0], **row})
        print(rows[-1], flush=True)
        for method_name, make in makers(db.shape[1]):
            for bits in BITS:
                row, _ = measure(method_name, make(bits), db, queries, truth)
                rows.append({"data": name, "n": db.shape[0], **row})
                print(rows[-1], flush=True)
    return rows


def ratios(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """rotaquant / turbovec per data set and width (> 1: rotaquant faster)."""
    by = {(r["data"], r["method"], r["bits"]): r for r in rows}
    out = []
    for r in rows:
        tv = by.get((r["data"], "turbovec", r["bits"]))
        if r["method"] != "rotaquant" or tv is None:
            continue
        out.append(
            {
                "data": r["data"],
                "bits": r["bits"],
                "batch_k10": r["qps_k10"] / tv["qps_k10"],
                "batch_k100": r["qps_k100"] / tv["qps_k100"],
                "p50": tv["p50_ms"] / r["p50_ms"],
                "p99": tv["p99_ms"] / r["p99_ms"],
                "recall_diff": r["recall@10"] - tv["recall@10"],
            }
        )
    return out


COLUMNS: Sequence[Column] = [
    ("data", "data", ""),
    ("n", "rows", ",d"),
    ("method", "method", ""),
    ("bits", "b", "g"),
    ("recall@10", "R@10", ".3f"),
    ("qps_k10", "q/s k=10", ",.0f"),
    ("qps_k100", "q/s k=100", ",.0f"),
    ("p50_ms", "p50 ms", ".3f"),
    ("p99_ms", "p99 ms", ".3f"),
    ("build_s", "build s", ".1f"),
]
RATIO_COLUMNS: Sequence[Column] = [
    ("data", "data", ""),
    ("bits", "b", "g"),
    ("batch_k10", "batch k=10", ".2f"),
    ("batch_k100", "batch k=100", ".2f"),
    ("p50", "1-query p50", ".2f"),
    ("p99", "1-query p99", ".2f"),
    ("recall_diff", "R@10 rq-tv", "+.3f"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_isa_argument(parser)
    parser.add_argument(
        "--sizes",
        type=int,
        nargs="+",
        default=[20_000, 200_000, SYNTHETIC_N],
        help="database rows: up to 200,000 from MPNet, larger ones synthetic",
    )
    parser.add_argument("--quick", action="store_true", help="20,000 MPNet rows only")
    parser.add_argument("--out", help="JSON path or name in bench/results (default speed_<isa>)")
    args = parser.parse_args(argv)
    apply_isa(args.isa)
    if bi.faiss is None:
        parser.error("faiss is needed (exact ground truth): pip install rotaquant[bench]")
    sizes = [20_000] if args.quick else args.sizes
    start = time.perf_counter()
    sets = {}
    for n in sizes:
        if n <= 200_000:
            sets[f"MPNet-768 {n // 1000}k"] = mpnet(n)
        else:
            sets[f"clustered-768 {n // 1000}k"] = clustered(n)
    rows = run(sets)
    ratio_rows = ratios(rows)
    elapsed = time.perf_counter() - start
    text = "\n\n".join(
        [
            format_table(rows, COLUMNS),
            "rotaquant / turbovec (> 1: rotaquant faster; same process, same ISA):\n"
            + format_table(ratio_rows, RATIO_COLUMNS),
            f"Batched: {N_QUERIES} queries, best of 3. p50/p99: up to {SINGLE} single queries "
            f"(k=10). Recall@10 against FAISS IndexFlatIP. turbovec uncalibrated; RaBitQFastScan "
            f"b bits per value (1 sign + b-1), PQFastScan M = b·d/4 4-bit sub-quantizers (both "
            f"trained on up to {bi.TRAIN_N:,} rows). Wall time {elapsed:.0f} s.",
        ]
    )
    print("\n" + text)
    meta = metadata(
        faiss=bi.faiss.__version__,
        turbovec=getattr(bi.turbovec, "__version__", None),
        sizes={name: db.shape[0] for name, (db, _) in sets.items()},
        wall_s=elapsed,
    )
    publish(
        args.out or f"speed_{args.isa}", {"meta": meta, "rows": rows, "ratios": ratio_rows}, text
    )


if __name__ == "__main__":
    main()
