"""The native scan per kernel variant and width, next to this machine's memory bandwidth.

    python -m bench.scan [--quick] [--out bench/results/scan.json]

For each kernel variant this CPU runs (scalar, avx2, avx512), width and dimension: a
VectorIndex of random unit vectors searched with one query (p50 of many) and with a batch,
single-threaded and with every thread (ROTAQUANT_NUM_THREADS, one child process per thread
count, since the pool is sized at start-up). Reported: rows scanned per second by one query,
the bytes of codes it reads per second and that as a share of the read bandwidth measured in
the same run (OR-reductions over a 512 MiB buffer, one thread per core): how close a single
query gets to the memory limit; and (code, query) lookups per second per thread for a batch.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from ._common import Column, format_table, metadata, publish, unit_gaussian

WIDTHS = (1, 2, 3, 4, 3.5)
DIMS = {128: 200_000, 384: 100_000, 1536: 50_000}  # rows per dimension
BATCH = 64
SINGLE = 40


def read_bandwidth(threads: int, mib: int = 512) -> float:
    """GB/s of reading a buffer far larger than the caches: `threads` numpy OR-reductions over
    uint64 words (SIMD, no arithmetic to speak of: bound by the memory system, unlike float
    sums), best of 3."""
    data = np.ones(mib * 2**20 // 8, np.uint64)
    parts = np.array_split(data, threads)
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(np.bitwise_or.reduce, parts))
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            list(pool.map(np.bitwise_or.reduce, parts))
            best = min(best, time.perf_counter() - start)
    return data.nbytes / best / 1e9


def measure(quick: bool) -> list[dict[str, Any]]:
    """Rows for this process's thread count, every variant."""
    import rotaquant as rq
    from rotaquant import _native

    rows = []
    threads = _native.threads()
    for dim, n in DIMS.items():
        n = n // 10 if quick else n
        base = unit_gaussian(n, dim, seed=0)
        queries = unit_gaussian(BATCH, dim, seed=1)
        for bits in WIDTHS:
            index = rq.VectorIndex(dim, bits)
            index.add(base)
            code_bytes = index.codes_nbytes
            for variant in _native.variants():
                with _native.using_variant(variant):
                    index.search(queries[:1], 10)
                    times = []
                    for i in range(SINGLE):
                        start = time.perf_counter()
                        index.search(queries[i % BATCH : i % BATCH + 1], 10)
                        times.append(time.perf_counter() - start)
                    single = float(np.median(times))
                    start = time.perf_counter()
                    index.search(queries, 10)
                    batch = time.perf_counter() - start
                rows.append(
                    {
                        "variant": variant,
                        "threads": threads,
                        "dim": dim,
                        "bits": bits,
                        "n": n,
                        "single_ms": single * 1e3,
                        "single_rows_per_s": n / single,
                        "single_gbps": code_bytes / single / 1e9,
                        "batch_qps": BATCH / batch,
                        "batch_codes_per_s": n * dim * BATCH / batch,
                    }
                )
                print(
                    f"threads={threads} d={dim} b={bits:g} {variant}: 1 query {single * 1e3:.3f} ms"
                    f" ({code_bytes / single / 1e9:.1f} GB/s), {BATCH} queries {BATCH / batch:,.0f}"
                    " q/s",
                    file=sys.stderr,
                )
    return rows


COLUMNS: Sequence[Column] = [
    ("variant", "variant", ""),
    ("threads", "thr", "d"),
    ("dim", "d", "d"),
    ("bits", "b", "g"),
    ("n", "rows", ",d"),
    ("single_ms", "1-query ms", ".3f"),
    ("single_rows_per_s", "rows/s (1 query)", ",.0f"),
    ("single_gbps", "code GB/s", ".1f"),
    ("bandwidth_share", "of read bw", ".0%"),
    ("batch_qps", f"q/s ({BATCH})", ",.0f"),
    ("batch_codes_per_s", "lookups/s/core", ".3g"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--out", default="scan", help="JSON path, or a name in bench/results")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:  # one thread count, rows as JSON on stdout
        json.dump(measure(args.quick), sys.stdout)
        return
    cores = os.cpu_count() or 1
    bandwidth = {1: read_bandwidth(1), cores: read_bandwidth(cores)}
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for threads in sorted({1, cores}):
        env = {**os.environ, "ROTAQUANT_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "bench.scan", "--child", *(["--quick"] * args.quick)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        rows.extend(json.loads(result.stdout))
    elapsed = time.perf_counter() - start
    for row in rows:
        row["bandwidth_share"] = row["single_gbps"] / bandwidth[row["threads"]]
        row["batch_codes_per_s"] /= row["threads"]
    text = format_table(rows, COLUMNS) + (
        f"\n\nread bandwidth (numpy OR-reductions over 512 MiB): {bandwidth[1]:.1f} GB/s on 1 "
        f"thread, {bandwidth[cores]:.1f} GB/s on {cores}; code GB/s: bytes of packed codes a "
        f"single query reads per second; lookups/s/core: (code, query) pairs scored per second "
        f"per thread with {BATCH} queries; wall time {elapsed:.0f} s"
    )
    print(text)
    meta = metadata(bandwidth_gbps=bandwidth, quick=args.quick, batch=BATCH, wall_s=elapsed)
    publish(args.out, {"meta": meta, "rows": rows}, text)


if __name__ == "__main__":
    main()
