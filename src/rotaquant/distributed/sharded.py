"""ShardedIndex: a VectorIndex split over Ray actors, one shard each.

Routing: an id lives on shard ``splitmix64(id) mod shards`` — stable across processes and
machines. ``add``/``upsert``/``remove`` split a batch by shard and send the parts in parallel
(numpy arrays through Ray's object store); ``search`` puts the query batch in the object store
once, every shard searches it (``allow`` split by the same hash), and the per-shard top-k lists
merge exactly: every shard holds the same codec (same ``seed``), so each vector gets the score
one VectorIndex holding everything would give it, and the merged top-k is that index's.

Persistence: ``save()`` has every shard save its own file ``shard-0000.rq`` … under ``path``
(local disk, or any path all actors see), then writes ``manifest.json`` (shard count, codec
configuration, next id, generation) atomically. ``ShardedIndex.load(path)`` starts the actors on
those files.

Faults: shard actors are restarted by Ray (``max_restarts``) and reload their last saved file.
The driver counts what it sent each shard since that shard's last save; the first call that
meets a restarted shard raises :class:`ShardRestartedError` naming the shard and exactly what
was lost (adds, upserts, removals since its save) — never a silent drop — and later calls go
on with the reloaded shard. A shard that does not answer (dead, restarting past ``timeout``)
makes a search raise :class:`ShardUnavailableError`, or, with ``partial_ok=True``, return the
live shards' results with ``result.missing`` naming the absent shards.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

try:
    import ray
    from ray.exceptions import GetTimeoutError, RayActorError
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "rotaquant.distributed needs Ray: pip install 'rotaquant[distributed]'"
    ) from error

from .._arrays import check_matrix, check_result_fits, positive_int
from .._atomic import atomic_write
from .._deprecation import keyword_only_after
from ..index import IndexConfig, SearchResult, VectorIndex
from ..index.validation import MAX_ID, as_ids, as_matrix, float16_copy, id_set, normalized

MANIFEST = "manifest.json"
FORMAT = "rotaquant.ShardedIndex"
VERSION = 1
INLINE_BYTES = 100_000  # Ray's own inline limit for task arguments


class ShardRestartedError(RuntimeError):
    """A shard restarted from its last save: ``lost`` counts what it no longer holds."""

    def __init__(self, shard: int, lost: dict[str, int]):
        self.shard, self.lost = shard, dict(lost)
        parts = ", ".join(f"{count} {kind}" for kind, count in lost.items() if count) or "nothing"
        super().__init__(
            f"shard {shard} restarted and reloaded its last saved file: lost since that save: "
            f"{parts} (re-apply them; the shard works again from now on)"
        )


class ShardUnavailableError(RuntimeError):
    """A shard did not answer (dead or restarting)."""

    def __init__(self, shard: int, reason: str):
        self.shard = shard
        super().__init__(
            f"shard {shard} is unavailable ({reason}); partial_ok=True searches the live shards"
        )


def _with_threads(actor_options: dict | None, threads: int | None) -> dict:
    """``actor_options`` with ``ROTAQUANT_NUM_THREADS`` in the actors' environment."""
    options = dict(actor_options or {})
    if threads is not None:
        threads = positive_int(threads, "threads_per_shard")
        runtime = dict(options.get("runtime_env") or {})
        runtime["env_vars"] = {**runtime.get("env_vars", {}), "ROTAQUANT_NUM_THREADS": str(threads)}
        options["runtime_env"] = runtime
    return options


def _no_changes() -> dict[str, int]:
    """What the driver counts per shard between saves (what a restart would lose)."""
    return {"adds": 0, "upserts": 0, "removals": 0}


def _shard_file(shard: int) -> str:
    return f"shard-{shard:04d}.rq"


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each int64 id: splitmix64(id) mod ``shards`` (stable everywhere)."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


