"""ShardedIndex on a local Ray cluster (2 CPUs) against one in-process VectorIndex."""

import time

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from rotaquant import VectorIndex  # noqa: E402
from rotaquant.distributed import (  # noqa: E402
    ShardedIndex,
    ShardRestartedError,
    ShardUnavailableError,
    shard_of,
)

from ..conftest import unit_gaussian  # noqa: E402

DIM = 48


@pytest.fixture(scope="module")
def cluster():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20
    )
    yield
    ray.shutdown()


def _pair(tmp_path=None, shards=3, **sharding):
    """A ShardedIndex (``sharding``: its own options) and one VectorIndex with the same codec
    options."""
    sharded = ShardedIndex(
        DIM, 4, shards=shards, metric="cosine", seed=7, path=tmp_path, **sharding
    )
    return sharded, VectorIndex(DIM, 4, metric="cosine", seed=7)


def _same(sharded, single, queries, k=10, **kwargs):
    """Identical scores, and identical ids up to the order among exactly equal scores (4-bit
    codes with float16 norms tie now and then); a tie cut by k may pick other members."""
    got = sharded.search(queries, k, **kwargs)
    want = single.search(queries, k, **kwargs)
    np.testing.assert_array_equal(got[0], want[0])
    for scores, a, b in zip(want[0], got[1], want[1], strict=True):
        for value in np.unique(scores):
            group = scores == value
            if group[-1] and value == scores[-1] and a[-1] >= 0:
                continue  # a tie at the cut
            assert set(a[group]) == set(b[group])
    assert not got.partial


def test_routing_is_stable_and_spreads():
    ids = np.arange(10_000, dtype=np.int64)
    owner = shard_of(ids, 4)
    assert np.array_equal(owner, shard_of(ids.copy(), 4))
    assert np.bincount(owner, minlength=4).min() > 2300
    assert shard_of(np.array([2**63 - 1]), 3)[0] in (0, 1, 2)


def test_equals_one_index_through_adds_removes_and_upserts(cluster):
    sharded, single = _pair()
    x, queries = unit_gaussian(3000, DIM), unit_gaussian(20, DIM, seed=1)
    for target in (sharded, single):
        assert np.array_equal(target.add(x[:2000]), np.arange(2000))
        target.add(x[2000:], ids=np.arange(2000, 3000) * 5)
    _same(sharded, single, queries)
    assert len(sharded) == 3000
    assert 0.8 * single.nbytes < sharded.nbytes < 1.5 * single.nbytes  # + per-shard padding
    removed = np.arange(0, 2000, 3)
    replacement = unit_gaussian(50, DIM, seed=5)
    for target in (sharded, single):
        target.remove(removed)
        target.upsert(replacement, ids=np.arange(1, 101, 2))
        target.add(x[:5])  # sequential ids continue past the largest seen
    _same(sharded, single, queries)
    _same(sharded, single, queries, k=3000)  # k above len pads with -1 alike
    allow = np.arange(0, 15000, 7)
    _same(sharded, single, queries, allow=allow)
    _same(sharded, single, queries, allow=set(allow[:5].tolist()))
    _same(sharded, single, queries, deny=np.arange(0, 3000, 2))


def test_ivf_shards_equal_one_ivf_index_of_the_same_seed(cluster, tmp_path):
    """nlist=16 on every shard and on one index, trained on the same sample: the same
    centroids, codes and probed lists, so the same answers at every nprobe, before and after
    removes, upserts and a save/load of the shards."""
    sharded, _ = _pair(tmp_path, nlist=16)
    single = VectorIndex(DIM, 4, metric="cosine", seed=7, nlist=16)
    rng = np.random.default_rng(3)
    centres = unit_gaussian(30, DIM, seed=4)
    x = centres[rng.integers(0, 30, 4000)] + 0.3 * unit_gaussian(4000, DIM, seed=5)
    queries = x[:15] + 0.05
    for target in (sharded, single):
        target.add(x[:100])  # buffered, searched exactly
    _same(sharded, single, queries, nprobe=2)
    for target in (sharded, single):
        target.train(x)
        target.add(x[100:])
    assert sharded.trained and single.trained and len(sharded) == 4000
    for nprobe in (1, 3, 16):
        _same(sharded, single, queries, nprobe=nprobe)
    for target in (sharded, single):
        target.remove(np.arange(0, 4000, 7))
        target.upsert(x[:20] * -1, ids=np.arange(1, 41, 2))
    _same(sharded, single, queries, nprobe=3)
    sharded.save()
    again = ShardedIndex.load(tmp_path)
    _same(again, single, queries, nprobe=3)
    assert again.nlist == 16


