"""Command line: ``rotaquant demo | index build|search|remove|upsert|info | eval-kv | compress |
decompress | bench`` (``--version``; every ``--help`` shows the defaults)."""

from __future__ import annotations

import argparse
import importlib.util
import io
import runpy
import sys
import time
from pathlib import Path

import numpy as np
from tqdm import tqdm

from . import data
from ._atomic import atomic_write
from .codec import Codes, TurboQuantizer
from .index import FileChangedError, VectorIndex


def _progress(*args, **kwargs):
    """A tqdm bar on a terminal; none when stderr is a file or pipe (logs stay readable)."""
    return tqdm(*args, disable=not sys.stderr.isatty(), **kwargs)


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
            for i in _progress(range(0, len(queries), batch), desc="exact top-10", leave=False)
        ]
    )
    header = (
        f"{'bits':>5} {'MSE':>8} {'optimum':>8} {'ratio':>6} {'bits/val':>8} "
        f"{'MiB':>7} {'x smaller':>9} {'encode/s':>10} {'recall@10':>9}"
    )
    print(header)
    print("-" * len(header))
    for bits in _progress(args.bits, desc="widths", leave=False):
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
                for i in _progress(
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
        _kv_report("smollm2", 4, 3, tokens=1024, chunk=128, new_tokens=32, needle_tokens=1024)
    print(
        "\nAlso: LangChain and LlamaIndex vector stores (rotaquant.integrations; "
        "docs/integrations.md)."
    )


def _demo_index(base: np.ndarray, queries: np.ndarray, truth: np.ndarray, widths) -> None:
    """The same data through VectorIndex: build, search, recall, bytes, speed."""
    k = truth.shape[1]
    print(f"\nVectorIndex (metric='ip') over the same {len(base):,} vectors, k={k}:")
    header = (
        f"{'bits':>5} {'bytes/vec':>9} {'MiB':>7} {'add/s':>10} {'queries/s':>10} "
        f"{'1-query ms':>10} {'recall@10':>9} {'+rerank40':>9}"
    )
    print(header)
    print("-" * len(header))
    for bits in _progress(widths, desc="index", leave=False):
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


def eval_kv(args: argparse.Namespace) -> None:
    """A real model generating with TurboQuantCache against the uncompressed cache."""
    _kv_report(
        args.model,
        args.key_bits,
        args.value_bits,
        residual=args.residual,
        tokens=args.tokens,
        chunk=args.chunk,
        new_tokens=args.new_tokens,
        needle_tokens=args.needle_tokens,
        attention=args.attention,
        key_mode=args.key_mode,
    )


def _kv_report(
    model_name: str,
    key_bits: float,
    value_bits: float,
    *,
    residual: int = 128,
    tokens: int = 2048,
    chunk: int = 256,
    new_tokens: int = 48,
    needle_tokens: int = 2048,
    attention: str = "compressed",
    key_mode: str = "mse",
) -> None:
    import copy

    from transformers import DynamicCache

    from .kv import TurboQuantCache, enable
    from .kv.cache import SINK_TOKENS
    from .kv.evaluate import (
        agreement,
        greedy,
        held_nbytes,
        needle_found,
        needle_prompt,
        score_text,
    )

    model, tokenizer = data.gemma3() if model_name == "gemma3" else data.smollm2()
    config = model.config
    tq_model = model
    if attention == "compressed":
        tq_model = copy.deepcopy(model)
        enable(tq_model)

    def turboquant() -> TurboQuantCache:
        return TurboQuantCache(
            key_bits, value_bits, residual, attention=attention, key_mode=key_mode, config=config
        )

    text = " ".join(data.pydoc_sentences())
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
    label = f"TurboQuantCache({key_bits:g}, {value_bits:g})"
    print(
        f"\n{type(model).__name__} ({model_name}), {ids.shape[1]} tokens of Python docs fed in "
        f"chunks of {chunk}; {label}, residual_length={residual}, attention={attention!r}, "
        f"key_mode={key_mode!r}"
    )
    print(
        f"exact: the first {SINK_TOKENS} tokens (sinks) and the newest "
        f"{residual}-{residual + 15} (float16 for a float32 model); compressed: everything "
        "between, once 16 or more tokens are past the hot window"
    )
    dynamic = DynamicCache(config=config)
    base, base_predictions = score_text(model, ids, dynamic, chunk)
    cache = turboquant()
    ppl, predictions = score_text(tq_model, ids, cache, chunk)
    header = f"{'cache':<26} {'perplexity':>10} {'change':>8} {'MiB held':>9} {'x vs fp16':>9}"
    print(header + "\n" + "-" * len(header))
    for name, value, held in (
        (f"DynamicCache ({model.dtype})".replace("torch.", ""), base, dynamic),
        (label, ppl, cache),
    ):
        nbytes, fp16 = held_nbytes(held)
        print(
            f"{name:<26} {value:>10.3f} {100 * (value / base - 1):>+7.2f}% "
            f"{nbytes / 2**20:>9.2f} {fp16 / nbytes:>9.2f}"
        )
    top1 = (predictions == base_predictions).float().mean().item()
    print(
        f"\nnext-token top-1 agreement with the uncompressed cache (same text): {100 * top1:.1f}%"
    )
    prompt = ids[:, : tokens // 2]
    reference = greedy(model, prompt, DynamicCache(config=config), new_tokens)
    continuation = greedy(tq_model, prompt, turboquant(), new_tokens)
    same, first = agreement(continuation, reference)
    print(
        f"greedy continuation of a {prompt.shape[1]}-token prompt: {same}/{new_tokens} tokens "
        f"equal to the uncompressed cache's (first difference at token {first})"
    )
    print(f"  uncompressed: {tokenizer.decode(reference)!r}")
    print(f"  compressed:   {tokenizer.decode(continuation)!r}")
    key = 71432
    found = needle_found(
        tq_model, tokenizer, needle_prompt(tokenizer, needle_tokens, 0.5, key), key, turboquant()
    )
    print(
        f"pass key hidden halfway through {needle_tokens} tokens: "
        f"{'found' if found else 'NOT found'} through the compressed cache"
    )


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
            dim, args.bits, metric=args.metric, seed=args.seed, keep_vectors=args.keep_vectors
        )
    step = 1 << 16
    start = time.perf_counter()
    with _progress(total=n, desc="add", unit="vec", unit_scale=True) as bar:
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
    for lo in _progress(range(0, len(queries), batch), desc="search", unit="batch"):
        chunk = np.asarray(queries[lo : lo + batch], np.float32)
        s, i = index.search(chunk, args.k, allow=allow, rerank=args.rerank)
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


class _Help(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """--help shows every option's default."""


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="rotaquant", description=__doc__, formatter_class=_Help)
    parser.add_argument("--version", action="version", version=f"rotaquant {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser(
        "demo", formatter_class=_Help, help="compress real GloVe vectors at several widths"
    )
    p.add_argument(
        "--bits", type=float, nargs="+", default=[2, 3, 4, 3.5], help="widths to compare"
    )
    p.add_argument("--queries", type=int, default=500, help="held-out queries for recall")
    p.add_argument(
        "--kv", action=argparse.BooleanOptionalAction, default=True, help="KV cache section"
    )
    p.set_defaults(func=demo)

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
    p.add_argument("--model", choices=["smollm2", "gemma3"], default="smollm2", help="packaged LM")
    p.add_argument("--key-bits", type=float, default=4, help="bits per key value")
    p.add_argument("--value-bits", type=float, default=3, help="bits per value value")
    p.add_argument("--residual", type=int, default=128, help="hot tokens kept uncompressed")
    p.add_argument("--key-mode", choices=["mse", "prod"], default="mse", help="key codec")
    p.add_argument(
        "--attention", choices=["compressed", "decoded"], default="compressed", help="path"
    )
    p.add_argument("--tokens", type=int, default=2048, help="text tokens for perplexity")
    p.add_argument("--chunk", type=int, default=256, help="tokens per forward pass")
    p.add_argument("--new-tokens", type=int, default=48, help="greedy tokens to compare")
    p.add_argument("--needle-tokens", type=int, default=2048, help="pass-key prompt length")
    p.set_defaults(func=eval_kv)

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
    p.add_argument("name")
    p.add_argument("rest", nargs=argparse.REMAINDER)
    p.set_defaults(func=bench)
    return parser


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    try:
        args.func(args)
    except (ValueError, KeyError, OSError, FileChangedError) as exc:
        raise SystemExit(f"error: {exc}") from exc
