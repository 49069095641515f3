"""DocumentStore, the core both framework stores sit on: its index options (checked at once,
without a dim yet), allow/deny by string id, and the 0.1 spellings."""

import numpy as np
import pytest

from rotaquant import IndexConfig
from rotaquant.integrations.document_store import DocumentStore

VECTORS = np.random.default_rng(0).standard_normal((6, 20), dtype=np.float32)
IDS = [f"d{i}" for i in range(6)]


def _store(**options):
    store = DocumentStore(4, **options)
    store.add(VECTORS, [f"text {i}" for i in range(6)], ids=IDS)
    return store


def _found(results):
    return [[record.id for record, _ in row] for row in results]


def test_options_are_an_index_config_checked_before_any_vector():
    store = DocumentStore(2.1, metric="ip", seed=3)  # 2.1 bits: realisable at dim 20, not 16
    assert store.config == IndexConfig(dim=None, bits=2.1, metric="ip", seed=3)
    store.add(VECTORS, ["a"] * 6)
    assert store.index.config == store.config.with_dim(20)
    with pytest.raises(ValueError, match="cannot be realised exactly at dim=16"):
        DocumentStore(2.1).add(VECTORS[:, :16], ["a"] * 6)
    for bad in ({"metric": "dot"}, {"mode": "fast"}, {"nprobe": 4}, {"keep_vectors": "yes"}):
        with pytest.raises(ValueError):
            DocumentStore(4, **bad)


def test_allow_and_deny_take_string_ids():
    store = _store()
    allowed = _found(store.search(VECTORS[:2], 6, allow=["d1", "d3", "nope"]))
    assert all(set(row) == {"d1", "d3"} for row in allowed)
    denied = _found(store.search(VECTORS[:2], 6, deny=["d0", "d1"]))
    assert all(set(row) == {"d2", "d3", "d4", "d5"} for row in denied)
    both = _found(store.search(VECTORS[:1], 6, allow=["d1", "d2"], deny=["d2"]))
    assert both == [["d1"]]


def test_0_1_spellings_warn_and_still_work():
    store = _store()
    with pytest.warns(DeprecationWarning, match="allow="):
        old = _found(store.search(VECTORS[:1], 6, ids=["d4"]))
    assert old == [["d4"]]
    with pytest.warns(DeprecationWarning, match="pass metric by keyword"):
        assert DocumentStore(4, "l2").config.metric == "l2"
    with pytest.raises(TypeError, match="allow="):
        store.search(VECTORS[:1], 6, ids=["d4"], allow=["d4"])


def test_open_compares_whole_configurations(tmp_path):
    path = tmp_path / "store"
    DocumentStore(4, path=path, seed=0).add(VECTORS, ["a"] * 6)
    again = DocumentStore.open(4, path=path)  # seed=0 given or not: the same configuration
    assert len(again) == 6
    again.close()
    with pytest.raises(ValueError, match="holds a store made with"):
        DocumentStore.open(4, path=path, seed=1)
