"""``MiniLMEmbeddings``: LangChain ``Embeddings`` from the packaged all-MiniLM-L6-v2 (384-d,
unit norm, CPU): real embeddings offline, for examples and benchmarks (the ``[embed]`` and
``[langchain]`` extras)."""

from __future__ import annotations

try:
    from langchain_core.embeddings import Embeddings
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "rotaquant.contrib.embeddings needs LangChain: pip install 'rotaquant[langchain]'"
    ) from error

from . import data


class MiniLMEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 sentence embeddings (``contrib.data.minilm_model``) as LangChain
    ``Embeddings``."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        model = data.minilm_model()
        return model.encode(list(texts), batch_size=64, normalize_embeddings=True).tolist()

    def embed_query(self, text: str) -> list[float]:
        return self.embed_documents([text])[0]
