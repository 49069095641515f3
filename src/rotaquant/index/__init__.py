"""VectorIndex: a compressed, exhaustive-scan vector index on the TurboQuant codec.

Modules: ``vector_index`` (the public class: mutation and persistence), ``config``
(``IndexConfig``, its options), ``result`` (``SearchResult``), ``search`` (the native scan,
allow-lists, re-ranking), ``rows`` (segments, ids and the id map as one store), ``segment``
(fixed-capacity blocks of codes in the native block layout), ``idmap`` (id → row hash table),
``topk`` (running selection for re-ranking), ``validation`` (argument checks), ``file_format``
(the on-disk container), ``file_guard`` (one writer per file, watching mapped files),
``legacy`` (reading format-1 files), ``locking`` (readers–writer lock).
"""

from .config import METRICS, IndexConfig
from .file_guard import FileChangedError
from .result import SearchResult
from .vector_index import VectorIndex

__all__ = ["METRICS", "FileChangedError", "IndexConfig", "SearchResult", "VectorIndex"]
