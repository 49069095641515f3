"""The scan of a VectorIndex: exhaustive top-k over compressed rows, in the rotated domain.

Queries are rotated once. Batches: database blocks are decoded in the rotated domain (never
rotated back) and scored with a matrix product against blocks of queries (BLAS uses every
core). One or two queries: the compiled lookup-table scan over the packed codes
(``lut_scan``), no decoding. A running per-query top-k admits only scores above the current
k-th best.

Filtering (``allowed`` ids) restricts the scan to the allowed rows: sparse allow-lists gather
just the 8-row groups that hold them; dense ones mask within each block. The result is always
the exact top-k of the allowed set under the compressed scores.

Ranking by metric: ``"ip"`` and ``"cosine"`` by ⟨q, x̂⟩ (cosine queries and vectors arrive
normalized); ``"l2"`` by 2⟨q, x̂⟩ − ‖x̂‖², turned into ‖q − x̂‖² at the end.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from ..codec.quantizer import TurboQuantizer
from . import lut_scan
from .rows import RowStore
from .segment import Block
from .topk import TopK

_BLOCK_FLOATS = 1 << 18  # decoded values per scan block (1 MiB of float32)
_QUERY_BLOCK = 256  # queries scored together against one decoded block
_RERANK_FLOATS = 1 << 22  # float32 values of candidate vectors gathered at a time (16 MiB)


class Searcher:
    """Top-k search of a ``RowStore`` encoded by ``quantizer``, ranked for ``metric``."""

    def __init__(self, quantizer: TurboQuantizer, metric: str):
        self.quantizer = quantizer
        self.metric = metric
        self._lookup = lut_scan.LookupScorer(quantizer)

    def search(
        self,
        store: RowStore,
        queries: np.ndarray,
        k: int,
        allowed: np.ndarray | None,
        rerank: int | None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """(scores float32 (m, k), ids int64 (m, k)), best first, −1 ids padding.

        ``queries`` (m, dim) float32, already normalized for cosine; ``allowed``: int64 ids
        or None; ``rerank``: candidates (≥ k) re-scored from the float16 copies, or None.
        """
        top = self.scan(store, queries, rerank if rerank is not None else k, allowed)
        if rerank is not None:
            top = self.rerank(store, queries, top, k)
        scores, rows = top.sorted()
        ids = np.full(rows.shape, -1, np.int64)
        ids[rows >= 0] = store.ids[rows[rows >= 0]]
        if self.metric == "l2":
            if rerank is None:  # the scan ranks by 2⟨q, x̂⟩ − ‖x̂‖²
                scores = np.einsum("ij,ij->i", queries, queries)[:, None] - scores
            else:
                scores = -scores
        return scores.astype(np.float32), ids

    def scan(
        self, store: RowStore, queries: np.ndarray, k: int, allowed: np.ndarray | None
    ) -> TopK:
        """Best ``k`` rows per query under the compressed scores (l2: 2⟨q, x̂⟩ − ‖x̂‖²)."""
        m = queries.shape[0]
        top = TopK(m, k)
        if m == 0 or store.n == 0:
            return top
        rotated = self.quantizer.rotation.forward(queries)
        qjl = self.quantizer.qjl
        projected = qjl.project(rotated) if qjl is not None else None
        if self.metric == "l2":
            rotated = 2 * rotated
            projected = None if projected is None else 2 * projected
        if m <= lut_scan.MAX_QUERIES:
            for segment, offset, rows in store.segment_rows(allowed):
                if rows is None:
                    rows = np.arange(segment.count)
                scores = self._lookup.scores(rotated, projected, segment.codes, rows)
                if self.metric == "l2":
                    scores -= self._lookup.squared_norms(segment.codes, rows)
                top.push(scores, offset + rows, slice(None))
            return top
        for block in self._blocks(store, allowed):
            self._score_block(rotated, projected, block, top)
        return top

    def _blocks(self, store: RowStore, allowed: np.ndarray | None) -> Iterator[Block]:
        """Scan work: (codes, start, stop, rows of the block's columns, eligible columns)."""
        block_rows = max(8, _BLOCK_FLOATS // self.quantizer.dim // 8 * 8)
        for segment, offset, local in store.segment_rows(allowed):
            codes, count = segment.codes, segment.count
            if local is None:
                for start in range(0, count, block_rows):
                    stop = min(count, start + block_rows)
                    yield Block(codes, start, stop, np.arange(offset + start, offset + stop))
                continue
            groups = np.unique(local // 8)
            if groups.size * 8 * 2 < count:  # sparse: gather the 8-row groups holding them
                codes, row_map = segment.gather_groups(groups)
                eligible = np.searchsorted(row_map, local)
                row_map = row_map + offset
                count = row_map.size
            else:
                row_map, eligible = np.arange(offset, offset + count), local
            for start in range(0, count, block_rows):
                stop = min(count, start + block_rows)
                lo, hi = np.searchsorted(eligible, (start, stop))
                if hi > lo:
                    cols = eligible[lo:hi] - start
                    yield Block(codes, start, stop, row_map[start:stop][cols], cols)

    def _score_block(
        self, rotated: np.ndarray, projected: np.ndarray | None, block: Block, top: TopK
    ) -> None:
        codes, start, stop, cols = block.codes, block.start, block.stop, block.columns
        decoded = self.quantizer.decode_rotated(codes, start, stop)
        if cols is not None:
            decoded = decoded[cols]
        shift = np.einsum("ij,ij->i", decoded, decoded) if self.metric == "l2" else None
        for q0 in range(0, rotated.shape[0], _QUERY_BLOCK):
            q = slice(q0, q0 + _QUERY_BLOCK)
            scores = rotated[q] @ decoded.T
            if projected is not None:
                correction = self.quantizer.qjl_correction(projected[q], codes, start, stop)
                scores += correction if cols is None else correction[:, cols]
            if shift is not None:
                scores -= shift
            top.push(scores, block.rows, q)

    def rerank(self, store: RowStore, queries: np.ndarray, top: TopK, k: int) -> TopK:
        """Exact scores of the candidates in ``top`` from the float16 copies; the best k.
        Candidates are gathered a few queries at a time (bounded memory)."""
        m, depth = top.rows.shape
        step = max(1, _RERANK_FLOATS // (depth * self.quantizer.dim))
        exact = np.full((m, depth), -np.inf, np.float32)
        for q0 in range(0, m, step):
            rows = top.rows[q0 : q0 + step]
            vectors = store.vectors_of(rows.reshape(-1)).reshape(*rows.shape, -1)
            q = queries[q0 : q0 + step]
            if self.metric == "l2":
                diff = vectors - q[:, None, :]
                scores = -np.einsum("mrd,mrd->mr", diff, diff)
            else:
                scores = np.einsum("mrd,md->mr", vectors, q)
            exact[q0 : q0 + step] = np.where(rows >= 0, scores, -np.inf)
        best = TopK(m, k)
        best.push(exact, top.rows, slice(None))
        return best

    def reconstruct(self, store: RowStore, rows: np.ndarray) -> np.ndarray:
        """Decoded vectors of index ``rows``: (len(rows), dim) float32, original domain."""
        out = np.empty((rows.size, self.quantizer.dim), np.float32)
        for segment, picked, local in store.by_segment(rows):
            groups, where = np.unique(local // 8, return_inverse=True)
            codes, _ = segment.gather_groups(groups)
            decoded = self.quantizer.decode_rotated(codes, 0, codes.n)
            out[picked] = decoded[where * 8 + local % 8]
        return self.quantizer.rotation.inverse(out)