def test_ivf_shards_train_together_on_the_add_that_fills_them(cluster):
    sharded = ShardedIndex(DIM, 4, shards=2, seed=1, nlist=8)
    x = unit_gaussian(400, DIM, seed=6)
    sharded.add(x[:200])
    assert not sharded.trained
    sharded.add(x[200:])  # 400 >= 30 per list: trained here, one set of centroids
    assert sharded.trained and len(sharded) == 400
    ids = sharded.search(x[:5], 1, nprobe=8).ids
    assert (ids[:, 0] == np.arange(5)).all()
    with pytest.raises(ValueError, match="inverted lists"):
        ShardedIndex(DIM, 4, shards=2).train(x)


def test_bad_input_is_refused_everywhere_and_changes_nothing(cluster):
    sharded, _ = _pair(shards=2)
    sharded.add(unit_gaussian(100, DIM))
    with pytest.raises(ValueError, match="already present"):
        sharded.add(unit_gaussian(3, DIM), ids=[500, 600, 5])
    bad = unit_gaussian(4, DIM)
    bad[3, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        sharded.add(bad, ids=[700, 701, 702, 703])
    with pytest.raises(ValueError, match="dimension|shape|dim"):
        sharded.add(unit_gaussian(2, DIM + 1))
    zero = unit_gaussian(4, DIM)
    zero[2] = 0.0  # cosine: no direction; one shard alone would refuse its part
    with pytest.raises(ValueError, match="zero vector"):
        sharded.add(zero, ids=[800, 801, 802, 803])
    with pytest.raises(KeyError, match="not present"):
        sharded.remove([1, 2, 10**9])
    with pytest.raises(ValueError):
        sharded.search(unit_gaussian(1, DIM), k=0)
    with pytest.raises(ValueError, match=f"k={10**12}"):  # not a remote MemoryError
        sharded.search(unit_gaussian(1, DIM), k=10**12)
    assert len(sharded) == 100
    assert (sharded.search(unit_gaussian(1, DIM), 100)[1] >= 0).all()


def _start_cluster():
    ray.init(
        num_cpus=2, include_dashboard=False, log_to_driver=False, object_store_memory=200 * 2**20
    )


def test_save_new_cluster_load_same_results(cluster, tmp_path):
    sharded, single = _pair(tmp_path / "idx", shards=2)
    x = unit_gaussian(1500, DIM, seed=3)
    for target in (sharded, single):
        target.add(x)
        target.remove([4, 5, 6])
    sharded.save()
    queries = unit_gaussian(10, DIM, seed=4)
    before = sharded.search(queries, 10)
    ray.shutdown()  # a new cluster: nothing survives but the files
    _start_cluster()
    loaded = ShardedIndex.load(tmp_path / "idx")
    after = loaded.search(queries, 10)
    np.testing.assert_array_equal(after[1], before[1])
    _same(loaded, single, queries)
    assert np.array_equal(loaded.add(x[:1]), [1500])  # the next id came back from the manifest
    with pytest.raises(FileNotFoundError, match="manifest"):
        ShardedIndex.load(tmp_path / "nothing")
    with pytest.raises(FileExistsError, match="ShardedIndex.load"):
        ShardedIndex(DIM, 4, shards=2, path=tmp_path / "idx")  # would mix in the old files


def test_a_killed_shard_restarts_from_its_file_and_reports_exactly_what_it_lost(cluster, tmp_path):
    sharded, single = _pair(tmp_path / "idx", shards=3)
    x = unit_gaussian(900, DIM, seed=8)
    sharded.add(x[:600])
    single.add(x[:600])
    sharded.save()
    late = np.arange(600, 900)
    sharded.add(x[600:], ids=late)  # after the save
    sharded.remove([0, 1, 2, 3])
    victim = 1
    expected_adds = int((shard_of(late, 3) == victim).sum())
    expected_removals = int((shard_of(np.arange(4), 3) == victim).sum())
    ray.kill(sharded.actors[victim], no_restart=False)
    queries = unit_gaussian(8, DIM, seed=9)
    with pytest.raises(ShardRestartedError, match=f"shard {victim}") as caught:
        for _ in range(300):  # the first call that reaches the restarted actor reports it
            try:
                sharded.search(queries, 10)
            except ShardUnavailableError:  # still restarting: searches fail clearly meanwhile
                time.sleep(0.1)
    assert caught.value.lost == {"adds": expected_adds, "upserts": 0, "removals": expected_removals}
    # from then on it serves what it had saved; the other shards kept everything
    survivors = shard_of(late, 3) != victim
    single.add(x[600:][survivors], ids=late[survivors])
    gone = np.arange(4)[shard_of(np.arange(4), 3) != victim]
    single.remove(gone)
    _same(sharded, single, queries)


def test_a_dead_shard_fails_searches_clearly_or_gives_partial_results(cluster):
    sharded, single = _pair(shards=3, max_restarts=0)
    x = unit_gaussian(600, DIM, seed=10)
    sharded.add(x)
    ray.kill(sharded.actors[2], no_restart=True)
    queries = unit_gaussian(5, DIM, seed=11)
    with pytest.raises(ShardUnavailableError, match="shard 2"):
        sharded.search(queries, 10)
    result = sharded.search(queries, 10, partial_ok=True)
    assert result.partial and result.missing == (2,)
    live = np.arange(600)[shard_of(np.arange(600), 3) != 2]
    single.add(x[live], ids=live)
    np.testing.assert_array_equal(result[1], single.search(queries, 10)[1])


def test_options_are_checked_before_actors_start_and_0_1_positions_warn(cluster, tmp_path):
    from rotaquant import IndexConfig, SearchResult

    with pytest.raises(ValueError, match="accepted: dim, bits"):
        ShardedIndex(DIM, 4, shards=2, nprobe=4)
    with pytest.raises(ValueError, match="metric"):
        ShardedIndex(DIM, 4, shards=2, metric="dot")
    with pytest.raises(ValueError, match="shards"):
        ShardedIndex(DIM, 4, shards=0)
    with pytest.warns(DeprecationWarning, match="pass shards, metric by keyword"):
        old = ShardedIndex(DIM, 4, 2, "cosine", path=tmp_path / "idx", seed=7)
    assert old.config == IndexConfig(dim=DIM, bits=4, metric="cosine", seed=7)
    old.add(unit_gaussian(50, DIM))
    result = old.search(unit_gaussian(2, DIM, seed=1), 3)
    assert type(result) is SearchResult and result.missing == ()
    old.save()
    assert ShardedIndex.load(tmp_path / "idx").config == old.config


# ---------------------------------------------------------------------- saved files
def _saved(tmp_path, shards=3, n=900):
    """A saved ShardedIndex under ``tmp_path / "idx"``, its vectors and a query batch."""
    sharded, single = _pair(tmp_path / "idx", shards=shards)
    x = unit_gaussian(n, DIM, seed=21)
    sharded.add(x)
    single.add(x)
    sharded.save()
    return sharded, single, unit_gaussian(6, DIM, seed=22)


def _rewrite_manifest(directory, change, rechecksum=True):
    """Apply ``change`` to the manifest's JSON object; recompute its checksum, as an attacker
    (or a careless script) would, when ``rechecksum``."""
    import json

    from rotaquant.distributed import manifest

    file = directory / "manifest.json"
    body = json.loads(file.read_text())
    body.pop("checksum")
    change(body)
    if rechecksum:
        body["checksum"] = manifest._checksum(body)
    else:
        body["checksum"] = json.loads(file.read_text())["checksum"]
    file.write_text(json.dumps(body))


def _set(key, value):
    return lambda body: body.__setitem__(key, value)


@pytest.mark.parametrize(
    ("change", "rechecksum", "message"),
    [
        (_set("shards", 2), False, "checksum mismatch"),
        (_set("metric", "ip"), False, "checksum mismatch"),
        (_set("shards", 2), True, "'files' must list 2 shards"),
        (_set("shards", 0), True, r"'shards' must be an integer in \[1"),
        (_set("shards", "3"), True, "'shards' must be an integer"),
        (_set("shards", True), True, "'shards' must be an integer"),
        (_set("next_id", None), True, "'next_id' must be an integer"),
        (_set("next_id", 5), True, "next id 5 is not above"),
        (_set("generation", -1), True, "'generation' must be an integer"),
        (_set("index_options", []), True, "'index_options' must be an object"),
        (_set("dim", "48"), True, "invalid configuration"),
        (_set("files", [1, 2, 3]), True, r"files\[0\] must be an object"),
        (lambda b: b.pop("files"), True, "'files' is missing"),
        (lambda b: b["files"][1].__setitem__("file", "../x.rq"), True, "must name a file"),
        (lambda b: b["files"][1].__setitem__("commit", [1]), True, "commit must be"),
        (lambda b: b["files"][1].__setitem__("count", 1.5), True, "count' must be"),
        (_set("metric", "ip"), True, "was written for"),
        (_set("seed", 8), True, "accepted"),  # not an index option at the top level
        (lambda b: b["index_options"].__setitem__("seed", 8), True, "was written for"),
        (lambda b: b["files"][2].__setitem__("count", 5), True, "the manifest says 5"),
        (lambda b: b["files"][0]["commit"].__setitem__(1, 7), True, "damaged shard file"),
        (_set("version", 3), True, "version 3 is not supported"),
    ],
)
def test_a_changed_or_damaged_manifest_is_refused_with_a_value_error(
    cluster, tmp_path, change, rechecksum, message
):
    _saved(tmp_path, n=300)
    _rewrite_manifest(tmp_path / "idx", change, rechecksum)
    with pytest.raises(ValueError, match=message):
        ShardedIndex.load(tmp_path / "idx", timeout=30)


def test_swapped_or_missing_shard_files_are_refused(cluster, tmp_path):
    """Every file is bound to its shard number: swapping two (names fixed up in the manifest
    and its checksum recomputed) would return duplicate ids and lose others."""
    _saved(tmp_path, n=300)
    directory = tmp_path / "idx"

    def swap(body):
        files = body["files"]
        files[0], files[1] = files[1], files[0]
        for shard in (0, 1):
            name = files[shard]["file"]
            (directory / name).rename(directory / f"swap-{shard}")
            files[shard]["file"] = f"shard-{shard:04d}{name[10:]}"
        for shard in (0, 1):
            (directory / f"swap-{shard}").rename(directory / files[shard]["file"])

    _rewrite_manifest(directory, swap)
    with pytest.raises(ValueError, match="holds ids of other shards"):
        ShardedIndex.load(directory, timeout=30)
    _saved(tmp_path / "other", n=300)
    for file in (tmp_path / "other" / "idx").glob("shard-0002*.rq"):
        file.unlink()
    with pytest.raises(ValueError, match="shard 2: its file .* is missing"):
        ShardedIndex.load(tmp_path / "other" / "idx", timeout=30)


def test_a_save_interrupted_before_the_manifest_leaves_the_previous_save(
    cluster, tmp_path, monkeypatch
):
    """Shard files committed, manifest not yet written (the driver killed there): loading
    gives exactly the previous save, adds continue from its next id, and the next save
    removes the files no manifest names."""
    from rotaquant.distributed import sharded as module

    sharded, single, queries = _saved(tmp_path)
    directory = tmp_path / "idx"
    saved_files = sorted(p.name for p in directory.glob("shard-*.rq"))
    extra = unit_gaussian(120, DIM, seed=23)
    sharded.add(extra)  # adds only: shards append to their files in place
    sharded.remove([0, 1, 2, 3, 4, 5])  # and removals: those shards write new files

    def killed(*args, **kwargs):
        raise KeyboardInterrupt("killed before the manifest")

    monkeypatch.setattr(module, "atomic_write", killed)
    with pytest.raises(KeyboardInterrupt):
        sharded.save()
    monkeypatch.undo()
    assert len(list(directory.glob("shard-*.rq"))) > len(saved_files)  # newer files exist
    loaded = ShardedIndex.load(directory)
    assert len(loaded) == len(single)
    _same(loaded, single, queries)
    assert np.array_equal(loaded.add(extra[:2]), [900, 901])  # the next id advances
    single.add(extra[:2])
    loaded.save()
    kept = {p.name for p in directory.glob("shard-*.rq")}
    assert len(kept) == 3
    locks = {p.name.removesuffix(".lock") for p in directory.glob("shard-*.lock")}
    assert locks <= kept  # no lock file of a removed file either
    _same(ShardedIndex.load(directory), single, queries)


def test_appends_and_rewrites_commit_and_reload_exactly(cluster, tmp_path):
    sharded, single, queries = _saved(tmp_path)
    directory = tmp_path / "idx"
    first = sorted(p.name for p in directory.glob("shard-*.rq"))
    more = unit_gaussian(90, DIM, seed=24)
    for target in (sharded, single):
        target.add(more)
    sharded.save()  # adds only: appended in place, same files
    assert sorted(p.name for p in directory.glob("shard-*.rq")) == first
    for target in (sharded, single):
        target.remove(np.arange(0, 900, 4))
    sharded.save()  # removals: new files, the old ones removed after the manifest
    assert not set(first) & {p.name for p in directory.glob("shard-*.rq")}
    _same(ShardedIndex.load(directory), single, queries)


def test_a_restart_that_lost_nothing_answers_with_a_warning(cluster, tmp_path):
    sharded, single, queries = _saved(tmp_path)
    ray.kill(sharded.actors[1], no_restart=False)
    time.sleep(0.5)  # the kill lands; the search waits for the restart
    with pytest.warns(RuntimeWarning, match="shard 1 restarted .* nothing was lost"):
        result = sharded.search(queries, 10)
    assert result.restarted == (1,) and not result.partial
    _same(sharded, single, queries)  # no second warning, same answers


def test_a_damaged_shard_file_says_so_at_load_and_at_restart(cluster, tmp_path):
    sharded, _, queries = _saved(tmp_path)
    directory = tmp_path / "idx"
    victim = sorted(directory.glob("shard-0001*.rq"))[0]
    data = bytearray(victim.read_bytes())
    data[5000] ^= 0xFF  # a code byte: the section's checksum fails
    victim.write_bytes(bytes(data))
    start = time.monotonic()
    with pytest.raises(ValueError, match="shard 1: damaged shard file"):
        ShardedIndex.load(directory, timeout=30)
    assert time.monotonic() - start < 20  # no restart loop before the answer
    ray.kill(sharded.actors[1], no_restart=False)  # the live index's shard reloads it
    time.sleep(0.5)
    with pytest.raises(ValueError, match="shard 1: damaged shard file") as caught:
        sharded.search(queries, 10)
    assert "raised by shard 1" in "".join(caught.value.__notes__)


def test_live_shards_are_saved_when_one_is_out_of_restarts(cluster, tmp_path):
    sharded, single = _pair(tmp_path / "idx", shards=3, max_restarts=0)
    x = unit_gaussian(600, DIM, seed=25)
    sharded.add(x)
    single.add(x)
    sharded.save()
    ray.kill(sharded.actors[2], no_restart=True)
    with pytest.warns(RuntimeWarning, match="shard 2 is unavailable.*nothing unsaved"):
        sharded.save()  # nothing unsaved on shard 2: its saved file stays named
    more = unit_gaussian(60, DIM, seed=26)
    live = np.arange(600, 660)[shard_of(np.arange(600, 660), 3) != 2]
    sharded.add(more[live - 600], ids=live)
    single.add(more[live - 600], ids=live)
    with pytest.warns(RuntimeWarning, match="shard 2 is unavailable"):
        sharded.save()
    _same(ShardedIndex.load(tmp_path / "idx"), single, unit_gaussian(5, DIM, seed=27))


def test_two_drivers_on_one_directory_never_lose_a_save(cluster, tmp_path):
    """The second driver's save refuses (its base was saved over) instead of removing files
    the first one's manifest names."""
    from rotaquant.index import FileChangedError

    first, single, queries = _saved(tmp_path, n=300)
    second = ShardedIndex.load(tmp_path / "idx")
    more = unit_gaussian(40, DIM, seed=28)
    first.remove([1, 2, 3])  # new whole files for some shards
    single.remove([1, 2, 3])
    first.save()
    second.add(more)
    with pytest.raises(FileChangedError, match="saved by another ShardedIndex"):
        second.save()
    _same(ShardedIndex.load(tmp_path / "idx"), single, queries)


_SAVING_DRIVER = """
import sys
import numpy as np
import ray
from rotaquant.distributed import ShardedIndex
path, start = sys.argv[1], int(sys.argv[2])
ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
         object_store_memory=100 * 2**20)
index = ShardedIndex.load(path) if start else ShardedIndex(48, 4, shards=3, path=path, seed=7)
for step in range(start, start + 1000):
    ids = np.arange(step * 40, step * 40 + 40)
    index.add(np.random.default_rng(step).standard_normal((40, 48)).astype(np.float32), ids)
    if step % 3 == 2:
        index.remove(ids[:10])  # whole-file rewrites too
    index.save()
    print(step, flush=True)
"""


def _ids_after(step: int) -> set[int]:
    """The ids the driver script holds after its save of ``step``."""
    held = set()
    for s in range(step + 1):
        ids = range(s * 40, s * 40 + 40)
        held.update(ids[10:] if s % 3 == 2 else ids)
    return held


@pytest.mark.slow
def test_drivers_killed_during_saves_lose_no_acknowledged_save(cluster, tmp_path):
    """A driver process saving in a loop is SIGKILLed (with its Ray cluster) at random
    moments; every time, the directory loads as exactly the last acknowledged save or the
    one in flight, and the next driver goes on from it."""
    import os
    import signal
    import subprocess
    import sys

    path, rng, step, kills = str(tmp_path / "idx"), np.random.default_rng(3), -1, 0
    while kills < 12:
        driver = subprocess.Popen(
            [sys.executable, "-c", _SAVING_DRIVER, path, str(step + 1)],
            stdout=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        acknowledged = step
        first = driver.stdout.readline()  # the driver is saving
        assert first, "the driver died before its first save"
        acknowledged = int(first)
        time.sleep(rng.uniform(0.0, 1.5))
        os.killpg(driver.pid, signal.SIGKILL)
        out, _ = driver.communicate(timeout=60)
        for line in out.split():
            acknowledged = int(line)
        kills += 1
        loaded = ShardedIndex.load(path)
        held = len(loaded)
        candidates = {acknowledged: _ids_after(acknowledged)}
        candidates[acknowledged + 1] = _ids_after(acknowledged + 1)
        found = [s for s, ids in candidates.items() if len(ids) == held]
        assert found, (acknowledged, held)
        step = found[-1]
        search = loaded.search(np.eye(48, dtype=np.float32)[:1], k=held)
        assert set(search.ids[0].tolist()) == candidates[step]
        for actor in loaded.actors:
            ray.kill(actor, no_restart=True)


def _restart(sharded, victim, queries):
    """Kill shard ``victim`` (Ray restarts it from its saved file) and wait until a search
    reaches the new actor (ShardRestartedError: it lost what came after the save)."""
    ray.kill(sharded.actors[victim], no_restart=False)
    for _ in range(300):
        try:
            sharded.search(queries, 10)
        except ShardUnavailableError:
            time.sleep(0.1)
        except ShardRestartedError:
            return
    raise AssertionError("the shard did not restart")


@pytest.mark.parametrize("race", [False, True])
def test_an_ivf_shard_restarted_untrained_gets_the_shared_centroids(cluster, tmp_path, race):
    """Saved before training, trained, then one shard restarts from the untrained save: the
    next add gives it the other shards' centroids (never centroids of its own rows), also when
    it restarts between the driver's check and the add (``race``), so the index answers as one
    IVF index with those centroids would."""
    sharded, _ = _pair(tmp_path, shards=2, nlist=8)
    x = unit_gaussian(1200, DIM, seed=21)
    queries = x[:6] + 0.01
    sharded.add(x[:100])  # buffered in every shard
    sharded.save()
    sharded.add(x[100:400])  # 400 >= 30 per list: both shards train on the same centroids
    centroids = ray.get(sharded.actors[0].centroids.remote())[1]
    _restart(sharded, 1, queries)
    if race:  # the driver's check before the add sees nothing to do
        sharded._train_for = lambda matrix: None
    new = np.arange(400, 1200)
    sharded.add(x[400:], ids=new)  # shard 1's part alone: 400 > 30 * 8
    for actor in sharded.actors:
        np.testing.assert_array_equal(ray.get(actor.centroids.remote())[1], centroids)
    single = VectorIndex(DIM, 4, metric="cosine", seed=7, nlist=8)
    single.train(centroids=centroids)
    kept = np.concatenate([np.arange(400)[shard_of(np.arange(400), 2) == 0], np.arange(100), new])
    kept = np.unique(kept)  # shard 0 kept 0..399; shard 1 reloaded 0..99 (its part)
    single.add(x[kept], ids=kept)
    assert len(sharded) == len(single)
    for nprobe in (1, 8):
        _same(sharded, single, queries, nprobe=nprobe)
