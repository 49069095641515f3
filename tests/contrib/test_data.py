"""The packaged real data sets of rotaquant.contrib.data that the benchmarks read."""

import os
import subprocess
import sys

import numpy as np
import pytest

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


@pytest.mark.slow
def test_the_first_model_conversion_says_so_once_and_logs_no_progress_bars(tmp_path):
    """A fresh cache directory, stderr redirected (not a terminal): one line says what the
    one-time step is, and no carriage-return progress bars reach the log."""
    pytest.importorskip("transformers")
    packaged(data.smollm2)  # skips unless the model package is installed
    script = "from rotaquant.contrib import data; data.smollm2(); data.smollm2()"
    env = {**os.environ, "ROTAQUANT_CACHE": str(tmp_path)}
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=600
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "\r" not in done.stderr, done.stderr[-500:]
    assert done.stderr.count("converting the packaged") == 1
    assert (tmp_path / "smollm2-135m-instruct-f32" / "model.safetensors").exists()
