"""The store both framework adapters sit on: a VectorIndex plus the documents in SQLite.

:class:`DocumentStore` keeps, per document, a string id, the int64 *key* of its vector in the
index, its text, its metadata (JSON, what filters see), an adapter payload (JSON; LlamaIndex
keeps its serialized node there) and a group (LlamaIndex's ref_doc_id). The index dimension
comes from the first vectors added.

On disk (``path``, a directory): ``index.rq`` (the VectorIndex file), ``docs.sqlite``
(Python's sqlite3, WAL journal) and ``store.lock``. SQLite is the record of which keys are
live; keys are never reused. It works like a small database:

- **One writer at a time per directory**: every write (add, delete, save) holds an exclusive
  ``flock`` on ``store.lock`` for its duration, across threads, handles and processes. A
  writer first catches up with what other handles committed (it reopens the index file if it
  changed), so handles never write over each other.
- **A write is durable in both files or in neither.** add / overwrite: the vectors are added
  under fresh keys and the index file is saved (an atomic append commit), *then* the SQLite
  transaction that points the string ids at the new keys commits; the
  keys they replace leave the index afterwards. delete: SQLite commits first, then the index
  drops the keys (and saves). A kill in between leaves index keys no document refers to; every
  open ignores them and the next write removes them from the file.
- **Readers never modify**: opening (:meth:`load`) holds a shared lock, so it sees one commit
  of both files; searches notice another handle's commit (SQLite's ``data_version``) and reopen
  the index under the shared lock before they run.
- **Creation is atomic**: ``docs.sqlite`` is written whole under a temporary name and renamed
  into place under the exclusive lock; a store killed while being created is created again by
  :meth:`open`.

Without ``path`` everything lives in memory until :meth:`save` writes both files: into a new
directory beside the target, fsynced, then swapped in by renames (a crash leaves the old
directory whole as ``.<name>.previous``, which :meth:`load` opens with a RuntimeWarning; a
target holding anything but a store's files is refused). Bad input — a vector of another
dimension, NaN/inf, repeated ids, metadata JSON cannot hold, unknown filter operators — raises
``ValueError`` before anything is written. All methods are thread-safe (one lock).
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
import uuid
import warnings
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._atomic import fsync_directory, fsync_file, previous_directory, replace_directory
from .._deprecation import keyword_only_after, warn
from ..index import IndexConfig, VectorIndex
from ..index.file_guard import flocked
from . import filters

INDEX_FILE = "index.rq"
DOCS_FILE = "docs.sqlite"
LOCK_FILE = "store.lock"
SCHEMA = 1
STORE_FILES = {
    INDEX_FILE,
    f"{INDEX_FILE}.lock",
    DOCS_FILE,
    f"{DOCS_FILE}-wal",
    f"{DOCS_FILE}-shm",
    LOCK_FILE,
}
FILTER_CACHE = 64  # metadata filters whose allowed keys are kept between writes
_TABLES = """
CREATE TABLE IF NOT EXISTS docs (
    id TEXT PRIMARY KEY, key INTEGER NOT NULL UNIQUE, text TEXT, metadata TEXT NOT NULL,
    payload TEXT, grp TEXT);
CREATE INDEX IF NOT EXISTS docs_grp ON docs(grp);
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


@dataclass(frozen=True)
class Record:
    """One stored document (``metadata`` is a fresh dict: callers may keep it)."""

    id: str
    text: str | None
    metadata: dict
    payload: str | None
    group: str | None
    key: int


