"""The search path of a VectorIndex: the native scan, allow-lists, re-ranking, reconstruction.

Queries are rotated once (and projected once for the QJL term in prod mode) by the native
searcher (``rotaquant._core.Searcher``, csrc/searcher.h: it holds the rotation, the codebooks
and the scan plan, built once per index), which then scores every stored row in the rotated domain
straight from its packed codes — int8 query weights times int8 codebook levels, summed in
integers, scaled by each row's factor — keeps the rows whose score bound can still reach the
top k, and re-scores those exactly in float32, so results are the exact top-k of the float
scores ⟨q, x̂⟩ (up to summation order). One path serves one query and many; threads and SIMD
are the native core's.

Filtering (``allowed`` ids) becomes a bitmap per segment that the kernel tests per block:
blocks without an allowed row are skipped, so the result is the best k of the allowed set.

Ranking by metric: ``"ip"`` and ``"cosine"`` by ⟨q, x̂⟩ (cosine queries and vectors arrive
normalized); ``"l2"`` by 2⟨q, x̂⟩ − ‖x̂‖² (the segments store −‖x̂‖² per row), turned into
‖q − x̂‖² at the end.

Inverted lists (``ivf.py``): each query's ``nprobe`` nearest lists are scanned by the same
native scan, told which queries scan which segment (each list is read once per batch, by
the queries that probe it) and the score each adds: ⟨q, c⟩ of the list's centroid (2⟨q, c⟩
for l2), since rows hold residual codes. Before training, the buffer is scored exactly.
"""

from __future__ import annotations

import numpy as np

from .. import _core
from ..codec.quantizer import TurboQuantizer
from .ivf import InvertedLists
from .rows import RowStore, distinct_rows
from .topk import TopK

_RERANK_FLOATS = 1 << 22  # float32 values of candidate vectors gathered at a time (16 MiB)
_EXACT_FLOATS = 1 << 22  # float32 scores of buffered rows computed at a time (16 MiB)


def codec_streams(quantizer: TurboQuantizer) -> list[tuple]:
    """The codec as the native scan takes it: per stream (first channel, channels, bits,
    query domain (0 rotated, 1 projected), factor class, scale, values, code probabilities)."""
    streams = [
        (g.start, g.channels, g.bits, 0, 0, 1.0, book.centroids, book.probabilities)
        for g, book in quantizer.codebooks
    ]
    if quantizer.qjl is not None:  # sign bits: 0 means -1
        signs = np.array([-1.0, 1.0], np.float32)
        half = np.array([0.5, 0.5], np.float32)
        streams.append((0, quantizer.dim, 1, 1, 1, float(quantizer.qjl.scale), signs, half))
    return streams


