"""VectorIndex with inverted lists (nlist=...): training, probes against brute force over the
probed lists on every kernel variant, residual scores, empty and unbalanced lists, filtered
recall, honest bytes, save/load/mmap, crafted files and the native probe checks. (The flat
index's own suite runs against an IVF index too: tests/index/test_vector_index.py.)"""

import numpy as np
import pytest

from rotaquant import _native
from rotaquant.index import VectorIndex, file_format
from rotaquant.index.ivf import TRAIN_PER_LIST

from ..conftest import unit_gaussian


def _blobs(n: int, dim: int, centers: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    middle = rng.standard_normal((centers, dim)).astype(np.float32) * 2
    return middle[rng.integers(0, centers, n)] + rng.standard_normal((n, dim)).astype(np.float32)


def _recall(found: np.ndarray, truth: np.ndarray) -> float:
    hits = [len(set(f) & set(t)) for f, t in zip(found, truth, strict=True)]
    return float(np.mean(hits)) / truth.shape[1]


def _probed_top(
    index: VectorIndex, queries: np.ndarray, k: int, nprobe: int, allow=None, base=None
):
    """Expected (ids, scores): each query's exact top-k, by the index's own decoded vectors,
    over the ids held by the ``nprobe`` lists nearest it (float64, numpy only). In prod mode
    (ip) the scores are the codec's own estimates of the residuals of ``base[id]`` plus
    ⟨q, c⟩."""
    lists = index._rows
    q = queries
    if index.metric == "cosine":
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
    probed, _ = lists.coarse.probe(q, nprobe)
    offsets, ids = lists.layout()
    decoded = index.reconstruct(ids).astype(np.float64)
    out_ids = np.full((len(q), k), -1)
    out_scores = np.full((len(q), k), np.nan)
    for i, row in enumerate(probed):
        held = np.concatenate([np.arange(offsets[p], offsets[p + 1]) for p in row])
        if allow is not None:
            held = held[np.isin(ids[held], allow)]
        x = decoded[held]
        if index.config.mode == "prod":
            lists_of = np.searchsorted(offsets, held, side="right") - 1
            centroids = lists.coarse.centroids[lists_of]
            codes = index.quantizer.encode(base[ids[held]] - centroids)
            scores = index.quantizer.inner_product(q[i : i + 1], codes)[0] + centroids @ q[i]
        elif index.metric == "l2":
            scores = -((q[i].astype(np.float64) - x) ** 2).sum(1)
        else:
            scores = x @ q[i].astype(np.float64)
        order = np.argsort(-scores, kind="stable")[:k]
        out_ids[i, : order.size] = ids[held[order]]
        out_scores[i, : order.size] = -scores[order] if index.metric == "l2" else scores[order]
    return out_ids, out_scores


# ---------------------------------------------------------------------- training
def test_vectors_wait_in_an_exact_buffer_until_enough_arrive():
    x = _blobs(2000, 24)
    index = VectorIndex(24, 3, metric="l2", nlist=16)
    index.add(x[: TRAIN_PER_LIST * 16 - 1])
    assert not index.trained and index.list_sizes.tolist() == [0] * 16
    q = x[:5] + 0.1
    scores, ids = index.search(q, 3)  # exact float distances of the buffered vectors
    d = ((q[:, None, :] - x[None, : TRAIN_PER_LIST * 16 - 1]) ** 2).sum(-1)
    np.testing.assert_array_equal(ids, np.argsort(d, axis=1)[:, :3])
    np.testing.assert_allclose(scores, np.sort(d, axis=1)[:, :3], rtol=1e-5, atol=2e-4)
    index.add(x[TRAIN_PER_LIST * 16 - 1 :])  # reaches 30 per list: trains, buffer moves in
    assert index.trained and index.list_sizes.sum() == 2000 == len(index)
    assert (index.list_sizes > 0).all()
    np.testing.assert_array_equal(np.sort(index.ids), np.arange(2000))


def test_explicit_train_moves_the_buffer_and_refuses_twice():
    x = _blobs(3000, 16)
    index = VectorIndex(16, 4, nlist=8)
    index.add(x[:50], ids=np.arange(50) * 3)
    index.train(x)
    assert index.trained and len(index) == 50 and index.list_sizes.sum() == 50
    assert sorted(index.ids.tolist()) == list(range(0, 150, 3))
    with pytest.raises(ValueError, match="already trained"):
        index.train(x)
    with pytest.raises(ValueError, match="inverted lists"):
        VectorIndex(16, 4).train(x)
    with pytest.raises(ValueError, match="cannot train"):
        VectorIndex(16, 4, nlist=8).train(x[:5])
    with pytest.raises(ValueError, match="finite"):
        VectorIndex(16, 4, nlist=2).train(np.full((10, 16), np.nan, np.float32))


@pytest.mark.parametrize("bad", [0, -3, True, 2.5, "8", 1 << 21])
def test_bad_nlist_and_nprobe_are_refused(bad):
    with pytest.raises(ValueError, match="nlist"):
        VectorIndex(8, 4, nlist=bad)
    index = VectorIndex(8, 4, nlist=2)
    index.add(unit_gaussian(100, 8))
    if not isinstance(bad, int) or bad < 1:
        with pytest.raises(ValueError, match="nprobe"):
            index.search(unit_gaussian(1, 8), 3, nprobe=bad)
    with pytest.raises(ValueError, match="inverted lists"):
        VectorIndex(8, 4).search(unit_gaussian(1, 8), 3, nprobe=2)


# ---------------------------------------------------------------------- probes
@pytest.mark.parametrize(
    ("metric", "bits", "mode"),
    [
        ("ip", 4, "mse"),
        ("l2", 3, "mse"),
        ("cosine", 2, "mse"),
        ("ip", 2.5, "mse"),
        ("ip", 3, "prod"),
    ],
)
def test_probed_search_is_the_exact_top_k_of_the_probed_lists(metric, bits, mode):
    """On every kernel variant, batched and one query at a time: the best k of the vectors in
    each query's nprobe nearest lists, by the decoded vectors (centroid + residual)."""
    x = _blobs(6000, 32, seed=1)
    queries = _blobs(40, 32, seed=2)
    index = VectorIndex(32, bits, metric=metric, mode=mode, nlist=32, seed=4)
    index.add(x)
    for nprobe in (1, 3, 32):
        expected_ids, expected = _probed_top(index, queries, 10, nprobe, base=x)
        for variant in _native.variants():
            with _native.using_variant(variant):
                scores, ids = index.search(queries, 10, nprobe=nprobe)
                single = [index.search(q[None], 10, nprobe=nprobe) for q in queries[:5]]
            assert (ids != expected_ids).mean() < 0.01, (variant, nprobe)
            np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)
            for i, (s, found) in enumerate(single):
                np.testing.assert_array_equal(found[0], ids[i])
                np.testing.assert_allclose(s[0], scores[i], rtol=1e-5, atol=1e-5)


