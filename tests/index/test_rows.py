"""Row-store helpers."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from rotaquant.index.rows import distinct_rows


@settings(max_examples=200, deadline=None)
@given(
    arrays(np.int64, st.integers(0, 300), elements=st.integers(-1, 5_000)),
)
def test_distinct_rows_are_the_sorted_distinct_present_rows(rows):
    """Both paths (dense: a mask; sparse: a sort) give np.unique of the rows that are present
    (−1 marks an absent id), as int64."""
    got = distinct_rows(rows)
    np.testing.assert_array_equal(got, np.unique(rows[rows >= 0]))
    assert got.dtype == np.int64


def test_distinct_rows_dense_and_sparse_paths():
    rng = np.random.default_rng(0)
    dense = rng.integers(-1, 1_000, 5_000)  # many repeats: the mask path
    sparse = np.array([10**9, 5, -1, 5, 3], np.int64)  # far apart: the sort path
    for rows in (dense, sparse, np.array([-1, -1], np.int64), np.empty(0, np.int64)):
        np.testing.assert_array_equal(distinct_rows(rows), np.unique(rows[rows >= 0]))
