"""Running top-k per query over blocks of scores (the scan's selection step)."""

from __future__ import annotations

import numpy as np


class TopK:
    """Running best ``k`` (score, row) per query; unsorted until ``sorted()``."""

    def __init__(self, m: int, k: int):
        self.k = k
        self.scores = np.full((m, k), -np.inf, np.float32)
        self.rows = np.full((m, k), -1, np.int64)

    def push(self, scores: np.ndarray, rows: np.ndarray, queries: slice) -> None:
        """Offer ``scores`` (mq, c) of candidates ``rows`` ((c,) or (mq, c)) for queries."""
        best_s, best_r = self.scores[queries], self.rows[queries]
        k = self.k
        if scores.shape[1] > 4 * k and np.isneginf(best_s[:, -1]).any():
            # early on nearly everything qualifies: pre-select the block's own top k
            keep = np.argpartition(-scores, k - 1, axis=1)[:, :k]
            scores = np.take_along_axis(scores, keep, axis=1)
            rows = np.take_along_axis(
                np.broadcast_to(rows, keep.shape[:1] + rows.shape[-1:]), keep, axis=1
            )
        qi, ci = _above(scores, best_s.min(axis=1))
        if qi.size == 0:
            return
        touched = np.unique(qi)
        cand_r = rows[ci] if rows.ndim == 1 else rows[qi, ci]
        all_q = np.concatenate((np.repeat(touched, k), qi))
        all_s = np.concatenate((best_s[touched].reshape(-1), scores[qi, ci]))
        all_r = np.concatenate((best_r[touched].reshape(-1), cand_r))
        order = np.lexsort((-all_s, all_q))
        first = np.searchsorted(all_q[order], touched)
        pick = order[first[:, None] + np.arange(k)]
        best_s[touched] = all_s[pick]
        best_r[touched] = all_r[pick]

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        order = np.argsort(-self.scores, axis=1, kind="stable")
        return (
            np.take_along_axis(self.scores, order, axis=1),
            np.take_along_axis(self.rows, order, axis=1),
        )


def _above(scores: np.ndarray, threshold: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, column) of the entries of ``scores`` (m, c) above their row's ``threshold`` (m,).

    Finds the set bits of the comparison mask through 64-bit words: one pass over an eighth
    as many elements as ``np.nonzero`` would scan, then only the few non-zero words (once
    thresholds are tight, few entries qualify).
    """
    flat = (scores > threshold[:, None]).reshape(-1)
    whole = flat.size // 8 * 8
    words = np.flatnonzero(flat[:whole].view(np.uint64))
    positions = (words[:, None] * 8 + np.arange(8)).reshape(-1)
    positions = positions[flat[positions]]
    if whole < flat.size:
        positions = np.concatenate((positions, whole + np.flatnonzero(flat[whole:])))
    return np.divmod(positions, scores.shape[1])
