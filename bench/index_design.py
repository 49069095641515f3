"""The measurements behind VectorIndex's design choices (docs/index.md cites these tables).

1. norm: recall@10 when each vector stores ‖x‖ (the codec's default), ‖x‖/‖ĉ‖ (norm
   correction, what the index stores) or the least-squares gain ⟨x, ĉ⟩/‖ĉ‖².
2. seeds: spread of VectorIndex recall@10 over five rotation seeds (GloVe, as bench.index).
3. candidates: rows the native scan's kernels report per query (upper bound over the running
   threshold) and re-score exactly (still within reach at the end): its margin at work, per
   width and k.
4. idmap: inserting and finding one million random ids.
5. ivf_coding: an IVF index (issue 24) may code each vector itself (today's data-oblivious
   codes) or its residual to its list's centroid (what IVF-RaBitQ does): recall@10 of the
   compressed scores over every vector, top 10 and within the top 100 (re-rank depth), for
   both, at nlist ≈ √n and 4√n (the centroids cost nlist·dim·4 bytes either way), on GloVe-50
   and MPNet-768 (MiniLM's WordNet embeddings take an hour to compute on 2 cores).

    python -m bench.index_design [--sections ...] [--out index_design]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from rotaquant import TurboQuantizer, VectorIndex, _core
from rotaquant.contrib import data
from rotaquant.index.coarse import CoarseQuantizer
from rotaquant.index.idmap import IdMap

from ._common import Column, format_table, metadata, mpnet, publish, unit_gaussian

BITS = (2, 3, 4)


def exact_top(db: np.ndarray, queries: np.ndarray, k: int = 10) -> np.ndarray:
    scores = queries @ db.T
    return np.argpartition(-scores, k - 1, axis=1)[:, :k]


def recall(found: np.ndarray, truth: np.ndarray, depth: int | None = None) -> float:
    """Share of each query's true top k (``truth`` (m, k)) among its first ``depth`` (default
    k) ``found`` rows."""
    k = truth.shape[1]
    depth = k if depth is None else depth
    return float(
        np.mean([len(set(f[:depth]) & set(t)) / k for f, t in zip(found, truth, strict=True)])
    )


def norm_storage(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Same codes, three per-vector scales; top-10 by ⟨q, scale·ĉ⟩ in the rotated domain."""
    rows = []
    for name, (db, queries) in sets.items():
        truth = exact_top(db, queries)
        dim = db.shape[1]
        for bits in BITS:
            q = TurboQuantizer(dim, bits)
            codes = q.encode(db)
            unit_codes = (
                q.decode_rotated(codes, 0, codes.n) / codes.norms.astype(np.float32)[:, None]
            )
            lengths = np.linalg.norm(db, axis=1)
            units = q.rotation.forward(db / lengths[:, None])
            squared = np.einsum("ij,ij->i", unit_codes, unit_codes)
            scales = {
                "store |x|": np.ones_like(squared),
                "store |x|/|c| (index)": 1 / np.sqrt(squared),
                "least-squares gain": np.einsum("ij,ij->i", units, unit_codes) / squared,
            }
            base = q.rotation.forward(queries) @ unit_codes.T
            row: dict[str, Any] = {"data": name, "bits": bits}
            for label, scale in scales.items():
                found = np.argpartition(-(base * (lengths * scale)), 9, axis=1)[:, :10]
                row[label] = recall(found, truth)
            rows.append(row)
    return rows


def seed_spread(db: np.ndarray, queries: np.ndarray, seeds: int = 5) -> list[dict[str, Any]]:
    truth = exact_top(db, queries)
    rows = []
    for bits in BITS:
        values = []
        for seed in range(seeds):
            index = VectorIndex(db.shape[1], bits, seed=seed)
            index.add(db)
            values.append(recall(index.search(queries, 10)[1], truth))
        rows.append(
            {
                "bits": bits,
                "min": min(values),
                "mean": float(np.mean(values)),
                "max": max(values),
                "seeds": values,
            }
        )
    return rows


