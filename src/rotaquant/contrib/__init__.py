"""Not the library: what its demo, tests and benchmarks run on (like ``faiss.contrib``).

- ``data``: real models and data that install offline from package registries (GloVe, WordNet
  glosses, Python's docs, all-MiniLM-L6-v2 embeddings, SmolLM2 and Gemma-3 from GGUF files);
- ``embeddings``: ``MiniLMEmbeddings``, LangChain embeddings from the packaged MiniLM;
- ``demo``, ``eval_kv``, ``bench_runner``: the ``rotaquant demo | eval-kv | bench`` commands.

Nothing in ``codec``, ``index``, ``kv``, ``integrations`` or ``distributed`` imports this.
"""
