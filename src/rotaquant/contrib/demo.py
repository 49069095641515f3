"""``rotaquant demo``: real GloVe vectors through the codec and the index, then SmolLM2
generating through TurboQuantCache (distortion against the optimum, bytes, recall, speed)."""

from __future__ import annotations

import argparse
import importlib.util
import time

import numpy as np

from .. import _native
from .._progress import progress
from ..codec import TurboQuantizer
from ..index import VectorIndex
from ..index.topk import TopK
from . import data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--bits", type=float, nargs="+", default=[2, 3, 4, 3.5], help="widths to compare"
    )
    parser.add_argument("--queries", type=int, default=500, help="held-out queries for recall")
    parser.add_argument(
        "--kv", action=argparse.BooleanOptionalAction, default=True, help="KV cache section"
    )


def _top_k(scores: np.ndarray, k: int, block: int = 16384) -> np.ndarray:
    """Indices of the k largest scores per row, best first: (m, k). Blocks of columns through
    the index's running top-k (one argpartition over all 400,000 columns was most of the
    demo's time)."""
    best = TopK(len(scores), k)
    for start in range(0, scores.shape[1], block):
        stop = min(start + block, scores.shape[1])
        best.push(scores[:, start:stop], np.arange(start, stop), slice(None))
    return best.sorted()[1]


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` present in the same row of ``found``."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def run(args: argparse.Namespace) -> None:
    """Compress real GloVe vectors and report distortion, bytes and search quality."""
    vectors = np.asarray(data.glove_50d(), dtype=np.float32)
    rng = np.random.default_rng(0)
    query_rows = rng.choice(vectors.shape[0], args.queries, replace=False)
    keep = np.ones(vectors.shape[0], bool)
    keep[query_rows] = False
    queries, base = vectors[query_rows], vectors[keep]
    n, dim = base.shape
    print(f"GloVe 6B 50-d: {n:,} database vectors, {len(queries)} held-out queries, dim {dim}")
    print(f"float32 size: {base.nbytes / 2**20:.1f} MiB\n")

    k, batch = 10, 100
    truth = np.concatenate(
        [
            _top_k(queries[i : i + batch] @ base.T, k)
            for i in progress(range(0, len(queries), batch), desc="exact top-10", leave=False)
        ]
    )
    header = (
        f"{'bits':>5} {'MSE':>8} {'optimum':>8} {'ratio':>6} {'bits/val':>8} "
        f"{'MiB':>7} {'x smaller':>9} {'encode/s':>10} {'recall@10':>9}"
    )
    print(header)
    print("-" * len(header))
    for bits in progress(args.bits, desc="widths", leave=False):
        q = TurboQuantizer(dim, bits, seed=0)
        start = time.perf_counter()
        codes = q.encode(base)
        encode_rate = n / (time.perf_counter() - start)
        x_hat = q.decode(codes)
        mse = float(np.mean(((base - x_hat) ** 2).sum(1) / (base**2).sum(1)))
        del x_hat
        found = np.concatenate(
            [
                _top_k(q.inner_product(queries[i : i + batch], codes), k)
                for i in progress(
                    range(0, len(queries), batch), desc=f"search {bits}b", leave=False
                )
            ]
        )
        recall = _recall(found, truth)
        print(
            f"{bits:>5g} {mse:>8.5f} {q.mse_optimum:>8.5f} {mse / q.mse_optimum:>6.3f} "
            f"{codes.bits_per_value:>8.3f} {codes.nbytes / 2**20:>7.2f} "
            f"{base.nbytes / codes.nbytes:>9.2f} {encode_rate:>10,.0f} {recall:>9.3f}"
        )
    print(
        "\nMSE: mean ||x - x_hat||^2 / ||x||^2; optimum: Lloyd-Max distortion for this dim; "
        "bits/val counts the float16 norm.\nrecall@10: share of the exact inner-product top-10 "
        "found by inner_product() on the compressed vectors."
    )
    _demo_index(base, queries, truth, args.bits)
    if not args.kv:
        print("\n(KV cache section skipped: --no-kv)")
    elif (
        importlib.util.find_spec("torch") is None
        or importlib.util.find_spec("transformers") is None
    ):
        print("\n(KV cache section skipped: pip install 'rotaquant[kv]')")
    else:
        print("\nKV cache: SmolLM2-135M generating through TurboQuantCache (rotaquant eval-kv):")
        from ..kv.config import KVConfig
        from .eval_kv import report

        kv = KVConfig(key_bits=4, value_bits=3, attention="compressed")
        report("smollm2", kv, tokens=1024, chunk=128, new_tokens=32, needle_tokens=1024)
    print(
        "\nAlso: LangChain and LlamaIndex vector stores (rotaquant.integrations; "
        "docs/integrations.md)."
    )


def _demo_index(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, widths) -> None:
    """The same data through VectorIndex: build, search, recall, bytes, speed."""
    k = truth.shape[1]
    print(
        f"\nVectorIndex (metric='ip') over the same {len(base):,} vectors, k={k}; speeds on "
        f"this machine, {_native.threads()} threads, kernel {_native.active_variant()}:"
    )
    header = (
        f"{'bits':>5} {'bytes/vec':>9} {'MiB':>7} {'add/s':>10} {'queries/s':>10} "
        f"{'1-query ms':>10} {'recall@10':>9} {'+rerank40':>9}"
    )
    print(header)
    print("-" * len(header))
    for bits in progress(widths, desc="index", leave=False):
        index = VectorIndex(base.shape[1], bits, keep_vectors=True)
        start = time.perf_counter()
        index.add(base)
        add_rate = len(base) / (time.perf_counter() - start)
        start = time.perf_counter()
        _, ids = index.search(queries, k)
        qps = len(queries) / (time.perf_counter() - start)
        index.search(queries[:1], k)  # the first single query compiles the lookup kernel
        start = time.perf_counter()
        for row in queries[:20]:
            index.search(row[None], k)
        single_ms = (time.perf_counter() - start) / min(20, len(queries)) * 1e3
        _, reranked = index.search(queries, k, rerank=4 * k)
        compressed = index.nbytes - index.vectors_nbytes  # without the re-ranking copy
        print(
            f"{bits:>5g} {compressed / len(base):>9.2f} {compressed / 2**20:>7.2f} "
            f"{add_rate:>10,.0f} {qps:>10,.0f} {single_ms:>10.2f} {_recall(ids, truth):>9.3f} "
            f"{_recall(reranked, truth):>9.3f}"
        )
    print(
        "\nbytes/vec: packed codes + float16 norm + 8-byte id. +rerank40: 40 candidates re-scored "
        "from a float16 copy (keep_vectors=True, 100 more bytes/vector)."
    )