class Searcher:
    """Top-k search of a ``RowStore`` encoded by ``quantizer``, ranked for ``metric``."""

    def __init__(self, quantizer: TurboQuantizer, metric: str):
        self.quantizer = quantizer
        self.metric = metric
        self._codec = codec_streams(quantizer)
        self._native_scale = 2.0 if metric == "l2" else 1.0  # the l2 ranking scores 2⟨q, x̂⟩ − ‖x̂‖²
        qjl = quantizer.qjl
        self._native = _core.Searcher(
            self._codec,
            quantizer.dim,
            quantizer.rotation.native_form(),
            None if qjl is None else np.ascontiguousarray(qjl.projection.T),
            self._native_scale,
        )

    def search(
        self,
        store: RowStore | InvertedLists,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        rerank: int | None,
        nprobe: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (m, k), ids int64 (m, k)), best first, −1 ids padding.

        ``queries`` (m, dim) float32, already normalized for cosine; ``allowed``: int64 ids
        or None; ``rerank``: candidates (≥ k) re-scored from the float16 copies, or None;
        ``nprobe``: the lists each query reads (inverted lists).
        """
        want = min(k, store.n)  # work bounded by what exists; the rest of k is padding
        pool = want if rerank is None else min(rerank, store.n)
        if isinstance(store, InvertedLists):
            rows, scores = self.scan_lists(store, queries, pool, allowed, nprobe)
        else:
            rows, scores = self.scan(store, queries, pool, allowed)
        if rerank is not None and pool:
            rows, scores = self.rerank(store, queries, rows, want)
        missing = rows < 0
        ids = store.ids[np.where(missing, 0, rows)]  # no rows (n = 0): an empty take
        ids[missing] = -1
        if self.metric == "l2":
            if rerank is None:  # the scan ranks by 2⟨q, x̂⟩ − ‖x̂‖²
                scores = np.einsum("ij,ij->i", queries, queries)[:, None] - scores
            else:
                scores = -scores
            scores[missing] = np.inf
        if want < k:
            pad = np.inf if self.metric == "l2" else -np.inf
            scores = np.pad(scores, ((0, 0), (0, k - want)), constant_values=pad)
            ids = np.pad(ids, ((0, 0), (0, k - want)), constant_values=-1)
        return scores, ids

    def scan(
        self, store: RowStore, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Index rows (m, k) int64 (−1 padded) and their exact scores (m, k) float32 (−inf
        padded; l2: 2⟨q, x̂⟩ − ‖x̂‖²), best first; ``k`` ≤ the rows stored."""
        segments = [
            segment.scan_view(offset, None if local is None else _bitmap(local, segment.count))
            for segment, offset, local in store.segment_rows(allowed)
        ]
        rows, scores, *_ = self._native.search(segments, queries, k)
        return rows, scores

    def scan_lists(
        self,
        lists: InvertedLists,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        nprobe: int,
    ) -> tuple[np.ndarray, np.ndarray]:
        """As ``scan``, over the lists each query probes (the buffer, before training)."""
        allowed_rows = None
        if allowed is not None:
            allowed_rows = distinct_rows(lists.find(allowed))
        if not lists.trained:
            return self._scan_exact(lists.buffer, queries, k, allowed_rows)
        # probes, plan and scan in the native core; a filter reads lists nearest first until
        # they hold as many allowed rows as nprobe lists hold rows on average (the candidates
        # of an unfiltered search)
        target = nprobe * lists.n / lists.nlist
        scan_set = lists.scan_set(self._native)
        rows, scores, *_ = self._native.search_lists(
            scan_set, queries, k, nprobe, allowed_rows, target
        )
        return rows, scores

    def _scan_exact(
        self, vectors: np.ndarray, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> tuple[np.ndarray, np.ndarray]:
        """``scan`` over float32 ``vectors`` (n, dim) scored exactly (the training buffer);
        ``allowed``: sorted rows, or None."""
        rows = np.arange(vectors.shape[0]) if allowed is None else allowed
        if k == 0 or rows.size == 0:
            m = queries.shape[0]
            return np.full((m, k), -1, np.int64), np.full((m, k), -np.inf, np.float32)
        # float64 products rounded once: the same scores whatever else the buffer holds
        # (a float32 product's rounding depends on the matrix shapes BLAS blocks by)
        candidates = (vectors[rows] if allowed is not None else vectors).astype(np.float64)
        shift = None
        if self.metric == "l2":
            shift = -np.einsum("ij,ij->i", candidates, candidates)
        best = TopK(queries.shape[0], k)
        step = max(1, _EXACT_FLOATS // max(1, rows.size))
        for q0 in range(0, queries.shape[0], step):
            scores = queries[q0 : q0 + step].astype(np.float64) @ candidates.T
            if shift is not None:
                scores = 2 * scores + shift
            best.push(scores.astype(np.float32), rows, slice(q0, q0 + step))
        scores, found = best.sorted()
        return found, scores

    def rerank(
        self, store: RowStore | InvertedLists, queries: np.ndarray, candidates: np.ndarray, k: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """Exact scores of ``candidates`` (m, r) rows from the float16 copies; the best k.
        Candidates are gathered a few queries at a time (bounded memory)."""
        m, depth = candidates.shape
        step = max(1, _RERANK_FLOATS // (depth * self.quantizer.dim))
        exact = np.full((m, depth), -np.inf, np.float32)
        for q0 in range(0, m, step):
            rows = candidates[q0 : q0 + step]
            vectors = store.vectors_of(rows.reshape(-1)).reshape(*rows.shape, -1)
            q = queries[q0 : q0 + step]
            if self.metric == "l2":
                diff = vectors - q[:, None, :]
                scores = -np.einsum("mrd,mrd->mr", diff, diff)
            else:
                scores = np.einsum("mrd,md->mr", vectors, q)
            exact[q0 : q0 + step] = np.where(rows >= 0, scores, -np.inf)
        best = TopK(m, k)
        best.push(exact, candidates, slice(None))
        scores, rows = best.sorted()
        return rows, scores

    def reconstruct(self, store: RowStore | InvertedLists, rows: np.ndarray) -> np.ndarray:
        """Decoded vectors of index ``rows``: (len(rows), dim) float32, original domain
        (inverted lists: centroid plus decoded residual; buffered rows as stored)."""
        if isinstance(store, RowStore):
            return self._decoded(store, rows)
        if not store.trained:
            return store.buffer[rows].copy()
        out = np.empty((rows.size, self.quantizer.dim), np.float32)
        for lst, picked, local in store.locate(rows):
            out[picked] = self._decoded(store.lists[lst], local) + store.coarse.centroids[lst]
        return out

    def _decoded(self, store: RowStore, rows: np.ndarray) -> np.ndarray:
        out = np.zeros((rows.size, self.quantizer.dim), np.float32)  # 0-bit channels stay 0
        for segment, picked, local in store.by_segment(rows):
            codes = segment.codes(local)
            norms = segment.norms[local].astype(np.float32)[:, None]
            for (group, book), group_codes in zip(self.quantizer.codebooks, codes, strict=False):
                out[picked, group.start : group.stop] = book.centroids[group_codes] * norms
        return self.quantizer.rotation.inverse(out)


def _bitmap(local: np.ndarray, count: int) -> np.ndarray:
    """uint64 words with bit r set for each of the segment's ``local`` rows."""
    bits = np.zeros(-(-count // 64) * 64, bool)
    bits[local] = True
    return np.packbits(bits, bitorder="little").view(np.uint64)
