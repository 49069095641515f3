"""Command line: ``rotaquant demo | compress | decompress | bench``."""

from __future__ import annotations

import argparse
import io
import runpy
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import data
from .codes import Codes
from .quantizer import TurboQuantizer
from .storage import atomic_write


def _top_k(scores: np.ndarray, k: int) -> np.ndarray:
    """Indices of the k largest scores per row, best first: (m, k)."""
    part = np.argpartition(-scores, k - 1, axis=1)[:, :k]
    order = np.take_along_axis(scores, part, axis=1).argsort(axis=1)[:, ::-1]
    return np.take_along_axis(part, order, axis=1)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    """Mean fraction of each row of ``truth`` present in the same row of ``found``."""
    hits = sum(len(np.intersect1d(f, t)) for f, t in zip(found, truth, strict=True))
    return hits / truth.size


def demo(args: argparse.Namespace) -> None:
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
            for i in tqdm(range(0, len(queries), batch), desc="exact top-10", leave=False)
        ]
    )
    header = (
        f"{'bits':>5} {'MSE':>8} {'optimum':>8} {'ratio':>6} {'bits/val':>8} "
        f"{'MiB':>7} {'x smaller':>9} {'encode/s':>10} {'recall@10':>9}"
    )
    print(header)
    print("-" * len(header))
    for bits in tqdm(args.bits, desc="widths", leave=False):
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
                for i in tqdm(range(0, len(queries), batch), desc=f"search {bits}b", leave=False)
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


def compress(args: argparse.Namespace) -> None:
    vectors = np.load(args.input, mmap_mode="r")
    if vectors.ndim != 2:
        raise SystemExit(f"error: {args.input} holds shape {vectors.shape}, expected (n, dim)")
    q = TurboQuantizer(
        vectors.shape[1], args.bits, mode=args.mode, rotation=args.rotation, seed=args.seed
    )
    codes = q.encode(vectors)
    atomic_write(args.output, [codes.to_bytes()])
    print(
        f"{codes.n:,} vectors -> {args.output}: {codes.nbytes:,} bytes "
        f"({codes.bits_per_value:.3f} bits/value, {vectors.nbytes / codes.nbytes:.2f}x smaller)"
    )


def decompress(args: argparse.Namespace) -> None:
    codes = Codes.from_bytes(Path(args.input).read_bytes())
    vectors = TurboQuantizer.from_config(codes.config).decode(codes)
    atomic_write(args.output, [_npy_bytes(vectors)])
    print(f"{codes.n:,} vectors of dim {codes.config.dim} -> {args.output}")


def _npy_bytes(arr: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, arr)
    return buf.getvalue()


def bench(args: argparse.Namespace) -> None:
    """Run ``bench/<name>.py`` from a source checkout (benchmarks are not installed)."""
    sys.path.insert(0, str(Path.cwd()))
    try:
        sys.argv = [f"bench.{args.name}", *args.rest]
        runpy.run_module(f"bench.{args.name}", run_name="__main__")
    except ImportError as exc:
        raise SystemExit(
            f"error: benchmark {args.name!r} not found ({exc}); run from a rotaquant checkout"
        ) from exc


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rotaquant", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("demo", help="compress real GloVe vectors at several widths")
    p.add_argument("--bits", type=float, nargs="+", default=[2, 3, 4, 3.5])
    p.add_argument("--queries", type=int, default=500, help="held-out queries for recall")
    p.set_defaults(func=demo)

    p = sub.add_parser("compress", help="compress an (n, dim) .npy file to a codes file")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--bits", type=float, default=4)
    p.add_argument("--mode", choices=["mse", "prod"], default="mse")
    p.add_argument("--rotation", choices=["hadamard", "haar"], default="hadamard")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=compress)

    p = sub.add_parser("decompress", help="decode a codes file back to a float32 .npy")
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=decompress)

    p = sub.add_parser("bench", help="run a benchmark from bench/ (e.g. `rotaquant bench codec`)")
    p.add_argument("name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except ValueError as exc:
        raise SystemExit(f"error: {exc}") from exc
