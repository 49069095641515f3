"""SearchResult: one result type, unpacking and indexing as FAISS's (scores, ids) pair."""

import pickle

import numpy as np

import rotaquant as rq


def test_unpacks_indexes_and_names_the_pair():
    index = rq.VectorIndex(16, 4)
    index.add(np.random.default_rng(0).standard_normal((50, 16), dtype=np.float32))
    result = index.search(np.random.default_rng(1).standard_normal((3, 16), dtype=np.float32), 5)
    assert isinstance(result, rq.SearchResult) and isinstance(result, tuple)
    scores, ids = result
    assert result[1] is ids and result.ids is ids and result.scores is scores
    assert scores.shape == ids.shape == (3, 5) and scores.dtype == np.float32
    assert ids.dtype == np.int64 and len(result) == 2
    assert result.missing == () and not result.partial


def test_pickles_with_its_missing_shards():
    result = rq.SearchResult(np.zeros((1, 2), np.float32), np.full((1, 2), -1), missing=[1])
    again = pickle.loads(pickle.dumps(result))
    assert again.missing == (1,) and again.partial
    assert np.array_equal(again.ids, result.ids)
    assert "missing=(1,)" in repr(result)