class DocumentStore:
    """Documents with vectors: add, overwrite, delete, get, filtered search, save/load.

    ``bits``, ``metric`` and ``index_options`` (the other fields of
    :class:`~rotaquant.IndexConfig`: ``seed``, ``mode``, ``keep_vectors``, ...) are checked at
    once and go to the :class:`~rotaquant.VectorIndex` built at the first add (its ``dim``: the
    first vectors').
    """

    @keyword_only_after(1, ("metric", "path"))  # the 0.1 positional order
    def __init__(
        self,
        bits: float = 4,
        *,
        metric: str = "cosine",
        path: str | os.PathLike | None = None,
        **index_options: Any,
    ):
        self.config = _index_config(bits, metric, index_options)
        self.path = None if path is None else Path(path)
        self._init_handle()
        meta = {"schema": SCHEMA, **_config_meta(self.config), "next_key": 0}
        if self.path is None:
            self._db = self._connect(None)
            self._set_meta(**meta)
            self._db.commit()
            return
        self.path.mkdir(parents=True, exist_ok=True)
        with _store_lock(self.path, exclusive=True):
            if (self.path / DOCS_FILE).exists():
                raise FileExistsError(f"{self.path} already holds a store: use load()")
            _create_database(self.path, meta)
            self._db = self._connect(self.path / DOCS_FILE)
            self._data_version = self._version()

    def _init_handle(self) -> None:
        """The per-handle state: nothing read from disk yet."""
        self._lock = threading.RLock()
        self._filter_cache: dict = {}
        self.index: VectorIndex | None = None
        self._index_seen: tuple | None = None  # the index file as this handle last saw it
        self._data_version = 0

    # ------------------------------------------------------------------ reading
    @property
    def bits(self) -> float:
        return self.config.bits

    @property
    def metric(self) -> str:
        return self.config.metric

    @property
    def dim(self) -> int | None:
        return None if self.index is None else self.index.dim

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    @property
    def nbytes(self) -> int:
        """Bytes held in memory: the index (codes, norms, ids) and the SQLite database's pages
        (text, metadata, payloads; its page count × page size)."""
        with self._lock:
            pages = self._db.execute("PRAGMA page_count").fetchone()[0]
            size = self._db.execute("PRAGMA page_size").fetchone()[0]
            return (self.index.nbytes if self.index is not None else 0) + pages * size

    def get(self, ids: Sequence[str]) -> list[Record]:
        """The stored records of ``ids`` that exist, in the order asked (missing: skipped)."""
        ids = _string_ids(ids)
        with self._lock:
            found = self._records("id", ids)
        by_id = {record.id: record for record in found}
        return [by_id[i] for i in dict.fromkeys(ids) if i in by_id]

    def records(self, where: filters.Filter | None = None, group: str | None = None):
        """Every record (matching ``where`` / of ``group``), in insertion order."""
        sql, params = self._where("SELECT *", where, group)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY key", params).fetchall()
        return [_record(row) for row in rows]

    @staticmethod
    def _where(select: str, where=None, group=None) -> tuple[str, list]:
        sql, params, clauses = f"{select} FROM docs", [], []
        if where is not None:
            clause, params = filters.to_sql(where)
            clauses.append(clause)
        if group is not None:
            clauses.append("grp = ?")
            params.append(group)
        if clauses:
            sql += " WHERE " + " AND ".join(f"({c})" for c in clauses)
        return sql, params

    @keyword_only_after(2, ("where", "predicate", "ids"))  # the 0.1 positional order
    def search(
        self,
        vectors: Any,
        k: int,
        *,
        where: filters.Filter | None = None,
        predicate: Callable[[Record], bool] | None = None,
        allow: Sequence[str] | None = None,
        deny: Sequence[str] | None = None,
        ids: Sequence[str] | None = None,
    ) -> list[list[tuple[Record, float]]]:
        """Top-``k`` records per query row of ``vectors`` (m, dim), best first, with the
        index's scores, among the records matching ``where`` and ``predicate``, whose ids are in
        ``allow`` (string ids; unknown ones ignored) and not in ``deny``. (``ids=``: the 0.1
        name of ``allow``.)"""
        if ids is not None:
            if allow is not None:
                raise TypeError("DocumentStore.search: pass allow= (ids= is its old name)")
            warn("DocumentStore.search(ids=...) is now allow=...")
            allow = ids
        with self._lock:
            self._catch_up()
            if self.index is None or not len(self.index):
                _ = self._vectors(vectors, None)  # still refuse malformed queries
                return [[] for _ in range(np.atleast_2d(np.asarray(vectors)).shape[0])]
            queries = self._vectors(vectors, self.index.dim)
            allowed = self._allowed(where, predicate, allow)
            if allowed is not None and not allowed.size:
                return [[] for _ in range(len(queries))]
            denied = None
            if deny is not None:
                denied = np.array([r.key for r in self._records("id", _string_ids(list(deny)))])
            scores, keys = self.index.search(queries, k, allow=allowed, deny=denied)
            wanted = [int(key) for key in np.unique(keys[keys >= 0])]
            by_key = {record.key: record for record in self._records("key", wanted)}
        return [
            [
                (by_key[int(key)], float(score))
                for key, score in zip(row_keys, row_scores, strict=True)
                if int(key) in by_key  # -1: fewer than k; absent: deleted by another handle
            ]
            for row_keys, row_scores in zip(keys, scores, strict=True)
        ]

    def vectors_of(self, records: Sequence[Record]) -> np.ndarray:
        """The index's decoded vectors of ``records`` (len, dim) float32 (MMR needs them)."""
        with self._lock:
            self._catch_up()
            keys = np.array([record.key for record in records], np.int64)
            return self.index.reconstruct(keys)

    # ------------------------------------------------------------------ writing
    def add(
        self,
        vectors: Any,
        texts: Sequence[str | None],
        metadatas: Sequence[dict | None] | None = None,
        ids: Sequence[str | None] | None = None,
        payloads: Sequence[str | None] | None = None,
        groups: Sequence[str | None] | None = None,
    ) -> list[str]:
        """Store documents (new ids: uuid4 strings); an id already stored is overwritten.
        Returns the ids, in order."""
        n = len(texts)
        ids = [None] * n if ids is None else list(ids)
        metadatas = [None] * n if metadatas is None else list(metadatas)
        payloads = [None] * n if payloads is None else list(payloads)
        groups = [None] * n if groups is None else list(groups)
        for name, column in (("ids", ids), ("metadatas", metadatas), ("payloads", payloads)):
            if len(column) != n:
                raise ValueError(f"{len(column)} {name} for {n} texts")
        if len(groups) != n:
            raise ValueError(f"{len(groups)} groups for {n} texts")
        ids = [str(uuid.uuid4()) if i is None else i for i in ids]
        ids = _string_ids(ids)
        if len(set(ids)) != n:
            raise ValueError("repeated ids in one add")
        encoded = [_metadata_json(m) for m in metadatas]
        if not n:
            return []
        with self._writing():
            vectors = self._vectors(vectors, self.dim, n)
            if self.index is None:
                self.index = VectorIndex.from_config(self.config.with_dim(vectors.shape[1]))
            start = self._meta("next_key")
            keys = np.arange(start, start + n, dtype=np.int64)
            replaced = [r.key for r in self._records("id", ids)]
            self._filter_cache.clear()
            self.index.add(vectors, keys)
            try:
                self._save_index()
                with self._db:  # one transaction: commits or rolls back
                    self._db.executemany(
                        "INSERT OR REPLACE INTO docs VALUES (?, ?, ?, ?, ?, ?)",
                        zip(ids, keys.tolist(), texts, encoded, payloads, groups, strict=True),
                    )
                    self._set_meta(next_key=start + n, dim=int(vectors.shape[1]))
            except BaseException:
                self.index.remove(keys)  # the file may hold them: every open ignores them
                raise
            if replaced:
                self.index.remove(np.array(replaced, np.int64))
        return ids

    def delete(self, ids: Iterable[str] | None = None, group: str | None = None) -> int:
        """Delete ``ids`` (unknown ones ignored), or the records of ``group``, or (both None)
        everything. Returns how many were deleted."""
        with self._writing():
            if ids is not None:
                found = self._records("id", _string_ids(list(ids)))
            else:
                found = self.records(group=group) if group is not None else self.records()
            if not found:
                return 0
            self._filter_cache.clear()
            with self._db:
                self._db.executemany("DELETE FROM docs WHERE id = ?", [(r.id,) for r in found])
            self.index.remove(np.array([r.key for r in found], np.int64))
            self._save_index()
            return len(found)

    def save(self, path: str | os.PathLike | None = None) -> None:
        """Write the store under ``path`` (default: its own ``path``, whose files are kept
        current anyway): another directory is replaced whole (see the module docstring)."""
        with self._lock:
            target = Path(path) if path is not None else self.path
            if target is None:
                raise ValueError("this store has no path: save(path)")
            if target == self.path:
                with self._writing():  # every write is already on disk: nothing is lost
                    self._save_index()
                    self._db.commit()
                return
            if target.exists():
                foreign = sorted(p.name for p in target.iterdir() if p.name not in STORE_FILES)
                if foreign:
                    raise ValueError(f"{target} holds other files ({foreign[:3]}): save elsewhere")
            replace_directory(target, self._write_copy)

    def _write_copy(self, folder: Path) -> None:
        """Both files of the store, complete, into the empty ``folder``."""
        if self.index is not None:
            self.index.save(folder / INDEX_FILE)
        _write_database(folder / DOCS_FILE, self._db.backup)

    @classmethod
    @keyword_only_after(1, ("metric", "path"))  # the 0.1 positional order
    def open(
        cls,
        bits: float = 4,
        *,
        metric: str = "cosine",
        path: str | os.PathLike | None = None,
        **index_options: Any,
    ) -> DocumentStore:
        """A new store, or (``path`` holding one) the saved store — which must have been made
        with the same index configuration (ValueError otherwise)."""
        if path is None or not (Path(path) / DOCS_FILE).exists():
            return cls(bits, metric=metric, path=path, **index_options)
        asked = _index_config(bits, metric, index_options)
        try:
            store = cls.load(path)
        except InterruptedCreationError:  # left by an older rotaquant: create it again
            _drop_interrupted_creation(Path(path))
            return cls.open(bits, metric=metric, path=path, **index_options)
        if asked != store.config:
            store.close()
            raise ValueError(
                f"{path} holds a store made with {_config_meta(store.config)}, not "
                f"{_config_meta(asked)}"
            )
        return store

    @classmethod
    def load(cls, path: str | os.PathLike) -> DocumentStore:
        """Open a saved store; writes go to it from then on. Index keys no document refers
        to (an interrupted write) are ignored, and removed from the file by the next write;
        documents whose vector is missing (an index file recovered to an older commit) are
        reported with a RuntimeWarning, and deleted by the next write."""
        path = Path(path)
        previous = previous_directory(path)
        if not (path / DOCS_FILE).exists() and (previous / DOCS_FILE).exists():
            warnings.warn(  # a save into another directory stopped between its two renames
                f"{path} is missing; opening the previous save {previous}",
                RuntimeWarning,
                stacklevel=2,
            )
            path = previous
        if not (path / DOCS_FILE).exists():
            raise FileNotFoundError(f"no store at {path} (missing {DOCS_FILE})")
        self = cls.__new__(cls)
        self.path = path
        self._init_handle()
        with _store_lock(path, exclusive=False):  # no writer between the two files
            self._db = self._connect(path / DOCS_FILE)
            try:
                if _interrupted_creation(self._db, path):
                    raise InterruptedCreationError(
                        f"{path}: a store whose creation was interrupted (empty, no schema); "
                        "DocumentStore.open() creates it again"
                    )
                schema = self._meta("schema")
                if schema != SCHEMA:
                    raise ValueError(f"{path}: unsupported store schema {schema!r}")
                try:
                    self.config = _index_config(
                        self._meta("bits"), self._meta("metric"), self._meta("index_options")
                    )
                except (TypeError, ValueError) as error:
                    raise ValueError(f"{path}: invalid store configuration: {error}") from None
                self._reopen(writing=False, verify=True)
                if self.index is None and len(self):
                    raise ValueError(f"{path}: documents without an index file ({INDEX_FILE})")
            except BaseException:
                self._db.close()
                raise
        return self

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # ------------------------------------------------------------------ internals
    @staticmethod
    def _connect(file: Path | None) -> sqlite3.Connection:
        db = sqlite3.connect(":memory:" if file is None else file, check_same_thread=False)
        db.row_factory = sqlite3.Row
        if file is not None:
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
        db.executescript(_TABLES)
        return db

    def _meta(self, name: str):
        row = self._db.execute("SELECT value FROM meta WHERE name = ?", (name,)).fetchone()
        return None if row is None else json.loads(row[0])

    def _set_meta(self, **values) -> None:
        self._db.executemany(
            "INSERT OR REPLACE INTO meta VALUES (?, ?)",
            [(name, json.dumps(value)) for name, value in values.items()],
        )

    def _records(self, column: str, values: list) -> list[Record]:
        found = []
        for start in range(0, len(values), 500):  # SQLite's parameter limit
            part = values[start : start + 500]
            marks = ", ".join("?" * len(part))
            rows = self._db.execute(f"SELECT * FROM docs WHERE {column} IN ({marks})", part)
            found += [_record(row) for row in rows]
        return found

    def _allowed(self, where, predicate, ids) -> np.ndarray | None:
        """The keys a search may return (None: all), of the records matching ``where``,
        ``predicate`` and (string) ``ids``. A metadata filter's keys are cached until the next
        write (queries repeat filters; each costs a SQLite pass)."""
        if where is None and predicate is None and ids is None:
            return None
        if predicate is None and ids is None:
            cached = self._filter_cache.get(where)
            if cached is None:
                keys = [row[0] for row in self._db.execute(*self._where("SELECT key", where))]
                cached = np.array(sorted(keys), np.int64)
                if len(self._filter_cache) >= FILTER_CACHE:
                    self._filter_cache.pop(next(iter(self._filter_cache)))
                self._filter_cache[where] = cached
            return cached
        records = self.records(where) if where is not None else None
        if ids is not None:
            chosen = self._records("id", _string_ids(list(ids)))
            if records is not None:
                keep = {r.key for r in records}
                chosen = [r for r in chosen if r.key in keep]
            records = chosen
        if predicate is not None:
            records = [
                r for r in (records if records is not None else self.records()) if predicate(r)
            ]
        return np.array(sorted(r.key for r in records), np.int64)

    def _vectors(self, vectors: Any, dim: int | None, n: int | None = None) -> np.ndarray:
        arr = np.asarray(vectors, dtype=np.float32)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] == 0:
            raise ValueError(f"vectors must be (n, dim), got shape {arr.shape}")
        if n is not None and arr.shape[0] != n:
            raise ValueError(f"{arr.shape[0]} vectors for {n} documents")
        if dim is not None and arr.shape[1] != dim:
            raise ValueError(f"this store holds {dim}-dimensional vectors, got {arr.shape[1]}")
        if not np.isfinite(arr).all():
            raise ValueError("vectors contain NaN or infinity")
        return arr

    def _save_index(self) -> None:
        if self.path is not None and self.index is not None:
            self.index.save(self.path / INDEX_FILE)
            self._index_seen = _file_state(self.path / INDEX_FILE)

    def _version(self) -> int:
        """SQLite's count of commits by *other* connections (changes when they commit)."""
        return self._db.execute("PRAGMA data_version").fetchone()[0]

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """A write: the handle's lock, the directory's exclusive lock (a path store), and the
        handle caught up with every commit other handles made."""
        with self._lock:
            if self.path is None:
                yield
                return
            with _store_lock(self.path, exclusive=True):
                # another handle's SQLite commit, or an index save whose SQLite commit a
                # kill prevented
                if (
                    self._version() != self._data_version
                    or _file_state(self.path / INDEX_FILE) != self._index_seen
                ):
                    self._reopen(writing=True, verify=False)
                yield

    def _catch_up(self) -> None:
        """Before a read of the index: if another handle committed since this one last
        looked, reopen the index at that commit (under the shared lock: no writer midway)."""
        if self.path is None or self._version() == self._data_version:
            return
        with _store_lock(self.path, exclusive=False):
            self._reopen(writing=False, verify=False)

    def _reopen(self, writing: bool, verify: bool) -> None:
        """Read the store's current commit: the index file again if it changed, then the keys
        both files agree on. Index keys no document names (a write killed midway) are dropped
        from memory (and, ``writing``, from the file by the write's save); documents without a
        vector (an index file recovered to an older commit) are reported, and deleted by a
        writer. Called under the directory lock."""
        self._filter_cache.clear()
        self._data_version = self._version()
        state = _file_state(self.path / INDEX_FILE)
        if state != self._index_seen or self.index is None:
            self.index = (
                None if state is None else VectorIndex.load(self.path / INDEX_FILE, verify=verify)
            )
            self._index_seen = state
        if self.index is None:
            return
        documents = self._db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        if self.index.recovered_from is None and len(self.index) == documents:
            return  # unrecovered, the index holds every document's key: no orphan either
        live = {row[0] for row in self._db.execute("SELECT key FROM docs")}
        stored = set(self.index.ids.tolist())
        orphans = stored - live
        if orphans:  # vectors of a write that did not commit: nothing refers to them
            self.index.remove(np.array(sorted(orphans), np.int64))
        missing = live - stored
        if missing:
            warnings.warn(
                f"{self.path}: {len(missing)} documents have no vector in {INDEX_FILE} "
                "(the index file was recovered to an older commit)"
                + ("; they are deleted" if writing else "; searches cannot return them"),
                RuntimeWarning,
                stacklevel=4,
            )
            if writing:
                with self._db:
                    self._db.executemany("DELETE FROM docs WHERE key = ?", [(k,) for k in missing])