class _Shard:
    """One shard: a VectorIndex, loaded from ``file`` when it exists (also after a restart)."""

    def __init__(self, file: str | None, config: dict):
        self.file = file
        if file is not None and os.path.exists(file):
            self.index = VectorIndex.load(file, mmap=False)
        else:
            self.index = VectorIndex.from_config(IndexConfig.from_dict(config))
        self.incarnation = uuid.uuid4().hex  # a new value each time Ray (re)starts the actor

    def hello(self) -> str:
        return self.incarnation

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> str:
        self.index.add(vectors, ids)
        return self.incarnation

    def upsert(self, vectors: np.ndarray, ids: np.ndarray) -> str:
        self.index.upsert(vectors, ids)
        return self.incarnation

    def remove(self, ids: np.ndarray) -> str:
        self.index.remove(ids)
        return self.incarnation

    def present(self, ids: np.ndarray) -> tuple[str, np.ndarray]:
        return self.incarnation, np.isin(ids, self.index.ids)

    def search(self, queries: np.ndarray, k: int, allow, rerank, deny) -> tuple:
        scores, ids = self.index.search(queries, k, allow=allow, deny=deny, rerank=rerank)
        return self.incarnation, scores, ids

    def timed_search(self, queries: np.ndarray, k: int) -> float:
        """Seconds of the fastest of three searches inside the actor (no transport):
        the scan cost the benchmarks separate from Ray's."""
        best = float("inf")
        for _ in range(3):
            start = time.perf_counter()
            self.index.search(queries, k)
            best = min(best, time.perf_counter() - start)
        return best

    def save(self, file: str) -> str:
        self.index.save(file, overwrite=file != self.file)
        return self.incarnation

    def stats(self) -> tuple[str, int, int]:
        return self.incarnation, len(self.index), self.index.nbytes


