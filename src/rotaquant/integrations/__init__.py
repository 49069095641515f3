"""Framework adapters over the vector index: ``langchain`` (LangChain ``VectorStore``) and
``llama_index`` (LlamaIndex ``BasePydanticVectorStore``), each its own extra; both keep
documents beside the index with ``document_store`` and filter with ``filters``."""