def _store_lock(folder: Path, exclusive: bool):
    """``flock`` on ``folder/store.lock``: exclusive for a write, shared for an open."""
    return flocked(folder / LOCK_FILE, exclusive)


def _file_state(file: Path) -> tuple | None:
    """What changes whenever an index file is committed to (appended or replaced)."""
    try:
        st = file.stat()
    except FileNotFoundError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def _create_database(folder: Path, meta: dict[str, Any]) -> None:
    """``docs.sqlite`` with its tables and ``meta``, complete: written under a temporary
    name, fsynced and renamed into place (the caller holds the exclusive lock)."""
    for stale in folder.glob(f".{DOCS_FILE}.*.new"):
        stale.unlink()
    tmp = folder / f".{DOCS_FILE}.{os.getpid()}.new"

    def fill(db: sqlite3.Connection) -> None:
        db.executescript(_TABLES)
        rows = [(name, json.dumps(value)) for name, value in meta.items()]
        db.executemany("INSERT INTO meta VALUES (?, ?)", rows)

    try:
        _write_database(tmp, fill)
        os.replace(tmp, folder / DOCS_FILE)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_directory(folder)


def _write_database(file: Path, fill: Callable[[sqlite3.Connection], None]) -> None:
    """A new SQLite database at ``file``, filled by ``fill`` in one transaction, fsynced."""
    db = sqlite3.connect(file)
    try:
        with db:
            fill(db)
    finally:
        db.close()
    fsync_file(file)


