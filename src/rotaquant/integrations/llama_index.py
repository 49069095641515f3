"""LlamaIndex vector store on rotaquant: ``RotaQuantLlamaIndexStore`` (the ``[llamaindex]``
extra), also importable as ``RotaQuantVectorStore``, LlamaIndex's naming.

>>> from llama_index.core import StorageContext, VectorStoreIndex            # doctest: +SKIP
>>> from rotaquant.integrations.llama_index import RotaQuantVectorStore
>>> store = RotaQuantVectorStore(bits=4)                                     # doctest: +SKIP
>>> index = VectorStoreIndex(nodes, storage_context=StorageContext.from_defaults(
...     vector_store=store))                                                 # doctest: +SKIP

Nodes' embeddings live compressed in a :class:`~rotaquant.VectorIndex` (dimension from the
first node), the nodes themselves (text, metadata, relationships) in SQLite beside it
(``document_store``). ``query`` takes ``MetadataFilters`` (==, !=, >, >=, <, <=, in, nin,
any, all, contains, text_match, text_match_insensitive, is_empty; and / or / not, nested),
``node_ids`` and ``doc_ids``; they become the scan's ``allow`` set. Similarities: cosine
(``metric="cosine"``, default), inner product or squared distance (``"l2"``).
``persist(persist_path)`` writes a directory named after ``persist_path`` without its suffix
(``storage/default__vector_store``), which ``from_persist_dir(persist_dir)`` opens.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

try:
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.schema import BaseNode, MetadataMode
    from llama_index.core.vector_stores.types import (
        BasePydanticVectorStore,
        FilterCondition,
        MetadataFilter,
        MetadataFilters,
        VectorStoreQuery,
        VectorStoreQueryMode,
        VectorStoreQueryResult,
    )
    from llama_index.core.vector_stores.utils import (
        metadata_dict_to_node,
        node_to_metadata_dict,
    )
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "rotaquant.integrations.llama_index needs LlamaIndex: pip install 'rotaquant[llamaindex]'"
    ) from error

from .._deprecation import keyword_only_after
from . import filters
from .document_store import DocumentStore, Record

NAMESPACE = "default"
STORE_NAME = "vector_store"
_OPERATORS = {
    "==": "eq", "!=": "ne", ">": "gt", ">=": "gte", "<": "lt", "<=": "lte", "in": "in",
    "nin": "nin", "any": "any", "all": "all", "contains": "contains",
    "text_match": "text_match", "text_match_insensitive": "text_match_insensitive",
    "is_empty": "is_empty",
}  # fmt: skip


class RotaQuantLlamaIndexStore(BasePydanticVectorStore):
    """A LlamaIndex vector store holding TurboQuant-compressed embeddings.

    Args:
        bits: bits per coordinate (1..8, or 2.5 / 3.5). metric: ``"cosine"``, ``"ip"``, ``"l2"``.
        path: a directory to keep the store in (every add/delete durable), or None (memory;
            ``persist`` writes it). index_options: the other fields of
            :class:`~rotaquant.IndexConfig`, for the :class:`~rotaquant.VectorIndex` underneath.
    """

    stores_text: bool = True
    flat_metadata: bool = False
    bits: float = 4
    metric: str = "cosine"
    path: str | None = None
    _store: DocumentStore = PrivateAttr()

    @keyword_only_after(1, ("metric", "path"))  # the 0.1 positional order
    def __init__(
        self,
        bits: float = 4,
        *,
        metric: str = "cosine",
        path: str | os.PathLike | None = None,
        **index_options: Any,
    ):
        super().__init__(bits=bits, metric=metric, path=None if path is None else str(path))
        self._store = DocumentStore.open(bits, metric=metric, path=path, **index_options)

    @classmethod
    def class_name(cls) -> str:
        return "RotaQuantVectorStore"  # the name 0.1 serialized: storage contexts still load

    @property
    def client(self) -> DocumentStore:
        """The document store underneath (index, SQLite)."""
        return self._store

    # ------------------------------------------------------------------ writing
    def add(self, nodes: list[BaseNode], **kwargs: Any) -> list[str]:
        """Store nodes with their embeddings (a node id already stored is overwritten)."""
        if not nodes:
            return []
        missing = [node.node_id for node in nodes if node.embedding is None]
        if missing:
            raise ValueError(f"nodes without an embedding (e.g. {missing[0]!r}): embed them first")
        payloads, metadatas = [], []
        for node in nodes:
            saved = node_to_metadata_dict(node, remove_text=True, flat_metadata=False)
            payloads.append(json.dumps({k: saved[k] for k in ("_node_content", "_node_type")}))
            metadatas.append(dict(node.metadata))
        return self._store.add(
            [node.get_embedding() for node in nodes],
            [node.get_content(metadata_mode=MetadataMode.NONE) for node in nodes],
            metadatas,
            [node.node_id for node in nodes],
            payloads,
            [node.ref_doc_id for node in nodes],
        )

    def delete(self, ref_doc_id: str, **delete_kwargs: Any) -> None:
        """Delete every node of the source document ``ref_doc_id`` (``clear()`` deletes all)."""
        if not isinstance(ref_doc_id, str):
            raise ValueError(f"ref_doc_id must be a string, got {ref_doc_id!r}")
        self._store.delete(group=ref_doc_id)

    def delete_nodes(
        self,
        node_ids: list[str] | None = None,
        filters: MetadataFilters | None = None,
        **delete_kwargs: Any,
    ) -> None:
        """Delete the nodes of ``node_ids`` and/or matching ``filters`` (unknown ids ignored)."""
        if node_ids is None and filters is None:
            raise ValueError("delete_nodes needs node_ids or filters (clear() deletes all)")
        ids = [record.id for record in self._matching(node_ids, filters)]
        self._store.delete(ids)

    def clear(self) -> None:
        self._store.delete()

    # ------------------------------------------------------------------ reading
    def get_nodes(
        self, node_ids: list[str] | None = None, filters: MetadataFilters | None = None
    ) -> list[BaseNode]:
        return [_node(record) for record in self._matching(node_ids, filters)]

    def query(self, query: VectorStoreQuery, **kwargs: Any) -> VectorStoreQueryResult:
        """Top ``similarity_top_k`` nodes for ``query_embedding`` among those matching
        ``filters``, ``node_ids`` and ``doc_ids`` (an empty list of ids restricts nothing, as
        in LlamaIndex's own stores)."""
        if query.mode != VectorStoreQueryMode.DEFAULT:
            raise ValueError(f"query mode {str(query.mode)!r} is not supported (only default)")
        if query.query_embedding is None:
            raise ValueError("the query has no query_embedding")
        where = None if query.filters is None else _filter(query.filters)
        ids = query.node_ids or None  # [] restricts nothing (as_retriever passes it)
        if query.doc_ids:
            in_docs = [r.id for doc in query.doc_ids for r in self._store.records(group=doc)]
            ids = in_docs if ids is None else [i for i in ids if i in set(in_docs)]
        found = self._store.search(
            query.query_embedding, query.similarity_top_k, where=where, allow=ids
        )
        found = found[0]
        return VectorStoreQueryResult(
            nodes=[_node(record) for record, _ in found],
            similarities=[score for _, score in found],
            ids=[record.id for record, _ in found],
        )

    def _matching(self, node_ids, metadata_filters) -> list[Record]:
        where = None if metadata_filters is None else _filter(metadata_filters)
        if node_ids is None:
            return self._store.records(where)
        records = self._store.get(list(node_ids))
        if where is None:
            return records
        keep = {r.id for r in self._store.records(where)}
        return [r for r in records if r.id in keep]

    # ------------------------------------------------------------------ files
    def persist(self, persist_path: str, fs: Any = None) -> None:
        """Write the store to the directory ``persist_path`` names (its suffix dropped)."""
        _local_only(fs)
        self._store.save(_directory(persist_path))

    @classmethod
    def from_persist_path(cls, persist_path: str, fs: Any = None) -> RotaQuantLlamaIndexStore:
        _local_only(fs)
        store = cls.__new__(cls)
        document_store = DocumentStore.load(_directory(persist_path))
        BasePydanticVectorStore.__init__(
            store, bits=document_store.bits, metric=document_store.metric, path=None
        )
        store._store = document_store
        return store

    @classmethod
    def from_persist_dir(
        cls, persist_dir: str, namespace: str = NAMESPACE, fs: Any = None
    ) -> RotaQuantLlamaIndexStore:
        """The store ``StorageContext.persist(persist_dir)`` wrote for ``namespace``."""
        return cls.from_persist_path(str(Path(persist_dir) / f"{namespace}__{STORE_NAME}"), fs)


def _filter(spec: MetadataFilters | MetadataFilter) -> filters.Filter | None:
    """LlamaIndex filters as a filter tree; None for an empty ``MetadataFilters`` (LlamaIndex:
    match everything). ``NOT`` means that none of its filters match, as in LlamaIndex."""
    if isinstance(spec, MetadataFilter):
        op = spec.operator.value
        if op not in _OPERATORS:
            raise ValueError(f"unsupported filter operator {op!r}")
        return filters.Condition(_OPERATORS[op], spec.key, spec.value)
    parts = tuple(part for part in (_filter(p) for p in spec.filters) if part is not None)
    if not parts:
        return None
    condition = (spec.condition or FilterCondition.AND).value
    if condition == "not":
        inner = parts[0] if len(parts) == 1 else filters.Group("or", parts)
        return filters.Group("not", (inner,))
    return parts[0] if len(parts) == 1 else filters.Group(condition, parts)


def _node(record: Record) -> BaseNode:
    payload = json.loads(record.payload)
    node = metadata_dict_to_node(payload, text=record.text)
    node.metadata = record.metadata
    return node


def _directory(persist_path: str) -> Path:
    path = Path(persist_path)
    return path.with_suffix("") if path.suffix else path


def _local_only(fs: Any) -> None:
    if fs is not None and "local" not in type(fs).__name__.lower():
        raise NotImplementedError("RotaQuantLlamaIndexStore persists to the local file system only")


RotaQuantVectorStore = RotaQuantLlamaIndexStore  # LlamaIndex's naming: <backend>VectorStore
