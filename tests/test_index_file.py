"""The index file format: commit slots, appends, fallbacks."""

import os

import numpy as np
import pytest

from rotaquant import index_file


def _segment(n, seed=0):
    rng = np.random.default_rng(seed)
    return {
        "codes": rng.integers(0, 256, n * 3).astype(np.uint8),
        "ids": np.arange(n, dtype=np.int64) + seed * 1000,
    }


def test_write_append_read(tmp_path):
    path = tmp_path / "f.rq"
    commit = index_file.write_new(path, {"v": 1}, [_segment(10)])
    commit = index_file.append(commit, {"v": 2}, [_segment(5, 1), _segment(0, 2)])
    header, segments, again = index_file.read(path)
    assert header == {"v": 2} and again.generation == 2 == commit.generation
    assert [s["ids"].size for s in segments] == [10, 5, 0]
    np.testing.assert_array_equal(segments[1]["codes"], _segment(5, 1)["codes"])
    segments[0]["ids"][0] = 99  # copy-on-write: the file is untouched
    assert index_file.read(path)[1][0]["ids"][0] == 0


def test_torn_newer_slot_falls_back_to_previous_commit(tmp_path):
    path = tmp_path / "f.rq"
    commit = index_file.write_new(path, {"v": 1}, [_segment(10)])
    index_file.append(commit, {"v": 2}, [_segment(5, 1)])
    data = bytearray(path.read_bytes())
    data[128 + 3] ^= 0xFF  # generation 2 went to the second slot; tear it
    path.write_bytes(bytes(data))
    header, segments, _ = index_file.read(path)
    assert header == {"v": 1} and len(segments) == 1


def test_append_to_a_replaced_file_is_refused(tmp_path):
    path = tmp_path / "f.rq"
    commit = index_file.write_new(path, {"v": 1}, [_segment(10)])
    index_file.write_new(path, {"v": "other"}, [_segment(3)])  # renamed over: new inode
    with pytest.raises(index_file.StaleFileError):
        index_file.append(commit, {"v": 2}, [_segment(5, 1)])
    copy = tmp_path / "g.rq"
    commit = index_file.write_new(copy, {"v": 1}, [_segment(10)])
    later = index_file.append(commit, {"v": 2}, [_segment(1, 1)])
    assert later.generation == 2
    with pytest.raises(index_file.StaleFileError):  # generation moved on since `commit`
        index_file.append(commit, {"v": 3}, [_segment(1, 2)])


def test_trailing_garbage_after_commit_is_ignored(tmp_path):
    path = tmp_path / "f.rq"
    index_file.write_new(path, {"v": 1}, [_segment(10)])
    with open(path, "ab") as f:  # what a crash mid-append leaves
        f.write(os.urandom(777))
    header, segments, _ = index_file.read(path)
    assert header == {"v": 1} and segments[0]["ids"].size == 10
