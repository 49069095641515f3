"""VectorIndex: recall against exact search, id semantics, filtering, persistence, errors."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import rotaquant as rq
from rotaquant.index import VectorIndex

from ..conftest import unit_gaussian


@pytest.fixture(params=["flat", "ivf"])
def make(request):
    """Builds the index under test: flat, or with 4 inverted lists (trained once 120 vectors
    are added; the default nprobe reads all 4, so results are exact top-k as for flat)."""

    def make(dim, bits=4, **options):
        if request.param == "ivf":
            options.setdefault("nlist", 4)
        return VectorIndex(dim, bits, **options)

    return make


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    k = truth.shape[1]
    return float(np.mean([len(set(f) & set(t)) / k for f, t in zip(found, truth, strict=True)]))


def _exact_top(db: np.ndarray, queries: np.ndarray, k: int, metric: str) -> np.ndarray:
    if metric == "l2":
        dist = (queries**2).sum(1)[:, None] - 2 * queries @ db.T + (db**2).sum(1)[None]
        return np.argsort(dist, axis=1)[:, :k]
    if metric == "cosine":
        db = db / np.linalg.norm(db, axis=1, keepdims=True)
    return np.argsort(-(queries @ db.T), axis=1)[:, :k]


def _brute_force(index: VectorIndex, queries: np.ndarray, k: int, allow=None):
    """Expected top-k from the index's own decoded vectors (same compressed scores)."""
    ids = index.ids
    if allow is not None:
        ids = ids[np.isin(ids, allow)]
    if ids.size == 0:
        return np.full((len(queries), k), -1), np.full((len(queries), k), -np.inf)
    decoded = index.reconstruct(ids)
    if index.metric == "l2":
        scores = -((queries[:, None, :] - decoded[None]) ** 2).sum(-1)
    else:
        q = queries / np.linalg.norm(queries, axis=1, keepdims=True)
        scores = (q if index.metric == "cosine" else queries) @ decoded.T
    order = np.argsort(-scores, axis=1, kind="stable")[:, :k]
    out = np.full((len(queries), k), -1)
    out[:, : order.shape[1]] = ids[order]
    return out, np.take_along_axis(scores, order, axis=1)


# ---------------------------------------------------------------------- recall on real data
@pytest.mark.parametrize(("bits", "floor"), [(2, 0.45), (3, 0.62), (4, 0.76), (3.5, 0.70)])
def test_recall_glove(make, glove, bits, floor):
    """recall@10 of inner-product search on 19.8k GloVe vectors vs exact search."""
    db, queries = glove[:-200], glove[-200:]
    index = make(50, bits)
    index.add(db)
    _, ids = index.search(queries, 10)
    assert _recall(ids, _exact_top(db, queries, 10, "ip")) >= floor


@pytest.mark.parametrize("metric", ["ip", "cosine", "l2"])
@pytest.mark.parametrize("bits", [2, 4])
def test_recall_minilm_metrics(make, minilm, metric, bits):
    db, queries = minilm[:-100], minilm[-100:]
    index = make(384, bits, metric=metric)
    index.add(db)
    scores, ids = index.search(queries, 10)
    floor = {2: 0.6, 4: 0.85}[bits]
    assert _recall(ids, _exact_top(db, queries, 10, metric)) >= floor
    sign = 1 if metric == "l2" else -1
    assert (np.diff(sign * -scores, axis=1) <= 0).all() or (np.diff(scores * -sign) >= 0).all()


def test_scores_are_the_codec_estimates(minilm):
    """Scores equal ⟨q, x̂⟩ from TurboQuantizer.inner_product (the index stores norm-corrected
    codes), and the ids are its exact top-k."""
    db, queries = minilm[:1000], minilm[1000:1020]
    index = VectorIndex(384, 3, seed=5)
    index.add(db)
    scores, ids = index.search(queries, 7)
    q = rq.TurboQuantizer(384, 3, seed=5, norm_correction=True)
    estimates = q.inner_product(queries, q.encode(db))
    expected = np.sort(estimates, axis=1)[:, ::-1][:, :7]
    np.testing.assert_allclose(scores, expected, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.take_along_axis(estimates, ids, axis=1), scores, rtol=1e-5)


