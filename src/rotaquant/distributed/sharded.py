"""ShardedIndex: a VectorIndex split over Ray actors, one shard each.

Routing: an id lives on shard ``splitmix64(id) mod shards`` — stable across processes and
machines. ``add``/``upsert``/``remove`` split a batch by shard and send the parts in parallel
(numpy arrays through Ray's object store); ``search`` puts the query batch in the object store
once, every shard searches it (``allow`` split by the same hash), and the per-shard top-k lists
merge exactly: every shard holds the same codec (same ``seed``), so each vector gets the score
one VectorIndex holding everything would give it, and the merged top-k is that index's.

Persistence (``manifest``): ``save()`` is one commit across shards — every shard commits its
file, then ``manifest.json`` (checksummed) names each file at that commit; ``load`` opens
each shard at the commit its manifest names, so a save interrupted anywhere leaves the
previous one whole.

Faults: shard actors are restarted by Ray (``max_restarts``) and reload the commit the
manifest names. Calls that only read (search, counts) wait for a restarting shard until
``timeout``. The driver counts what it sent each shard since the last save: the first call
that meets a restarted shard that lost nothing answers, with a ``RuntimeWarning`` and the
shard in ``result.restarted``; one that lost changes raises :class:`ShardRestartedError`
naming exactly what (adds, upserts, removals) — never a silent drop — and later calls go on
with the reloaded shard. A shard that does not answer (dead, or restarting past
``timeout``) makes a search raise :class:`ShardUnavailableError`, or, with
``partial_ok=True``, return the live shards' results with ``result.missing`` naming the
absent shards. Errors raised inside a shard (a ValueError, KeyError, ...) reach the caller as
themselves, with a note naming the shard.
"""

from __future__ import annotations

import os
import time
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

try:
    import ray
    from ray.exceptions import ActorUnavailableError, GetTimeoutError, RayActorError, RayTaskError
except ImportError as error:  # pragma: no cover - exercised without the extra
    raise ImportError(
        "rotaquant.distributed needs Ray: pip install 'rotaquant[distributed]'"
    ) from error

from .._arrays import check_matrix, check_result_fits, positive_int
from .._atomic import atomic_write
from .._deprecation import keyword_only_after
from ..index import FileChangedError, IndexConfig, SearchResult, VectorIndex
from ..index.coarse import CoarseQuantizer
from ..index.file_guard import flocked
from ..index.ivf import TRAIN_PER_LIST
from ..index.validation import MAX_ID, as_ids, as_matrix, float16_copy, id_set, normalized
from . import manifest
from .manifest import MANIFEST, shard_of

SAVE_LOCK = "save.lock"  # beside the manifest: held by the driver for a whole save
INLINE_BYTES = 100_000  # Ray's own inline limit for task arguments
_RETRY_PAUSE = 0.05  # seconds between asks of a restarting shard


class ShardRestartedError(RuntimeError):
    """A shard restarted from its last save: ``lost`` counts what it no longer holds."""

    def __init__(self, shard: int, lost: dict[str, int]):
        self.shard, self.lost = shard, dict(lost)
        parts = ", ".join(f"{count} {kind}" for kind, count in lost.items() if count)
        super().__init__(
            f"shard {shard} restarted and reloaded its last saved file: lost since that save: "
            f"{parts} (re-apply them; the shard works again from now on)"
        )


class _TrainsAlone(ValueError):
    """Raised by an untrained IVF shard (one restarted from a save made before training) whose
    add would train it on its own rows; the driver sends it the shared centroids instead."""


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


def _entries_of(saved: dict | None) -> list[dict] | None:
    """The shard entries of a read manifest, as a new manifest names them (None: no
    manifest, or a version-1 one, whose entries name no commit)."""
    if saved is None or any(entry["commit"] is None for entry in saved["files"]):
        return None
    return [{**entry, "commit": list(entry["commit"])} for entry in saved["files"]]