class InterruptedCreationError(ValueError):
    """The directory holds what a store creation killed midway left (older rotaquant
    versions created ``docs.sqlite`` in place): ``DocumentStore.open`` creates it again."""


def _interrupted_creation(db: sqlite3.Connection, folder: Path) -> bool:
    """A ``docs.sqlite`` left by a creation killed midway: no schema row, no documents, no
    index file."""
    tables = {row[0] for row in db.execute("SELECT name FROM sqlite_master")}
    if "meta" in tables and db.execute("SELECT 1 FROM meta WHERE name = 'schema'").fetchone():
        return False
    if "docs" in tables and db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]:
        return False
    return not (folder / INDEX_FILE).exists()


def _drop_interrupted_creation(folder: Path) -> None:
    """Remove what an interrupted creation left (checked again under the exclusive lock)."""
    with _store_lock(folder, exclusive=True):
        if not (folder / DOCS_FILE).exists():
            return
        db = sqlite3.connect(folder / DOCS_FILE)
        try:
            interrupted = _interrupted_creation(db, folder)
        finally:
            db.close()
        if interrupted:
            for name in (DOCS_FILE, f"{DOCS_FILE}-wal", f"{DOCS_FILE}-shm"):
                (folder / name).unlink(missing_ok=True)


def _index_config(bits: Any, metric: Any, index_options: dict[str, Any]) -> IndexConfig:
    """The index configuration of a store (its ``dim``: None until the first add)."""
    return IndexConfig.from_dict({"bits": bits, "metric": metric, **index_options})


def _config_meta(config: IndexConfig) -> dict[str, Any]:
    """How the meta table records a configuration (the 0.1 keys: bits, metric, options)."""
    options = {k: v for k, v in config.options().items() if k != "metric"}
    return {"bits": config.bits, "metric": config.metric, "index_options": options}


def _record(row: sqlite3.Row) -> Record:
    return Record(
        row["id"], row["text"], json.loads(row["metadata"]), row["payload"], row["grp"], row["key"]
    )


def _string_ids(ids: Sequence) -> list[str]:
    if isinstance(ids, str):
        raise ValueError("ids must be a list of strings, not one string")
    bad = [i for i in ids if not isinstance(i, str)]
    if bad:
        raise ValueError(f"ids must be strings, got {bad[0]!r}")
    return list(ids)


def _metadata_json(metadata: dict | None) -> str:
    if metadata is None:
        return "{}"
    if not isinstance(metadata, dict):
        raise ValueError(f"metadata must be a dict, got {type(metadata).__name__}")
    try:
        return json.dumps(metadata, allow_nan=False)
    except (TypeError, ValueError) as error:
        raise ValueError(f"metadata must be JSON-serializable: {error}") from None
