"""The index file format: commit slots, appends, fallbacks."""

import os

import numpy as np
import pytest

import rotaquant as rq
from rotaquant.index import file_format
from rotaquant.index.file_guard import FileChangedError

from ..conftest import FIXTURES


def _segment(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "codes": rng.integers(0, 256, n * 3).astype(np.uint8),
        "ids": np.arange(n, dtype=np.int64) + seed * 1000,
    }


def test_write_append_read(tmp_path):
    path = tmp_path / "f.rq"
    commit = file_format.write_new(path, {"v": 1}, [_segment(10)])
    commit = file_format.append(commit, {"v": 2}, [_segment(5, 1), _segment(0, 2)])
    loaded = file_format.read(path)
    header, segments, again = loaded.header, loaded.segments, loaded.commit
    assert header == {"v": 2} and again.generation == 2 == commit.generation
    assert [s["ids"].size for s in segments] == [10, 5, 0]
    np.testing.assert_array_equal(segments[1]["codes"], _segment(5, 1)["codes"])
    segments[0]["ids"][0] = 99  # copy-on-write: the file is untouched
    assert file_format.read(path).segments[0]["ids"][0] == 0


def test_torn_newer_slot_falls_back_to_previous_commit(tmp_path):
    path = tmp_path / "f.rq"
    commit = file_format.write_new(path, {"v": 1}, [_segment(10)])
    file_format.append(commit, {"v": 2}, [_segment(5, 1)])
    data = bytearray(path.read_bytes())
    data[128 + 3] ^= 0xFF  # generation 2 went to the second slot; tear it
    path.write_bytes(bytes(data))
    loaded = file_format.read(path)
    header, segments = loaded.header, loaded.segments
    assert header == {"v": 1} and len(segments) == 1


def test_append_to_a_replaced_file_is_refused(tmp_path):
    path = tmp_path / "f.rq"
    commit = file_format.write_new(path, {"v": 1}, [_segment(10)])
    file_format.write_new(path, {"v": "other"}, [_segment(3)])  # renamed over: new inode
    with pytest.raises(FileChangedError):
        file_format.append(commit, {"v": 2}, [_segment(5, 1)])
    copy = tmp_path / "g.rq"
    commit = file_format.write_new(copy, {"v": 1}, [_segment(10)])
    later = file_format.append(commit, {"v": 2}, [_segment(1, 1)])
    assert later.generation == 2
    with pytest.raises(FileChangedError):  # generation moved on since `commit`
        file_format.append(commit, {"v": 3}, [_segment(1, 2)])


def test_trailing_garbage_after_commit_is_ignored(tmp_path):
    path = tmp_path / "f.rq"
    file_format.write_new(path, {"v": 1}, [_segment(10)])
    with open(path, "ab") as f:  # what a crash mid-append leaves
        f.write(os.urandom(777))
    loaded = file_format.read(path)
    header, segments = loaded.header, loaded.segments
    assert header == {"v": 1} and segments[0]["ids"].size == 10


def test_index_v1_cosine_with_append_commit_searches_as_before(v1_expected):
    idx = rq.VectorIndex.load(FIXTURES / "index_v1_cosine.rq")
    assert len(idx) == 130 and idx.metric == "cosine" and idx.keep_vectors
    q = v1_expected["queries"]
    scores, ids = idx.search(q, k=7)
    np.testing.assert_array_equal(ids, v1_expected["cosine_ids"])
    np.testing.assert_allclose(scores, v1_expected["cosine_scores"], rtol=1e-5, atol=1e-6)
    scores, ids = idx.search(q, k=7, rerank=20)
    np.testing.assert_array_equal(ids, v1_expected["cosine_rr_ids"])
    np.testing.assert_allclose(scores, v1_expected["cosine_rr_scores"], rtol=1e-5, atol=1e-6)
    scores, ids = idx.search(q[:2], k=4, allow=np.arange(1000, 1030))
    np.testing.assert_array_equal(ids, v1_expected["cosine_allow_ids"])


def test_index_v1_l2_prod_searches_as_before(v1_expected):
    idx = rq.VectorIndex.load(FIXTURES / "index_v1_l2_prod.rq")
    assert len(idx) == 67 and idx.config.mode == "prod" and idx.bits == 2.5
    assert 0 not in idx and 3 in idx
    scores, ids = idx.search(v1_expected["l2_queries"], k=5)
    np.testing.assert_array_equal(ids, v1_expected["l2_ids"])
    np.testing.assert_allclose(scores, v1_expected["l2_scores"], rtol=1e-5, atol=1e-5)


def test_a_version_1_file_is_rewritten_in_the_current_format_on_save(tmp_path, v1_expected):
    path = tmp_path / "converted.rq"
    old = rq.VectorIndex.load(FIXTURES / "index_v1_cosine.rq")
    old.save(path)
    assert file_format.read(path).commit.version == file_format.VERSION
    again = rq.VectorIndex.load(path)
    scores, ids = again.search(v1_expected["queries"], k=7)
    np.testing.assert_array_equal(ids, v1_expected["cosine_ids"])
    np.testing.assert_allclose(scores, v1_expected["cosine_scores"], rtol=1e-5, atol=1e-6)
    # saving a converted index over its own version-1 file rewrites it, never appends
    copy = tmp_path / "v1.rq"
    copy.write_bytes((FIXTURES / "index_v1_cosine.rq").read_bytes())
    index = rq.VectorIndex.load(copy)
    index.add(np.ones((3, 24), np.float32))
    index.save(copy)
    assert file_format.read(copy).commit.version == file_format.VERSION
    assert len(rq.VectorIndex.load(copy)) == 133
