"""ShardedIndex on Ray (issue 15): 1 / 2 / 4 shards against one in-process VectorIndex.

The 400k real GloVe-50 vectors (``--n`` of them), 4 bits, metric ip, on a local Ray cluster of
this machine's cores; each shard actor gets ``cores // shards`` native threads (at least 1).
Per configuration: add vectors/s; batched search q/s (``--queries`` queries in one call, k=10);
single-query p50 / p99 ms; the ratio to the in-process VectorIndex (the overhead of Ray: query
transport through the object store, one actor call per shard, the driver-side merge); and the
per-shard scan time measured inside the actors, so that

    batched time ≈ max over shards (scan) + transport + merge

can be read off the table (docs/distributed.md builds its scaling model on these figures).

    python -m bench.distributed [--n 400000] [--queries 1000] [--shards 1 2 4]

Writes bench/results/distributed.{txt,json}.
"""

from __future__ import annotations

import argparse
import os
import time

import numpy as np
import ray

from rotaquant import VectorIndex
from rotaquant.contrib import data
from rotaquant.distributed import ShardedIndex

from ._common import Column, best_of, call_ms, format_table, metadata, publish

COLUMNS: list[Column] = [
    ("config", "configuration", ""),
    ("add_per_s", "add vec/s", ",.0f"),
    ("qps", "batched q/s", ",.0f"),
    ("vs_local_qps", "vs in-process", ".2f"),
    ("p50_ms", "1-query p50 ms", ".3f"),
    ("p99_ms", "p99 ms", ".3f"),
    ("vs_local_p50", "p50 vs in-process", ".2f"),
    ("scan_ms", "shard scan ms (max)", ".1f"),
    ("overhead_ms", "transport+merge ms", ".1f"),
    ("recall_vs_local", "same top-10", ".3f"),
]


def _single_latencies(search, queries) -> tuple[float, float]:
    """p50 and p99 ms of one-query searches."""
    ms = call_ms(lambda row: search(row[None]), queries)
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def run(n: int, queries_n: int, shard_counts, singles: int = 200) -> list[dict]:
    vectors = np.asarray(data.glove_50d()[:n], dtype=np.float32)
    rng = np.random.default_rng(0)
    queries = vectors[rng.choice(n, queries_n, replace=False)] + 0.01
    cores = os.cpu_count() or 1
    rows = []
    local = VectorIndex(vectors.shape[1], 4, seed=0)
    start = time.perf_counter()
    local.add(vectors)
    add_rate = n / (time.perf_counter() - start)
    local.search(queries[:10], 10)
    batched = best_of(lambda local=local: local.search(queries, 10))[0]
    p50, p99 = _single_latencies(lambda q, local=local: local.search(q, 10), queries[:singles])
    reference = local.search(queries, 10)[1]
    rows.append(
        {
            "config": "VectorIndex (in-process)",
            "shards": 0,
            "add_per_s": add_rate,
            "qps": queries_n / batched,
            "p50_ms": p50,
            "p99_ms": p99,
            "scan_ms": 1e3 * batched,
            "overhead_ms": 0.0,
            "recall_vs_local": 1.0,
        }
    )
    print(rows[-1], flush=True)
    del local
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False)
    try:
        for shards in shard_counts:
            threads = max(1, cores // shards)
            index = ShardedIndex(
                vectors.shape[1], 4, shards=shards, seed=0, threads_per_shard=threads
            )
            start = time.perf_counter()
            for lo in range(0, n, 100_000):
                index.add(vectors[lo : lo + 100_000])
            add_rate = n / (time.perf_counter() - start)
            index.search(queries[:10], 10)
            batched = best_of(lambda index=index: index.search(queries, 10))[0]
            p50, p99 = _single_latencies(
                lambda q, index=index: index.search(q, 10), queries[:singles]
            )
            found = index.search(queries, 10)[1]
            same = float(
                np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference, strict=True)])
            )
            # the scan alone, inside each actor (no transport): the slowest shard bounds a call
            shared = ray.put(queries)
            scans = ray.get([actor.timed_search.remote(shared, 10) for actor in index.actors])
            scan = max(scans)
            rows.append(
                {
                    "config": f"ShardedIndex, {shards} shard(s) x {threads} thread(s)",
                    "shards": shards,
                    "add_per_s": add_rate,
                    "qps": queries_n / batched,
                    "p50_ms": p50,
                    "p99_ms": p99,
                    "scan_ms": 1e3 * scan,
                    "overhead_ms": 1e3 * max(batched - scan, 0.0),
                    "recall_vs_local": same,
                }
            )
            print(rows[-1], flush=True)
            for actor in index.actors:
                ray.kill(actor)
    finally:
        ray.shutdown()
    for row in rows[1:]:
        row["vs_local_qps"] = row["qps"] / rows[0]["qps"]
        row["vs_local_p50"] = row["p50_ms"] / rows[0]["p50_ms"]
    rows[0]["vs_local_qps"] = rows[0]["vs_local_p50"] = 1.0
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=400_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args(argv)
    rows = run(args.n, args.queries, args.shards)
    title = (
        f"{args.n:,} GloVe-50 vectors, 4 bits, ip, k=10; batched: {args.queries} queries "
        f"per call; {os.cpu_count()} cores (local Ray cluster)"
    )
    table = format_table(rows, COLUMNS)
    print(f"\n{title}\n{table}")
    publish("distributed", {"meta": metadata(), "rows": rows}, f"{title}\n{table}")


if __name__ == "__main__":
    main()
