"""The LangChain store: langchain-tests' standard suite, then what it does not cover."""

import numpy as np
import pytest

pytest.importorskip("langchain_core")
pytest.importorskip("langchain_tests")

from langchain_core.embeddings import DeterministicFakeEmbedding  # noqa: E402
from langchain_tests.integration_tests import VectorStoreIntegrationTests  # noqa: E402

from rotaquant.integrations.langchain import RotaQuantVectorStore  # noqa: E402


class TestStandardSuite(VectorStoreIntegrationTests):
    """The standard suite's 6-d fake embeddings: 8 bits keep its exact rankings."""

    @pytest.fixture
    def vectorstore(self):
        yield RotaQuantVectorStore(self.get_embeddings(), bits=8)


class TestStandardSuiteOnDisk(VectorStoreIntegrationTests):
    """The same suite with every add and delete written through to a directory."""

    @pytest.fixture
    def vectorstore(self, tmp_path):
        yield RotaQuantVectorStore(self.get_embeddings(), bits=8, path=tmp_path / "store")


class TestStandardSuiteWithLists(VectorStoreIntegrationTests):
    """The suite on an index with inverted lists (nlist=2: a few documents stay in the exact
    training buffer, as the suite's stores are small)."""

    @pytest.fixture
    def vectorstore(self):
        yield RotaQuantVectorStore(self.get_embeddings(), bits=8, nlist=2)


EMBEDDING = DeterministicFakeEmbedding(size=32)


def test_inverted_lists_through_index_options(tmp_path):
    """nlist= reaches the VectorIndex; past 30 documents per list it trains, filters still
    give the best k of the allowed set, and a reopened store keeps the lists."""
    path = tmp_path / "store"
    texts = [f"text {i}" for i in range(300)]
    metadatas = [{"parity": ["even", "odd"][i % 2]} for i in range(300)]
    store = RotaQuantVectorStore.from_texts(texts, EMBEDDING, metadatas, path=path, nlist=4)
    index = store.store.index
    assert index.nlist == 4 and index.trained and index.list_sizes.sum() == 300
    found = store.similarity_search("text 12", k=3, filter={"parity": "even"})
    assert found[0].page_content == "text 12"
    assert all(doc.metadata["parity"] == "even" for doc in found)
    reopened = RotaQuantVectorStore.load(path, EMBEDDING)
    assert reopened.store.index.nlist == 4
    assert reopened.similarity_search("text 12", k=3) == store.similarity_search("text 12", k=3)


def _store(**kwargs):
    texts = [f"text {i}" for i in range(40)]
    metadatas = [
        {"i": i, "parity": ["even", "odd"][i % 2], "tags": [f"t{i % 3}"]} for i in range(40)
    ]
    ids = [f"id{i}" for i in range(40)]
    return RotaQuantVectorStore.from_texts(texts, EMBEDDING, metadatas, ids=ids, **kwargs)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ({"parity": "odd"}, {i for i in range(40) if i % 2}),
        ({"i": {"$in": [3, 5, 7]}}, {3, 5, 7}),
        (
            {"i": {"$nin": [3, 5]}, "parity": {"$eq": "odd"}},
            {i for i in range(40) if i % 2} - {3, 5},
        ),
        ({"parity": {"$ne": "odd"}}, set(range(0, 40, 2))),
        ({"i": {"$gte": 30, "$lt": 33}}, {30, 31, 32}),
        ({"$or": [{"i": 1}, {"i": 2}]}, {1, 2}),
        ({"$not": {"i": {"$lt": 38}}}, {38, 39}),
        ({"missing": {"$ne": 1}}, set(range(40))),  # an absent key matches $ne
    ],
)
def test_dict_filters_become_the_allow_set(spec, expected):
    """Every matching document can come back (k above the match count returns all of them,
    no over-fetching and post-filtering), and nothing else."""
    store = _store()
    found = store.similarity_search("text 3", k=40, filter=spec)
    assert {doc.metadata["i"] for doc in found} == expected


def test_callable_filter_and_scores_and_relevance():
    store = _store()
    found = store.similarity_search_with_score("text 7", k=3, filter=lambda d: d.metadata["i"] > 5)
    assert found[0][0].id == "id7" and found[0][1] == pytest.approx(1.0, abs=0.02)
    assert all(doc.metadata["i"] > 5 for doc, _ in found)
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    relevance = store.similarity_search_with_relevance_scores("text 7", k=3)
    assert all(0 <= r <= 1 for _, r in relevance)


def test_mmr_and_retriever():
    store = _store()
    picked = store.max_marginal_relevance_search(
        "text 4", k=5, fetch_k=20, filter={"parity": "even"}
    )
    assert len(picked) == 5 and picked[0].id == "id4"
    assert all(doc.metadata["parity"] == "even" for doc in picked)
    retriever = store.as_retriever(search_kwargs={"k": 2})
    assert [doc.id for doc in retriever.invoke("text 9")][0] == "id9"


