"""The native searcher's query transform (csrc/query_map.cpp, matmul.h) against numpy: the
matmul kernel of every variant, and Searcher.search against the scan of queries rotated and
projected in numpy (the rotation kinds, dense and factored, prod mode, the l2 factor)."""

import numpy as np
import pytest

import rotaquant as rq
from rotaquant import _core, _native
from rotaquant.index.search import Searcher

VARIANTS = _native.variants()


@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize(
    ("rows", "n", "p"), [(1, 3, 1), (5, 7, 8), (9, 24, 24), (4, 32, 33), (3, 50, 50), (8, 64, 70)]
)
def test_matmul_matches_numpy(variant, rows, n, p):
    rng = np.random.default_rng(rows * 100 + n + p)
    x = rng.standard_normal((rows, n)).astype(np.float32)
    w = rng.standard_normal((n, p)).astype(np.float32)
    with _native.using_variant(variant):
        got = _core.matmul(x, w)
    np.testing.assert_allclose(got, x.astype(np.float64) @ w, rtol=1e-5, atol=1e-5)


def test_matmul_checks_shapes():
    with pytest.raises(ValueError, match="do not fit"):
        _core.matmul(np.zeros((2, 3), np.float32), np.zeros((4, 2), np.float32))
    assert _core.matmul(np.zeros((0, 3), np.float32), np.zeros((3, 2), np.float32)).shape == (0, 2)
    # a result whose element count wraps around (2**44 * 2**20 = 2**64): refused, not written
    rows = np.lib.stride_tricks.as_strided(np.zeros(1, np.float32), (2**44, 0), (0, 4))
    with pytest.raises(ValueError, match="too large"):
        _core.matmul(rows, np.zeros((0, 2**20), np.float32))


@pytest.mark.parametrize(
    ("dim", "bits", "rotation", "mode", "metric"),
    [
        (768, 4, "hadamard", "mse", "ip"),  # factored (24 x 32), two rounds
        (50, 2.5, "hadamard", "mse", "l2"),  # dense below 512
        (96, 3, "haar", "prod", "ip"),  # dense + QJL projection
        (600, 2, "hadamard", "prod", "l2"),  # factored + projection + l2 factor
    ],
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_native_transform_equals_the_numpy_one(dim, bits, rotation, mode, metric, variant):
    rng = np.random.default_rng(dim)
    quantizer = rq.TurboQuantizer(dim, bits, mode=mode, rotation=rotation, seed=3)
    searcher = Searcher(quantizer, metric)
    index = rq.VectorIndex(dim, bits, metric=metric, mode=mode, rotation=rotation, seed=3)
    index.add(rng.standard_normal((700, dim)).astype(np.float32))
    queries = rng.standard_normal((9, dim)).astype(np.float32)
    segments = [s.scan_view(offset, None) for s, offset, _ in index._rows.segment_rows(None)]
    rotated = quantizer.rotation.forward(queries).astype(np.float32)
    projected = None if quantizer.qjl is None else quantizer.qjl.project(rotated).astype(np.float32)
    if metric == "l2":
        rotated *= 2
        projected = None if projected is None else projected * 2
    with _native.using_variant(variant):
        rows, scores, *_ = searcher._native.search(segments, queries, 10)
        want_rows, want_scores, *_ = _core.scan(searcher._codec, segments, rotated, projected, 10)
    np.testing.assert_allclose(scores, want_scores, rtol=1e-4, atol=1e-4)
    # rows equal except where two scores tie within float rounding
    differ = rows != want_rows
    assert differ.mean() < 0.05


def test_searcher_refuses_what_does_not_fit():
    quantizer = rq.TurboQuantizer(64, 4, seed=0)
    codec = Searcher(quantizer, "ip")._codec
    dense = np.eye(64, dtype=np.float32)
    with pytest.raises(ValueError, match="rotation"):
        _core.Searcher(codec, 64, ("spiral", dense), None, 1.0)
    with pytest.raises(ValueError, match="shape"):
        _core.Searcher(codec, 64, ("dense", np.eye(63, dtype=np.float32)), None, 1.0)
    with pytest.raises(ValueError, match="a must divide dim"):
        signs = np.ones((2, 64), np.float32)
        _core.Searcher(
            codec, 64, ("factored", signs, np.eye(5, dtype=np.float32), dense), None, 1.0
        )
    with pytest.raises(ValueError, match="finite"):
        bad = dense.copy()
        bad[0, 0] = np.nan
        _core.Searcher(codec, 64, ("dense", bad), None, 1.0)
    with pytest.raises(ValueError, match="scale"):
        _core.Searcher(codec, 64, ("dense", dense), None, 0.0)
    with pytest.raises(ValueError, match="projection goes with a projected"):  # no QJL stream
        _core.Searcher(codec, 64, ("dense", dense), dense, 1.0)
    searcher = _core.Searcher(codec, 64, ("dense", dense), None, 1.0)
    with pytest.raises(ValueError, match="dimension"):
        searcher.search([], np.zeros((1, 63), np.float32), 5)
    with pytest.raises(ValueError, match="finite"):
        searcher.search([], np.full((1, 64), np.inf, np.float32), 5)


def test_queries_that_overflow_once_rotated_are_refused():
    index = rq.VectorIndex(64, 4)
    index.add(np.random.default_rng(0).standard_normal((100, 64)).astype(np.float32))
    query = np.full((1, 64), 3e38, np.float32)  # finite, but the rotation sums them
    with pytest.raises(ValueError, match="too large"):
        index.search(query, k=3)


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("variant", VARIANTS)
def test_tiny_and_huge_queries_rank_like_unit_ones(bits, variant):
    """Pair tables and weights are built relative to the query's own scale."""
    rng = np.random.default_rng(bits)
    index = rq.VectorIndex(96, bits)
    index.add(rng.standard_normal((2000, 96)).astype(np.float32))
    queries = rng.standard_normal((4, 96)).astype(np.float32)
    with _native.using_variant(variant):
        scores, ids = index.search(queries, k=10)
        for factor in (1e-30, 1e30):
            scaled_scores, scaled_ids = index.search(queries * np.float32(factor), k=10)
            np.testing.assert_array_equal(scaled_ids, ids)
            np.testing.assert_allclose(scaled_scores, scores * factor, rtol=1e-4)
