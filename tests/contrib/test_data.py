"""The packaged real data sets of rotaquant.contrib.data that the benchmarks read."""

import numpy as np

from rotaquant.contrib import data

from ..conftest import packaged


def test_wordnet_texts_are_distinct_real_texts_in_a_stable_order():
    texts = packaged(data.wordnet_texts)
    glosses = data.wordnet_glosses()
    assert len(texts) > 250_000  # glosses + examples + synonym lists
    assert len(set(texts)) == len(texts)
    assert texts[: len(glosses)] == glosses  # glosses first, in file order
    rest = texts[len(glosses) :]
    assert all(texts) and min(len(t) for t in rest) >= 1
    assert texts[:1000] == data.wordnet_texts(1000)


def test_mpnet_embeddings_are_unit_768_d_and_cached():
    texts = ["a small brown dog", "a little brown puppy", "the stock market fell sharply"]
    vectors = packaged(data.mpnet_embeddings, texts)
    assert vectors.shape == (3, 768) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1, atol=1e-5)
    similar, unrelated = vectors[0] @ vectors[1], vectors[0] @ vectors[2]
    assert similar > unrelated + 0.3  # real sentence embeddings, not noise
    assert list(data.cache_dir().glob("mpnet-3-*.npy"))
    np.testing.assert_array_equal(data.mpnet_embeddings(texts), vectors)  # from the cache
