"""Codec distortion on real, anisotropic embeddings (no training anywhere).

GloVe 6B 50-d word vectors (100k sampled rows) and all-MiniLM-L6-v2 384-d embeddings of the
sentences of Python's documentation. Relative MSE ‖x − x̂‖²/‖x‖² against the Lloyd–Max optimum
for rotaquant (both rotations, and with norm correction) and, in the same run, FAISS's
TurboQuant with and without its random rotation (fed unit vectors: it stores no norm).

    python -m bench.codec_real [--out bench/results/codec_real.json]
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rotaquant import TurboQuantizer
from rotaquant.contrib import data

from ._common import Column, format_table, metadata, publish

try:
    import faiss
except ImportError:  # the core install has no faiss: its rows are skipped
    faiss = None

WIDTHS = (2, 3, 4, 3.5)
GLOVE_ROWS = 100_000


def datasets() -> dict[str, np.ndarray]:
    glove = data.glove_50d()
    rows = np.sort(np.random.default_rng(0).choice(glove.shape[0], GLOVE_ROWS, replace=False))
    return {
        "GloVe-50": np.asarray(glove[rows], dtype=np.float32),
        "MiniLM-384": data.minilm_embeddings(data.pydoc_sentences(), progress=True),
    }


Reconstruct = Callable[[np.ndarray], np.ndarray]


def rotaquant_method(**kwargs: Any) -> Callable[[int, float], tuple[Reconstruct, float] | None]:
    def make(dim: int, bits: float) -> tuple[Reconstruct, float]:
        q = TurboQuantizer(dim, bits, **kwargs)
        return (lambda x: q.decode(q.encode(x))), q.mse_optimum

    return make


def faiss_method(template: str) -> Callable[[int, float], tuple[Reconstruct, float] | None]:
    def make(dim: int, bits: float) -> tuple[Reconstruct, float] | None:
        if faiss is None or not float(bits).is_integer():
            return None
        index = faiss.index_factory(dim, template.format(d=dim, b=int(bits)))
        if not index.is_trained:
            index.train(np.zeros((1, dim), np.float32))  # data-independent codebook

        def reconstruct(x: np.ndarray) -> np.ndarray:
            norms = np.linalg.norm(x, axis=1, keepdims=True)
            return index.sa_decode(index.sa_encode(x / norms)) * norms

        return reconstruct, TurboQuantizer(dim, bits).mse_optimum

    return make


METHODS = {
    "rotaquant hadamard": rotaquant_method(rotation="hadamard"),
    "rotaquant haar": rotaquant_method(rotation="haar"),
    "rotaquant hadamard +norm corr.": rotaquant_method(norm_correction=True),
    "faiss RR+SQtqmse": faiss_method("RR{d},SQtqmse{b}"),
    "faiss SQtqmse (no rotation)": faiss_method("SQtqmse{b}"),
}

COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("method", "method", ""),
    ("bits", "b", "g"),
    ("mse", "rel. MSE", ".5f"),
    ("optimum", "optimum", ".5f"),
    ("ratio", "MSE/optimum", ".3f"),
]


def run(sets: dict[str, np.ndarray], widths: Sequence[float]) -> list[dict[str, Any]]:
    rows = []
    for name, x in sets.items():
        energy = np.einsum("ij,ij->i", x, x)
        for method, make in METHODS.items():
            for bits in widths:
                built = make(x.shape[1], bits)
                if built is None:
                    continue
                reconstruct, optimum = built
                err = x - reconstruct(x)
                mse = float(np.mean(np.einsum("ij,ij->i", err, err) / energy))
                rows.append(
                    {
                        "data": name,
                        "n": x.shape[0],
                        "d": x.shape[1],
                        "method": method,
                        "bits": bits,
                        "mse": mse,
                        "optimum": optimum,
                        "ratio": mse / optimum,
                    }
                )
    return rows


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="codec_real", help="JSON path or name in bench/results")
    args = parser.parse_args(argv)
    sets = datasets()
    rows = run(sets, WIDTHS)
    text = format_table(rows, COLUMNS) + "\n\n"
    text += ", ".join(f"{k}: {v.shape[0]:,} x {v.shape[1]}" for k, v in sets.items())
    print(text)
    meta = metadata(faiss=getattr(faiss, "__version__", None))
    publish(args.out, {"meta": meta, "rows": rows}, text)


if __name__ == "__main__":
    main()
