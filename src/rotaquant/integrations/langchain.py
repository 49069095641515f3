"""LangChain vector store on rotaquant: ``RotaQuantLangChainStore`` (the ``[langchain]``
extra), also importable as ``RotaQuantVectorStore``, LangChain's naming.

>>> from rotaquant.integrations.langchain import RotaQuantVectorStore
>>> store = RotaQuantVectorStore.from_texts(texts, embedding, bits=4)   # doctest: +SKIP
>>> store.similarity_search("query", k=4, filter={"source": {"$in": ["a", "b"]}})  # doctest: +SKIP

Vectors live compressed in a :class:`~rotaquant.VectorIndex` (the dimension comes from the
first embeddings), documents and metadata in SQLite beside it (``path``: a directory, written
through on every add and delete; see ``document_store``). Filters are a dict (``{"k": v}``,
``$eq $ne $gt $gte $lt $lte $in $nin``, ``$and $or $not``) or a callable taking a
``Document``; either becomes the scan's ``allow`` set, so ``k`` results come back whenever
``k`` documents match. Scores of ``similarity_search_with_score``: cosine similarity
(``metric="cosine"``, default), inner product (``"ip"``) or squared distance (``"l2"``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from typing import Any

import numpy as np

try:
    from langchain_core.documents import Document
    from langchain_core.embeddings import Embeddings
    from langchain_core.vectorstores import VectorStore
    from langchain_core.vectorstores.utils import maximal_marginal_relevance
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "rotaquant.integrations.langchain needs LangChain: pip install 'rotaquant[langchain]'"
    ) from error

from .._deprecation import keyword_only_after
from . import filters
from .document_store import DocumentStore, Record

Filter = dict | Callable[[Document], bool] | None


class RotaQuantLangChainStore(VectorStore):
    """A LangChain ``VectorStore`` holding TurboQuant-compressed vectors.

    Args:
        embedding: the LangChain ``Embeddings`` that turns texts (and queries) into vectors.
        bits: bits per vector coordinate (1..8, or 2.5 / 3.5).
        metric: ``"cosine"`` (default), ``"ip"`` or ``"l2"``.
        path: a directory to keep the store in (created, or reopened when it holds one made
            with the same options; every add/delete is durable), or None (in memory;
            ``save(path)`` writes it, ``load(path, embedding)`` reads it).
        index_options: the other fields of :class:`~rotaquant.IndexConfig` (``seed``,
            ``keep_vectors``, ...), for the :class:`~rotaquant.VectorIndex` underneath.
    """

    @keyword_only_after(2, ("metric", "path"))  # the 0.1 positional order
    def __init__(
        self,
        embedding: Embeddings,
        bits: float = 4,
        *,
        metric: str = "cosine",
        path: str | os.PathLike | None = None,
        **index_options: Any,
    ):
        self._embedding = embedding
        self.store = DocumentStore.open(bits, metric=metric, path=path, **index_options)

    @property
    def embeddings(self) -> Embeddings:
        return self._embedding

    # ------------------------------------------------------------------ writing
    def add_texts(
        self,
        texts: Iterable[str],
        metadatas: list[dict] | None = None,
        *,
        ids: list[str | None] | None = None,
        **kwargs: Any,
    ) -> list[str]:
        """Embed and store ``texts``; an id already stored is overwritten. Returns the ids."""
        texts = list(texts)
        if not texts:
            return []
        vectors = self._embedding.embed_documents(texts)
        return self.store.add(vectors, texts, metadatas, ids)

    def delete(self, ids: list[str] | None = None, **kwargs: Any) -> bool:
        """Delete ``ids`` (unknown ids are ignored), or every document when ``ids`` is None."""
        self.store.delete(ids)
        return True

    def get_by_ids(self, ids: Sequence[str], /) -> list[Document]:
        """The documents of ``ids`` that exist (missing ids are skipped)."""
        return [_document(record) for record in self.store.get(list(ids))]

    # ------------------------------------------------------------------ searching
    def similarity_search(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        _no_other_options(kwargs, "similarity_search")
        return [doc for doc, _ in self.similarity_search_with_score(query, k, filter)]

    def similarity_search_with_score(
        self, query: str, k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[tuple[Document, float]]:
        _no_other_options(kwargs, "similarity_search_with_score")
        vector = self._embedding.embed_query(query)
        return self.similarity_search_with_score_by_vector(vector, k, filter)

    def similarity_search_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None, **kwargs: Any
    ) -> list[Document]:
        _no_other_options(kwargs, "similarity_search_by_vector")
        return [doc for doc, _ in self.similarity_search_with_score_by_vector(embedding, k, filter)]

    def similarity_search_with_score_by_vector(
        self, embedding: list[float], k: int = 4, filter: Filter = None
    ) -> list[tuple[Document, float]]:
        """(document, score) pairs, best first (see the module docstring for scores)."""
        return [(_document(r), score) for r, score in self._search(embedding, k, filter)]

    def max_marginal_relevance_search(
        self,
        query: str,
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        _no_other_options(kwargs, "max_marginal_relevance_search")
        vector = self._embedding.embed_query(query)
        return self.max_marginal_relevance_search_by_vector(vector, k, fetch_k, lambda_mult, filter)

    def max_marginal_relevance_search_by_vector(
        self,
        embedding: list[float],
        k: int = 4,
        fetch_k: int = 20,
        lambda_mult: float = 0.5,
        filter: Filter = None,
        **kwargs: Any,
    ) -> list[Document]:
        """``fetch_k`` candidates from the index, ``k`` of them chosen by MMR on their decoded
        vectors."""
        _no_other_options(kwargs, "max_marginal_relevance_search_by_vector")
        found = self._search(embedding, fetch_k, filter)
        if not found:
            return []
        records = [record for record, _ in found]
        vectors = self.store.vectors_of(records)
        chosen = maximal_marginal_relevance(
            np.asarray(embedding, np.float32), list(vectors), lambda_mult, k
        )
        return [_document(records[i]) for i in chosen]

    def _select_relevance_score_fn(self) -> Callable[[float], float]:
        """Scores → [0, 1]: cosine (s + 1) / 2; l2 1 − √d / √2 (unit vectors); ip as LangChain."""
        if self.store.metric == "cosine":
            return lambda score: (score + 1.0) / 2.0
        if self.store.metric == "l2":
            return lambda score: self._euclidean_relevance_score_fn(max(score, 0.0) ** 0.5)
        return lambda score: self._max_inner_product_relevance_score_fn(-score)

    def _search(self, embedding, k: int, filter: Filter) -> list[tuple[Record, float]]:
        if filter is None:
            return self.store.search(embedding, k)[0]
        if callable(filter):
            return self.store.search(embedding, k, predicate=lambda r: filter(_document(r)))[0]
        return self.store.search(embedding, k, where=filters.from_mongo_dict(filter))[0]

    # ------------------------------------------------------------------ construction, files
    @classmethod
    def from_texts(
        cls,
        texts: list[str],
        embedding: Embeddings,
        metadatas: list[dict] | None = None,
        *,
        ids: list[str] | None = None,
        **kwargs: Any,
    ) -> RotaQuantLangChainStore:
        """A new store (``kwargs``: ``bits``, ``metric``, ``path``, index options) holding
        ``texts``."""
        store = cls(embedding, **kwargs)
        store.add_texts(texts, metadatas, ids=ids)
        return store

    def save(self, path: str | os.PathLike | None = None) -> None:
        """Write the store to ``path`` (a directory; default: its own ``path``)."""
        self.store.save(path)

    @classmethod
    def load(cls, path: str | os.PathLike, embedding: Embeddings) -> RotaQuantLangChainStore:
        """Open a store saved under ``path``; adds and deletes are written there."""
        store = cls.__new__(cls)
        store._embedding = embedding
        store.store = DocumentStore.load(path)
        return store


def _document(record: Record) -> Document:
    return Document(page_content=record.text or "", metadata=record.metadata, id=record.id)


RotaQuantVectorStore = RotaQuantLangChainStore  # LangChain's naming: <backend>VectorStore


def __getattr__(name: str):
    if name == "MiniLMEmbeddings":  # the 0.1 home of a demo helper
        from .._deprecation import warn
        from ..contrib.embeddings import MiniLMEmbeddings

        warn(
            "rotaquant.integrations.langchain.MiniLMEmbeddings moved to "
            "rotaquant.contrib.embeddings.MiniLMEmbeddings"
        )
        return MiniLMEmbeddings
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def _no_other_options(options: dict[str, Any], method: str) -> None:
    """Refuse keyword arguments the search does not take (LangChain's signatures let any
    through: a misspelt ``filters=`` would otherwise be ignored and return unfiltered hits)."""
    if options:
        names = ", ".join(repr(name) for name in sorted(options))
        hint = " (the metadata filter is filter=)" if any("filt" in n for n in options) else ""
        raise TypeError(f"{method}() got unexpected keyword argument(s) {names}{hint}")