def test_more_probes_never_lower_recall_and_all_probes_match_flat_codes():
    x, queries = _blobs(8000, 48, seed=3), _blobs(100, 48, seed=4)
    truth = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    index = VectorIndex(48, 4, nlist=64)
    index.add(x)
    recalls = []
    for nprobe in (1, 2, 4, 8, 16, 64):
        ids = index.search(queries, 10, nprobe=nprobe).ids
        recalls.append(_recall(ids, truth))
    assert all(b >= a - 0.01 for a, b in zip(recalls, recalls[1:], strict=False)), recalls
    flat = VectorIndex(48, 4)
    flat.add(x)
    ids = flat.search(queries, 10).ids
    flat_recall = _recall(ids, truth)
    assert recalls[-1] >= flat_recall - 0.01  # residual codes: at least as good as flat ones


def test_filtered_search_reads_enough_lists_to_keep_recall():
    """allow of 1 % and 10 %: recall against the exact top 10 of the allowed set stays near
    the unfiltered recall at the same nprobe (a filtered query reads more lists)."""
    x, queries = _blobs(20000, 32, centers=200, seed=5), _blobs(50, 32, centers=200, seed=6)
    index = VectorIndex(32, 4, nlist=128)
    index.add(x)
    rng = np.random.default_rng(0)
    truth_all = np.argsort(-(queries @ x.T), axis=1)[:, :10]
    ids = index.search(queries, 10, nprobe=8).ids
    unfiltered = _recall(ids, truth_all)
    for share in (0.01, 0.1):
        allow = np.sort(rng.choice(20000, int(share * 20000), replace=False))
        truth = allow[np.argsort(-(queries @ x[allow].T), axis=1)[:, :10]]
        ids = index.search(queries, 10, nprobe=8, allow=allow).ids
        assert np.isin(ids, allow).all()
        recall = _recall(ids, truth)
        assert recall >= unfiltered - 0.05, (share, recall, unfiltered)
        expected_ids, _ = _probed_top(index, queries, 10, 128, allow)
        assert recall <= 1.0 and expected_ids.shape == ids.shape