class ShardedIndex:
    """A VectorIndex over ``shards`` Ray actors (``ray.init()`` first for a cluster; a local
    one is started when Ray is not initialized).

    Args:
        dim, bits, metric, index_options: as :class:`~rotaquant.VectorIndex` (the fields of
            :class:`~rotaquant.IndexConfig`: ``seed``, ``mode``, ``keep_vectors``, ...): every
            shard encodes exactly as one VectorIndex with the same options would.
        shards: number of shard actors.
        path: directory for ``save()`` (shard files + manifest); None: in memory (a restarted
            shard then comes back empty, and says so).
        max_restarts: how often Ray restarts a dead shard actor.
        timeout: seconds a call waits for a shard before it counts as unavailable.
        threads_per_shard: native kernel threads of each shard actor (its
            ``ROTAQUANT_NUM_THREADS``; default: the node's cores — set it when several shards
            share a node).
        actor_options: passed to the actors' ``.options()`` (default: ``num_cpus=0`` and the
            SPREAD strategy, so shards spread over a cluster's nodes and never wait for CPUs).
    """

    @keyword_only_after(
        2,
        (
            "shards",
            "metric",
            "path",
            "max_restarts",
            "timeout",
            "threads_per_shard",
            "actor_options",
        ),
    )  # the 0.1 positional order
    def __init__(
        self,
        dim: int,
        bits: float = 4,
        *,
        shards: int = 2,
        metric: str = "ip",
        path: str | os.PathLike | None = None,
        max_restarts: int = 3,
        timeout: float = 60.0,
        threads_per_shard: int | None = None,
        actor_options: dict | None = None,
        **index_options: Any,
    ):
        shards = positive_int(shards, "shards")
        # every option checked now, before any actor starts
        self.config = IndexConfig.from_dict(
            {"dim": dim, "bits": bits, "metric": metric, **index_options}
        )
        self.path = None if path is None else Path(path)
        if self.path is not None and self.path.is_dir():
            held = sorted(p.name for p in self.path.glob("shard-*.rq"))
            if held or (self.path / MANIFEST).exists():
                raise FileExistsError(
                    f"{self.path} already holds a ShardedIndex ({held[:3] or MANIFEST}): "
                    "use ShardedIndex.load, or another path"
                )
        self.timeout = float(timeout)
        self._next_id, self._generation = 0, 0
        self._start(shards, max_restarts, _with_threads(actor_options, threads_per_shard), False)

    def _start(self, shards: int, max_restarts: int, actor_options, load: bool) -> None:
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        options = {"num_cpus": 0, "scheduling_strategy": "SPREAD", **(actor_options or {})}
        actor = ray.remote(_Shard).options(max_restarts=max_restarts, max_task_retries=0, **options)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        files = [
            None if self.path is None else str(self.path / _shard_file(i)) for i in range(shards)
        ]
        if load:
            missing = [f for f in files if not os.path.exists(f)]
            if missing:
                raise FileNotFoundError(f"shard files missing: {missing}")
        config = self.config.to_dict()
        self.actors = [actor.remote(file, config) for file in files]
        self._incarnations = self._gather([a.hello.remote() for a in self.actors])
        self._unsaved = [_no_changes() for _ in self.actors]

    # ------------------------------------------------------------------ properties
    @property
    def shards(self) -> int:
        return len(self.actors)

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits(self) -> float:
        return self.config.bits

    @property
    def metric(self) -> str:
        return self.config.metric

    def __len__(self) -> int:
        return sum(n for _, n, _ in self._stats())

    @property
    def nbytes(self) -> int:
        """Bytes the shards hold (each VectorIndex's ``nbytes``, summed)."""
        return sum(b for _, _, b in self._stats())

    def __repr__(self) -> str:
        return (
            f"ShardedIndex(dim={self.dim}, bits={self.bits}, metric={self.metric!r}, "
            f"shards={self.shards}, n={len(self)})"
        )

    # ------------------------------------------------------------------ writing
    def add(self, vectors: Any, ids: Any = None) -> np.ndarray:
        """As :meth:`VectorIndex.add`: ids default to one past the largest seen; an id already
        present anywhere is a ValueError and nothing is added."""
        matrix = self._matrix(vectors, "add")
        n = matrix.shape[0]
        if ids is None:
            if self._next_id + n - 1 > MAX_ID:
                raise ValueError("add: sequential ids would pass 2**63 - 1")
            keys = np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        else:
            keys = as_ids(ids, n, "add")
            present = self._present(keys)
            if present.any():
                raise ValueError(f"add: ids already present (e.g. {int(keys[present][0])})")
        if n:
            self._scatter("add", keys, matrix)
        return keys

    def upsert(self, vectors: Any, ids: Any) -> None:
        """As :meth:`VectorIndex.upsert`: add, replacing vectors whose ids are present."""
        matrix = self._matrix(vectors, "upsert")
        keys = as_ids(ids, matrix.shape[0], "upsert")
        if keys.size:
            self._scatter("upsert", keys, matrix)

    def remove(self, ids: Any) -> None:
        """As :meth:`VectorIndex.remove`: KeyError naming absent ids, and nothing removed."""
        keys = np.atleast_1d(np.asarray(ids))
        keys = as_ids(keys, keys.size, "remove")
        if not keys.size:
            return
        present = self._present(keys)
        if not present.all():
            raise KeyError(f"remove: ids not present: {keys[~present][:10].tolist()}")
        self._scatter("remove", keys)

    def save(self, path: str | os.PathLike | None = None) -> None:
        """Every shard saves its file, then the manifest is replaced atomically. ``path``:
        the construction ``path`` by default — the files restarted shards reload; another
        directory receives a copy (restarts still reload the construction path's files)."""
        target = self.path if path is None else Path(path)
        if target is None:
            raise ValueError("this index has no path: save(path) or construct it with path=")
        target.mkdir(parents=True, exist_ok=True)
        files = [str(target / _shard_file(i)) for i in range(self.shards)]
        self._gather([a.save.remote(f) for a, f in zip(self.actors, files, strict=True)])
        if target == self.path:
            self._unsaved = [_no_changes() for _ in self.actors]
        self._generation += 1
        manifest = {
            "format": FORMAT,
            "version": VERSION,
            "shards": self.shards,
            "dim": self.dim,
            "bits": self.bits,
            "metric": self.metric,
            "index_options": {k: v for k, v in self.config.options().items() if k != "metric"},
            "next_id": self._next_id,
            "generation": self._generation,
        }
        atomic_write(target / MANIFEST, [json.dumps(manifest, indent=2).encode()])

    @classmethod
    @keyword_only_after(1, ("max_restarts", "timeout", "threads_per_shard", "actor_options"))
    def load(
        cls,
        path: str | os.PathLike,
        *,
        max_restarts: int = 3,
        timeout: float = 60.0,
        threads_per_shard: int | None = None,
        actor_options: dict | None = None,
    ) -> ShardedIndex:
        """Start shard actors on the files a :meth:`save` wrote under ``path``."""
        path = Path(path)
        try:
            manifest = json.loads((path / MANIFEST).read_text())
        except FileNotFoundError:
            raise FileNotFoundError(f"no ShardedIndex at {path} (missing {MANIFEST})") from None
        except json.JSONDecodeError as error:
            raise ValueError(f"{path / MANIFEST} is not valid JSON: {error}") from None
        if manifest.get("format") != FORMAT or manifest.get("version") != VERSION:
            raise ValueError(f"{path / MANIFEST} is not a ShardedIndex manifest of version 1")
        self = cls.__new__(cls)
        try:
            self.config = IndexConfig.from_dict(
                {
                    "dim": manifest["dim"],
                    "bits": manifest["bits"],
                    "metric": manifest["metric"],
                    **manifest["index_options"],
                }
            )
        except (KeyError, TypeError, ValueError) as error:
            raise ValueError(f"{path / MANIFEST}: invalid configuration: {error!r}") from None
        self.path, self.timeout = path, float(timeout)
        self._next_id, self._generation = manifest["next_id"], manifest["generation"]
        actor_options = _with_threads(actor_options, threads_per_shard)
        self._start(manifest["shards"], max_restarts, actor_options, load=True)
        return self

    # ------------------------------------------------------------------ search
    @keyword_only_after(2, ("allow", "rerank", "deny", "partial_ok"))  # the 0.1 order
    def search(
        self,
        queries: Any,
        k: int = 10,
        *,
        allow: Any = None,
        deny: Any = None,
        rerank: int | None = None,
        partial_ok: bool = False,
    ) -> SearchResult:
        """As :meth:`VectorIndex.search` (the scores and ids one index holding every vector
        returns; among exactly equal scores the smaller id comes first, where one index
        follows its storage order), as a :class:`SearchResult`. With ``rerank``, each shard
        re-scores its own ``rerank`` best candidates: at least as good as one index's."""
        matrix = self._matrix(queries, "queries")
        k = positive_int(k, "k")
        check_result_fits(matrix.shape[0], k)
        allowed, denied = self._split(allow, "allow"), self._split(deny, "deny")
        # a large batch goes to the object store once (every shard reads it zero-copy); a
        # small one travels inline with each call (a put costs more than it saves)
        shared = matrix if matrix.nbytes < INLINE_BYTES else ray.put(matrix)
        refs = [
            actor.search.remote(shared, int(k), allowed[s], rerank, denied[s])
            for s, actor in enumerate(self.actors)
        ]
        answers, missing = [], []
        for shard, ref in enumerate(refs):
            try:
                incarnation, scores, ids = ray.get(ref, timeout=self.timeout)
            except (RayActorError, GetTimeoutError) as error:
                if not partial_ok:
                    raise ShardUnavailableError(shard, type(error).__name__) from error
                missing.append(shard)
                continue
            self._check_incarnation(shard, incarnation)
            answers.append((scores, ids))
        return SearchResult(*self._merge(answers, matrix.shape[0], int(k)), missing)

    def _split(self, ids: Any, name: str) -> list:
        """``allow``/``deny`` (as VectorIndex.search takes them) split by shard."""
        if ids is None:
            return [None] * self.shards
        keys = id_set(ids, name)
        owner = shard_of(keys, self.shards)
        return [keys[owner == shard] for shard in range(self.shards)]

    def _merge(self, answers, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        worst = np.inf if self.metric == "l2" else -np.inf
        if not answers:
            return np.full((m, k), worst, np.float32), np.full((m, k), -1, np.int64)
        scores = np.concatenate([s for s, _ in answers], axis=1)
        ids = np.concatenate([i for _, i in answers], axis=1)
        key = scores if self.metric == "l2" else -scores
        key = np.where(ids < 0, np.inf, key)  # padding last
        order = np.lexsort((ids, key), axis=-1)[:, :k]  # equal scores: the smaller id first
        return (
            np.take_along_axis(scores, order, axis=1).astype(np.float32),
            np.take_along_axis(ids, order, axis=1).astype(np.int64),
        )

    # ------------------------------------------------------------------ internals
    def _matrix(self, vectors: Any, name: str) -> np.ndarray:
        """(n, dim) float32, checked here so that no shard refuses a part of a batch that
        others accepted."""
        matrix = np.asarray(as_matrix(vectors, self.dim, name), dtype=np.float32)
        check_matrix(matrix, self.dim, name)  # NaN / inf
        unit = normalized(matrix, name) if self.metric == "cosine" else matrix  # zero rows
        if name != "queries" and self.config.keep_vectors:
            float16_copy(unit)  # the float16 copy's range, as every shard would check it
        return matrix

    def _scatter(self, method: str, keys: np.ndarray, matrix: np.ndarray | None = None) -> None:
        """Send each shard its part; every shard's answer is accounted for before the first
        failure is raised (a shard that restarted meanwhile counts this batch as unsaved)."""
        owner = shard_of(keys, self.shards)
        refs, parts = [], []
        for shard, actor in enumerate(self.actors):
            chosen = np.flatnonzero(owner == shard)
            if not chosen.size:
                continue
            args = (keys[chosen],) if matrix is None else (matrix[chosen], keys[chosen])
            refs.append(getattr(actor, method).remote(*args))
            parts.append((shard, chosen.size))
        counter = {"add": "adds", "upsert": "upserts", "remove": "removals"}[method]
        failures = []
        for (shard, count), ref in zip(parts, refs, strict=True):
            try:
                incarnation = ray.get(ref, timeout=self.timeout)
            except (RayActorError, GetTimeoutError) as error:
                failures.append(ShardUnavailableError(shard, type(error).__name__))
                continue
            try:
                self._check_incarnation(shard, incarnation)
            except ShardRestartedError as restarted:
                failures.append(restarted)
            self._unsaved[shard][counter] += count  # applied (to the reloaded shard, if so)
        if keys.size and method != "remove":
            self._next_id = max(self._next_id, int(keys.max()) + 1)
        if failures:
            raise failures[0]

    def _present(self, keys: np.ndarray) -> np.ndarray:
        owner = shard_of(keys, self.shards)
        present = np.zeros(keys.size, bool)
        parts = [(s, np.flatnonzero(owner == s)) for s in range(self.shards)]
        parts = [(s, rows) for s, rows in parts if rows.size]
        refs = [self.actors[s].present.remote(keys[rows]) for s, rows in parts]
        for (shard, rows), (incarnation, found) in zip(
            parts, self._gather(refs, parts), strict=True
        ):
            self._check_incarnation(shard, incarnation)
            present[rows] = found
        return present

    def _stats(self):
        answers = self._gather([a.stats.remote() for a in self.actors])
        for shard, (incarnation, _, _) in enumerate(answers):
            self._check_incarnation(shard, incarnation)
        return answers

    def _gather(self, refs, shards=None) -> list:
        """ray.get of every ref; a shard that fails to answer is a ShardUnavailableError."""
        out = []
        for position, ref in enumerate(refs):
            shard = position if shards is None else shards[position][0]
            try:
                out.append(ray.get(ref, timeout=self.timeout))
            except (RayActorError, GetTimeoutError) as error:
                raise ShardUnavailableError(shard, type(error).__name__) from error
        return out

    def _check_incarnation(self, shard: int, incarnation: str) -> None:
        """Raise (once) if ``shard`` restarted since the driver last heard from it."""
        if incarnation == self._incarnations[shard]:
            return
        lost = self._unsaved[shard]
        self._incarnations[shard] = incarnation
        self._unsaved[shard] = _no_changes()
        raise ShardRestartedError(shard, lost)
