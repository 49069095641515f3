"""Command line: ``rotaquant demo | index build|search|remove|upsert|info | eval-kv | compress |
decompress | bench`` (``--version``; every ``--help`` shows the defaults)."""

from __future__ import annotations

import argparse
import importlib.metadata
import io
import time
from pathlib import Path

import numpy as np

from ._atomic import atomic_write
from ._progress import progress
from .codec import Codes, TurboQuantizer
from .contrib import bench_runner, demo, eval_kv
from .contrib.data import MissingData
from .index import FileChangedError, VectorIndex


def _load_array(path: str) -> np.ndarray:
    """The array of a .npy file (memory-mapped) or of a .npz holding exactly one array."""
    try:
        loaded = np.load(path, mmap_mode="r")
    except EOFError as exc:
        raise SystemExit(f"error: {path} is empty or truncated") from exc
    if isinstance(loaded, np.lib.npyio.NpzFile):
        names = list(loaded.files)
        if len(names) != 1:
            raise SystemExit(
                f"error: {path} holds arrays {names}; pass a .npy (or a one-array .npz)"
            )
        loaded = loaded[names[0]]
    return loaded


def _load_matrix(path: str, what: str = "vectors") -> np.ndarray:
    """A non-empty (n, dim) float array."""
    loaded = _load_array(path)
    if loaded.ndim != 2:
        raise SystemExit(f"error: {path} holds shape {loaded.shape}, expected (n, dim)")
    if loaded.dtype.kind != "f":
        raise SystemExit(f"error: {path} holds {loaded.dtype} values; {what} must be floats")
    if loaded.shape[0] == 0:
        raise SystemExit(f"error: {path} holds no {what} (shape {loaded.shape})")
    return loaded


def _load_ids(path: str | None, n: int | None = None) -> np.ndarray | None:
    """(n,) integer ids (any length when ``n`` is None), or None without a path."""
    if path is None:
        return None
    ids = _load_array(path)
    if ids.ndim != 1 or ids.dtype.kind not in "iu" or (n is not None and ids.shape[0] != n):
        expected = "(n,)" if n is None else f"({n},)"
        raise SystemExit(
            f"error: {path} holds {ids.dtype} {ids.shape}, expected integer ids {expected}"
        )
    return ids


def index_build(args: argparse.Namespace) -> None:
    vectors = _load_matrix(args.vectors)
    n, dim = vectors.shape
    ids = _load_ids(args.ids, n)
    if args.append:
        index = VectorIndex.load(args.output)
    elif Path(args.output).exists() and not args.force:
        raise SystemExit(
            f"error: {args.output} exists; pass --append to add to it or --force to replace it"
        )
    else:
        index = VectorIndex(
            dim,
            args.bits,
            metric=args.metric,
            seed=args.seed,
            keep_vectors=args.keep_vectors,
            nlist=args.nlist,
        )
    if index.nlist is not None and not index.trained and n >= index.nlist:
        # train on a sample of the whole file, not on whichever rows the first add holds
        rng = np.random.default_rng(index.config.seed)
        rows = np.sort(rng.choice(n, min(n, 256 * index.nlist), replace=False))
        index.train(vectors[rows])
    step = 1 << 16
    start = time.perf_counter()
    with progress(total=n, desc="add", unit="vec", unit_scale=True) as bar:
        for lo in range(0, n, step):
            index.add(vectors[lo : lo + step], None if ids is None else ids[lo : lo + step])
            bar.update(min(step, n - lo))
    elapsed = time.perf_counter() - start
    index.save(args.output, overwrite=args.force)
    print(
        f"{n:,} vectors added in {elapsed:.1f} s ({n / max(elapsed, 1e-9):,.0f}/s); "
        f"{len(index):,} in {args.output}: {index.nbytes:,} bytes "
        f"({index.nbytes / len(index):.1f} bytes/vector)"
    )


def index_search(args: argparse.Namespace) -> None:
    index = VectorIndex.load(args.index, verify=not args.no_verify)
    queries = _load_matrix(args.queries, "queries")
    allow = _load_ids(args.allow)
    batch = 1024
    scores, ids = [], []
    start = time.perf_counter()
    for lo in progress(range(0, len(queries), batch), desc="search", unit="batch"):
        chunk = np.asarray(queries[lo : lo + batch], np.float32)
        s, i = index.search(chunk, args.k, allow=allow, rerank=args.rerank, nprobe=args.nprobe)
        scores.append(s)
        ids.append(i)
    elapsed = time.perf_counter() - start
    scores, ids = np.concatenate(scores), np.concatenate(ids)
    print(f"{len(queries):,} queries in {elapsed:.2f} s ({len(queries) / elapsed:,.0f}/s)")
    if args.output:
        buf = io.BytesIO()
        np.savez(buf, scores=scores, ids=ids)
        atomic_write(args.output, [buf.getvalue()])
        print(f"scores and ids ({len(queries)}, {args.k}) -> {args.output}")
    else:
        for row in range(min(5, len(queries))):
            pairs = ", ".join(f"{i}:{s:.4f}" for i, s in zip(ids[row], scores[row], strict=True))
            print(f"query {row}: {pairs}")


def index_remove(args: argparse.Namespace) -> None:
    index = VectorIndex.load(args.index)
    ids = _load_ids(args.ids)
    index.remove(ids)  # unknown ids: KeyError, nothing removed, nothing written
    index.save(args.index)
    print(f"removed {len(ids):,} vectors; {len(index):,} left in {args.index}")


