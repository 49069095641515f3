"""The native scan per kernel variant and width, next to this machine's memory bandwidth.

    python -m bench.scan [--quick] [--isa native|avx2] [--out bench/results/scan.json]

For each kernel variant this CPU runs (scalar, avx2, avx512), width and dimension: a
VectorIndex of random unit vectors searched with one query (p50 of many) and with a batch,
single-threaded and with every thread (ROTAQUANT_NUM_THREADS, one child process per thread
count, since the pool is sized at start-up). Reported: rows scanned per second by one query,
the bytes of codes it reads per second and that as a share of the read bandwidth measured in
the same run (OR-reductions over a 512 MiB buffer, one thread per core): how close a single
query gets to the memory limit; core cycles per 32-row block (clock from a dependent-add
probe, rotaquant._core.spin) for one query and per query of a batch, beside the cycles the
read bandwidth alone allows per block; and (code, query) lookups per second per thread.

Thread scaling: the same probe run on every core at once (do the threads get a core each, or
share one as SMT siblings?), the read bandwidth on 1 and on every thread, and the scan's own
1-to-all speedups, so that a speedup below the thread count can be put down to memory
bandwidth, shared cores or the scan's partitioning.
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

from ._common import (
    Column,
    add_isa_argument,
    apply_isa,
    format_table,
    metadata,
    publish,
    unit_gaussian,
)

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


def clock_ghz(n: int = 20_000_000) -> float:
    """The core clock (GHz) from a dependent chain of 8n additions, best of 3."""
    from rotaquant import _core

    _core.spin(n // 10)
    return 8 * n / min(_core.spin(n) for _ in range(3)) / 1e9


def spin_rate_together(threads: int, n: int = 20_000_000) -> float:
    """Per-thread additions per ns (GHz) when `threads` threads spin at once."""
    from rotaquant import _core

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(_core.spin, [n // 10] * threads))
        seconds = max(pool.map(_core.spin, [n] * threads))
    return 8 * n / seconds / 1e9


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
            blocks = -(-n // 32)
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
                        "block_bytes": code_bytes / blocks,
                        "single_block_s": single * threads / blocks,
                        "batch_block_s": batch * threads / (blocks * BATCH),
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
    ("single_cycles", "cyc/block 1q", ",.0f"),
    ("batch_cycles", "cyc/block/q batch", ",.0f"),
    ("bandwidth_cycles", "bw cyc/block", ",.0f"),
    ("batch_qps", f"q/s ({BATCH})", ",.0f"),
    ("batch_codes_per_s", "lookups/s/core", ".3g"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tenth of the rows")
    parser.add_argument("--out", help="JSON path, or a name in bench/results (scan[_avx2])")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    add_isa_argument(parser)
    args = parser.parse_args(argv)
    apply_isa(args.isa)
    if args.child:  # one thread count, rows as JSON on stdout
        json.dump(measure(args.quick), sys.stdout)
        return
    cores = os.cpu_count() or 1
    bandwidth = {1: read_bandwidth(1), cores: read_bandwidth(cores)}
    clock = clock_ghz()
    spin_together = spin_rate_together(cores)
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for threads in sorted({1, cores}):
        env = {**os.environ, "ROTAQUANT_NUM_THREADS": str(threads)}
        command = [sys.executable, "-m", "bench.scan", "--child", *(["--quick"] * args.quick)]
        result = subprocess.run(command, env=env, capture_output=True, text=True, check=True)
        rows.extend(json.loads(result.stdout))
    elapsed = time.perf_counter() - start
    for row in rows:
        threads = row["threads"]
        row["bandwidth_share"] = row["single_gbps"] / bandwidth[threads]
        row["batch_codes_per_s"] /= threads
        row["single_cycles"] = row.pop("single_block_s") * clock * 1e9
        row["batch_cycles"] = row.pop("batch_block_s") * clock * 1e9
        # cycles per block that the read bandwidth alone takes, per thread
        row["bandwidth_cycles"] = row["block_bytes"] / (bandwidth[threads] / threads) * clock
    scaling = thread_scaling(rows, cores)
    text = "\n\n".join(
        [
            format_table(rows, COLUMNS),
            f"read bandwidth (numpy OR-reductions over 512 MiB): {bandwidth[1]:.1f} GB/s on 1 "
            f"thread, {bandwidth[cores]:.1f} GB/s on {cores}; clock {clock:.2f} GHz (dependent "
            f"adds); code GB/s: bytes of packed codes a single query reads per second; cycles "
            f"per 32-row block: one query's wall time x threads x clock / blocks, and per query "
            f"of a batch of {BATCH}; bw cyc/block: the cycles per block that reading its bytes "
            f"at the measured bandwidth takes (the memory limit); lookups/s/core: (code, query) "
            f"pairs scored per second per thread; wall time {elapsed:.0f} s",
            f"Thread scaling ({cores} threads against 1):\n"
            + format_table(scaling, SCALING_COLUMNS),
            f"Probe: {cores} threads spinning at once each run at "
            f"{spin_together / clock:.0%} of one alone (about 100%: a core each; about "
            f"{1 / cores:.0%}: SMT siblings of one core). Read bandwidth scales "
            f"{bandwidth[cores] / bandwidth[1]:.2f}x.",
        ]
    )
    print(text)
    meta = metadata(
        bandwidth_gbps=bandwidth,
        clock_ghz=clock,
        spin_together_ghz=spin_together,
        quick=args.quick,
        batch=BATCH,
        wall_s=elapsed,
    )
    publish(
        args.out or ("scan_avx2" if args.isa == "avx2" else "scan"),
        {"meta": meta, "rows": rows, "scaling": scaling},
        text,
    )


def thread_scaling(rows: list[dict[str, Any]], cores: int) -> list[dict[str, Any]]:
    """Per variant, dimension and width: the all-threads / one-thread speedups of a single
    query (rows/s) and of a batch (q/s)."""
    by = {(r["variant"], r["dim"], r["bits"], r["threads"]): r for r in rows}
    out = []
    for r in rows:
        if r["threads"] != 1 or (r["variant"], r["dim"], r["bits"], cores) not in by:
            continue
        many = by[(r["variant"], r["dim"], r["bits"], cores)]
        out.append(
            {
                "variant": r["variant"],
                "dim": r["dim"],
                "bits": r["bits"],
                "single": many["single_rows_per_s"] / r["single_rows_per_s"],
                "batch": many["batch_qps"] / r["batch_qps"],
                "single_share": many["bandwidth_share"],
            }
        )
    return out


SCALING_COLUMNS: Sequence[Column] = [
    ("variant", "variant", ""),
    ("dim", "d", "d"),
    ("bits", "b", "g"),
    ("single", "1 query", ".2f"),
    ("batch", f"batch of {BATCH}", ".2f"),
    ("single_share", "1 query, all threads: of read bw", ".0%"),
]


if __name__ == "__main__":
    main()
