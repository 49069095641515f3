"""The rows of a VectorIndex: segments of codes, the row → id array and the id → row map.

Index row ``r`` is row ``r − offset`` of the segment holding it (segments in order, each
holding ``count`` rows); ``ids[r]`` is its external id. Rows are always ``0..n−1`` without
gaps: removing a row moves the last row into the hole (O(1) per id). Only the last segment
grows, and only while it is in memory (loaded segments are memory-mapped and never appended
to), so in-memory capacities stay multiples of 8.

Not thread-safe by itself: ``VectorIndex`` serializes writers against readers.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np

from ..codec.codes import CodecConfig
from .idmap import MAX_ROWS, IdMap
from .segment import BLOCK_ROWS, SEGMENT_ROWS, Rows, Segment, capacity_for
from .validation import preview


class RowStore:
    """Segments of codes (+ optional float16 copies), their ids and the id map.

    Args:
        config: the codec configuration every segment uses.
        keep_vectors: segments also hold a float16 copy of each vector.
        keep_l2_shift: segments also hold −‖x̂‖² per row (l2 indexes).
    """

    def __init__(self, config: CodecConfig, keep_vectors: bool, keep_l2_shift: bool):
        self.config = config
        self.keep_vectors = keep_vectors
        self.keep_l2_shift = keep_l2_shift
        self.segments: list[Segment] = []
        self.n = 0
        self._ids = np.empty(0, np.int64)  # row -> id, with spare capacity past n
        self._idmap: IdMap | None = None  # built on first use (loading stays instant)
        self._idmap_lock = threading.Lock()

    @classmethod
    def from_arrays(
        cls,
        config: CodecConfig,
        keep_vectors: bool,
        keep_l2_shift: bool,
        segments: list[dict[str, np.ndarray]],
    ) -> RowStore:
        """A store over segments read back from a file (block-layout streams, row arrays and
        ``ids``; sizes checked: see ``validate`` for the contents)."""
        store = cls(config, keep_vectors, keep_l2_shift)
        loaded = [
            Segment.from_arrays(config, arrays, keep_vectors, keep_l2_shift, number)
            for number, arrays in enumerate(segments)
        ]
        store.segments = [segment for segment in loaded if segment.count]
        if segments:
            store._ids = np.concatenate([arrays["ids"] for arrays in segments])
        store.n = store._ids.size
        return store

    def validate(self, thorough: bool) -> None:
        """Refuse (ValueError) what no writer produces: ids outside [0, 2**63 − 1] and, when
        ``thorough`` (one more pass over the rows), duplicate ids and non-finite per-row
        values."""
        ids = self.ids
        if ids.size and ids.min() < 0:
            raise ValueError("ids must lie in [0, 2**63 - 1]")
        if not thorough:
            return
        if np.unique(ids).size != ids.size:
            raise ValueError("the file holds duplicate ids")
        for segment in self.segments:
            for name, values in segment.rows.items():
                if name != "vectors" and not np.isfinite(values[: segment.count]).all():
                    raise ValueError(f"array {name!r} holds NaN or infinite values")

    # ------------------------------------------------------------------ sizes and ids
    @property
    def nbytes(self) -> int:
        """Segments (spare capacity included), the id array and the id map's slots."""
        held = sum(segment.nbytes for segment in self.segments) + self._ids.nbytes
        return int(held + (self._idmap.nbytes if self._idmap is not None else 0))

    @property
    def codes_nbytes(self) -> int:
        return int(sum(s.nbytes for segment in self.segments for s in segment.streams))

    @property
    def vectors_nbytes(self) -> int:
        return int(sum(s.vectors.nbytes for s in self.segments if s.vectors is not None))

    @property
    def ids(self) -> np.ndarray:
        """int64 (n,) view: the id of every row."""
        return self._ids[: self.n]

    def id_map(self) -> IdMap:
        with self._idmap_lock:  # built lazily, possibly by several readers at once
            if self._idmap is None:
                idmap = IdMap(lambda rows: self._ids[rows])
                idmap.reset(self.n)
                self._idmap = idmap
            return self._idmap

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys`` (int64 (k,)); −1 where absent."""
        return self.id_map().find(keys)

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Rows of ``keys``; KeyError naming the ids that are absent."""
        return present(keys, self.find(keys))

    # ------------------------------------------------------------------ changes
    def check_room(self, rows: int) -> None:
        if self.n + rows > MAX_ROWS:
            raise ValueError(f"an index holds at most {MAX_ROWS} vectors")

    def rows_to_align(self) -> int:
        """Rows that fill the in-memory tail up to a whole block (so later chunks are
        written block by block)."""
        tail = self.segments[-1] if self.segments else None
        return (-tail.count) % BLOCK_ROWS if tail is not None and tail.in_memory else 0

    def append(self, encoded: list[Rows], keys: np.ndarray) -> None:
        """Store the encoded chunks (in order) as rows n, n+1, … with ids ``keys``."""
        n = keys.size
        self._reserve_ids(self.n + n)
        self._ids[self.n : self.n + n] = keys
        first_row, final = self.n, self.n + n
        for rows in encoded:
            done = 0
            while done < rows.n:
                tail = self._writable_tail(final - self.n)
                take = min(rows.n - done, tail.capacity - tail.count)
                tail.write(tail.count, rows, done, done + take)
                tail.count += take
                self.n += take
                done += take
        if self._idmap is not None:
            self._idmap.insert(keys, np.arange(first_row, final))

    def remove(self, keys: np.ndarray) -> int:
        """Remove the rows of present ``keys`` (KeyError otherwise, nothing removed). Returns
        the lowest row whose contents changed (rows at and above it moved or went)."""
        rows = self.rows_of(keys)
        idmap = self.id_map()
        idmap.delete(keys)
        holes, _ = self.remove_rows(rows)
        if holes.size:
            idmap.move(self._ids[holes], holes)
        return int(holes[0]) if holes.size else self.n

    def remove_rows(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Remove distinct ``rows`` (< n): the last rows move into the holes. Returns (holes,
        movers), int64: the row at ``movers[i]`` now lives at ``holes[i]``. The id map, if
        built, is the caller's to update."""
        n_after = self.n - rows.size
        holes, movers = holes_filled(self.n, rows)
        for hole, mover in zip(holes.tolist(), movers.tolist(), strict=True):
            dst, dst_row = self._locate(hole)
            src, src_row = self._locate(mover)
            dst.copy_row(dst_row, src, src_row)
        if holes.size:
            self._ids[holes] = self._ids[movers]
        self._truncate(n_after)
        return holes, movers

    def _writable_tail(self, pending: int) -> Segment:
        """The in-memory last segment with a free row, grown or started if needed."""
        last = self.segments[-1] if self.segments else None
        tail = last if last is not None and last.in_memory else None
        if tail is not None and tail.count < tail.capacity:
            return tail
        if tail is not None and tail.capacity < SEGMENT_ROWS:
            grown = tail.grown(capacity_for(max(2 * tail.capacity, tail.count + pending)))
            self.segments[-1] = grown
            return grown
        fresh = Segment.allocate(
            self.config, capacity_for(pending), self.keep_vectors, self.keep_l2_shift
        )
        self.segments.append(fresh)
        return fresh

    def _reserve_ids(self, n: int) -> None:
        if n > self._ids.size:
            grown = np.empty(max(n, self._ids.size * 5 // 4), np.int64)
            grown[: self.n] = self._ids[: self.n]
            self._ids = grown

    def _truncate(self, n: int) -> None:
        """Drop rows [n, self.n) (all in the trailing segments)."""
        drop = self.n - n
        while drop:
            tail = self.segments[-1]
            take = min(drop, tail.count)
            tail.clear(tail.count - take, tail.count)  # rows past count stay zero
            tail.count -= take
            drop -= take
            if tail.count == 0:
                self.segments.pop()
        self.n = n

    # ------------------------------------------------------------------ where rows are
    def _locate(self, row: int) -> tuple[Segment, int]:
        for segment in self.segments:
            if row < segment.count:
                return segment, row
            row -= segment.count
        raise IndexError(row)

    def offsets(self) -> list[int]:
        """The first index row of each segment."""
        offsets, total = [], 0
        for segment in self.segments:
            offsets.append(total)
            total += segment.count
        return offsets

    def by_segment(self, rows: np.ndarray) -> Iterator[tuple[Segment, np.ndarray, np.ndarray]]:
        """For each segment holding some of ``rows``: (segment, positions in ``rows``, local
        rows within the segment)."""
        offsets = np.asarray(self.offsets(), np.int64)
        segment_of = np.searchsorted(offsets, rows, side="right") - 1
        for s, segment in enumerate(self.segments):
            picked = np.flatnonzero(segment_of == s)
            if picked.size:
                yield segment, picked, rows[picked] - offsets[s]

    def segment_rows(
        self, allowed: np.ndarray | None
    ) -> Iterator[tuple[Segment, int, np.ndarray | None]]:
        """(segment, its first row, its allowed local rows (sorted), or None for all) for each
        segment holding an allowed row; ``allowed``: ids (absent ones ignored) or None."""
        if allowed is None:
            return self.segments_with(None)
        rows = self.find(allowed)
        return self.segments_with(distinct_rows(rows))

    def segments_with(
        self, rows: np.ndarray | None
    ) -> Iterator[tuple[Segment, int, np.ndarray | None]]:
        """As ``segment_rows`` for sorted distinct ``rows`` (or None: every row)."""
        for segment, offset in zip(self.segments, self.offsets(), strict=True):
            if rows is None:
                yield segment, offset, None
                continue
            lo, hi = np.searchsorted(rows, [offset, offset + segment.count])
            if hi > lo:
                yield segment, offset, rows[lo:hi] - offset

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The float16 copies of ``rows`` (−1 gives zeros) as float32 (len(rows), dim)."""
        out = np.zeros((rows.size, self.config.dim), np.float32)
        valid = np.flatnonzero(rows >= 0)
        for segment, picked, local in self.by_segment(rows[valid]):
            out[valid[picked]] = segment.vectors[local]
        return out

    def pieces(self, start: int, stop: int) -> list[dict[str, np.ndarray]]:
        """Rows [start, stop) as file segments (one per segment touched), ids included."""
        pieces = []
        for segment, offset in zip(self.segments, self.offsets(), strict=True):
            lo, hi = max(start, offset), min(stop, offset + segment.count)
            if lo < hi:
                arrays = segment.slice_arrays(lo - offset, hi - offset)
                arrays["ids"] = self._ids[lo:hi]
                pieces.append(arrays)
        return pieces


def holes_filled(n: int, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Removing distinct ``rows`` of ``0..n−1`` by moving the last rows into the holes:
    (holes, movers), int64, the row at ``movers[i]`` moving to ``holes[i]``."""
    n_after = n - rows.size
    holes = np.sort(rows[rows < n_after])
    leaving = np.zeros(n - n_after, bool)
    leaving[rows[rows >= n_after] - n_after] = True
    return holes, np.flatnonzero(~leaving) + n_after


def present(keys: np.ndarray, rows: np.ndarray) -> np.ndarray:
    """``rows`` (the rows found for ``keys``, −1 where absent), or KeyError naming the ids
    that are absent."""
    missing = keys[rows < 0]
    if missing.size:
        raise KeyError(f"{missing.size} ids not in the index (e.g. {preview(missing)})")
    return rows


def distinct_rows(rows: np.ndarray) -> np.ndarray:
    """The non-negative entries of ``rows`` (int64; −1 marks an absent id), sorted and
    distinct: a mask over the row range when they are dense in it (no sort), else a sort.
    Filters map their ids to rows through this on every search (np.unique's hash path was
    most of a filtered IVF query's time: bench.ivf --sections filtered, docs/index.md)."""
    rows = rows[rows >= 0]
    if rows.size == 0:
        return rows
    top = int(rows.max()) + 1
    if rows.size * 16 >= top:
        mask = np.zeros(top, bool)
        mask[rows] = True
        return np.flatnonzero(mask)
    rows = np.sort(rows)
    return rows[np.concatenate(([True], rows[1:] != rows[:-1]))]