def test_unsupported_filters_and_bad_input_change_nothing():
    store = _store()
    with pytest.raises(ValueError, match="unsupported filter operator"):
        store.similarity_search("text 1", filter={"i": {"$regex": "1"}})
    with pytest.raises(ValueError, match="unsupported filter operator"):
        store.similarity_search("text 1", filter={"$xor": []})
    wrong = RotaQuantVectorStore(DeterministicFakeEmbedding(size=16))
    wrong.store = store.store
    with pytest.raises(ValueError, match="32-dimensional"):
        wrong.add_texts(["another"], ids=["id0"])
    with pytest.raises(ValueError, match="JSON"):
        store.add_texts(["x"], [{"bad": object()}], ids=["id1"])
    with pytest.raises(ValueError, match="repeated"):
        store.add_texts(["a", "b"], ids=["same", "same"])
    assert len(store.store) == 40
    assert store.get_by_ids(["id0", "id1"])[1].page_content == "text 1"


def test_a_store_on_disk_survives_reopening_and_an_interrupted_write(tmp_path, monkeypatch):
    path = tmp_path / "store"
    store = _store(path=path)
    before = store.similarity_search("text 12", k=4)
    reopened = RotaQuantVectorStore.load(path, EMBEDDING)
    assert reopened.similarity_search("text 12", k=4) == before
    again_by_path = RotaQuantVectorStore(EMBEDDING, path=path)  # a path holding a store opens it
    assert again_by_path.similarity_search("text 12", k=4) == before
    with pytest.raises(ValueError, match="holds a store made with"):
        RotaQuantVectorStore(EMBEDDING, bits=2, path=path)
    # the SQLite commit of an overwrite fails after the index file got the new vector
    db = reopened.store._db

    class Failing:
        def __getattr__(self, name):
            return getattr(db, name)

        def executemany(self, *args):
            raise OSError("disk full")

        def __enter__(self):
            return db.__enter__()

        def __exit__(self, *exc):
            return db.__exit__(*exc)

    monkeypatch.setattr(reopened.store, "_db", Failing())
    with pytest.raises(OSError, match="disk full"):
        reopened.add_texts(["replacement"], [{"i": -1}], ids=["id12"])
    monkeypatch.undo()
    again = RotaQuantVectorStore.load(path, EMBEDDING)
    assert again.get_by_ids(["id12"])[0].page_content == "text 12"  # the old document, intact
    assert len(again.store.index) == 40  # the orphan vector was removed at load
    assert again.similarity_search("text 12", k=4) == before


def test_in_memory_store_saves_and_loads(tmp_path):
    store = _store(bits=3)
    store.delete(["id0", "id1", "nope"])
    store.save(tmp_path / "saved")
    loaded = RotaQuantVectorStore.load(tmp_path / "saved", EMBEDDING)
    assert len(loaded.store) == 38 and loaded.get_by_ids(["id0"]) == []
    query = np.asarray(EMBEDDING.embed_query("text 20"))
    assert loaded.similarity_search_by_vector(query, k=3) == store.similarity_search_by_vector(
        query, k=3
    )


def test_save_into_another_directory_swaps_it_whole(tmp_path):
    store = _store()
    target = tmp_path / "copy"
    store.save(target)
    store.delete(["id5"])
    store.save(target)  # replaces the earlier copy
    assert RotaQuantVectorStore.load(target, EMBEDDING).get_by_ids(["id5"]) == []
    # a crash between the two renames leaves only the previous directory: load opens it
    target.rename(tmp_path / ".copy.previous")
    with pytest.warns(RuntimeWarning, match="previous save"):
        recovered = RotaQuantVectorStore.load(target, EMBEDDING)
    assert len(recovered.store) == 39
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep me")
    with pytest.raises(ValueError, match="other files"):
        store.save(tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep me"


def test_one_class_two_names_and_0_1_positions_warn():
    from rotaquant.integrations.langchain import RotaQuantLangChainStore

    assert RotaQuantVectorStore is RotaQuantLangChainStore  # LangChain's <backend>VectorStore
    with pytest.warns(DeprecationWarning, match="pass metric by keyword"):
        store = RotaQuantVectorStore(EMBEDDING, 4, "l2")
    assert store.store.config.metric == "l2"


def test_a_misspelt_search_option_is_refused_not_ignored():
    store = _store()
    for call in (
        lambda: store.similarity_search("text 1", k=2, filters={"parity": "odd"}),
        lambda: store.similarity_search_with_score("text 1", k=2, filters={"parity": "odd"}),
        lambda: store.max_marginal_relevance_search("text 1", k=2, filters={"parity": "odd"}),
        lambda: store.similarity_search_by_vector(EMBEDDING.embed_query("a"), k=2, where=1),
    ):
        with pytest.raises(TypeError, match="unexpected keyword"):
            call()
    with pytest.raises(TypeError, match="filter="):
        store.similarity_search("text 1", filters={"parity": "odd"})
    retriever = store.as_retriever(
        search_type="similarity_score_threshold", search_kwargs={"score_threshold": 0.0, "k": 2}
    )
    assert len(retriever.invoke("text 1")) <= 2  # LangChain's own options still pass
