"""Past one machine: ``ShardedIndex``, a VectorIndex sharded over Ray actors (the
``[distributed]`` extra)."""

from .sharded import (
    SearchResult,
    ShardedIndex,
    ShardRestartedError,
    ShardUnavailableError,
    shard_of,
)

__all__ = [
    "SearchResult",
    "ShardRestartedError",
    "ShardUnavailableError",
    "ShardedIndex",
    "shard_of",
]
