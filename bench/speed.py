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

from . import index as bi
from ._common import (
    HELD_OUT,
    Column,
    add_isa_argument,
    apply_isa,
    clustered,
    format_table,
    mpnet,
    publish,
)

BITS = (2, 3, 4)
SYNTHETIC_N = 1_000_000


def makers(dim: int) -> list[Callable[[float], bi.Method]]:
    """rotaquant and the peers, per width."""
    out: list[Callable[[float], bi.Method]] = [lambda b: bi.Rotaquant(dim, b)]
    if bi.turbovec is not None:
        out.append(lambda b: bi.Turbovec(dim, b))
    out += [lambda b: bi.rabitq_fastscan(dim, b), lambda b: bi.pq_fastscan(dim, b)]
    return out


def run(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    rows = []
    for name, (db, queries) in sets.items():
        row, truth = bi.search_row(bi.exact(db.shape[1]), db, queries, None)
        rows.append({"data": name, "n": db.shape[0], **row})
        print(rows[-1], flush=True)
        for make in makers(db.shape[1]):
            for bits in BITS:
                row, _ = bi.search_row(make(bits), db, queries, truth)
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
    ("single_n", "n1", "d"),
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
            f"Batched: {HELD_OUT} queries, best of 3. p50/p99: n1 single queries (k=10; "
            f"at most {bi.SINGLE_QUERIES}). Recall@10 against FAISS IndexFlatIP. turbovec "
            f"uncalibrated; RaBitQFastScan b bits per value (1 sign + b-1), PQFastScan "
            f"M = b·d/4 4-bit sub-quantizers (both trained on up to {bi.TRAIN_N:,} rows). "
            f"Wall time {elapsed:.0f} s.",
        ]
    )
    print("\n" + text)
    meta = dict(
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
