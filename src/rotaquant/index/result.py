"""``SearchResult``: what every search returns (``VectorIndex``, ``ShardedIndex``)."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np


class SearchResult(tuple):
    """``(scores, ids)``, FAISS's shapes: scores float32 (m, k), ids int64 (m, k), best first,
    id −1 padding. Unpacks and indexes as that pair (``scores, ids = result``; ``result[1]`` is
    ``ids``), and also names them (``result.scores``, ``result.ids``).

    ``missing``: the shards that did not answer a ``ShardedIndex`` search with
    ``partial_ok=True`` (always empty on one machine); ``partial`` is True when any did not.
    ``restarted``: the shards that answered after a restart that lost nothing (they reloaded
    their saved file, which held all they had been sent; a ``RuntimeWarning`` says so too).
    """

    missing: tuple[int, ...]
    restarted: tuple[int, ...]

    def __new__(
        cls,
        scores: np.ndarray,
        ids: np.ndarray,
        missing: Iterable[int] = (),
        restarted: Iterable[int] = (),
    ):
        result = super().__new__(cls, (scores, ids))
        result.missing, result.restarted = tuple(missing), tuple(restarted)
        return result

    def __getnewargs__(self):  # pickling (Ray, multiprocessing) keeps the shard fields
        return (self[0], self[1], self.missing, self.restarted)

    @property
    def scores(self) -> np.ndarray:
        return self[0]

    @property
    def ids(self) -> np.ndarray:
        return self[1]

    @property
    def partial(self) -> bool:
        return bool(self.missing)

    def __repr__(self) -> str:
        extra = f", missing={self.missing}" if self.missing else ""
        extra += f", restarted={self.restarted}" if self.restarted else ""
        return f"SearchResult(scores={self[0]!r}, ids={self[1]!r}{extra})"