def test_rerank_restores_exact_order(make, minilm):
    db, queries = minilm[:-100], minilm[-100:]
    index = make(384, 2, keep_vectors=True)
    index.add(db)
    truth = _exact_top(db, queries, 10, "ip")
    _, plain = index.search(queries, 10)
    scores, reranked = index.search(queries, 10, rerank=200)  # two gather chunks
    assert _recall(plain, truth) < 0.9
    assert _recall(reranked, truth) >= 0.98
    exact = np.take_along_axis(queries @ db.T, reranked, axis=1)
    np.testing.assert_allclose(scores, exact, atol=2e-3)  # float16 copy


@pytest.mark.parametrize("metric", ["ip", "l2", "cosine"])
def test_rerank_metrics(
    make,
    metric,
):
    db = unit_gaussian(2000, 64, seed=3) * 3
    queries = unit_gaussian(20, 64, seed=4)
    index = make(64, 4, metric=metric, keep_vectors=True)
    index.add(db)
    _, ids = index.search(queries, 5, rerank=200)
    assert _recall(ids, _exact_top(db, queries, 5, metric)) >= 0.98


# ---------------------------------------------------------------------- ids, remove, allow
def test_ids_continue_and_remove(make):
    x = unit_gaussian(300, 32, seed=1)
    index = make(32, 4)
    assert index.add(x[:100]).tolist() == list(range(100))
    assert index.add(x[100:200], ids=np.arange(1000, 1100, dtype=np.uint64)).tolist()[0] == 1000
    assert index.add(x[200:210]).tolist() == list(range(1100, 1110))  # one past the largest
    assert len(index) == 210 and 1050 in index and 5000 not in index
    index.remove([3, 1050])
    assert len(index) == 208 and 3 not in index and 1050 not in index
    with pytest.raises(KeyError, match="1 ids not in the index"):
        index.remove([4, 3])
    assert 4 in index and len(index) == 208  # nothing removed
    with pytest.raises(ValueError, match="already present"):
        index.add(x[:2], ids=[5, 6000])
    with pytest.raises(ValueError, match="repeated"):
        index.add(x[:2], ids=[7000, 7000])
    assert 6000 not in index
    # searching the removed vector's own query never returns it
    _, ids = index.search(x[3:4], 208)
    assert 3 not in ids and sorted(ids[0].tolist()) == sorted(index.ids.tolist())


def test_upsert_replaces(make):
    x = unit_gaussian(50, 16, seed=2)
    index = make(16, 4)
    index.add(x[:10], ids=np.arange(10))
    index.upsert(x[10:15], ids=[3, 4, 100, 101, 102])
    assert len(index) == 13
    _, ids = index.search(x[10:11], 1)
    assert ids[0, 0] == 3
    with pytest.raises(ValueError, match="NaN"):
        index.upsert(np.full((1, 16), np.nan, np.float32), ids=[3])
    assert 3 in index  # the failed upsert removed nothing


def test_allow_is_exact_top_k_of_allowed_set(make, minilm):
    db, queries = minilm[:2000], minilm[2000:2010]
    index = make(384, 3)
    index.add(db, ids=np.arange(2000) * 7)
    rng = np.random.default_rng(0)
    for size in (1, 5, 40, 1500):  # sparse (gathered groups) and dense (masked) paths
        allow = rng.choice(2000, size, replace=False) * 7
        allow_with_unknown = np.concatenate([allow, [3, 10**12]])
        scores, ids = index.search(queries, 10, allow=allow_with_unknown)
        expected_ids, expected_scores = _brute_force(index, queries, 10, allow)
        kept = min(10, size)
        assert (ids[:, kept:] == -1).all() and np.isneginf(scores[:, kept:]).all()
        np.testing.assert_allclose(scores[:, :kept], expected_scores[:, :kept], rtol=1e-4)
        assert np.isin(ids[:, :kept], allow).all()


def test_allow_as_a_set_or_mask_and_deny(make):
    x = unit_gaussian(60, 16)
    index = make(16, 4)
    index.add(x)
    full = index.search(x[:3], 60)[1]
    as_list = index.search(x[:3], 5, allow=[1, 2, 3, 40])
    assert np.array_equal(index.search(x[:3], 5, allow={1, 2, 3, 40})[1], as_list[1])
    mask = np.zeros(80, bool)  # longer than the ids: positions past them allow nothing
    mask[[1, 2, 3, 40, 70]] = True
    assert np.array_equal(index.search(x[:3], 5, allow=mask)[1], as_list[1])
    denied = index.search(x[:3], 59, deny={0, 1, 2, 999})[1]
    for row, ranking in zip(denied, full, strict=True):  # the same order, the denied ids out
        kept = ranking[~np.isin(ranking, [0, 1, 2])]
        assert np.array_equal(row[row >= 0], kept[: (row >= 0).sum()])
    both = index.search(x[:1], 5, allow=[1, 2, 3], deny=[2])[1][0]
    assert set(both[both >= 0]) == {1, 3}
    for bad in ({"a"}, [[True]], np.ones((2, 2), bool)):
        with pytest.raises(ValueError, match="allow"):
            index.search(x[:1], 3, allow=bad)