def index_upsert(args: argparse.Namespace) -> None:
    index = VectorIndex.load(args.index)
    vectors = _load_matrix(args.vectors)
    ids = _load_ids(args.ids, len(vectors))
    index.upsert(vectors, ids)
    index.save(args.index)
    print(f"upserted {len(ids):,} vectors; {len(index):,} in {args.index}")


def index_info(args: argparse.Namespace) -> None:
    index = VectorIndex.load(args.index)
    size = Path(args.index).stat().st_size
    print(f"{index!r}\nfile: {size:,} bytes; checksums verified")


def compress(args: argparse.Namespace) -> None:
    vectors = _load_matrix(args.input)
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


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every option's default."""


def build_parser() -> argparse.ArgumentParser:
    version = importlib.metadata.version("rotaquant")
    parser = argparse.ArgumentParser(prog="rotaquant", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"rotaquant {version}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", formatter_class=_Help, help="compress real GloVe vectors at several widths"
    )
    demo.add_arguments(p)
    p.set_defaults(func=demo.run)

    p = sub.add_parser(
        "index", formatter_class=_Help, help="build, search or inspect a VectorIndex file"
    )
    isub = p.add_subparsers(dest="index_command", required=True)
    b = isub.add_parser(
        "build", formatter_class=_Help, help="add an (n, dim) .npy file of vectors to an index file"
    )
    b.add_argument("vectors")
    b.add_argument("-o", "--output", required=True)
    b.add_argument("--bits", type=float, default=4, help="bits per value (1..8, 2.5, 3.5)")
    b.add_argument("--metric", choices=["ip", "cosine", "l2"], default="ip", help="score")
    b.add_argument("--ids", help=".npy file of (n,) integer ids (default: sequential)")
    b.add_argument("--seed", type=int, default=0, help="rotation seed")
    b.add_argument("--keep-vectors", action="store_true", help="keep a float16 copy for rerank")
    b.add_argument(
        "--nlist",
        type=int,
        help="inverted lists (IVF; about 4·sqrt(n)): searches read the nearest --nprobe lists",
    )
    b.add_argument("--append", action="store_true", help="add to an existing index file")
    b.add_argument("--force", action="store_true", help="replace an existing index file")
    b.set_defaults(func=index_build)
    s_ = isub.add_parser(
        "search", formatter_class=_Help, help="top-k search of an (m, dim) .npy file of queries"
    )
    s_.add_argument("index")
    s_.add_argument("queries")
    s_.add_argument("-k", type=int, default=10, help="results per query")
    s_.add_argument("--allow", help=".npy file of ids the results may come from")
    s_.add_argument("--rerank", type=int, help="re-score this many candidates exactly")
    s_.add_argument(
        "--nprobe", type=int, help="lists each query reads (IVF index; default: the index's)"
    )
    s_.add_argument("-o", "--output", help="write scores and ids to this .npz")
    s_.add_argument("--no-verify", action="store_true", help="skip checksums when opening")
    s_.set_defaults(func=index_search)
    r_ = isub.add_parser(
        "remove", formatter_class=_Help, help="remove the ids of a .npy file from an index file"
    )
    r_.add_argument("index")
    r_.add_argument("ids", help=".npy file of (n,) integer ids, all present in the index")
    r_.set_defaults(func=index_remove)
    u_ = isub.add_parser(
        "upsert", formatter_class=_Help, help="add or replace vectors of an index file by id"
    )
    u_.add_argument("index")
    u_.add_argument("vectors", help=".npy file of (n, dim) vectors")
    u_.add_argument("--ids", required=True, help=".npy file of their (n,) integer ids")
    u_.set_defaults(func=index_upsert)
    i_ = isub.add_parser("info", formatter_class=_Help, help="check an index file and describe it")
    i_.add_argument("index")
    i_.set_defaults(func=index_info)

    p = sub.add_parser(
        "eval-kv", formatter_class=_Help, help="generate with TurboQuantCache on a packaged real LM"
    )
    eval_kv.add_arguments(p)
    p.set_defaults(func=eval_kv.run)

    p = sub.add_parser(
        "compress", formatter_class=_Help, help="compress an (n, dim) .npy file to a codes file"
    )
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.add_argument("--bits", type=float, default=4, help="bits per value (1..8, 2.5, 3.5)")
    p.add_argument("--mode", choices=["mse", "prod"], default="mse", help="codec mode")
    p.add_argument("--rotation", choices=["hadamard", "haar"], default="hadamard", help="rotation")
    p.add_argument("--seed", type=int, default=0, help="rotation seed")
    p.set_defaults(func=compress)

    p = sub.add_parser(
        "decompress", formatter_class=_Help, help="decode a codes file back to a float32 .npy"
    )
    p.add_argument("input")
    p.add_argument("-o", "--output", required=True)
    p.set_defaults(func=decompress)

    p = sub.add_parser(
        "bench",
        formatter_class=_Help,
        help="run a benchmark from bench/ (e.g. `rotaquant bench codec`)",
    )
    bench_runner.add_arguments(p)
    p.set_defaults(func=bench_runner.run)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except KeyError as exc:  # str(KeyError) quotes its message
        raise SystemExit(f"error: {exc.args[0] if exc.args else exc}") from exc
    except (ValueError, OSError, FileChangedError, MissingData, ImportError) as exc:
        # MissingData and a missing extra's ImportError name what to install
        raise SystemExit(f"error: {exc}") from exc
