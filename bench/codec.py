"""Codec benchmark: reconstruction MSE, stored size and encode/decode speed.

rotaquant (mse and prod modes) against FAISS on unit-norm Gaussian vectors: FAISS's own
TurboQuant scalar quantizers (``SQtqmse<b>``, with and without a random rotation in front, and
the QJL variant ``SQtq<b>``), plain 4/8-bit scalar quantization and PQ sized to the same bytes
per vector. FAISS rows are skipped when faiss is not installed.

    python -m bench.codec [--quick] [--n N] [--dims 128 768 1536] [--out bench/results/codec.json]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from rotaquant import TurboQuantizer

from ._common import Column, best_of, format_table, metadata, publish, unit_gaussian

try:
    import faiss
except ImportError:  # the core install has no faiss: its rows are skipped
    faiss = None

WIDTHS = (2, 3, 4, 2.5, 3.5)
DEFAULT_N = {128: 100_000, 768: 40_000, 1536: 20_000}
FALLBACK_N = 20_000  # dimensions without a default
TRAIN_N = 20_000  # PQ training sample, drawn apart from the measured vectors
WARMUP_N = 1_024
REPEAT = 3
TQ_WIDTHS = (2, 3, 4)  # integer widths FAISS's TurboQuant SQ types are run at
REFERENCE = "faiss SQtqmse"  # speed ratios are relative to this method at the same (d, b)


@dataclass(frozen=True)
class Data:
    x: np.ndarray  # the measured vectors
    sample: np.ndarray  # independent training sample (PQ)

    @property
    def dim(self) -> int:
        return self.x.shape[1]


@dataclass(frozen=True)
class Codec:
    """A ready codec: ``decode(encode(x))`` reconstructs ``x``."""

    encode: Callable[[np.ndarray], Any]
    decode: Callable[[Any], np.ndarray]
    bits_per_value: Callable[[Any], float]  # from the codes, as stored
    note: str = ""
    theory: float | None = None
    train_s: float | None = None


@dataclass(frozen=True)
class Method:
    """A table row family: the widths it runs at (given the requested ones) and its factory."""

    name: str
    widths: Callable[[Sequence[float]], Sequence[float]]
    make: Callable[[Data, float], Codec]


# ---------------------------------------------------------------------------- rotaquant
def rotaquant_codec(mode: str, note: str = "") -> Callable[[Data, float], Codec]:
    def make(data: Data, bits: float) -> Codec:
        q = TurboQuantizer(data.dim, bits, mode=mode)
        return Codec(q.encode, q.decode, lambda codes: codes.bits_per_value, note, q.mse_optimum)

    return make


# ---------------------------------------------------------------------------- faiss
def faiss_codec(
    build: Callable[[int, float], tuple[Any, str]], train_on_sample: bool = True
) -> Callable[[Data, float], Codec]:
    """Wrap ``build(d, bits) -> (index, note)``: train if needed, then sa_encode / sa_decode."""

    def make(data: Data, bits: float) -> Codec:
        index, note = build(data.dim, bits)
        start = time.perf_counter()
        if not index.is_trained:
            index.train(data.sample if train_on_sample else data.x)
        train_s = time.perf_counter() - start
        bits_per_value = 8 * index.sa_code_size() / data.dim
        return Codec(
            index.sa_encode, index.sa_decode, lambda _: bits_per_value, note, train_s=train_s
        )

    return make


def factory(template: str) -> Callable[[int, float], tuple[Any, str]]:
    """index_factory with ``template`` formatted by d and b (integer b)."""

    def build(d: int, bits: float) -> tuple[Any, str]:
        key = template.format(d=d, b=int(bits))
        return faiss.index_factory(d, key), key

    return build


def scalar_quantizer(qtype: str) -> Callable[[int, float], tuple[Any, str]]:
    def build(d: int, bits: float) -> tuple[Any, str]:
        return faiss.IndexScalarQuantizer(d, getattr(faiss.ScalarQuantizer, qtype)), qtype

    return build


def pq_shape(d: int, bits: float) -> tuple[int, int, str]:
    """(M, nbits, note) for a PQ code of exactly bits·d/8 bytes.

    Takes the widest nbits ≤ 8 (down to 4) whose M = bits·d/nbits is a whole divisor of d;
    if there is none, nbits = 8 and the divisor of d nearest bits·d/8, which the note says.
    """
    for nbits in range(8, 3, -1):
        m = bits * d / nbits
        if float(m).is_integer() and d % int(m) == 0:
            return int(m), nbits, f"M={int(m)} x {nbits}b"
    target = bits * d / 8
    m = min((k for k in range(1, d + 1) if d % k == 0), key=lambda k: (abs(k - target), k))
    return m, 8, f"M={m} x 8b (nearest divisor to {target:g}: size differs)"


def product_quantizer(d: int, bits: float) -> tuple[Any, str]:
    m, nbits, note = pq_shape(d, bits)
    index = faiss.IndexPQ(d, m, nbits)
    # Only silences the "too few training points" warning of small (--quick) samples.
    index.pq.cp.min_points_per_centroid = 1
    return index, note


# ---------------------------------------------------------------------------- catalogue
def every(widths: Sequence[float]) -> Sequence[float]:
    return widths


def integer(widths: Sequence[float]) -> Sequence[float]:
    return [b for b in widths if float(b).is_integer()]


def turboquant_sq(widths: Sequence[float]) -> Sequence[float]:
    return [b for b in widths if b in TQ_WIDTHS]


def fixed(bits: int) -> Callable[[Sequence[float]], Sequence[float]]:
    return lambda _: [bits]


def methods(with_faiss: bool) -> list[Method]:
    core = [
        Method("rotaquant mse", every, rotaquant_codec("mse")),
        Method("rotaquant prod", integer, rotaquant_codec("prod", "mse of the (b-1)-bit part")),
    ]
    if not with_faiss:
        return core
    return core + [
        Method(REFERENCE, turboquant_sq, faiss_codec(factory("SQtqmse{b}"))),
        Method("faiss RR+SQtqmse", turboquant_sq, faiss_codec(factory("RR{d},SQtqmse{b}"))),
        Method("faiss SQtq", turboquant_sq, faiss_codec(factory("SQtq{b}"))),
        Method("faiss PQ", every, faiss_codec(product_quantizer)),
        Method("faiss SQ4", fixed(4), faiss_codec(scalar_quantizer("QT_4bit"), False)),
        Method("faiss SQ8", fixed(8), faiss_codec(scalar_quantizer("QT_8bit"), False)),
    ]


# ---------------------------------------------------------------------------- measuring
def measure(method: Method, data: Data, bits: float) -> dict[str, Any]:
    codec = method.make(data, bits)
    x, n = data.x, len(data.x)
    warm = x[:WARMUP_N]
    encode_s, codes = best_of(lambda: codec.encode(x), REPEAT, lambda: codec.encode(warm))
    decode_s, decoded = best_of(
        lambda: codec.decode(codes), REPEAT, lambda: codec.decode(codec.encode(warm))
    )
    err = x - np.asarray(decoded)
    mse = float(np.einsum("ij,ij->", err, err, dtype=np.float64)) / n
    return {
        "method": method.name,
        "d": data.dim,
        "bits": bits,
        "note": codec.note,
        "mse": mse,
        "theory": codec.theory,
        "mse_x_4b": mse * 4.0**bits,  # MSE / 4^-b: the lower bound's constant
        "bits_per_value": codec.bits_per_value(codes),
        "encode_vps": n / encode_s,
        "decode_vps": n / decode_s,
        "encode_s": encode_s,
        "decode_s": decode_s,
        "train_s": codec.train_s,
        "n": n,
    }


def add_speed_ratios(rows: list[dict[str, Any]]) -> None:
    """encode / decode speed relative to the reference method at the same (d, bits)."""
    reference = {(r["d"], r["bits"]): r for r in rows if r["method"] == REFERENCE}
    for row in rows:
        ref = reference.get((row["d"], row["bits"]))
        for key in ("encode_vps", "decode_vps"):
            row[f"{key[:3]}_vs_ref"] = row[key] / ref[key] if ref else None


def run(dims: Sequence[int], sizes: dict[int, int], train_n: int) -> list[dict[str, Any]]:
    catalogue = methods(faiss is not None)
    jobs = [(d, m, b) for d in dims for m in catalogue for b in m.widths(WIDTHS)]
    rows, data = [], {}
    with tqdm(jobs, desc="codec", unit="row", leave=False) as progress:
        for d, method, bits in progress:
            progress.set_postfix_str(f"d={d} {method.name} b={bits:g}")
            if d not in data:
                data[d] = Data(unit_gaussian(sizes[d], d, seed=0), unit_gaussian(train_n, d, 1))
            rows.append(measure(method, data[d], bits))
    add_speed_ratios(rows)
    return rows


def inner_product_rows(dims: Sequence[int], n: int, queries: int = 50) -> list[dict[str, Any]]:
    """Inner-product error of mse vs prod mode: RMSE and bias (random and correlated queries).

    Correlated queries are a target vector plus noise (true product ≈ 0.96): there the
    shrinkage bias of the MSE code shows, and prod mode's unbiasedness is visible.
    """
    rows = []
    for d in dims:
        x = unit_gaussian(n, d, seed=0)
        rand = unit_gaussian(queries, d, seed=2)
        near = x[:queries] + 0.3 * unit_gaussian(queries, d, seed=3)
        near /= np.linalg.norm(near, axis=1, keepdims=True)
        for bits in TQ_WIDTHS:
            for mode in ("mse", "prod"):
                q = TurboQuantizer(d, bits, mode=mode)
                codes = q.encode(x)
                err = q.inner_product(rand, codes) - rand @ x.T
                own = np.einsum("ij,ij->i", near, x[:queries])
                own_err = np.diagonal(q.inner_product(near, codes)) - own
                rows.append(
                    {
                        "d": d,
                        "bits": bits,
                        "mode": mode,
                        "rmse": float(np.sqrt(np.mean(err**2))),
                        "bias": float(err.mean()),
                        "true_near": float(own.mean()),
                        "bias_near": float(own_err.mean()),
                    }
                )
    return rows


IP_COLUMNS: list[Column] = [
    ("d", "d", "d"),
    ("bits", "b", "g"),
    ("mode", "mode", ""),
    ("rmse", "RMSE", ".4f"),
    ("bias", "bias (random q)", ".5f"),
    ("true_near", "<q,x> (near q)", ".3f"),
    ("bias_near", "bias (near q)", ".4f"),
]


COLUMNS: list[Column] = [
    ("method", "method", ""),
    ("d", "d", "d"),
    ("bits", "b", "g"),
    ("mse", "mse", ".5f"),
    ("theory", "theory", ".5f"),
    ("mse_x_4b", "mse*4^b", ".3f"),
    ("bits_per_value", "bits/val", ".3f"),
    ("encode_vps", "enc vec/s", ",.0f"),
    ("decode_vps", "dec vec/s", ",.0f"),
    ("enc_vs_ref", "enc/tqmse", ".2f"),
    ("dec_vs_ref", "dec/tqmse", ".2f"),
    ("note", "note", ""),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="divide all sizes by 10")
    parser.add_argument("--n", type=int, help="vectors per dimension (default: per-d table)")
    parser.add_argument("--dims", type=int, nargs="+", default=list(DEFAULT_N))
    parser.add_argument("--out", default="codec", help="JSON path, or a name in bench/results")
    parser.add_argument("--plot", default="docs/codec_mse.png", help="MSE plot ('' to skip)")
    args = parser.parse_args(argv)

    scale = 10 if args.quick else 1
    sizes = {d: (args.n or DEFAULT_N.get(d, FALLBACK_N)) // scale for d in args.dims}
    train_n = TRAIN_N // scale
    if faiss is None:
        print("note: faiss is not importable: FAISS rows skipped")
    else:
        faiss.omp_set_num_threads(2)

    start = time.perf_counter()
    rows = run(args.dims, sizes, train_n)
    ip_rows = inner_product_rows(args.dims, min(sizes.values()))
    elapsed = time.perf_counter() - start

    text = "\n".join(
        [
            format_table(rows, COLUMNS),
            "\ninner products, rotaquant mse vs prod (unit vectors, 50 queries):",
            format_table(ip_rows, IP_COLUMNS),
            f"\nn per d: {sizes}; best of {REPEAT}; wall time {elapsed:.0f} s",
        ]
    )
    if faiss is not None:
        text += (
            f"\nPQ trained on {train_n:,} separate vectors; enc/tqmse, dec/tqmse: speed / "
            f"{REFERENCE} speed at the same (d, b)"
        )
    print(text)
    meta = metadata(
        faiss=getattr(faiss, "__version__", None),
        n=sizes,
        train_n=train_n,
        repeat=REPEAT,
        quick=args.quick,
        wall_s=elapsed,
    )
    publish(args.out, {"meta": meta, "rows": rows, "inner_product": ip_rows}, text)
    if args.plot:
        print(f"wrote {plot_mse(rows, args.dims, Path(args.plot))}")


def plot_mse(rows: list[dict[str, Any]], dims: Sequence[int], path: Path) -> Path:
    """MSE vs bits: Lloyd–Max theory per d, the paper's bounds, and the measured points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from rotaquant import lloyd_max

    bits = np.arange(1, 9)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    ax.semilogy(bits, np.sqrt(3) * np.pi / 2 * 4.0**-bits, "k--", label="upper bound √3π/2·4^-b")
    ax.semilogy(bits, 4.0**-bits, "k:", label="lower bound 4^-b (any quantizer)")
    for d in dims:
        ax.semilogy(
            bits, [lloyd_max(d, int(b)).mse for b in bits], "-", lw=1, label=f"Lloyd–Max, d={d}"
        )
    markers = {"rotaquant mse": "o", "faiss RR+SQtqmse": "x"}
    for method, marker in markers.items():
        points = [(r["bits"], r["mse"]) for r in rows if r["method"] == method]
        if points:
            ax.semilogy(
                *zip(*points, strict=True), marker, ms=7, mfc="none", label=f"{method} (measured)"
            )
    ax.set_xlabel("bits per value")
    ax.set_ylabel("MSE of a unit vector  E‖x − x̂‖²")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


if __name__ == "__main__":
    main()