def test_k_larger_than_index_pads(make):
    index = make(8, 2, metric="l2")
    index.add(unit_gaussian(3, 8))
    scores, ids = index.search(unit_gaussian(2, 8, seed=9), 5)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (2, 5)
    assert (ids[:, 3:] == -1).all() and np.isposinf(scores[:, 3:]).all()
    assert (np.diff(scores[:, :3], axis=1) >= 0).all()  # distances ascend
    empty = make(8, 2)
    s, i = empty.search(unit_gaussian(1, 8), 3)
    assert (i == -1).all() and np.isneginf(s).all()
    assert empty.search(np.zeros((0, 8), np.float32), 3)[1].shape == (0, 3)


def test_nbytes_is_honest():
    index = VectorIndex(128, 4)
    index.add(unit_gaussian(SEGMENT := 1 << 16, 128))
    n = len(index)
    # 64 bytes of codes + 2 of norm + 8 of id per vector, nothing else yet
    assert index.nbytes == n * (64 + 2 + 8)
    index.remove([0])  # builds the id map: 4-byte slots, load <= 1/2
    per_vector = index.nbytes / len(index)
    assert 64 + 2 + 8 + 8 <= per_vector <= 64 + 2 + 8 + 16 + 0.01
    assert SEGMENT == 65536


# ---------------------------------------------------------------------- model-based property test
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    st.lists(
        st.tuples(st.sampled_from(["add", "remove", "search"]), st.integers(0, 30)),
        min_size=1,
        max_size=25,
    ),
    st.sampled_from([1, 2.5, 3, 4]),
)
def test_matches_brute_force_model(make, ops, bits):
    dim = 12
    rng = np.random.default_rng(len(ops))
    index = make(dim, bits, metric="l2")
    model: dict[int, np.ndarray] = {}
    next_id = 0
    for op, arg in ops:
        if op == "add":
            x = rng.standard_normal((arg, dim)).astype(np.float32)
            ids = index.add(x)
            assert ids.tolist() == list(range(next_id, next_id + arg))
            next_id += arg
            model.update(zip(ids.tolist(), x, strict=True))
        elif op == "remove" and model:
            victims = rng.choice(sorted(model), min(arg, len(model)), replace=False)
            index.remove(victims)
            for v in victims.tolist():
                del model[v]
        elif op == "search":
            k = arg + 1
            q = rng.standard_normal((3, dim)).astype(np.float32)
            scores, ids = index.search(q, k)
            assert len(index) == len(model) and set(index.ids.tolist()) == set(model)
            expected_ids, expected_scores = _brute_force(index, q, k)
            live = min(k, len(model))
            assert (ids[:, live:] == -1).all()
            np.testing.assert_allclose(
                -scores[:, :live], expected_scores[:, :live], rtol=1e-4, atol=1e-4
            )
    decoded = index.reconstruct(index.ids)
    assert decoded.shape == (len(model), dim)


# ---------------------------------------------------------------------- persistence
def test_save_load_identical(make, tmp_path, minilm):
    index = make(384, 3.5, metric="cosine", keep_vectors=True, seed=3)
    index.add(minilm[:1000], ids=np.arange(1000) + 10**12)
    index.remove([10**12 + 5])
    path = tmp_path / "idx.rq"
    index.save(path)
    loaded = VectorIndex.load(path)
    assert len(loaded) == 999 and loaded.metric == "cosine" and loaded.bits == 3.5
    for allow in (None, np.arange(10**12, 10**12 + 50)):
        a = index.search(minilm[1000:1010], 10, allow=allow, rerank=40)
        b = loaded.search(minilm[1000:1010], 10, allow=allow, rerank=40)
        np.testing.assert_array_equal(a[1], b[1])
        np.testing.assert_array_equal(a[0], b[0])
    assert loaded.add(minilm[1000:1001]).tolist() == [10**12 + 1000]


