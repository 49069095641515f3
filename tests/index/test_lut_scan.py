"""Lookup-table scoring equals decode + matrix product, wherever it applies."""

import numpy as np
import pytest

import rotaquant as rq
from rotaquant.index import lut_scan

from ..conftest import unit_gaussian


@pytest.mark.parametrize(
    ("dim", "bits", "mode"),
    [
        (64, 1, "mse"),
        (64, 2, "mse"),
        (40, 4, "mse"),
        (16, 8, "mse"),
        (64, 1.5, "mse"),
        (50, 2, "mse"),  # rows of 12.5 bytes: 4-bit units at odd nibbles
        (50, 3, "mse"),  # 6-bit units straddling bytes
        (64, 3.5, "mse"),
        (50, 4.5, "mse"),
        (30, 7, "mse"),
        (49, 1, "mse"),  # 7 values per unit
        (64, 3, "prod"),
        (50, 5, "prod"),
    ],
)
def test_lookup_scores_equal_decoded_products(dim, bits, mode):
    q = rq.TurboQuantizer(dim, bits, mode=mode, seed=2)
    codes = q.encode(unit_gaussian(300, dim, seed=1) * 3)
    queries = unit_gaussian(3, dim, seed=4)
    rotated = q.rotation.forward(queries)
    projected = q.qjl.project(rotated) if q.qjl is not None else None
    rows = np.array([0, 5, 7, 8, 150, 298, 299])
    got = lut_scan.LookupScorer(q).scores(rotated, projected, codes, rows)
    expected = q.inner_product(queries, codes)[:, rows]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)


def test_squared_norms():
    q = rq.TurboQuantizer(50, 2.5, norm_correction=True)
    x = unit_gaussian(100, 50) * 5
    codes = q.encode(x)
    rows = np.arange(0, 100, 3)
    got = lut_scan.LookupScorer(q).squared_norms(codes, rows)[0]
    np.testing.assert_allclose(got, (q.decode(codes)[rows] ** 2).sum(1), rtol=1e-4)
    np.testing.assert_allclose(got, 25, rtol=2e-3)  # norm correction: the input's length


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_single_and_batched_paths_agree(metric):
    """m <= MAX_QUERIES takes the lookup path, larger batches the BLAS path."""
    index = rq.VectorIndex(32, 4, metric=metric)
    index.add(unit_gaussian(5000, 32) * 2)
    index.remove(np.arange(0, 5000, 7))
    queries = unit_gaussian(lut_scan.MAX_QUERIES + 1, 32, seed=8)
    batched = index.search(queries, 10, allow=np.arange(0, 5000, 3))
    for i in range(len(queries)):
        single = index.search(queries[i : i + 1], 10, allow=np.arange(0, 5000, 3))
        np.testing.assert_array_equal(single[1][0], batched[1][i])
        np.testing.assert_allclose(single[0][0], batched[0][i], rtol=1e-4, atol=1e-4)
