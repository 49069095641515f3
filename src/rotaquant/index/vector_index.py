"""VectorIndex: a compressed vector index on the TurboQuant codec, flat or inverted lists.

No training: vectors are encoded on ``add`` with the data-independent codec (rotation +
Lloyd–Max codebook at the actual dimension) and are searchable at once. With ``nlist=N`` the
index partitions them into N inverted lists (``ivf.py``: k-means trained by the first large
enough ``add``) and a search reads only the ``nprobe`` lists nearest each query.

Storage (``rows.py``, ``segment.py``). Rows live in *segments*: fixed-capacity blocks of
``Codes`` (in memory, or memory-mapped copy-on-write from a saved file), plus one global id
array. Each row costs ``bits·dim/8`` bytes of packed codes, its norm (float16 by default), its
8-byte id, and 8–16 bytes of id-map slots once the id map is in use; ``nbytes`` counts all of
it (and the float16 copy kept for re-ranking, if any).

Search (``search.py``): queries are rotated once and scored against the packed rows in the
rotated domain by the native scan kernel (integer tables, 32-row blocks, fused top-k, exact
float re-scoring of the candidates); ``allow`` filters inside the scan, so the result is the
exact top-k of the allowed set under the compressed scores.

Every vector is stored with the norm-correcting scale ‖x‖/‖ĉ‖, so decoded vectors x̂ keep the
input's exact length (up to float16). This costs a little MSE at 1–2 bits but ranks better:
recall@10 +5.6 / +6.1 / +3.0 points on GloVe-50 at 2 / 3 / 4 bits, +1.9–2.8 on MiniLM-384,
+0.9–2.2 on Gaussian d=128, against storing ‖x‖ (``python -m bench.index_design``).

Metrics (scores returned):
* ``"ip"``: ⟨q, x̂⟩, descending.
* ``"cosine"``: vectors and queries are normalized, so scores are cos(q, x̂), descending.
* ``"l2"``: ‖q − x̂‖², ascending.
"""

from __future__ import annotations

import os
import threading
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import numpy as np

from .._arrays import (
    MALFORMED,
    check_matrix,
    check_result_fits,
    json_field,
    positive_int,
    to_numpy,
)
from .._atomic import special_file
from .._deprecation import keyword_only_after
from ..codec.codes import CodecConfig
from ..codec.quantizer import TurboQuantizer
from . import file_format
from .coarse import CoarseQuantizer
from .config import IndexConfig
from .file_guard import FileChangedError, MappedSource, writer_lock
from .ivf import InvertedLists, default_nprobe
from .legacy import rows_from_v1
from .locking import ReadWriteLock
from .result import SearchResult
from .rows import RowStore
from .search import Searcher
from .segment import Rows, check_sections, encode_rows, quantized_rows
from .validation import (
    MAX_ID,
    as_ids,
    as_matrix,
    float16_copy,
    id_set,
    normalized,
    preview,
)

_ADD_CHUNK_FLOATS = 1 << 22  # rows encoded per add step: about 16 MiB of float32
_FORMAT = "rotaquant.VectorIndex"
_FIELDS = ("metric", "keep_vectors", "next_id")  # the header's fields beside format and config