def test_incremental_save_appends(
    tmp_path,
):
    path = tmp_path / "idx.rq"
    x = unit_gaussian(3000, 50, seed=1)
    index = VectorIndex(50, 3)
    index.add(x[:1001])
    index.save(path)
    size = path.stat().st_size
    inode = path.stat().st_ino
    index.add(x[1001:1010])
    index.save(path)
    assert path.stat().st_ino == inode  # appended in place, not rewritten
    assert path.stat().st_size - size < 2000  # 9 rows of 19 bytes + manifest
    loaded = VectorIndex.load(path)
    loaded.add(x[1010:3000])
    loaded.save(path)  # appends again after a load
    assert path.stat().st_ino == inode
    again = VectorIndex.load(path)
    np.testing.assert_array_equal(again.ids, np.arange(3000))
    np.testing.assert_array_equal(
        again.search(x[:5], 4, allow=np.arange(1010))[1], index.search(x[:5], 4)[1]
    )
    again.remove([0])  # a saved row changes: the next save rewrites the file
    again.save(path)
    assert path.stat().st_ino != inode
    assert len(VectorIndex.load(path)) == 2999


@pytest.mark.parametrize("damage", ["flip", "truncate", "garbage", "empty"])
def test_damaged_files_are_refused(make, tmp_path, damage):
    path = tmp_path / "idx.rq"
    index = make(32, 4)
    index.add(unit_gaussian(500, 32))
    index.save(path)
    data = bytearray(path.read_bytes())
    if damage == "flip":
        data[len(data) // 2] ^= 0x10
    elif damage == "truncate":
        data = data[: len(data) - 100]
    elif damage == "garbage":
        data = bytearray(b"x" * 5000)
    else:
        data = bytearray()
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError):
        VectorIndex.load(path)


def test_every_flipped_byte_is_caught_or_harmless(
    make,
    tmp_path,
):
    """A flip anywhere in the committed bytes is refused (or, in the unused second commit
    slot and slack, has no effect on what loads)."""
    path = tmp_path / "idx.rq"
    index = make(16, 2)
    index.add(unit_gaussian(40, 16))
    index.save(path)
    good = path.read_bytes()
    expected = index.search(unit_gaussian(2, 16, seed=1), 5)
    rng = np.random.default_rng(0)
    for offset in rng.choice(len(good), 150, replace=False):
        data = bytearray(good)
        data[offset] ^= 1 << int(rng.integers(8))
        path.write_bytes(bytes(data))
        try:
            loaded = VectorIndex.load(path)
        except ValueError:
            continue
        got = loaded.search(unit_gaussian(2, 16, seed=1), 5)
        np.testing.assert_array_equal(got[1], expected[1])


_SAVER = """
import os, sys, numpy as np
from rotaquant import _atomic
from rotaquant.index import VectorIndex
path, how, point, rows = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
index = VectorIndex.load(path) if how == "append" else VectorIndex(64, 4)
index.add(np.random.default_rng(1).standard_normal((rows, 64)).astype(np.float32))
if point != "none":  # die at that point of the write, as a kill -9 would
    _atomic.crash_hook = lambda name: os._exit(CRASHED) if name == point else None
print("ready", flush=True)
index.save(path)
"""
CRASHED = 75  # the exit code of a saver that stopped at its crash point
CRASH_POINTS = {
    "rewrite": ("file-partly-written", "file-before-rename"),
    "append": ("append-partly-written", "append-before-commit"),
}


def _saved_index(tmp_path):
    path = tmp_path / "idx.rq"
    index = VectorIndex(64, 4)
    index.add(unit_gaussian(100, 64))
    index.save(path)
    return path, index, unit_gaussian(3, 64, seed=2)


def _saver(path, how, point, rows):
    script = _SAVER.replace("CRASHED", str(CRASHED))
    command = [sys.executable, "-c", script, str(path), how, point, str(rows)]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True)