def candidates(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Rows re-scored exactly per query by the native scan (k plus what the margin admits)."""
    rows = []
    for name, (db, queries) in sets.items():
        for bits in BITS:
            index = VectorIndex(db.shape[1], bits)
            index.add(db)
            segments = [s.scan_view(o, None) for s, o, _ in index._rows.segment_rows(None)]
            rotated = np.ascontiguousarray(index.quantizer.rotation.forward(queries))
            for k in (10, 100):
                _, _, rescored, reported = _core.scan(
                    index._searcher._codec, segments, rotated, None, k
                )
                m = len(queries)
                rows.append(
                    {
                        "data": name,
                        "bits": bits,
                        "k": k,
                        "per query": rescored / m,
                        "reported per query": reported / m,
                    }
                )
    return rows


def idmap_speed(n: int = 1_000_000) -> dict[str, Any]:
    ids = np.random.default_rng(0).choice(2**62, n, replace=False).astype(np.int64)
    idmap = IdMap(lambda rows: ids[rows])
    start = time.perf_counter()
    idmap.insert(ids, np.arange(n))
    inserted = time.perf_counter() - start
    start = time.perf_counter()
    found = idmap.find(ids)
    looked_up = time.perf_counter() - start
    assert (found == np.arange(n)).all()
    return {"ids": n, "insert_s": inserted, "find_s": looked_up, "bytes_per_id": idmap.nbytes / n}


def ivf_coding(sets: dict[str, tuple[np.ndarray, np.ndarray]]) -> list[dict[str, Any]]:
    """Direct against residual codes (module item 5), norm-corrected as the index stores them,
    inner product, spherical k-means (``CoarseQuantizer``, seed 0)."""
    rows = []
    for name, (db, queries) in sets.items():
        truth = exact_top(db, queries)
        for nlist in (round(np.sqrt(len(db))), 4 * round(np.sqrt(len(db)))):
            coarse = CoarseQuantizer(db.shape[1], nlist, "ip", seed=0).train(db)
            centroids = coarse.centroids[coarse.assign(db)]
            residual = db - centroids
            spread = float((residual**2).sum() / (db**2).sum())
            for bits in BITS:
                q = TurboQuantizer(db.shape[1], bits)
                row = {"data": name, "nlist": nlist, "bits": bits, "residual_power": spread}
                for label, vectors, base in (("direct", db, 0), ("residual", residual, centroids)):
                    decoded = np.asarray(q.decode(q.encode(vectors)), dtype=np.float32)
                    lengths = np.linalg.norm(decoded, axis=1, keepdims=True)
                    decoded *= np.linalg.norm(vectors, axis=1, keepdims=True) / np.where(
                        lengths > 0, lengths, 1
                    )
                    scores = queries @ (decoded + base).T
                    order = np.argpartition(-scores, 100, axis=1)[:, :100]
                    top = np.argpartition(-scores, 9, axis=1)[:, :10]
                    row[f"{label} R@10"] = recall(top, truth)
                    row[f"{label} 10@100"] = recall(order, truth, depth=100)
                rows.append(row)
                print(row, flush=True)
    return rows


NORM_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("bits", "b", "d"),
    ("store |x|", "store |x|", ".3f"),
    ("store |x|/|c| (index)", "store |x|/|c| (index)", ".3f"),
    ("least-squares gain", "least-squares gain", ".3f"),
]
SEED_COLUMNS: list[Column] = [
    ("bits", "b", "d"),
    ("min", "min R@10", ".3f"),
    ("mean", "mean", ".3f"),
    ("max", "max", ".3f"),
]
CANDIDATE_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("bits", "b", "d"),
    ("k", "k", "d"),
    ("reported per query", "reported by the kernels", ".1f"),
    ("per query", "re-scored exactly", ".1f"),
]


IVF_COLUMNS: list[Column] = [
    ("data", "data", ""),
    ("nlist", "nlist", "d"),
    ("residual_power", "E|r|²/E|x|²", ".3f"),
    ("bits", "b", "d"),
    ("direct R@10", "direct R@10", ".3f"),
    ("residual R@10", "residual R@10", ".3f"),
    ("direct 10@100", "direct 10@100", ".3f"),
    ("residual 10@100", "residual 10@100", ".3f"),
]
SECTIONS = ("norm", "seeds", "candidates", "idmap", "ivf_coding")


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", default=list(SECTIONS), choices=SECTIONS)
    parser.add_argument("--out", default="index_design", help="JSON path or name in bench/results")
    args = parser.parse_args(argv)

    glove = np.asarray(data.glove_50d(), dtype=np.float32)
    needs_minilm = {"norm", "candidates"} & set(args.sections)
    minilm = data.minilm_embeddings(data.wordnet_glosses(), progress=True) if needs_minilm else None
    parts = []

    def show(text: str) -> None:  # printed as it comes (a long run), kept for the .txt
        print(text, "\n", flush=True)
        parts.append(text)

    payload: dict[str, Any] = {"meta": metadata()}
    if "norm" in args.sections:
        gaussian = unit_gaussian(20_500, 128, seed=0)
        norm_sets = {
            "Gaussian-128 20k": (gaussian[:-500], gaussian[-500:]),
            "GloVe-50 100k": (glove[:99_500], glove[99_500:100_000]),
            "MiniLM-384 50k": (minilm[:50_000], minilm[-500:]),
        }
        payload["norm"] = norm_storage(norm_sets)
        show(format_table(payload["norm"], NORM_COLUMNS))
    if "seeds" in args.sections:
        payload["seeds"] = seed_spread(glove[:-1000], glove[-1000:])
        show(
            "VectorIndex recall@10 over rotation seeds 0-4, GloVe-50 399k, 1,000 queries:\n"
            + format_table(payload["seeds"], SEED_COLUMNS)
        )
    if "candidates" in args.sections:
        big_sets = {
            "GloVe-50 399k": (glove[:-1000], glove[-1000:]),
            "MiniLM-384 117k": (minilm[:-1000], minilm[-1000:]),
        }
        payload["candidates"] = candidates(big_sets)
        show(
            "rows re-scored exactly per query by the native scan:\n"
            + format_table(payload["candidates"], CANDIDATE_COLUMNS)
        )
    if "idmap" in args.sections:
        ids = payload["idmap"] = idmap_speed()
        show(
            f"IdMap, {ids['ids']:,} random ids: insert {ids['insert_s']:.3f} s, find "
            f"{ids['find_s']:.3f} s, {ids['bytes_per_id']:.1f} bytes/id"
        )
    if "ivf_coding" in args.sections:
        sets = {"GloVe-50 399k": (glove[:-1000], glove[-1000:]), "MPNet-768 200k": mpnet(200_000)}
        payload["ivf_coding"] = ivf_coding(sets)
        show(
            "IVF codes: the vector itself (direct) or its residual to its list's centroid, "
            "inner product, 1,000 held-out queries; R@10: top 10 of the compressed scores over "
            "every vector; 10@100: the true top 10 within the compressed top 100 (what a "
            "re-rank of 100 recovers):\n" + format_table(payload["ivf_coding"], IVF_COLUMNS)
        )
    publish(args.out, payload, "\n\n".join(parts))


if __name__ == "__main__":
    main()
