"""Files written by an earlier version (tests/fixtures, format version 1) still load and give
the same results."""

from pathlib import Path

import numpy as np
import pytest

import rotaquant as rq

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="module")
def expected():
    with np.load(FIXTURES / "v1_expected.npz") as f:
        return dict(f)


def test_codes_blob_v1_mse_decodes_as_before(expected):
    codes = rq.Codes.from_bytes((FIXTURES / "codes_v1_mse.rqc").read_bytes())
    assert (codes.n, codes.config.dim, codes.config.bits, codes.config.seed) == (20, 48, 3.5, 5)
    decoded = rq.TurboQuantizer.from_config(codes.config).decode(codes)
    np.testing.assert_allclose(decoded, expected["codes_mse_decoded"], rtol=1e-5, atol=1e-6)


def test_codes_blob_v1_prod_scores_as_before(expected):
    codes = rq.Codes.from_bytes((FIXTURES / "codes_v1_prod.rqc").read_bytes())
    assert (codes.config.mode, codes.config.rotation, codes.config.norm_dtype) == (
        "prod",
        "haar",
        "float32",
    )
    scores = rq.TurboQuantizer.from_config(codes.config).inner_product(
        expected["codes_prod_queries"], codes
    )
    np.testing.assert_allclose(scores, expected["codes_prod_ip"], rtol=1e-5, atol=1e-5)


def test_index_v1_cosine_with_append_commit_searches_as_before(expected):
    idx = rq.VectorIndex.load(FIXTURES / "index_v1_cosine.rq")
    assert len(idx) == 130 and idx.metric == "cosine" and idx.keep_vectors
    q = expected["queries"]
    scores, ids = idx.search(q, k=7)
    np.testing.assert_array_equal(ids, expected["cosine_ids"])
    np.testing.assert_allclose(scores, expected["cosine_scores"], rtol=1e-5, atol=1e-6)
    scores, ids = idx.search(q, k=7, rerank=20)
    np.testing.assert_array_equal(ids, expected["cosine_rr_ids"])
    np.testing.assert_allclose(scores, expected["cosine_rr_scores"], rtol=1e-5, atol=1e-6)
    scores, ids = idx.search(q[:2], k=4, allow=np.arange(1000, 1030))
    np.testing.assert_array_equal(ids, expected["cosine_allow_ids"])


def test_index_v1_l2_prod_searches_as_before(expected):
    idx = rq.VectorIndex.load(FIXTURES / "index_v1_l2_prod.rq")
    assert len(idx) == 67 and idx.config.mode == "prod" and idx.bits == 2.5
    assert 0 not in idx and 3 in idx
    scores, ids = idx.search(expected["l2_queries"], k=5)
    np.testing.assert_array_equal(ids, expected["l2_ids"])
    np.testing.assert_allclose(scores, expected["l2_scores"], rtol=1e-5, atol=1e-5)
