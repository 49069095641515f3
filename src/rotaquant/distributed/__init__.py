"""Past one machine: ``ShardedIndex``, a VectorIndex sharded over Ray actors (the
``[distributed]`` extra)."""

from .manifest import shard_of
from .sharded import (
    SearchResult,
    ShardedIndex,
    ShardRestartedError,
    ShardUnavailableError,
)

__all__ = [
    "SearchResult",
    "ShardRestartedError",
    "ShardUnavailableError",
    "ShardedIndex",
    "shard_of",
]
