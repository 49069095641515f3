"""TopK: the running selection equals a sort of everything offered."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant.index.topk import TopK


@settings(max_examples=80, deadline=None)
@given(
    st.integers(1, 6),
    st.integers(1, 12),
    st.lists(st.integers(0, 300), min_size=1, max_size=6),
    st.integers(0, 2**32),
    st.booleans(),
)
def test_equals_full_sort(m, k, widths, seed, ties):
    rng = np.random.default_rng(seed)
    top = TopK(m, k)
    all_scores, all_rows, offset = [], [], 0
    for width in widths:
        scores = rng.standard_normal((m, width)).astype(np.float32)
        if ties:
            scores = np.round(scores)
        rows = np.arange(offset, offset + width)
        top.push(scores, rows, slice(None))
        all_scores.append(scores)
        all_rows.append(np.broadcast_to(rows, scores.shape))
        offset += width
    scores, rows = top.sorted()
    everything = np.concatenate(all_scores, axis=1)
    expected = -np.sort(-everything, axis=1)[:, :k]
    kept = min(k, offset)
    np.testing.assert_array_equal(scores[:, :kept], expected)
    assert (rows[:, kept:] == -1).all() and np.isneginf(scores[:, kept:]).all()
    chosen = np.take_along_axis(everything, rows[:, :kept], axis=1)
    np.testing.assert_array_equal(chosen, scores[:, :kept])  # rows point at their scores
    assert all(len(set(r)) == kept for r in rows[:, :kept].tolist())  # no row twice
