"""Inverted lists: the rows of an IVF VectorIndex (``VectorIndex(dim, bits, nlist=N)``).

The index partitions its vectors into ``nlist`` lists by their nearest centroid (the coarse
quantizer, ``coarse.py``: k-means) and keeps each list's rows in a ``RowStore`` of its own:
the flat index's segments, 32-row blocks and native kernels. A query reads only the lists
it probes (``search.py``).

Residual codes. A row holds the TurboQuant code of its residual ``r = x − c`` to its list's
centroid ``c`` (norm-corrected as in the flat index: ‖r̂‖ = ‖r‖), so ``x̂ = c + r̂``. Scores
stay sums the scan computes from codes plus one number per (query, list):
``⟨q, x̂⟩ = ⟨q, c⟩ + ⟨q, r̂⟩`` (ip, cosine), and for l2 the ranking ``2⟨q, x̂⟩ − ‖x̂‖²`` with
``−‖c + r̂‖²`` stored per row. The residual has less spread than the vector, so the same bits
rank better: +1 to +3 points of recall@10 on GloVe-50 at 2–4 bits, at equal bytes
(``python -m bench.index_design --sections ivf_coding``; docs/index.md).

Training. Until the coarse quantizer is trained, vectors wait in a flat buffer of float32
rows that searches exactly. The first ``add`` that brings the buffer to ``TRAIN_PER_LIST``
vectors per list trains it on them (or ``VectorIndex.train(sample)`` does, earlier), and the
buffer moves into the lists. Later adds go to their nearest list; the centroids stay fixed,
so lists grow as the data does (``list_sizes`` shows the balance).

Rows. Index rows number the lists' rows in list order (list 0's, then list 1's, …), or the
buffer's before training. They change with every write: valid within one read lock.

Directory. ``id → (list, row)`` of every vector: slot arrays and an ``IdMap`` from id to
slot (16 bytes per vector plus the map's 8–16), built on first use and kept up to date.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ..codec.quantizer import TurboQuantizer
from .coarse import CoarseQuantizer
from .idmap import MAX_ROWS, IdMap
from .rows import RowStore, holes_filled, present
from .segment import Rows, encode_rows
from .validation import float16_copy

TRAIN_PER_LIST = 30  # buffered vectors per list that train the coarse quantizer
_SAMPLE_PER_LIST = 256  # training vectors per list drawn from the buffer and the new rows
BUFFER = -1  # the directory's list number for buffered vectors


def default_nprobe(nlist: int | None) -> int | None:
    """The lists a search reads unless told: nlist/32, at least 8 (all of them below 8)."""
    if nlist is None:
        return None
    return min(nlist, max(8, round(nlist / 32)))


class InvertedLists:
    """The lists (one ``RowStore`` each), the pre-training buffer and the directory.

    Args:
        quantizer: the index's codec (residuals are encoded with it).
        metric: ``"ip"``, ``"cosine"`` or ``"l2"``.
        keep_vectors: rows also keep a float16 copy of the vector (not of the residual).
        coarse: the coarse quantizer (trained or not).
    """

    def __init__(
        self,
        quantizer: TurboQuantizer,
        metric: str,
        keep_vectors: bool,
        coarse: CoarseQuantizer,
    ):
        self.quantizer = quantizer
        self.config = quantizer.config
        self.metric = metric
        self.keep_vectors = keep_vectors
        self.coarse = coarse
        self.lists: list[RowStore] = []
        self.buffer = np.empty((0, self.config.dim), np.float32)
        self.buffer_ids = np.empty(0, np.int64)
        self.n = 0  # vectors held (buffer and lists)
        self._directory: _Directory | None = None
        self._layout: tuple[np.ndarray, np.ndarray] | None = None  # (offsets, ids)
        self._scan_set: Any = None  # the native scan's view of the lists (_core.ListSet)
        self._lock = threading.Lock()  # lazy builds by concurrent readers

    # ------------------------------------------------------------------ sizes and ids
    @property
    def trained(self) -> bool:
        return self.coarse.centroids is not None

    @property
    def nlist(self) -> int:
        return self.coarse.nlist

    @property
    def list_sizes(self) -> np.ndarray:
        """Vectors per list: int64 (nlist,) (zeros before training)."""
        return np.array([store.n for store in self.lists] or [0] * self.nlist, np.int64)

    @property
    def nbytes(self) -> int:
        """The lists (spare capacity included), the buffer, the centroids, the directory and
        the cached row layout."""
        held = sum(store.nbytes for store in self.lists) + self.coarse.nbytes
        held += self.buffer.nbytes + self.buffer_ids.nbytes
        if self._directory is not None:
            held += self._directory.nbytes
        if self._layout is not None:
            held += sum(a.nbytes for a in self._layout)
        return int(held)

    @property
    def codes_nbytes(self) -> int:
        return int(sum(store.codes_nbytes for store in self.lists))

    @property
    def vectors_nbytes(self) -> int:
        return int(sum(store.vectors_nbytes for store in self.lists))

    @property
    def ids(self) -> np.ndarray:
        """int64 (n,): the id of every index row."""
        return self.layout()[1]

    def layout(self) -> tuple[np.ndarray, np.ndarray]:
        """(offsets int64 (nlist + 1,): the first index row of each list, ids int64 (n,))."""
        with self._lock:
            if self._layout is None:
                if not self.trained:
                    offsets = np.zeros(self.nlist + 1, np.int64)
                    self._layout = offsets, self.buffer_ids
                else:
                    sizes = [store.n for store in self.lists]
                    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
                    ids = np.concatenate([store.ids for store in self.lists])
                    self._layout = offsets, ids.astype(np.int64, copy=False)
            return self._layout

    def scan_set(self, searcher: Any) -> Any:
        """The lists as the native ``searcher`` scans them (``_core.ListSet``: every segment,
        the centroids), built once per state of the lists (trained only)."""
        offsets = self.layout()[0]
        with self._lock:
            if self._scan_set is None:
                segments, first = [], [0]
                for lst, store in enumerate(self.lists):
                    for segment, offset, _ in store.segments_with(None):
                        segments.append(segment.scan_view(int(offsets[lst]) + offset, None))
                    first.append(len(segments))
                centroids = self.coarse.centroids
                closer = np.zeros(self.nlist, np.float32)
                if self.metric == "l2":  # nearest: largest ⟨q, c⟩ − ‖c‖²/2
                    closer = (-0.5 * np.square(centroids).sum(axis=1)).astype(np.float32)
                self._scan_set = searcher.lists(
                    segments, np.asarray(first, np.int64), centroids, closer
                )
            return self._scan_set

    def directory(self) -> _Directory:
        with self._lock:
            if self._directory is None:
                directory = _Directory()
                if self.buffer_ids.size:
                    rows = np.arange(self.buffer_ids.size)
                    directory.insert(self.buffer_ids, np.full(rows.size, BUFFER), rows)
                for number, store in enumerate(self.lists):
                    if store.n:
                        rows = np.arange(store.n)
                        directory.insert(store.ids, np.full(store.n, number), rows)
                self._directory = directory
            return self._directory

    def find(self, keys: np.ndarray) -> np.ndarray:
        """Index rows of ``keys`` (int64 (k,)); −1 where absent."""
        lists, rows = self.directory().locate(keys)
        out = np.full(keys.size, -1, np.int64)
        found = lists != _ABSENT
        if self.trained:
            offsets = self.layout()[0]
            out[found] = offsets[lists[found]] + rows[found]
        else:
            out[found] = rows[found]
        return out

    def rows_of(self, keys: np.ndarray) -> np.ndarray:
        """Index rows of ``keys``; KeyError naming the ids that are absent."""
        return present(keys, self.find(keys))

    def locate(self, rows: np.ndarray) -> Iterator[tuple[int, np.ndarray, np.ndarray]]:
        """For each list holding some of index ``rows`` (trained): (list, positions in
        ``rows``, rows within the list)."""
        offsets = self.layout()[0]
        number = np.searchsorted(offsets, rows, side="right") - 1
        order = np.argsort(number, kind="stable")
        lists, first = np.unique(number[order], return_index=True)
        bounds = [*first.tolist(), rows.size]
        for i, lst in enumerate(lists.tolist()):
            picked = order[bounds[i] : bounds[i + 1]]
            yield lst, picked, rows[picked] - offsets[lst]

    def vectors_of(self, rows: np.ndarray) -> np.ndarray:
        """The float16 copies of index ``rows`` (−1 gives zeros) as float32 (len(rows), dim)."""
        out = np.zeros((rows.size, self.config.dim), np.float32)
        valid = np.flatnonzero(rows >= 0)
        if not self.trained:
            out[valid] = self.buffer[rows[valid]]
            return out
        for lst, picked, local in self.locate(rows[valid]):
            out[valid[picked]] = self.lists[lst].vectors_of(local)
        return out

    def validate(self, thorough: bool) -> None:
        """As ``RowStore.validate``, over every list, the buffer and the centroids; plus
        every id stored once over all lists (``thorough``)."""
        for store in self.lists:
            store.validate(thorough)
        if self.buffer_ids.size and self.buffer_ids.min() < 0:
            raise ValueError("ids must lie in [0, 2**63 - 1]")
        if not thorough:
            return
        if not np.isfinite(self.buffer).all():
            raise ValueError("the buffered vectors hold NaN or infinite values")
        if self.trained and not np.isfinite(self.coarse.centroids).all():
            raise ValueError("the centroids hold NaN or infinite values")
        ids = self.ids
        if np.unique(ids).size != ids.size:
            raise ValueError("the file holds duplicate ids")

    # ------------------------------------------------------------------ changes
    def check_room(self, rows: int) -> None:
        if self.n + rows > MAX_ROWS:
            raise ValueError(f"an index holds at most {MAX_ROWS} vectors")

    def train(self, sample: np.ndarray) -> None:
        """Fit the coarse quantizer to ``sample`` (float32, cosine rows normalized) and move
        the buffer into the lists."""
        self.coarse.train(sample)
        self._open_lists()

    def use_centroids(self, centroids: np.ndarray) -> None:
        """Take ``centroids`` (nlist, dim) float32, finite, as they are (unit rows for a
        spherical quantizer) and move the buffer into the lists."""
        if self.coarse.spherical:  # rows not already of unit length are normalized
            norms = np.linalg.norm(centroids, axis=1, keepdims=True)
            off = (np.abs(norms - 1) > 1e-5) & (norms > 0)
            centroids = np.where(off, centroids / np.where(norms > 0, norms, 1), centroids)
        self.coarse.centroids = np.ascontiguousarray(centroids, np.float32)
        self._open_lists()

    def _open_lists(self) -> None:
        """Empty lists for the trained centroids; the buffer moves into them."""
        self.lists = [
            RowStore(self.config, self.keep_vectors, self.metric == "l2") for _ in range(self.nlist)
        ]
        buffered, keys = self.buffer, self.buffer_ids
        self.buffer = np.empty((0, self.config.dim), np.float32)
        self.buffer_ids = np.empty(0, np.int64)
        self.n = 0
        self._changed(directory=False)
        if keys.size:
            self.add(buffered, keys)
        # every buffered id moved: the directory is rebuilt on its next use
        self._directory = None

    def training_sample(self, x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """At most ``_SAMPLE_PER_LIST`` rows per list of the buffer and ``x``, float32."""
        total = self.buffer_ids.size + x.shape[0]
        count = min(total, _SAMPLE_PER_LIST * self.nlist)
        rows = np.sort(rng.choice(total, count, replace=False)) if count < total else None
        if rows is None:
            return np.concatenate([self.buffer, np.asarray(x, np.float32)])
        split = self.buffer_ids.size
        head = self.buffer[rows[rows < split]]
        return np.concatenate([head, np.asarray(x[rows[rows >= split] - split], np.float32)])

    def wants_training(self, rows: int) -> bool:
        """Whether adding ``rows`` more vectors fills the buffer enough to train."""
        return not self.trained and self.buffer_ids.size + rows >= TRAIN_PER_LIST * self.nlist

    def add(self, x: np.ndarray, keys: np.ndarray) -> None:
        """Store ``x`` (n, dim) float32 (cosine rows normalized, finite) with ids ``keys``:
        into the buffer before training, else each row into its nearest list."""
        if not self.trained:
            start = self.buffer_ids.size
            self.buffer = np.concatenate([self.buffer, x])
            self.buffer_ids = np.concatenate([self.buffer_ids, keys])
            if self._directory is not None:
                rows = np.arange(start, start + keys.size)
                self._directory.insert(keys, np.full(keys.size, BUFFER), rows)
            self.n += keys.size
            self._changed(directory=True)
            return
        assigned = self.coarse.assign(x)
        vectors = float16_copy(x) if self.keep_vectors else None
        encoded = encode_rows(
            self.quantizer, x, self.metric == "l2", vectors, self.coarse.centroids, assigned
        )
        order = np.argsort(assigned, kind="stable")
        counts = np.bincount(assigned, minlength=self.nlist)
        start = 0
        for lst in np.flatnonzero(counts).tolist():
            picked = order[start : start + counts[lst]]
            start += counts[lst]
            store = self.lists[lst]
            first = store.n
            store.append([_take(encoded, picked)], keys[picked])
            if self._directory is not None:
                rows = np.arange(first, store.n)
                self._directory.insert(keys[picked], np.full(picked.size, lst), rows)
        self.n += keys.size
        self._changed(directory=True)

    def remove(self, keys: np.ndarray) -> int:
        """Remove present ``keys`` (KeyError otherwise, nothing removed). Returns 0, the
        lowest index row that may have changed (every later list's rows shift)."""
        self.rows_of(keys)  # every key present, or KeyError before anything changes
        directory = self.directory()
        lists, rows = directory.locate(keys)
        directory.delete(keys)
        for lst in np.unique(lists).tolist():
            local = rows[lists == lst]
            if lst == BUFFER:
                holes, movers = _remove_buffer_rows(self, local)
                moved = self.buffer_ids[holes]
            else:
                store = self.lists[lst]
                holes, movers = store.remove_rows(local)
                moved = store.ids[holes]
            if holes.size:
                directory.move(moved, holes)
        self.n -= keys.size
        self._changed(directory=True)
        return 0

    def _changed(self, directory: bool) -> None:
        """Forget the row layout (and the directory unless it was kept up to date)."""
        with self._lock:
            self._layout = self._scan_set = None
            if not directory:
                self._directory = None

    # ------------------------------------------------------------------ files
    def pieces(self) -> list[dict[str, np.ndarray]]:
        """The file segments: the centroids (once trained), the buffer (while it holds rows)
        and every list's rows, each tagged with its list number."""
        pieces = []
        if self.trained:
            pieces.append({"centroids": self.coarse.centroids})
        if self.buffer_ids.size:
            pieces.append({"buffer": self.buffer, "ids": self.buffer_ids})
        for number, store in enumerate(self.lists):
            for arrays in store.pieces(0, store.n):
                arrays["list"] = np.array([number], np.int32)
                pieces.append(arrays)
        return pieces

    @classmethod
    def from_arrays(
        cls,
        quantizer: TurboQuantizer,
        metric: str,
        keep_vectors: bool,
        coarse: CoarseQuantizer,
        segments: list[dict[str, np.ndarray]],
    ) -> InvertedLists:
        """The lists of a file's segments (see ``pieces``; sizes checked, contents by
        ``validate``)."""
        out = cls(quantizer, metric, keep_vectors, coarse)
        dim = quantizer.config.dim
        per_list: dict[int, list[dict[str, np.ndarray]]] = {}
        for number, arrays in enumerate(segments):
            if "centroids" in arrays:
                centroids = arrays["centroids"]
                if (
                    set(arrays) != {"centroids"}
                    or centroids.dtype != np.float32
                    or (centroids.shape != (coarse.nlist, dim))
                ):
                    raise ValueError(
                        f"segment {number}: the centroids should be float32 of shape "
                        f"({coarse.nlist}, {dim}) alone, got {centroids.dtype} "
                        f"{centroids.shape} with {sorted(arrays)}"
                    )
                coarse.centroids = centroids
            elif "buffer" in arrays:
                vectors, ids = arrays["buffer"], arrays.get("ids")
                if (
                    set(arrays) != {"buffer", "ids"}
                    or vectors.dtype != np.float32
                    or vectors.ndim != 2
                    or vectors.shape[1] != dim
                    or ids.dtype != np.int64
                    or ids.shape != (vectors.shape[0],)
                ):
                    raise ValueError(
                        f"segment {number}: the buffer should be float32 (n, {dim}) vectors "
                        "with int64 (n,) ids"
                    )
                out.buffer, out.buffer_ids = vectors, ids
            else:
                tag = arrays.get("list")
                if tag is None or tag.dtype != np.int32 or tag.shape != (1,):
                    raise ValueError(f"segment {number} has no int32 'list' section")
                lst = int(tag[0])
                if not 0 <= lst < coarse.nlist:
                    raise ValueError(f"segment {number}: list {lst} outside [0, {coarse.nlist})")
                rest = {name: arr for name, arr in arrays.items() if name != "list"}
                per_list.setdefault(lst, []).append(rest)
        if per_list and not out.trained:
            raise ValueError("the file holds lists but no centroids")
        if out.trained and out.buffer_ids.size:
            raise ValueError("the file holds both centroids and a training buffer")
        out.n = out.buffer_ids.size
        if out.trained:
            out.lists = [
                RowStore.from_arrays(
                    quantizer.config, keep_vectors, metric == "l2", per_list.get(lst, [])
                )
                for lst in range(coarse.nlist)
            ]
            out.n = sum(store.n for store in out.lists)
        return out


def _take(rows: Rows, picked: np.ndarray) -> Rows:
    return Rows(
        tuple(c[picked] for c in rows.codes),
        *(None if a is None else a[picked] for a in rows[1:]),
    )


def _remove_buffer_rows(lists: InvertedLists, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Remove buffer ``rows``: the last rows move into the holes (as ``RowStore.remove_rows``)."""
    holes, movers = holes_filled(lists.buffer_ids.size, rows)
    n_after = lists.buffer_ids.size - rows.size
    buffer, ids = lists.buffer.copy(), lists.buffer_ids.copy()  # loaded buffers are read-only
    buffer[holes], ids[holes] = buffer[movers], ids[movers]
    lists.buffer, lists.buffer_ids = buffer[:n_after], ids[:n_after]
    return holes, movers


_ABSENT = -2  # the directory's list number for ids it does not hold


class _Directory:
    """id → (list, row) of every stored vector (list ``BUFFER`` for buffered ones)."""

    def __init__(self):
        self._ids = np.empty(0, np.int64)
        self._lists = np.empty(0, np.int32)
        self._rows = np.empty(0, np.int32)
        self.n = 0
        self._map = IdMap(lambda slots: self._ids[slots])

    @property
    def nbytes(self) -> int:
        return int(self._ids.nbytes + self._lists.nbytes + self._rows.nbytes + self._map.nbytes)

    def locate(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(list, row) of each key, int64; list ``_ABSENT`` where absent."""
        slots = self._map.find(np.asarray(keys, np.int64))
        found = slots >= 0
        lists = np.full(slots.size, _ABSENT, np.int64)
        rows = np.full(slots.size, -1, np.int64)
        lists[found] = self._lists[slots[found]]
        rows[found] = self._rows[slots[found]]
        return lists, rows

    def insert(self, keys: np.ndarray, lists: np.ndarray, rows: np.ndarray) -> None:
        if self.n + keys.size > self._ids.size:
            size = max(self.n + keys.size, self._ids.size * 5 // 4)
            for name in ("_ids", "_lists", "_rows"):
                old = getattr(self, name)
                grown = np.empty(size, old.dtype)
                grown[: self.n] = old[: self.n]
                setattr(self, name, grown)
        end = self.n + keys.size
        self._ids[self.n : end] = keys
        self._lists[self.n : end] = lists
        self._rows[self.n : end] = rows
        self._map.insert(keys, np.arange(self.n, end))
        self.n = end

    def move(self, keys: np.ndarray, rows: np.ndarray) -> None:
        """Present ``keys`` now live at ``rows`` of the same list."""
        self._rows[self._map.find(keys)] = rows

    def delete(self, keys: np.ndarray) -> None:
        """Forget present ``keys``: the last slots move into the freed ones."""
        slots = self._map.find(keys)
        self._map.delete(keys)
        holes, movers = holes_filled(self.n, slots)
        for name in ("_ids", "_lists", "_rows"):
            arr = getattr(self, name)
            arr[holes] = arr[movers]
        if holes.size:
            self._map.move(self._ids[holes], holes)
        self.n -= slots.size
