"""The LlamaIndex store, end to end with llama-index-core's own index and retriever."""

import hashlib
import re

import numpy as np
import pytest

pytest.importorskip("llama_index.core")

from llama_index.core import StorageContext, VectorStoreIndex, load_index_from_storage  # noqa: E402
from llama_index.core.embeddings import BaseEmbedding  # noqa: E402
from llama_index.core.schema import NodeRelationship, RelatedNodeInfo, TextNode  # noqa: E402
from llama_index.core.vector_stores.types import (  # noqa: E402
    FilterCondition,
    FilterOperator,
    MetadataFilter,
    MetadataFilters,
    VectorStoreQuery,
)

from rotaquant.integrations.llama_index import RotaQuantVectorStore  # noqa: E402

DIM = 64


class WordHashEmbedding(BaseEmbedding):
    """Deterministic bag-of-words embedding: texts sharing words are close."""

    def _vector(self, text: str) -> list[float]:
        v = np.zeros(DIM)
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.sha256(word.encode()).digest()
            v[digest[0] % DIM] += 1.0 if digest[1] % 2 else -1.0
        return (v / max(np.linalg.norm(v), 1e-9)).tolist()

    def _get_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    async def _aget_query_embedding(self, query: str) -> list[float]:
        return self._vector(query)

    def _get_text_embedding(self, text: str) -> list[float]:
        return self._vector(text)


TEXTS = {
    "cat": "the cat sat on the warm mat",
    "dog": "a dog barked at the mail carrier",
    "tea": "green tea is brewed with hot water",
    "rain": "rain fell on the roof all night",
    "code": "python code reads files and parses json",
    "ship": "the ship sailed across the cold sea",
}


def _nodes():
    nodes = []
    for i, (name, text) in enumerate(TEXTS.items()):
        node = TextNode(
            text=text, id_=name, metadata={"i": i, "kind": "animal" if i < 2 else "other"}
        )
        node.relationships[NodeRelationship.SOURCE] = RelatedNodeInfo(node_id=f"doc{i // 2}")
        nodes.append(node)
    return nodes


@pytest.fixture
def index():
    store = RotaQuantVectorStore(bits=4)
    context = StorageContext.from_defaults(vector_store=store)
    return VectorStoreIndex(_nodes(), storage_context=context, embed_model=WordHashEmbedding())


def test_inverted_lists_through_index_options():
    store = RotaQuantVectorStore(bits=4, nlist=2)
    context = StorageContext.from_defaults(vector_store=store)
    index = VectorStoreIndex(_nodes(), storage_context=context, embed_model=WordHashEmbedding())
    assert store._store.index.nlist == 2
    found = index.as_retriever(similarity_top_k=1).retrieve("a cat on a mat")
    assert found[0].node.node_id == "cat"


def test_vector_store_index_retrieves_through_the_store(index):
    retriever = index.as_retriever(similarity_top_k=2)
    found = retriever.retrieve("where did the cat sit")
    assert found[0].node.node_id == "cat" and found[0].node.get_content() == TEXTS["cat"]
    assert found[0].score >= found[1].score
    assert found[0].node.metadata == {"i": 0, "kind": "animal"}


def test_filters_node_ids_and_doc_ids(index):
    store = index.vector_store
    query = WordHashEmbedding().get_query_embedding("the cat and the dog")
    animals = MetadataFilters(filters=[MetadataFilter(key="kind", value="animal")])
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=6, filters=animals)
    )
    assert sorted(result.ids) == ["cat", "dog"]
    either = MetadataFilters(
        filters=[
            MetadataFilter(key="i", value=4, operator=FilterOperator.GTE),
            MetadataFilter(key="i", value=[0], operator=FilterOperator.IN),
        ],
        condition=FilterCondition.OR,
    )
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=6, filters=either)
    )
    assert sorted(result.ids) == ["cat", "code", "ship"]
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=6, doc_ids=["doc1"])
    )
    assert sorted(result.ids) == ["rain", "tea"]
    result = store.query(
        VectorStoreQuery(query_embedding=query, similarity_top_k=6, node_ids=["ship"])
    )
    assert result.ids == ["ship"]
    texty = MetadataFilters(
        filters=[MetadataFilter(key="kind", value="NIM", operator="text_match_insensitive")]
    )
    assert {n.node_id for n in store.get_nodes(filters=texty)} == {"cat", "dog"}


def test_delete_ref_doc_nodes_and_clear(index):
    index.delete_ref_doc("doc0")
    store = index.vector_store
    assert {n.node_id for n in store.get_nodes()} == {"tea", "rain", "code", "ship"}
    store.delete_nodes(node_ids=["tea", "unknown"])
    assert len(store.client) == 3
    store.clear()
    assert store.get_nodes() == []


def test_persist_and_load_with_the_storage_context(index, tmp_path):
    index.storage_context.persist(persist_dir=str(tmp_path))
    store = RotaQuantVectorStore.from_persist_dir(str(tmp_path))
    context = StorageContext.from_defaults(vector_store=store, persist_dir=str(tmp_path))
    loaded = load_index_from_storage(context, embed_model=WordHashEmbedding())
    found = loaded.as_retriever(similarity_top_k=1).retrieve("hot green tea")
    assert found[0].node.node_id == "tea"


def test_bad_input_is_refused_and_loses_nothing(index):
    store = index.vector_store
    wrong = TextNode(text="short", id_="cat", embedding=[0.1] * 8)
    with pytest.raises(ValueError, match="64-dimensional"):
        store.add([wrong])
    with pytest.raises(ValueError, match="embedding"):
        store.add([TextNode(text="no vector", id_="x")])
    with pytest.raises(ValueError, match="not supported"):
        store.query(VectorStoreQuery(query_embedding=[0.0] * 63 + [1.0], mode="svm"))
    with pytest.raises(ValueError, match="needs a string"):
        store.get_nodes(
            filters=MetadataFilters(
                filters=[MetadataFilter(key="i", value=1, operator="text_match")]
            )
        )
    assert store.get_nodes(node_ids=["cat"])[0].get_content() == TEXTS["cat"]
    assert len(store.client) == 6


def test_empty_and_not_filters_follow_llama_index(index):
    store = index.vector_store
    assert len(store.get_nodes(filters=MetadataFilters(filters=[]))) == 6  # empty: everything
    store.add([TextNode(text="no kind here", id_="bare", embedding=[0.0] * 63 + [1.0])])
    none_of = MetadataFilters(
        filters=[MetadataFilter(key="kind", value="animal"), MetadataFilter(key="i", value=5)],
        condition=FilterCondition.NOT,
    )  # LlamaIndex: none of them match (a document without the keys matches)
    assert {n.node_id for n in store.get_nodes(filters=none_of)} == {"tea", "rain", "code", "bare"}
    with pytest.raises(ValueError, match="ref_doc_id"):
        store.delete(None)
    assert len(store.client) == 7


def test_one_class_two_names_and_0_1_positions_warn():
    from rotaquant.integrations.llama_index import RotaQuantLlamaIndexStore

    assert RotaQuantVectorStore is RotaQuantLlamaIndexStore  # LlamaIndex's <backend>VectorStore
    assert RotaQuantVectorStore.class_name() == "RotaQuantVectorStore"  # 0.1 storage loads
    with pytest.warns(DeprecationWarning, match="pass metric by keyword"):
        store = RotaQuantVectorStore(4, "ip")
    assert store.client.config.metric == "ip"