@pytest.mark.parametrize("how", ["rewrite", "append"])
def test_a_save_interrupted_at_each_crash_point_leaves_the_previous_file(tmp_path, how):
    """Deterministic: the saver dies (os._exit) at each named point of the write path; the
    test checks that it did, and that the file still holds exactly the previous index."""
    path, index, queries = _saved_index(tmp_path)
    good, before = path.read_bytes(), index.search(queries, 5)
    for point in CRASH_POINTS[how]:
        proc = _saver(path, how, point, 5_000)
        proc.communicate(timeout=120)
        assert proc.returncode == CRASHED, f"the save did not stop at {point}"
        loaded = VectorIndex.load(path)
        assert len(loaded) == 100
        np.testing.assert_array_equal(loaded.search(queries, 5)[1], before[1])
        if how == "rewrite":
            assert path.read_bytes() == good  # the rename never happened
        path.write_bytes(good)
    proc = _saver(path, how, "none", 5_000)  # uninterrupted: the new contents
    proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert len(VectorIndex.load(path)) == (5_100 if how == "append" else 5_000)
    leftovers = [p for p in os.listdir(tmp_path) if p not in ("idx.rq", "idx.rq.lock")]
    assert all(p.endswith(".tmp") for p in leftovers)
    index.save(path, overwrite=True)  # the next save removes what killed saves left
    assert sorted(os.listdir(tmp_path)) == ["idx.rq", "idx.rq.lock"]


@pytest.mark.slow
@pytest.mark.parametrize("how", ["rewrite", "append"])
def test_killed_save_leaves_previous_file(tmp_path, how):
    """Real SIGKILLs at a sweep of moments during a large save (where they land depends on
    the machine: the crash-point test above is the deterministic one)."""
    path, index, queries = _saved_index(tmp_path)
    good, before = path.read_bytes(), index.search(queries, 5)
    new_size = 200_100 if how == "append" else 200_000
    for delay in (0.0, 0.005, 0.02, 0.05, 0.1, 0.3):
        proc = _saver(path, how, "none", 200_000)
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        loaded = VectorIndex.load(path)  # the old index, or the new one if the save won
        assert len(loaded) in (100, new_size)
        if len(loaded) == 100:
            np.testing.assert_array_equal(loaded.search(queries, 5)[1], before[1])
        path.write_bytes(good)
    index.save(path, overwrite=True)
    assert sorted(os.listdir(tmp_path)) == ["idx.rq", "idx.rq.lock"]


# ---------------------------------------------------------------------- errors and threads
def test_bad_input_is_refused(make):
    index = make(16, 3)
    index.add(unit_gaussian(20, 16))
    q = unit_gaussian(2, 16)
    for bad in (q[:, :8], q[0], np.full((1, 16), np.nan, np.float32), q.astype(np.int32)):
        with pytest.raises(ValueError):
            index.search(bad, 3)
    for k in (0, -1, 2.5, True):
        with pytest.raises(ValueError):
            index.search(q, k)
    with pytest.raises(ValueError, match="keep_vectors"):
        index.search(q, 3, rerank=10)
    with pytest.raises(ValueError):
        index.add(np.full((2, 16), np.inf, np.float32))
    with pytest.raises(ValueError):
        index.add(unit_gaussian(2, 16), ids=[-1, 3])
    with pytest.raises(ValueError):
        index.add(unit_gaussian(2, 16), ids=[1.5, 3.0])
    with pytest.raises(ValueError):
        make(16, 3, metric="dot")
    with pytest.raises(ValueError, match="zero vector"):
        make(16, 3, metric="cosine").add(np.zeros((1, 16), np.float32))
    assert len(index) == 20


def test_streaming_add_from_memmap(
    make,
    tmp_path,
):
    path = tmp_path / "x.npy"
    np.save(path, unit_gaussian(5000, 24).astype(np.float16))
    source = np.load(path, mmap_mode="r")
    index = make(24, 4)
    index.add(source)
    assert len(index) == 5000
    _, ids = index.search(np.asarray(source[:20], np.float32), 1)
    assert (ids[:, 0] == np.arange(20)).mean() >= 0.95


def test_concurrent_searches_and_writes(make):
    index = make(32, 4)
    x = unit_gaussian(4000, 32)
    index.add(x[:2000])
    q = x[:50]
    expected = index.search(q, 5)
    errors = []

    def reader():
        try:
            for _ in range(20):
                scores, ids = index.search(q, 5)
                assert (ids >= 0).all()
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    index.add(x[2000:])
    index.remove(np.arange(2000, 4000))
    for t in threads:
        t.join()
    assert not errors
    np.testing.assert_array_equal(index.search(q, 5)[1], expected[1])