# ---------------------------------------------------------------------- lists that go wrong
def test_empty_lists_and_lists_emptied_by_removal():
    x = np.repeat(_blobs(3, 16, centers=3), 200, axis=0)  # three distinct points, 8 lists
    x += 1e-3 * np.random.default_rng(0).standard_normal(x.shape).astype(np.float32)
    index = VectorIndex(16, 4, metric="l2", nlist=8)
    index.add(x)
    assert index.trained and index.list_sizes.sum() == 600
    ids = index.search(x[:2], 5, nprobe=8).ids
    assert (ids >= 0).all()
    whole = index.list_sizes.argmax()
    offsets, row_ids = index._rows.layout()
    index.remove(row_ids[offsets[whole] : offsets[whole + 1]])  # empty the largest list
    assert index.list_sizes[whole] == 0
    assert len(index) == 600 - (offsets[whole + 1] - offsets[whole])
    scores, ids = index.search(x[:3], 5, nprobe=8)
    assert np.isin(ids[ids >= 0], index.ids).all()
    index.remove(index.ids)
    assert len(index) == 0 and (index.search(x[:2], 3).ids == -1).all()
    index.add(x[:10])  # trained already: straight into the lists
    assert index.list_sizes.sum() == 10


def test_unbalanced_adds_after_training_stay_correct():
    """Vectors that all fall near one centroid pile into one list; search stays exact over
    the probed lists and list_sizes shows the imbalance."""
    x = _blobs(4000, 16, seed=7)
    index = VectorIndex(16, 3, nlist=16)
    index.add(x)
    crowd = x[:1] + 0.05 * np.random.default_rng(1).standard_normal((5000, 16)).astype(np.float32)
    index.add(crowd)
    sizes = index.list_sizes
    assert sizes.max() >= 5000 and sizes.sum() == 9000
    queries = crowd[:20] + 0.01
    expected_ids, expected = _probed_top(index, queries, 10, 2)
    scores, ids = index.search(queries, 10, nprobe=2)
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-4)


def test_upsert_moves_a_vector_to_its_new_list():
    x = _blobs(1000, 16, seed=8)
    index = VectorIndex(16, 4, metric="l2", nlist=8)
    index.add(x)
    far = x[:1] * -1
    index.upsert(far, ids=[0])
    assert len(index) == 1000
    ids = index.search(far, 1, nprobe=1).ids
    assert ids[0, 0] == 0
    np.testing.assert_allclose(index.reconstruct([0]), far, atol=0.15 * np.abs(far).max())


def test_nbytes_counts_lists_centroids_directory_and_buffer():
    x = _blobs(3000, 64, seed=9)
    index = VectorIndex(64, 4, nlist=16)
    index.add(x[:100])
    buffered = index.nbytes
    assert buffered >= 100 * 64 * 4 + 100 * 8  # float32 rows and ids
    index.add(x[100:])
    lists = index._rows
    codes = 3000 * 64 * 4 // 8
    assert index.codes_nbytes >= codes
    parts = sum(s.nbytes for s in lists.lists) + lists.coarse.nbytes
    assert lists.coarse.nbytes == 16 * 64 * 4
    assert index.nbytes >= parts >= codes + 3000 * (2 + 8) + 16 * 64 * 4
    index.remove([5])  # builds the directory: counted
    assert index.nbytes >= parts + 2999 * 16