class _Shard:
    """One shard: a VectorIndex, opened at the commit the manifest under ``home`` names
    (also after a restart), or empty when ``home`` is None or holds no manifest yet. A shard
    whose file cannot be opened stays up and answers every call with that ValueError."""

    def __init__(self, home: str | None, shard: int, shards: int, config: dict):
        self.home, self.shard, self.shards = home, shard, shards
        self.incarnation = uuid.uuid4().hex  # a new value each time Ray (re)starts the actor
        self.generation, self.error = 0, None  # the manifest generation opened
        config = IndexConfig.from_dict(config)
        try:
            self.index = self._open(config)
        except (OSError, ValueError) as error:
            self.index, self.error = None, str(error)

    def _open(self, config: IndexConfig) -> VectorIndex:
        if self.home is None or not os.path.exists(os.path.join(self.home, MANIFEST)):
            return VectorIndex.from_config(config)
        saved = manifest.read(Path(self.home))
        if saved["shards"] != self.shards or saved["config"] != config:
            raise ValueError(
                f"shard {self.shard}: {self.home}'s manifest now describes another index "
                f"({saved['shards']} shards, {saved['config']})"
            )
        self.generation = saved["generation"]
        return manifest.open_shard(Path(self.home), saved, self.shard)

    def _usable(self) -> VectorIndex:
        if self.error is not None:
            raise ValueError(self.error)
        return self.index

    def hello(self) -> tuple[str, str | None, int]:
        return self.incarnation, self.error, self.generation

    def add(self, vectors: np.ndarray, ids: np.ndarray) -> str:
        self._not_alone(len(ids)).add(vectors, ids)
        return self.incarnation

    def upsert(self, vectors: np.ndarray, ids: np.ndarray) -> str:
        self._not_alone(len(ids)).upsert(vectors, ids)
        return self.incarnation

    def _not_alone(self, rows: int) -> VectorIndex:
        """The index, unless adding ``rows`` would make an untrained IVF shard train its own
        centroids (the driver trains every shard with the same ones before such an add, so
        only a shard that restarted untrained meets this): then ``_TrainsAlone``."""
        index = self._usable()
        nlist = index.nlist
        if nlist is not None and not index.trained and len(index) + rows >= TRAIN_PER_LIST * nlist:
            raise _TrainsAlone(f"shard {self.shard} is untrained and would train alone")
        return index

    def centroids(self) -> tuple[str, np.ndarray | None]:
        return self.incarnation, self._usable().centroids

    def remove(self, ids: np.ndarray) -> str:
        self._usable().remove(ids)
        return self.incarnation

    def present(self, ids: np.ndarray) -> tuple[str, np.ndarray]:
        return self.incarnation, np.isin(ids, self._usable().ids)

    def search(self, queries: np.ndarray, k: int, allow, rerank, deny, nprobe) -> tuple:
        index = self._usable()
        k = min(k, max(len(index), 1))  # no shard returns more rows than it holds
        scores, ids = index.search(queries, k, allow=allow, deny=deny, rerank=rerank, nprobe=nprobe)
        return self.incarnation, scores, ids

    def buffered(self) -> tuple[str, np.ndarray]:
        """The vectors an untrained IVF shard holds (exactly, as added)."""
        index = self._usable()
        return self.incarnation, index.reconstruct(index.ids)

    def train(self, centroids: np.ndarray) -> str:
        self._usable().train(centroids=centroids)
        return self.incarnation

    def timed_search(self, queries: np.ndarray, k: int) -> float:
        """Seconds of the fastest of three searches inside the actor (no transport):
        the scan cost the benchmarks separate from Ray's."""
        index, best = self._usable(), float("inf")
        for _ in range(3):
            start = time.perf_counter()
            index.search(queries, k)
            best = min(best, time.perf_counter() - start)
        return best

    def save(self, directory: str, generation: int) -> tuple[str, dict]:
        """Commit this shard's rows to a file under ``directory`` for the manifest of
        ``generation``; returns the manifest entry. Appends in place to the file the
        directory's manifest names when it is exactly that commit plus adds; otherwise writes
        a new file, never one a manifest names."""
        index = self._usable()
        name = manifest.shard_file(self.shard, generation)
        try:
            committed = manifest.read(Path(directory))["files"][self.shard]
        except (OSError, ValueError, IndexError):
            committed = None
        if committed is not None and committed["commit"] == index.commit:
            current = os.path.join(directory, committed["file"])
            if index.appends_on_save(current):
                name = committed["file"]
        index.save(os.path.join(directory, name), overwrite=True)
        return self.incarnation, manifest.entry_of(name, index)

    def collect(self, directory: str) -> None:
        """Remove this shard's files under ``directory`` that its manifest no longer names
        (replaced by a save, or left by an interrupted one), with their lock files."""
        saved = manifest.read(Path(directory))
        keep = saved["files"][self.shard]["file"]
        for name in os.listdir(directory):
            stem = name.removesuffix(".lock")
            if stem != keep and manifest.is_shard_file(stem, self.shard):
                os.unlink(os.path.join(directory, name))
        if directory == self.home:
            self.generation = saved["generation"]

    def stats(self) -> tuple[str, int, int, bool]:
        index = self._usable()
        return self.incarnation, len(index), index.nbytes, index.trained


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
        self._start(shards, max_restarts, _with_threads(actor_options, threads_per_shard), 0)

    def _start(self, shards: int, max_restarts: int, actor_options, generation: int) -> None:
        """Start the shard actors (on the manifest of ``generation`` under ``path``, if
        any); a shard that cannot open its file stops the start with its ValueError."""
        if not ray.is_initialized():
            ray.init(include_dashboard=False, log_to_driver=False)
        options = {"num_cpus": 0, "scheduling_strategy": "SPREAD", **(actor_options or {})}
        actor = ray.remote(_Shard).options(max_restarts=max_restarts, max_task_retries=0, **options)
        if self.path is not None:
            self.path.mkdir(parents=True, exist_ok=True)
        home = None if self.path is None else str(self.path)
        config = self.config.to_dict()
        self.actors = [actor.remote(home, s, shards, config) for s in range(shards)]
        self._unsaved = [_no_changes() for _ in self.actors]
        self._incarnations = [None] * shards
        try:
            hellos = self._ask("hello", [()] * shards)
            for _, error, opened in hellos:
                if error is not None:
                    raise ValueError(error)
                if opened != generation:
                    raise ValueError(
                        f"{self.path} was saved again while loading (generation {generation} "
                        f"-> {opened}); load it again"
                    )
        except BaseException:
            for handle in self.actors:
                ray.kill(handle, no_restart=True)
            raise
        self._incarnations = [incarnation for incarnation, _, _ in hellos]

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

    @property
    def nlist(self) -> int | None:
        """Inverted lists of every shard (None: flat shards)."""
        return self.config.nlist

    @property
    def trained(self) -> bool:
        """Whether every shard's lists are trained (flat shards: True)."""
        return all(trained for *_, trained in self._stats())

    def __len__(self) -> int:
        return sum(n for _, n, _, _ in self._stats())

    @property
    def nbytes(self) -> int:
        """Bytes the shards hold (each VectorIndex's ``nbytes``, summed)."""
        return sum(b for _, _, b, _ in self._stats())

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
            self._train_for(matrix)
            self._scatter("add", keys, matrix)
        return keys

    def upsert(self, vectors: Any, ids: Any) -> None:
        """As :meth:`VectorIndex.upsert`: add, replacing vectors whose ids are present."""
        matrix = self._matrix(vectors, "upsert")
        keys = as_ids(ids, matrix.shape[0], "upsert")
        if keys.size:
            self._train_for(matrix)
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
        """One commit across shards: every shard commits its file (appended in place when
        only adds happened since the last save, else written whole to a new name), then the
        manifest naming each file at that commit replaces the old one atomically; a save
        interrupted anywhere leaves the previous one whole, and files no manifest names are
        removed after. ``path``: the construction ``path`` by default — what restarted shards
        reload; another directory receives a copy.

        A shard that does not answer keeps its last saved file in the new manifest while the
        live shards are saved: a ``RuntimeWarning`` says so when it had nothing unsaved,
        :class:`ShardUnavailableError` (after the commit) when its unsaved changes are lost.
        """
        target = self.path if path is None else Path(path)
        if target is None:
            raise ValueError("this index has no path: save(path) or construct it with path=")
        target.mkdir(parents=True, exist_ok=True)
        with flocked(target / SAVE_LOCK):  # one save at a time per directory
            self._save_locked(target)

    def _save_locked(self, target: Path) -> None:
        home = target == self.path
        try:
            saved = manifest.read(target)
        except FileNotFoundError:
            saved = None
        on_disk = 0 if saved is None else saved["generation"]
        if home and on_disk != self._generation:
            raise FileChangedError(
                f"{target} was saved by another ShardedIndex since this one loaded or saved it "
                f"(generation {self._generation} -> {on_disk}); nothing was written"
            )
        generation = max(self._generation, on_disk) + 1
        answers = self._ask("save", [(str(target), generation)] * self.shards, failures=True)
        down = [a for a in answers if isinstance(a, ShardUnavailableError)]
        for answer in answers:
            if isinstance(answer, BaseException) and answer not in down:
                raise answer
        previous = _entries_of(saved) if down and home else None
        if down and previous is None:
            raise down[0]  # no earlier commit of that shard to keep: nothing was saved
        entries = [
            previous[s] if isinstance(a, BaseException) else a[1] for s, a in enumerate(answers)
        ]
        body = manifest.encode(self.config, self._next_id, generation, entries)
        atomic_write(target / MANIFEST, [body])
        self._generation = generation
        problems = []
        for shard, answer in enumerate(answers):
            if isinstance(answer, BaseException):
                continue
            try:
                self._check_incarnation(shard, answer[0])
            except ShardRestartedError as restarted:
                problems.append(restarted)
            if home:
                self._unsaved[shard] = _no_changes()
        self._ask("collect", [(str(target),)] * self.shards, failures=True)
        for error in down:
            if any(self._unsaved[error.shard].values()):
                problems.append(error)
            else:
                warnings.warn(
                    f"{error}: it had nothing unsaved, so its last saved file stays in the "
                    "manifest; the other shards were saved",
                    RuntimeWarning,
                    stacklevel=2,
                )
        if problems:
            raise problems[0]

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
        """Start shard actors on the files the manifest under ``path`` names, each at the
        commit it names and checked against it (ValueError naming the shard and what does
        not match: a missing, damaged, swapped or foreign file, or a changed manifest)."""
        path = Path(path)
        saved = manifest.read(path)
        self = cls.__new__(cls)
        self.config, self.path, self.timeout = saved["config"], path, float(timeout)
        self._next_id, self._generation = saved["next_id"], saved["generation"]
        actor_options = _with_threads(actor_options, threads_per_shard)
        self._start(saved["shards"], max_restarts, actor_options, saved["generation"])
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
        nprobe: int | None = None,
    ) -> SearchResult:
        """As :meth:`VectorIndex.search` (the scores and ids one index holding every vector
        returns; among exactly equal scores the smaller id comes first, where one index
        follows its storage order), as a :class:`SearchResult`. With ``rerank``, each shard
        re-scores its own ``rerank`` best candidates: at least as good as one index's.
        A restarting shard is waited for until ``timeout``. ``nprobe``: as
        :meth:`VectorIndex.search` (every shard reads the same nearest lists)."""
        matrix = self._matrix(queries, "queries")
        k = positive_int(k, "k")
        check_result_fits(matrix.shape[0], k)
        allowed, denied = self._split(allow, "allow"), self._split(deny, "deny")
        # a large batch goes to the object store once (every shard reads it zero-copy); a
        # small one travels inline with each call (a put costs more than it saves)
        shared = matrix if matrix.nbytes < INLINE_BYTES else ray.put(matrix)
        calls = [
            (shared, int(k), allowed[s], rerank, denied[s], nprobe) for s in range(self.shards)
        ]
        answers, missing, restarted = [], [], []
        for shard, answer in enumerate(self._ask("search", calls, failures=partial_ok)):
            if isinstance(answer, ShardUnavailableError):
                missing.append(shard)
                continue
            if isinstance(answer, BaseException):
                raise answer
            incarnation, scores, ids = answer
            if self._check_incarnation(shard, incarnation):
                restarted.append(shard)
            answers.append((scores, ids))
        scores, ids = self._merge(answers, matrix.shape[0], int(k))
        return SearchResult(scores, ids, missing, restarted)

    def _split(self, ids: Any, name: str) -> list:
        """``allow``/``deny`` (as VectorIndex.search takes them) split by shard."""
        if ids is None:
            return [None] * self.shards
        keys = id_set(ids, name)
        owner = shard_of(keys, self.shards)
        return [keys[owner == shard] for shard in range(self.shards)]

    def _merge(self, answers, m: int, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The best ``k`` of the shards' lists per query (each holds at most its shard's
        size), padded with id -1 and the worst score."""
        worst = np.inf if self.metric == "l2" else -np.inf
        scores = np.full((m, k), worst, np.float32)
        ids = np.full((m, k), -1, np.int64)
        if not answers:
            return scores, ids
        every = np.concatenate([s for s, _ in answers], axis=1)
        owners = np.concatenate([i for _, i in answers], axis=1)
        key = np.where(owners < 0, np.inf, every if self.metric == "l2" else -every)
        order = np.lexsort((owners, key), axis=-1)[:, :k]  # equal scores: the smaller id first
        width = order.shape[1]
        scores[:, :width] = np.take_along_axis(every, order, axis=1)
        ids[:, :width] = np.take_along_axis(owners, order, axis=1)
        return scores, ids

    # ------------------------------------------------------------------ internals
    def train(self, sample: Any = None, *, centroids: Any = None) -> None:
        """As :meth:`VectorIndex.train`, once for every shard: the centroids are trained here
        (or given) and every shard takes the same ones, so that a query probes the lists one
        IVF index would. ValueError for flat shards or trained ones."""
        if self.config.nlist is None:
            raise ValueError("train applies to an index with inverted lists (nlist=...)")
        if centroids is None:
            if sample is None:
                raise ValueError("train: give a sample or the centroids, not both")
            matrix = self._matrix(sample, "train")
            if self.metric == "cosine":
                matrix = normalized(matrix, "train")
            coarse = CoarseQuantizer(self.dim, self.config.nlist, self.metric, self.config.seed)
            centroids = coarse.train(matrix).centroids
        elif sample is not None:
            raise ValueError("train: give a sample or the centroids, not both")
        answers = self._ask("train", [(np.asarray(centroids, np.float32),)] * self.shards)
        for shard, incarnation in enumerate(answers):
            self._check_incarnation(shard, incarnation)

    def _train_for(self, matrix: np.ndarray) -> None:
        """Train every shard's lists on the buffered vectors and ``matrix`` when together they
        reach 30 per list (what one IVF index's add does), before ``matrix`` is scattered."""
        nlist = self.config.nlist
        if nlist is None:
            return
        stats = self._stats()
        untrained = [shard for shard, (*_, trained) in enumerate(stats) if not trained]
        if not untrained:
            return
        if len(untrained) < self.shards:  # restarted from a save made before training
            self._share_centroids(untrained)
            return
        if sum(n for _, n, _, _ in stats) + matrix.shape[0] < TRAIN_PER_LIST * nlist:
            return
        buffered = [vectors for _, vectors in self._ask("buffered", [()] * self.shards)]
        self.train(np.concatenate([*buffered, matrix]))

    def _share_centroids(self, shards: list[int]) -> None:
        """Give ``shards`` (untrained: restarted from a save made before training) the
        centroids of one trained shard; their buffered rows move into lists."""
        source = next(s for s in range(self.shards) if s not in shards)
        ((incarnation, centroids),) = self._ask("centroids", [()], shards=[source])
        self._check_incarnation(source, incarnation)
        if centroids is None:
            raise RuntimeError(
                f"shards {shards} restarted untrained and shard {source}, whose centroids they "
                "would take, is untrained too: call train() with the centroids or a sample"
            )
        answers = self._ask("train", [(centroids,)] * len(shards), shards=shards)
        for shard, incarnation in zip(shards, answers, strict=True):
            self._check_incarnation(shard, incarnation)

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
        calls = {}
        for shard in range(self.shards):
            chosen = np.flatnonzero(owner == shard)
            if chosen.size:
                calls[shard] = (keys[chosen],) if matrix is None else (matrix[chosen], keys[chosen])
        answers = self._ask(method, list(calls.values()), shards=list(calls), failures=True)
        alone = [s for s, a in zip(calls, answers, strict=True) if isinstance(a, _TrainsAlone)]
        if alone:  # restarted untrained between _train_for and this call: nothing was applied
            self._share_centroids(alone)
            again = self._ask(method, [calls[s] for s in alone], shards=alone, failures=True)
            retried = dict(zip(alone, again, strict=True))
            answers = [retried.get(s, a) for s, a in zip(calls, answers, strict=True)]
        counter = {"add": "adds", "upsert": "upserts", "remove": "removals"}[method]
        failures = []
        for shard, answer in zip(calls, answers, strict=True):
            if isinstance(answer, BaseException):
                failures.append(answer)
                continue
            try:
                self._check_incarnation(shard, answer)
            except ShardRestartedError as restarted:
                failures.append(restarted)
            self._unsaved[shard][counter] += calls[shard][-1].size  # applied (maybe reloaded)
        if keys.size and method != "remove":
            self._next_id = max(self._next_id, int(keys.max()) + 1)
        if failures:
            raise failures[0]

    def _present(self, keys: np.ndarray) -> np.ndarray:
        owner = shard_of(keys, self.shards)
        present = np.zeros(keys.size, bool)
        parts = {s: np.flatnonzero(owner == s) for s in range(self.shards)}
        parts = {s: rows for s, rows in parts.items() if rows.size}
        calls = [(keys[rows],) for rows in parts.values()]
        answers = self._ask("present", calls, shards=list(parts))
        for (shard, rows), (incarnation, found) in zip(parts.items(), answers, strict=True):
            self._check_incarnation(shard, incarnation)
            present[rows] = found
        return present

    def _stats(self):
        answers = self._ask("stats", [()] * self.shards)
        for shard, (incarnation, *_) in enumerate(answers):
            self._check_incarnation(shard, incarnation)
        return answers

    def _ask(
        self, method: str, calls: list[tuple], shards: list[int] | None = None, failures=False
    ) -> list:
        """Call ``method`` on each shard (``shards``: which, default all in order) with its
        arguments, in parallel, and gather the answers. Calls that only read are asked again
        while a shard restarts, until ``timeout``. A shard that does not answer is a
        :class:`ShardUnavailableError`; an error raised inside a shard is itself (with a note
        naming the shard). ``failures``: return those errors in the shard's place instead of
        raising the first."""
        shards = list(range(self.shards)) if shards is None else shards
        retry = method in ("hello", "present", "search", "stats")
        deadline = time.monotonic() + self.timeout

        def send(shard, args):
            return getattr(self.actors[shard], method).remote(*args)

        refs = [send(s, args) for s, args in zip(shards, calls, strict=True)]
        answers = []
        for shard, args, ref in zip(shards, calls, refs, strict=True):
            while True:
                try:
                    answer = ray.get(ref, timeout=max(0.0, deadline - time.monotonic()))
                except RayTaskError as error:
                    answer = error.cause if isinstance(error.cause, Exception) else error
                    answer.add_note(f"(raised by shard {shard})")
                except ActorUnavailableError as error:
                    if retry and time.monotonic() < deadline:
                        time.sleep(_RETRY_PAUSE)
                        ref = send(shard, args)
                        continue
                    answer = ShardUnavailableError(shard, type(error).__name__)
                except (RayActorError, GetTimeoutError) as error:
                    answer = ShardUnavailableError(shard, type(error).__name__)
                break
            if isinstance(answer, BaseException) and not failures:
                raise answer
            answers.append(answer)
        return answers

    def _check_incarnation(self, shard: int, incarnation: str) -> bool:
        """Whether ``shard`` restarted since the driver last heard from it (told once): a
        restart that lost nothing warns; one that lost changes raises ShardRestartedError."""
        if incarnation == self._incarnations[shard]:
            return False
        lost = self._unsaved[shard]
        self._incarnations[shard] = incarnation
        self._unsaved[shard] = _no_changes()
        if any(lost.values()):
            raise ShardRestartedError(shard, lost)
        warnings.warn(
            f"shard {shard} restarted and reloaded its last saved file, which holds "
            "everything it was sent: nothing was lost",
            RuntimeWarning,
            stacklevel=3,
        )
        return True
