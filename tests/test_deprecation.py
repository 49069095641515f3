"""The 0.1 spellings keep working for one release, each with a DeprecationWarning that says
what to write instead."""

import importlib
import sys

import numpy as np
import pytest

import rotaquant as rq
from rotaquant._deprecation import keyword_only_after

X = np.random.default_rng(0).standard_normal((40, 16), dtype=np.float32)


def test_vector_index_positional_options():
    with pytest.warns(DeprecationWarning, match=r"pass metric by keyword \(metric=\.\.\.\)"):
        old = rq.VectorIndex(16, 4, "l2")
    assert old.config == rq.VectorIndex(16, 4, metric="l2").config
    with pytest.warns(DeprecationWarning, match="metric, mode, seed"):
        assert rq.VectorIndex(16, 3, "ip", "prod", 5).config.seed == 5


def test_search_positional_allow():
    index = rq.VectorIndex(16, 4)
    index.add(X)
    with pytest.warns(DeprecationWarning, match="pass allow by keyword"):
        scores, ids = index.search(X[:2], 3, [1, 2, 3])
    assert set(ids.ravel()) <= {1, 2, 3}


def test_quantizer_positional_options():
    with pytest.warns(DeprecationWarning, match="pass mode, rotation"):
        q = rq.TurboQuantizer(16, 3, "prod", "haar")
    assert (q.config.mode, q.config.rotation) == ("prod", "haar")
    with pytest.raises(TypeError, match="multiple values"):
        rq.TurboQuantizer(16, 3, "prod", mode="mse")


def test_data_moved_to_contrib():
    sys.modules.pop("rotaquant.data", None)
    with pytest.warns(DeprecationWarning, match="rotaquant.contrib.data"):
        module = importlib.import_module("rotaquant.data")
    from rotaquant.contrib import data

    assert module.glove_50d is data.glove_50d


def test_minilm_embeddings_moved_to_contrib():
    pytest.importorskip("langchain_core")
    from rotaquant.contrib.embeddings import MiniLMEmbeddings
    from rotaquant.integrations import langchain

    with pytest.warns(DeprecationWarning, match="rotaquant.contrib.embeddings"):
        assert langchain.MiniLMEmbeddings is MiniLMEmbeddings


def test_the_decorator_keeps_the_signature_and_refuses_too_many_values():
    class Thing:
        @keyword_only_after(1, ("b", "c"))
        def __init__(self, a, *, b=0, c=0):
            self.values = (a, b, c)

    assert "b=0" in str(__import__("inspect").signature(Thing.__init__))
    assert Thing(1, b=2).values == (1, 2, 0)
    with pytest.warns(DeprecationWarning):
        assert Thing(1, 2, 3).values == (1, 2, 3)
    with pytest.raises(TypeError, match="3 positional values for its keyword-only options"):
        Thing(1, 2, 3, 4)
