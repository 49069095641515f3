"""VectorIndex: a compressed, exhaustive-scan vector index on the TurboQuant codec.

Modules: ``vector_index`` (the public class: mutation and persistence), ``search`` (the scan:
blocks, scoring, filtering, re-ranking), ``lut_scan`` (the lookup-table kernel for a few
queries), ``rows`` (segments, ids and the id map as one store), ``segment`` (fixed-capacity
blocks of codes), ``idmap`` (id → row hash table), ``topk`` (running selection),
``file_format`` (the on-disk format), ``locking`` (readers–writer lock).
"""

from .vector_index import METRICS, VectorIndex

__all__ = ["METRICS", "VectorIndex"]
