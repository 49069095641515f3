"""VectorIndex: a compressed, exhaustive-scan vector index on the TurboQuant codec.

Modules: ``vector_index`` (the public class: mutation and persistence), ``search`` (the native
scan, allow-lists, re-ranking), ``rows`` (segments, ids and the id map as one store),
``segment`` (fixed-capacity blocks of codes in the native block layout), ``idmap`` (id → row
hash table), ``topk`` (running selection for re-ranking), ``file_format`` (the on-disk
container), ``legacy`` (reading format-1 files), ``locking`` (readers–writer lock).
"""

from .vector_index import METRICS, VectorIndex

__all__ = ["METRICS", "VectorIndex"]
