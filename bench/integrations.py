"""Framework stores on one real corpus (issue 14): bytes held, query latency, recall.

WordNet 3.0 glosses (Debian ``wordnet-base``) embedded with the packaged all-MiniLM-L6-v2
(384-d, unit norm, cached), ``--docs`` of them stored and ``--queries`` other glosses as
queries, in LangChain's ``InMemoryVectorStore`` (exact cosine; the reference for recall),
LangChain-community's ``FAISS`` (flat inner-product index, exact) and
``RotaQuantVectorStore`` at 4 and 2 bits. Embedding time is left out: every store gets the
same precomputed vectors through one lookup ``Embeddings``.

Per store: build seconds; vector bytes (InMemory: the Python lists of floats holding them,
by sys.getsizeof; FAISS: its float32 flat codes, ``ntotal · d · 4``; ours: the VectorIndex's
``nbytes``, codes + norms + ids); "docs MB": everything else the store holds — ours its
SQLite pages, the others what tracemalloc sees them keep beyond the vectors (documents, ids,
any Python-side copies); single-query ``similarity_search_by_vector`` p50 ms at
k = 10, unfiltered and with a metadata filter matching about a tenth of the corpus; recall@10
against InMemory's results.

    python -m bench.integrations [--docs 20000] [--queries 200]

Writes bench/results/integrations.{txt,json}.
"""

from __future__ import annotations

import argparse
import gc
import sys
import time
import tracemalloc

import numpy as np
from langchain_core.embeddings import Embeddings
from langchain_core.vectorstores import InMemoryVectorStore

from rotaquant.contrib import data
from rotaquant.integrations.langchain import RotaQuantVectorStore

from ._common import Column, call_ms, format_table, metadata, publish

COLUMNS: list[Column] = [
    ("store", "store", ""),
    ("build_s", "build s", ".2f"),
    ("vector_mb", "vector MB", ".2f"),
    ("other_mb", "docs MB", ".2f"),
    ("p50_ms", "p50 ms (k=10)", ".3f"),
    ("filtered_p50_ms", "p50 ms filtered", ".3f"),
    ("recall", "recall@10", ".3f"),
]


class Lookup(Embeddings):
    """Precomputed vectors by text (so no store pays for embedding), returned as fresh lists
    as a real model's would be."""

    def __init__(self, texts: list[str], vectors: np.ndarray):
        self.table = dict(zip(texts, vectors, strict=True))

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [self.table[t].tolist() for t in texts]

    def embed_query(self, text: str) -> list[float]:
        return self.table[text].tolist()


def _faiss(texts, embedding, metadatas):
    from langchain_community.vectorstores import FAISS
    from langchain_community.vectorstores.utils import DistanceStrategy

    return FAISS.from_texts(
        texts, embedding, metadatas, distance_strategy=DistanceStrategy.MAX_INNER_PRODUCT
    )


def _built(name, build):
    gc.collect()
    tracemalloc.start()
    start = time.perf_counter()
    store = build()
    seconds = time.perf_counter() - start
    gc.collect()
    traced = tracemalloc.get_traced_memory()[0]  # what the store still holds
    tracemalloc.stop()
    return store, seconds, traced


def _p50(fn, queries) -> float:
    return float(np.median(call_ms(fn, queries)))


def run(docs: int, queries: int) -> list[dict]:
    glosses = data.wordnet_glosses()[20_000 : 20_000 + docs + queries]
    vectors = data.minilm_embeddings(glosses, progress=sys.stderr.isatty())
    texts = glosses[:docs]  # the rest are the queries
    query_vectors = vectors[docs:].tolist()
    metadatas = [{"shard": i % 10} for i in range(docs)]
    embedding = Lookup(glosses, vectors)
    stores = {
        "InMemoryVectorStore": lambda: InMemoryVectorStore.from_texts(texts, embedding, metadatas),
        "FAISS flat (IP)": lambda: _faiss(texts, embedding, metadatas),
        "RotaQuant 4-bit": lambda: RotaQuantVectorStore.from_texts(
            texts, embedding, metadatas, bits=4
        ),
        "RotaQuant 2-bit": lambda: RotaQuantVectorStore.from_texts(
            texts, embedding, metadatas, bits=2
        ),
    }
    dim = vectors.shape[1]
    rows, reference = [], None
    for name, build in stores.items():
        store, seconds, traced = _built(name, build)
        if name.startswith("InMemory"):
            lists = [record["vector"] for record in store.store.values()]
            vector_bytes = sum(sys.getsizeof(v) + sum(map(sys.getsizeof, v)) for v in lists)
            other = traced - vector_bytes

            def filtered(q, store=store):
                return store.similarity_search_by_vector(
                    q, k=10, filter=lambda d: d.metadata["shard"] == 3
                )
        elif name.startswith("FAISS"):
            vector_bytes = store.index.ntotal * dim * 4
            other = traced

            def filtered(q, store=store):
                return store.similarity_search_by_vector(q, k=10, filter={"shard": 3})
        else:
            vector_bytes = store.store.index.nbytes
            other = store.store.nbytes - vector_bytes

            def filtered(q, store=store):
                return store.similarity_search_by_vector(q, k=10, filter={"shard": 3})

        found = [
            [doc.page_content for doc in store.similarity_search_by_vector(q, k=10)]
            for q in query_vectors
        ]
        if reference is None:
            reference = found
        recall = np.mean([len(set(a) & set(b)) / 10 for a, b in zip(found, reference, strict=True)])
        rows.append(
            {
                "store": name,
                "docs": docs,
                "build_s": seconds,
                "vector_mb": vector_bytes / 1e6,
                "other_mb": other / 1e6,
                "p50_ms": _p50(
                    lambda q, s=store: s.similarity_search_by_vector(q, k=10), query_vectors
                ),
                "filtered_p50_ms": _p50(filtered, query_vectors),
                "recall": float(recall),
            }
        )
        print(rows[-1], flush=True)
        del store
    return rows


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args(argv)
    rows = run(args.docs, args.queries)
    table = format_table(rows, COLUMNS)
    title = (
        f"{args.docs:,} WordNet glosses, MiniLM 384-d, {args.queries} single queries; "
        "filtered: metadata shard == 3 (a tenth)"
    )
    print(f"\n{title}\n{table}")
    publish("integrations", {"meta": metadata(), "rows": rows}, f"{title}\n{table}")


if __name__ == "__main__":
    main()
