"""IdMap: external integer id → row, a vectorized open-addressing hash table.

The table holds only row numbers (int32, ``-1`` empty, ``-2`` deleted); keys are compared
against the caller's row → id array, so the map costs 4 bytes per slot (8–16 bytes per id at
the load factors kept here, ≤ 1/2) instead of a Python dict's ~100. Every operation works on
a whole batch of ids at once with numpy: a batch runs one vectorized step per probe, and with
linear probing at load ≤ 1/2 probe sequences are short.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

_EMPTY = -1
_DELETED = -2
_MULTIPLIER = np.uint64(0x9E3779B97F4A7C15)  # Fibonacci hashing
MAX_ROWS = np.iinfo(np.int32).max - 1


class IdMap:
    """Maps ids (int64 values ≥ 0) to rows ``0..n-1``.

    Args:
        ids_of_rows: returns the id stored at each of the given rows (int64 array in, int64
            array out); the map never stores ids itself.
    """

    def __init__(self, ids_of_rows: Callable[[np.ndarray], np.ndarray], capacity: int = 16):
        self._ids_of_rows = ids_of_rows
        self._table = np.full(_capacity_for(capacity), _EMPTY, np.int32)
        self._used = 0  # live entries
        self._deleted = 0  # tombstones

    @property
    def nbytes(self) -> int:
        return int(self._table.nbytes)

    def __len__(self) -> int:
        return self._used

    # ------------------------------------------------------------------ queries
    def find(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (int64 (n,)); ``-1`` where a key is absent."""
        return self._probe(np.asarray(keys, np.int64))[0]

    # ------------------------------------------------------------------ updates
    def insert(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Add ``keys`` → ``rows``. The keys must be distinct and absent (callers check)."""
        keys = np.asarray(keys, np.int64)
        rows = np.asarray(rows, np.int64)
        if self._used + self._deleted + keys.size > self._table.size // 2:
            self._rebuild(self._used + keys.size)  # re-inserts live entries, drops tombstones
        self._place(keys, rows)
        self._used += keys.size

    def delete(self, keys: np.ndarray) -> None:
        """Remove ``keys`` (all present: callers check)."""
        rows, slots = self._probe(np.asarray(keys, np.int64))
        if (rows < 0).any():
            raise KeyError("IdMap.delete: some keys are absent")
        self._table[slots] = _DELETED
        self._used -= slots.size
        self._deleted += slots.size

    def move(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Point present ``keys`` at new ``rows``."""
        found, slots = self._probe(np.asarray(keys, np.int64))
        if (found < 0).any():
            raise KeyError("IdMap.move: some keys are absent")
        self._table[slots] = np.asarray(rows, np.int64)

    def reset(self, n_rows: int) -> None:
        """Forget everything and map rows ``0..n_rows-1`` to their ids."""
        self._table = np.full(_capacity_for(2 * n_rows), _EMPTY, np.int32)
        self._used = self._deleted = 0
        if n_rows:
            rows = np.arange(n_rows, dtype=np.int64)
            self._place(self._ids_of_rows(rows), rows)
        self._used = n_rows

    # ------------------------------------------------------------------ internals
    def _slots(self, keys: np.ndarray) -> np.ndarray:
        shift = np.uint64(64 - (self._table.size.bit_length() - 1))
        return ((keys.view(np.uint64) * _MULTIPLIER) >> shift).astype(np.int64)

    def _probe(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(row, slot) of each key; row −1 (slot undefined) when absent."""
        rows = np.full(keys.size, -1, np.int64)
        slots = self._slots(keys)
        pending = np.arange(keys.size)
        mask = self._table.size - 1
        while pending.size:
            here = slots[pending]
            stored = self._table[here].astype(np.int64)
            hit = stored >= 0
            hit[hit] = self._ids_of_rows(stored[hit]) == keys[pending[hit]]
            rows[pending[hit]] = stored[hit]
            pending = pending[~hit & (stored != _EMPTY)]
            slots[pending] = (slots[pending] + 1) & mask
        return rows, slots

    def _place(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Insert into free slots (empty or deleted); batch collisions resolved per step."""
        slots = self._slots(keys)
        pending = np.arange(keys.size)
        mask = self._table.size - 1
        while pending.size:
            here = slots[pending]
            free = self._table[here] < 0
            candidates = pending[free]
            taken, first = np.unique(slots[candidates], return_index=True)
            winners = candidates[first]
            reused = int(np.count_nonzero(self._table[taken] == _DELETED))
            self._table[taken] = rows[winners]
            self._deleted -= reused
            placed = np.zeros(keys.size, bool)
            placed[winners] = True
            pending = pending[~placed[pending]]
            slots[pending] = (slots[pending] + 1) & mask

    def _rebuild(self, live_after: int) -> None:
        live = self._table[self._table >= 0].astype(np.int64)
        self._table = np.full(_capacity_for(2 * live_after), _EMPTY, np.int32)
        self._deleted = 0
        if live.size:
            self._place(self._ids_of_rows(live), live)


def _capacity_for(slots: int) -> int:
    """The power of two ≥ max(16, slots)."""
    return 1 << max(4, int(slots - 1).bit_length())
