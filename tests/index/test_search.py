"""The index's search through the native scan equals the codec's float path (decode, matrix
product, QJL correction) on real data: same ids, same scores, for every metric and width."""

import numpy as np
import pytest

import rotaquant as rq
from rotaquant import _native

from ..conftest import unit_gaussian

CASES = [
    (4, "ip", "mse"),
    (3, "ip", "mse"),
    (2, "cosine", "mse"),
    (3.5, "ip", "mse"),
    (4, "l2", "mse"),
    (3, "ip", "prod"),
]


def float_path(index, base, queries, k):
    """Top-k by float scores computed without the native scan: ⟨q, x̂⟩ with x̂ decoded by
    ``reconstruct`` (numpy), or the codec's ``inner_product`` (decode, matrix product, QJL
    correction) in prod mode."""
    if index.metric == "cosine":
        queries = queries / np.linalg.norm(queries, axis=1, keepdims=True)
    if index.config.mode == "prod":
        scores = index.quantizer.inner_product(queries, index.quantizer.encode(base))
    else:
        decoded = index.reconstruct(index.ids).astype(np.float64)
        scores = queries.astype(np.float64) @ decoded.T
        if index.metric == "l2":
            scores = 2 * scores - np.einsum("ij,ij->i", decoded, decoded)[None, :]
    scores = np.asarray(scores, np.float64)
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    return order, np.take_along_axis(scores, order, axis=1)


def assert_same_top_k(index, base, queries, k, got_scores, got_ids):
    ids, reference = float_path(index, base, queries, k)
    if index.metric == "l2":
        reference = np.einsum("ij,ij->i", queries, queries)[:, None] - reference
    np.testing.assert_allclose(got_scores, reference, rtol=1e-4, atol=1e-5)
    differ = got_ids != ids
    # a differing id may only be a near-tie (same score within float rounding)
    assert differ.mean() < 0.002, differ.mean()


@pytest.mark.parametrize(("bits", "metric", "mode"), CASES)
def test_glove_search_equals_the_float_path(glove, bits, metric, mode):
    base, queries = glove[:15_000], glove[15_000:15_060]
    index = rq.VectorIndex(50, bits, metric=metric, mode=mode, seed=1)
    index.add(base)
    for variant in _native.variants():
        with _native.using_variant(variant):
            scores, ids = index.search(queries, k=10)
        assert_same_top_k(index, base, queries, 10, scores, ids)


@pytest.mark.parametrize("bits", [2, 4])
def test_minilm_search_equals_the_float_path(minilm, bits):
    base, queries = minilm[:-40], minilm[-40:]
    index = rq.VectorIndex(384, bits, metric="cosine", seed=2)
    index.add(base)
    scores, ids = index.search(queries, k=20)
    assert_same_top_k(index, base, queries, 20, scores, ids)
    one_scores, one_ids = index.search(queries[:1], k=20)  # one query: the same kernel
    np.testing.assert_array_equal(one_ids, ids[:1])
    np.testing.assert_allclose(one_scores, scores[:1], rtol=1e-6)


@pytest.mark.parametrize("k", [10**12, 2**62])
def test_a_result_that_cannot_fit_in_memory_is_refused_naming_k(k):
    index = rq.VectorIndex(8, 3)
    index.add(unit_gaussian(5, 8))
    with pytest.raises(ValueError, match=f"k={k}"):
        index.search(np.ones((3, 8)), k)