class VectorIndex:
    """Compressed vector index with external ids, filtered top-k search and persistence.

    Args:
        dim: vector dimension.
        bits: bits per value (1..8, or fractional such as 2.5, 3.5).
        metric: ``"ip"`` (inner product), ``"cosine"`` or ``"l2"`` (squared distance).
        mode: ``"mse"`` (default) or ``"prod"`` (unbiased inner products, see the codec).
        seed: rotation seed. rotation: ``"hadamard"`` or ``"haar"``.
        norm_dtype: ``"float16"`` (default) or ``"float32"`` per-vector norms.
        keep_vectors: also keep a float16 copy of every vector (memory-mapped once saved) so
            that ``search(..., rerank=r)`` can re-score ``r`` candidates exactly.
        nlist: inverted lists (IVF): a search reads the ``nprobe`` lists nearest each query
            instead of every vector. None (default): flat, every search reads every code.
            About 4·√n suits n vectors. The lists' centroids are trained by the first ``add``
            that brings ``30·nlist`` vectors (or by ``train``); until then vectors wait in a
            float32 buffer that searches exactly. Vectors are coded as residuals to their
            centroid (docs/index.md, "Inverted lists").

    Thread safety: any number of threads may ``search`` at once. ``add``, ``remove``,
    ``upsert`` and ``save`` take an exclusive lock (``save`` a shared one): a writer waits for
    running searches to finish and searches started meanwhile wait for it, so every search
    sees the index either before or after each call, never half-way.
    """

    @keyword_only_after(
        2, ("metric", "mode", "seed", "rotation", "norm_dtype", "keep_vectors")
    )  # the 0.1 positional order
    def __init__(
        self,
        dim: int,
        bits: float = 4,
        *,
        metric: str = "ip",
        mode: str = "mse",
        seed: int = 0,
        rotation: str = "hadamard",
        norm_dtype: str = "float16",
        keep_vectors: bool = False,
        nlist: int | None = None,
    ):
        config = IndexConfig(
            dim=dim,
            bits=bits,
            metric=metric,
            mode=mode,
            rotation=rotation,
            seed=seed,
            norm_dtype=norm_dtype,
            keep_vectors=keep_vectors,
            nlist=nlist,
        )
        self._config = config
        self.metric = metric
        self.keep_vectors = config.keep_vectors
        self.quantizer = TurboQuantizer.from_config(config.codec)
        self._searcher = Searcher(self.quantizer, metric)
        self._rows: RowStore | InvertedLists
        if config.nlist is None:
            self._rows = RowStore(self.quantizer.config, self.keep_vectors, metric == "l2")
        else:
            coarse = CoarseQuantizer(config.dim, config.nlist, metric, config.seed)
            self._rows = InvertedLists(self.quantizer, metric, self.keep_vectors, coarse)
        self.nprobe = default_nprobe(config.nlist)  # lists a search reads (IVF)
        self._next_id = 0
        self._lock = ReadWriteLock()
        self._save_lock = threading.Lock()  # one save at a time (searches go on meanwhile)
        self._commit: file_format.Commit | None = None  # the file rows [0, _synced) are in
        self._synced = 0
        self._dirty = False  # rows below _synced changed since the last save
        self._source: MappedSource | None = None  # the file behind memory-mapped segments
        self.recovered_from: str | None = None  # why load skipped a damaged newer commit

    @classmethod
    def from_config(cls, config: IndexConfig) -> VectorIndex:
        """An empty index of ``config`` (which must have its ``dim``)."""
        if config.dim is None:
            raise ValueError("VectorIndex.from_config needs a config with its dim")
        return cls(config.dim, config.bits, **config.options())

    # ------------------------------------------------------------------ properties
    @property
    def config(self) -> IndexConfig:
        """What this index was built with (``config.codec``: the codec of its vectors)."""
        return self._config

    @property
    def codec_config(self) -> CodecConfig:
        return self.quantizer.config

    @property
    def dim(self) -> int:
        return self.codec_config.dim

    @property
    def bits(self) -> float:
        return self.codec_config.bits

    def __len__(self) -> int:
        return self._rows.n

    @property
    def nlist(self) -> int | None:
        """Inverted lists (None: a flat index)."""
        return self._config.nlist

    @property
    def trained(self) -> bool:
        """Whether the lists' centroids are trained (a flat index needs no training: True)."""
        return not isinstance(self._rows, InvertedLists) or self._rows.trained

    @property
    def list_sizes(self) -> np.ndarray:
        """Vectors per inverted list, int64 (nlist,) (zeros before training); ValueError for a
        flat index."""
        lists = self._lists("list_sizes")
        with self._lock.reading():
            return lists.list_sizes

    def __repr__(self) -> str:
        lists = "" if self.nlist is None else f", nlist={self.nlist}"
        return (
            f"VectorIndex(dim={self.dim}, bits={self.bits}, metric={self.metric!r}, "
            f"mode={self.codec_config.mode!r}{lists}, n={len(self)}, nbytes={self.nbytes})"
        )

    def __contains__(self, key: object) -> bool:
        if not isinstance(key, (int, np.integer)) or isinstance(key, bool):
            return False
        with self._lock.reading():
            return bool(0 <= key <= MAX_ID and self._rows.find(np.array([key]))[0] >= 0)

    @property
    def nbytes(self) -> int:
        """Bytes held: codes, norms (and QJL data), ids, id-map slots and any float16 copy,
        including the spare capacity of in-memory segments; with inverted lists also the
        centroids, the directory, the row layout and the training buffer."""
        return self._rows.nbytes

    @property
    def codes_nbytes(self) -> int:
        """Bytes of the packed codes alone (every stream, the padding of partial blocks and
        spare capacity included; part of ``nbytes``)."""
        return self._rows.codes_nbytes

    @property
    def vectors_nbytes(self) -> int:
        """Bytes of the float16 copy kept for re-ranking (part of ``nbytes``; 0 without
        ``keep_vectors``)."""
        return self._rows.vectors_nbytes

    @property
    def ids(self) -> np.ndarray:
        """The ids of all stored vectors, int64 (n,), in storage order (a copy)."""
        with self._lock.reading():
            return self._rows.ids.copy()

    # ------------------------------------------------------------------ add / remove
    def add(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """Add vectors (n, dim) (numpy float16/32/64, a memory map, or a torch tensor).

        ``ids``: distinct integers in [0, 2**63 − 1] not already present; default: sequential
        from one past the largest id seen. Large arrays are encoded in chunks (no float32 copy
        of the whole input). Returns the ids assigned (int64). Raises ValueError (and adds
        nothing) for bad shapes, dtypes, NaN/inf or duplicate ids.
        """
        source = as_matrix(vectors, self.dim, "add")
        n = source.shape[0]
        with self._lock.writing():
            new_ids = self._new_ids(ids, n)
            self._rows.check_room(n)
            if n:
                self._store(self._encode(source), source, new_ids)
            return new_ids

    def upsert(self, vectors: Any, ids: Any) -> None:
        """Add vectors, replacing those whose ids are already present (ids required)."""
        source = as_matrix(vectors, self.dim, "upsert")
        with self._lock.writing():
            self._check_source()
            keys = as_ids(ids, source.shape[0], "upsert")
            self._rows.check_room(keys.size)
            encoded = self._encode(source)  # validates everything before anything changes
            present = keys[self._rows.find(keys) >= 0]
            if present.size:
                self._remove(present)
            if keys.size:
                self._store(encoded, source, keys)

    def remove(self, ids: Any) -> None:
        """Remove vectors by id (each O(1): the last row moves into the hole).

        Raises KeyError naming the ids that are not present, and removes nothing then.
        """
        with self._lock.writing():
            self._check_source()
            keys = np.atleast_1d(np.asarray(ids))
            keys = as_ids(keys, keys.size, "remove")
            if keys.size:
                self._remove(keys)

    # ------------------------------------------------------------------ search
    def train(self, sample: Any = None, *, centroids: Any = None) -> None:
        """Train the inverted lists now rather than at the first large enough ``add``:
        k-means on ``sample`` (n, dim), n ≥ nlist, or the given ``centroids`` (nlist, dim)
        as they are (unit rows for ip/cosine: they are normalized). Vectors already buffered
        move into their lists. ValueError for a flat index or one already trained."""
        lists = self._lists("train")
        if (sample is None) == (centroids is None):
            raise ValueError("train: give a sample or the centroids, not both")
        if centroids is not None:
            given = as_matrix(centroids, self.dim, "centroids")
            check_matrix(np.asarray(given), self.dim, "centroids")
            if given.shape[0] != lists.nlist:
                raise ValueError(
                    f"centroids: {given.shape[0]} rows for an index of nlist={lists.nlist}"
                )
        else:
            source = as_matrix(sample, self.dim, "train")
        with self._lock.writing():
            if lists.trained:
                raise ValueError("train: the inverted lists are already trained")
            if centroids is not None:
                lists.use_centroids(np.asarray(given, np.float32))
            else:
                chunks = [chunk for chunk, _ in self._chunks(source, "train")]
                lists.train(np.concatenate(chunks) if chunks else source.astype(np.float32))
            self._dirty = True

    @property
    def centroids(self) -> np.ndarray | None:
        """The inverted lists' centroids (nlist, dim) float32 (a copy), None before training;
        ValueError for a flat index."""
        lists = self._lists("centroids")
        with self._lock.reading():
            return None if not lists.trained else lists.coarse.centroids.copy()

    @keyword_only_after(2, ("allow", "rerank", "deny"))  # the 0.1 positional order
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        allow: Any = None,
        deny: Any = None,
        rerank: int | None = None,
        nprobe: int | None = None,
    ) -> SearchResult:
        """Top-``k`` vectors for each query: a :class:`SearchResult`, which unpacks as
        ``(scores float32 (m, k), ids int64 (m, k))``.

        Best first (highest score; smallest distance for ``metric="l2"``). Rows are padded
        with id −1 (score −inf, or +inf for l2) only when fewer than ``k`` vectors exist or
        are allowed. ``allow``: the ids results may come from, ``deny``: ids they may not —
        each an array or list of ids, a Python set, or a boolean mask over ids (``mask[i]``:
        id ``i``). The scan skips everything else, so results are the best ``k`` of the
        allowed set. Ids the index does not hold are ignored in both (a filter computed
        elsewhere may name ids deleted since; unlike turbovec, which raises KeyError).
        ``rerank``: with ``keep_vectors=True``, take that many candidates (≥ k) from the
        compressed scan and re-score them exactly from the float16 copy.

        Memory and work are bounded by what exists: beyond the (m, k) result itself, a search
        never holds more than ``min(k or rerank, len)`` candidates per query (like FAISS, a
        ``k`` above ``len`` is padding, not an error).

        ``nprobe`` (inverted lists only; default ``index.nprobe``): the lists nearest each
        query that it reads. Results are then the best k of those lists (exact top-k of their
        compressed scores); with ``allow``/``deny`` a query reads lists, nearest first, until
        they hold as many allowed vectors as ``nprobe`` average lists hold vectors.
        """
        arr, _ = to_numpy(queries, "queries")
        check_matrix(arr, self.dim, "queries")
        k = positive_int(k, "k")
        if nprobe is not None:
            self._lists("nprobe")
            nprobe = positive_int(nprobe, "nprobe")
        check_result_fits(arr.shape[0], k)
        if rerank is not None:
            rerank = positive_int(rerank, "rerank")
            if not self.keep_vectors:
                raise ValueError("rerank needs an index built with keep_vectors=True")
            if rerank < k:
                raise ValueError(f"rerank ({rerank}) must be at least k ({k})")
        allowed = None if allow is None else id_set(allow, "allow")
        denied = None if deny is None else id_set(deny, "deny")
        queries32 = normalized(arr) if self.metric == "cosine" else arr
        with self._reading():
            if denied is not None and denied.size:
                base = self._rows.ids if allowed is None else allowed
                allowed = base[~np.isin(base, denied)]
            probes = nprobe or self.nprobe
            return SearchResult(
                *self._searcher.search(self._rows, queries32, k, allowed, rerank, probes)
            )

    def reconstruct(self, ids: Any) -> np.ndarray:
        """Decoded vectors (len(ids), dim) float32 for present ids (KeyError otherwise); with
        ``metric="cosine"`` these are unit directions (the index stores no lengths)."""
        with self._reading():
            keys = as_ids(ids, None, "reconstruct", unique=False)
            return self._searcher.reconstruct(self._rows, self._rows.rows_of(keys))

    # ------------------------------------------------------------------ persistence
    def save(self, path: str | os.PathLike, overwrite: bool = False) -> None:
        """Write the index to one file, crash-safely and safe against other writers.

        Guarantee: if ``path`` is the file this index was last saved to or loaded from, that
        file is unchanged since, and only ``add`` calls happened meanwhile (no ``remove`` or
        ``upsert`` of saved vectors), the new vectors are *appended* to it in place: cost
        proportional to the new vectors, and a crash at any byte leaves the previous
        contents loadable. Otherwise the whole file is rewritten to a temporary name,
        fsynced and renamed over ``path`` (a crash leaves the old file or the new one); the
        file keeps its permissions, and a symlink at ``path`` keeps pointing at it.

        Writers (threads or processes) of one file take turns (an exclusive lock on
        ``<path>.lock``). If the file is the one this index was loaded from or saved to and
        someone else has committed to it since, ``FileChangedError`` is raised and nothing is
        written (load it again and redo the changes, or pass ``overwrite=True`` to replace
        it with this index's contents).

        A device node or FIFO at ``path`` is written in place (no lock, no rename: the node
        stays what it is); a directory raises IsADirectoryError.
        """
        target = Path(path).resolve()
        if special_file(target):  # a device node or FIFO: written in place, no lock beside it
            with self._save_lock, self._lock.reading():
                self._check_source()
                file_format.write_new(
                    target, self._header(), self._pieces(), self._check_source, self._version()
                )
            return
        with self._save_lock, self._lock.reading(), writer_lock(target):
            self._check_source()
            header = self._header()
            commit = self._commit
            changed, appendable = self._base_state(str(target))
            if changed and not overwrite:
                raise FileChangedError(
                    f"{target}: another writer saved this file since this index read or "
                    "wrote it; load it again and redo the changes, or save(..., "
                    "overwrite=True) to replace it"
                )
            if appendable:
                pieces = self._rows.pieces(self._synced, len(self))
                try:
                    self._commit = file_format.append(commit, header, pieces, self._check_source)
                except FileChangedError:  # a format-1 file or the last generation: rewrite
                    pass
                else:
                    self._synced = len(self)
                    if self._source is not None and self._source.path == commit.path:
                        self._source.acknowledge(self._commit.length, self._commit.segments)
                    return
            self._commit = file_format.write_new(
                target, header, self._pieces(), self._check_source, self._version()
            )
            self._synced, self._dirty = len(self), False

    @classmethod
    def load(
        cls,
        path: str | os.PathLike,
        verify: bool = True,
        mmap: bool = True,
        *,
        pinned: tuple[int, int] | None = None,
    ) -> VectorIndex:
        """Open a saved index. With ``mmap=True`` (default) codes stay memory-mapped
        (copy-on-write) and the file is watched (see ``file_guard``): opening costs the
        checksum pass (``verify=True``, default: every byte is read once and checked) or next
        to nothing (``verify=False``: structure and sizes only). ``mmap=False`` reads a
        private copy into memory instead (the file may then change freely).

        Raises ValueError for a file that is truncated, corrupted or not an index. If the
        newest commit is damaged but an older one is intact, that one is loaded with a
        ``RuntimeWarning`` and ``recovered_from`` saying what was skipped; the next save
        then rewrites the file whole.

        ``pinned``: a :attr:`commit` (generation, manifest CRC-32) to open instead of the
        newest (a file holds its last two commits); ValueError if the file no longer holds it.
        """
        loaded = file_format.read(path, verify=verify, mmap_file=mmap, pinned=pinned)
        header, segments, commit = loaded.header, loaded.segments, loaded.commit
        try:
            kind = json_field(header, "format", "header")
            if kind != _FORMAT:
                raise ValueError(f"not a rotaquant VectorIndex file (format {kind!r:.60})")
            codec = CodecConfig.from_dict(json_field(header, "config", "header", dict))
            metric, keep_vectors, next_id = (json_field(header, key, "header") for key in _FIELDS)
            nlist = header.get("nlist") if commit.version == file_format.IVF_VERSION else None
            if commit.version == file_format.IVF_VERSION and type(nlist) is not int:
                raise ValueError(f"header field 'nlist' must be an integer, got {nlist!r:.60}")
            config = IndexConfig.from_codec(codec, metric, keep_vectors, nlist)
            if type(next_id) is not int or not 0 <= next_id <= MAX_ID + 1:
                raise ValueError(
                    f"header field 'next_id' must be an integer in [0, 2**63], got {next_id!r:.60}"
                )
            rows = None
            index = cls.from_config(config)
            if nlist is not None:
                rows = InvertedLists.from_arrays(
                    index.quantizer, metric, keep_vectors, index._rows.coarse, segments
                )
            elif commit.version != 1:  # sizes checked against the codec before anything is built
                rows = RowStore.from_arrays(
                    config.codec, config.keep_vectors, config.metric == "l2", segments
                )
            if rows is not None:
                index._rows = rows
            else:  # format 1, row-major streams: converted, saved as version 2
                for number, arrays in enumerate(segments):
                    check_sections(arrays, number, config.codec, config.keep_vectors, False)
                    index._rows.append([index._rows_from_v1(arrays)], arrays["ids"])
            index._rows.validate(thorough=verify)
            if len(index) and next_id <= int(index._rows.ids.max()):
                raise ValueError(f"header field 'next_id' ({next_id}) is not above every stored id")
        except MALFORMED as exc:
            raise ValueError(f"{path}: invalid index file: {exc}") from exc
        index._next_id = next_id
        index._commit, index._synced = commit, len(index)
        index._source = loaded.source
        # the next save rewrites format-1 files in the new format, and recovered ones whole
        index._dirty = commit.version == 1 or loaded.recovered_from is not None
        if loaded.recovered_from is not None:
            index.recovered_from = loaded.recovered_from
            warnings.warn(f"{path}: {loaded.recovered_from}", RuntimeWarning, stacklevel=2)
        return index

    @property
    def commit(self) -> tuple[int, int] | None:
        """(generation, manifest CRC-32) of the file commit this index last loaded or saved
        (None before the first): what ``load(..., pinned=)`` reopens exactly."""
        commit = self._commit
        return None if commit is None else (commit.generation, commit.manifest_crc)

    def appends_on_save(self, path: str | os.PathLike) -> bool:
        """Whether ``save(path)`` would append in place to the file this index last loaded or
        saved (only adds since, and nobody else committed to it) rather than rewrite it."""
        return self._base_state(str(Path(path).resolve()))[1]

    def _base_state(self, target: str) -> tuple[bool, bool]:
        """(changed, appendable) of the file at ``target`` (resolved) against this index's
        last commit: changed — someone else committed to this index's own file since;
        appendable — a save may append in place (that file, unchanged, only adds since)."""
        commit = self._commit
        if commit is None or commit.path != target:
            return False, False
        state = file_format.newest_generation(target)
        if state is None:
            return False, False
        current = state == (commit.device, commit.inode, commit.observed)
        flat = isinstance(self._rows, RowStore)  # an IVF index's saves rewrite the file
        return not current, current and not self._dirty and flat

    # ------------------------------------------------------------------ internals
    def _check_source(self) -> None:
        """Refuse to read mapped rows whose file was truncated or modified underneath."""
        if self._source is not None:
            self._source.check()

    @contextmanager
    def _reading(self):
        """Hold the read lock around a read of the rows, with the mapped file checked before
        and after it (a read that met a truncated or modified file raises FileChangedError
        instead of returning what it computed)."""
        with self._lock.reading():
            self._check_source()
            yield
            self._check_source()

    def _new_ids(self, ids: Any, n: int) -> np.ndarray:
        if ids is None:
            if self._next_id + n - 1 > MAX_ID:
                raise ValueError("add: sequential ids would pass 2**63 - 1")
            return np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        keys = as_ids(ids, n, "add")
        present = keys[self._rows.find(keys) >= 0]
        if present.size:
            raise ValueError(
                f"add: {present.size} ids already present (e.g. {preview(present)}); "
                "remove them first or use upsert"
            )
        return keys

    def _chunks(self, source: np.ndarray, what: str) -> Iterator[tuple[np.ndarray, slice]]:
        """``source`` in validated float32 chunks (cosine rows normalized) and their rows.
        The first chunk tops a flat index's tail up to a whole block, so that the rest is
        written block by block."""
        n = source.shape[0]
        step = max(8, _ADD_CHUNK_FLOATS // self.dim // 8 * 8)
        head = self._rows.rows_to_align() if isinstance(self._rows, RowStore) else 0
        bounds = [0, *range(min(head, n), n, step), n]
        for start, stop in zip(bounds[:-1], bounds[1:], strict=True):
            if start == stop:
                continue
            chunk, _ = to_numpy(source[start:stop], what)
            check_matrix(chunk, self.dim, what)
            if self.metric == "cosine":
                chunk = normalized(chunk, what)
            yield chunk.astype(np.float32, copy=False), slice(start, stop)

    def _encode(self, source: np.ndarray) -> list[Rows] | None:
        """Validate and encode ``source`` chunk by chunk (so a bad value anywhere leaves the
        index unchanged). Inverted lists encode at ``_store`` (the list of a row may depend
        on centroids trained there): here they only validate."""
        encoded = []
        for chunk, _ in self._chunks(source, "add"):
            vectors = float16_copy(chunk) if self.keep_vectors else None
            if isinstance(self._rows, RowStore):
                encoded.append(encode_rows(self.quantizer, chunk, self.metric == "l2", vectors))
        return encoded if isinstance(self._rows, RowStore) else None

    def _store(self, encoded: list[Rows] | None, source: np.ndarray, keys: np.ndarray) -> None:
        """Store validated rows: a flat index's ``encoded`` chunks, or ``source`` into the
        inverted lists (training them first when this add fills the buffer enough)."""
        if isinstance(self._rows, RowStore):
            self._rows.append(encoded, keys)
        else:
            lists = self._rows
            if lists.wants_training(keys.size):
                rng = np.random.default_rng(self._config.seed)
                sample = lists.training_sample(source, rng)
                if self.metric == "cosine":
                    sample = normalized(sample, "add")
                lists.train(sample)
            for chunk, rows in self._chunks(source, "add"):
                lists.add(chunk, keys[rows])
            self._dirty = True
        self._next_id = max(self._next_id, int(keys.max()) + 1)

    def _lists(self, what: str) -> InvertedLists:
        """The inverted lists; ValueError naming ``what`` needs them on a flat index."""
        if not isinstance(self._rows, InvertedLists):
            raise ValueError(f"{what} applies to an index with inverted lists (nlist=...)")
        return self._rows

    def _rows_from_v1(self, arrays: dict[str, np.ndarray]) -> Rows:
        """Rows of a segment of a format-1 file (row-major streams, see ``legacy``)."""
        quantized, vectors = rows_from_v1(self.codec_config, arrays)
        vectors = vectors if self.keep_vectors else None
        return quantized_rows(self.quantizer, quantized, self.metric == "l2", vectors)

    def _remove(self, keys: np.ndarray) -> None:
        if self._rows.remove(keys) < self._synced:
            self._dirty = True

    def _header(self) -> dict:
        header = {
            "format": _FORMAT,
            "config": self.codec_config.to_dict(),
            "metric": self.metric,
            "keep_vectors": self.keep_vectors,
            "next_id": self._next_id,
        }
        if self.nlist is not None:
            header["nlist"] = self.nlist
        return header

    def _pieces(self) -> list[dict[str, np.ndarray]]:
        """Every row as file segments (and an IVF index's centroids and buffer)."""
        if isinstance(self._rows, RowStore):
            return self._rows.pieces(0, len(self))
        return self._rows.pieces()

    def _version(self) -> int:
        return file_format.VERSION if self.nlist is None else file_format.IVF_VERSION
