"""The IVF coarse quantizer (rotaquant.index.coarse): k-means that finds known clusters,
spherical centroids, empty lists split, probes against brute force, bad input."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant.index.coarse import CoarseQuantizer


def _brute_closeness(x: np.ndarray, c: np.ndarray, metric: str) -> np.ndarray:
    """(n, lists): larger is nearer, every pair computed directly."""
    if metric == "l2":
        return -((x[:, None, :] - c[None]) ** 2).sum(-1)
    return x @ c.T


def _blobs(count: int, per: int, dim: int, spread: float, seed: int = 0):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((count, dim)).astype(np.float32) * 10
    labels = np.repeat(np.arange(count), per)
    x = centers[labels] + spread * rng.standard_normal((count * per, dim)).astype(np.float32)
    return x, labels, centers


def test_separated_blobs_get_one_list_each():
    """Eight far-apart blobs, eight lists: each blob lands in exactly one list, every list is
    used, and each centroid is its blob's mean."""
    x, labels, centers = _blobs(8, 200, 16, 0.5)
    coarse = CoarseQuantizer(16, 8, "l2", seed=3).train(x)
    assigned = coarse.assign(x)
    lists_of_blob = [set(assigned[labels == b]) for b in range(8)]
    assert all(len(s) == 1 for s in lists_of_blob)
    assert len(set.union(*lists_of_blob)) == 8
    for blob, lists in enumerate(lists_of_blob):
        mean = x[labels == blob].mean(0)
        np.testing.assert_allclose(coarse.centroids[lists.pop()], mean, atol=1e-4)
    assert coarse.nbytes == 8 * 16 * 4


@pytest.mark.parametrize("metric", ["ip", "cosine"])
def test_inner_product_metrics_train_spherical_centroids(metric):
    """Directions, not lengths: the same directions at lengths 1..10 fall in the same list,
    and the centroids are unit vectors."""
    x, labels, _ = _blobs(6, 150, 12, 0.3, seed=1)
    x *= np.random.default_rng(2).uniform(1, 10, (len(x), 1)).astype(np.float32)
    coarse = CoarseQuantizer(12, 6, metric, seed=0).train(x)
    np.testing.assert_allclose(np.linalg.norm(coarse.centroids, axis=1), 1.0, rtol=1e-5)
    assigned = coarse.assign(x)
    assert all(len(set(assigned[labels == b])) == 1 for b in range(6))


def test_training_is_seeded():
    x, _, _ = _blobs(20, 50, 8, 3.0, seed=4)
    a = CoarseQuantizer(8, 16, "l2", seed=7).train(x).centroids
    b = CoarseQuantizer(8, 16, "l2", seed=7).train(x).centroids
    c = CoarseQuantizer(8, 16, "l2", seed=8).train(x).centroids
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_more_lists_than_distinct_points_leaves_no_list_empty_of_a_centroid():
    """Three distinct points repeated, five lists: training finishes with finite centroids,
    every point is assigned to a list whose centroid is (nearly) that point."""
    points = np.array([[0, 0, 0, 0], [5, 0, 0, 0], [0, 5, 0, 0]], dtype=np.float32)
    x = np.repeat(points, 40, axis=0)
    coarse = CoarseQuantizer(4, 5, "l2", seed=0).train(x)
    assert np.isfinite(coarse.centroids).all()
    nearest = coarse.centroids[coarse.assign(x)]
    np.testing.assert_allclose(nearest, x, atol=0.05)


@pytest.mark.parametrize("metric", ["ip", "l2"])
def test_probe_returns_the_nearest_lists_nearest_first(metric):
    x, _, _ = _blobs(30, 40, 10, 2.0, seed=5)
    coarse = CoarseQuantizer(10, 24, metric, seed=1).train(x)
    queries = np.random.default_rng(6).standard_normal((50, 10)).astype(np.float32) * 5
    lists, dots = coarse.probe(queries, 5)
    c = coarse.centroids
    closeness = _brute_closeness(queries, c, metric)
    expected = np.argsort(-closeness, axis=1, kind="stable")[:, :5]
    np.testing.assert_array_equal(lists, expected)
    np.testing.assert_allclose(dots, np.take_along_axis(queries @ c.T, lists, 1), rtol=1e-5)
    assert coarse.probe(queries, 1000)[0].shape == (50, 24)  # nprobe past nlist: every list


def test_bad_input_says_what_is_wrong():
    coarse = CoarseQuantizer(4, 10, "l2")
    with pytest.raises(ValueError, match="not trained"):
        coarse.assign(np.zeros((1, 4), np.float32))
    with pytest.raises(ValueError, match="cannot train nlist=10"):
        coarse.train(np.zeros((9, 4), np.float32))
    with pytest.raises(ValueError, match="dimension 4"):
        coarse.train(np.zeros((50, 5), np.float32))
    bad = np.zeros((50, 4), np.float32)
    bad[7, 2] = np.nan
    with pytest.raises(ValueError, match="NaN or infinite values"):
        coarse.train(bad)
    with pytest.raises(ValueError, match="metric"):
        CoarseQuantizer(4, 10, "hamming")
    with pytest.raises(ValueError, match="nlist"):
        CoarseQuantizer(4, 0, "l2")
    coarse.train(np.random.default_rng(0).standard_normal((50, 4)))
    with pytest.raises(ValueError, match="nprobe"):
        coarse.probe(np.zeros((1, 4), np.float32), 0)


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(8, 120),
    nlist=st.integers(1, 8),
    metric=st.sampled_from(["ip", "cosine", "l2"]),
    seed=st.integers(0, 2**16),
)
def test_every_vector_is_assigned_its_closest_centroid(n, nlist, metric, seed):
    x = np.random.default_rng(seed).standard_normal((n, 6)).astype(np.float32)
    coarse = CoarseQuantizer(6, nlist, metric, seed=seed).train(x)
    assigned = coarse.assign(x)
    closeness = _brute_closeness(x, coarse.centroids, metric)
    best = closeness.max(1)
    chosen = np.take_along_axis(closeness, assigned[:, None], 1)[:, 0]
    np.testing.assert_allclose(chosen, best, rtol=1e-4, atol=1e-4)