# ---------------------------------------------------------------------- files
@pytest.mark.parametrize("mmap", [True, False])
@pytest.mark.parametrize("trained", [True, False])
def test_save_load_round_trip(tmp_path, mmap, trained):
    x = _blobs(2000, 24, seed=10)
    index = VectorIndex(24, 3, metric="cosine", nlist=8, keep_vectors=True, seed=2)
    index.add(x if trained else x[:100], ids=np.arange(2000 if trained else 100) * 5)
    index.remove([10])
    path = tmp_path / "ivf.rq"
    index.save(path)
    assert path.read_bytes()[8:12] == file_format.IVF_VERSION.to_bytes(4, "little")
    loaded = VectorIndex.load(path, mmap=mmap)
    assert loaded.nlist == 8 and loaded.trained == trained and len(loaded) == len(index)
    assert not loaded.appends_on_save(path)  # IVF saves rewrite the file
    queries = x[:7] + 0.1
    for allow in (None, np.arange(0, 10000, 10)):
        a = index.search(queries, 5, nprobe=3, allow=allow, rerank=20)
        b = loaded.search(queries, 5, nprobe=3, allow=allow, rerank=20)
        np.testing.assert_array_equal(a.ids, b.ids)
        np.testing.assert_array_equal(a.scores, b.scores)
    loaded.add(x[:3])
    loaded.remove([0])
    loaded.save(path)
    again = VectorIndex.load(path)
    assert len(again) == len(index) + 2 and 0 not in again


def _crafted(tmp_path, mutate):
    """A saved trained IVF index whose segments ``mutate`` edits before writing them back."""
    index = VectorIndex(8, 4, nlist=2)
    index.add(unit_gaussian(200, 8))
    header = index._header()
    pieces = [dict(p) for p in index._pieces()]
    mutate(header, pieces)
    path = tmp_path / "crafted.rq"
    file_format.write_new(path, header, pieces, version=file_format.IVF_VERSION)
    return path


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (lambda h, p: p[1].update(list=np.array([7], np.int32)), "outside"),
        (lambda h, p: p[1].update(list=np.array([0, 1], np.int32)), "'list'"),
        (lambda h, p: p[1].pop("list"), "'list'"),
        (lambda h, p: p[0].update(centroids=np.zeros((3, 8), np.float32)), "centroids"),
        (lambda h, p: p.pop(0), "no centroids"),
        (
            lambda h, p: p.append({"buffer": np.zeros((1, 8), np.float32), "ids": np.array([999])}),
            "both",
        ),
        (lambda h, p: h.update(nlist="2"), "nlist"),
        (lambda h, p: h.update(nlist=0), "nlist"),
        (lambda h, p: p[0].update(centroids=np.full((2, 8), np.nan, np.float32)), "NaN"),
        (lambda h, p: p[1].update(ids=np.zeros_like(p[1]["ids"])), "duplicate"),
    ],
)
def test_crafted_files_are_refused(tmp_path, mutate, message):
    path = _crafted(tmp_path, mutate)
    with pytest.raises(ValueError, match=message):
        VectorIndex.load(path)


def test_native_lists_and_filters_are_checked_at_the_boundary():
    index = VectorIndex(16, 4, nlist=4)
    index.add(_blobs(400, 16))
    native, lists = index._searcher._native, index._rows
    scan_set = lists.scan_set(native)
    q = unit_gaussian(2, 16)
    rows, scores, *_ = native.search_lists(scan_set, q, 3, 4)
    np.testing.assert_array_equal(index.ids[rows], index.search(q, 3).ids)
    for allowed, target, message in [
        (np.array([3, 1]), 1.0, "sorted"),
        (np.array([1, 1]), 1.0, "distinct"),
        (np.array([-1, 2]), 1.0, ">= 0"),
        (np.array([1, 2]), np.nan, "target"),
    ]:
        with pytest.raises(ValueError, match=message):
            native.search_lists(scan_set, q, 3, 4, allowed, target)
    with pytest.raises(ValueError, match="nprobe"):
        native.search_lists(scan_set, q, 3, 0)
    segments = [s.scan_view(0, None) for s in lists.lists[0].segments]
    centroids = lists.coarse.centroids
    closer = np.zeros(4, np.float32)
    for first, c, offset, message in [
        (np.array([0, 1], np.int64), centroids, closer, "nlist \\+ 1"),
        (np.array([0, 0, 0, 0, 9], np.int64), centroids, closer, "number of segments"),
        (np.array([0, 1, 0, 1, 1], np.int64), centroids, closer, "decrease"),
        (np.array([0, 1, 1, 1, 1], np.int64), centroids[:, :8].copy(), closer, "dimension"),
        (np.array([0, 1, 1, 1, 1], np.int64), centroids * np.inf, closer, "finite"),
        (np.array([0, 1, 1, 1, 1], np.int64), centroids, closer[:3].copy(), "offset"),
    ]:
        with pytest.raises(ValueError, match=message):
            native.lists(segments, first, np.ascontiguousarray(c, np.float32), offset)
