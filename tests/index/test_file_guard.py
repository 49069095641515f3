"""Index files shared with other writers and tools: concurrent saves, files changed under a
memory map, damaged newest commits, permissions, symlinks and leftovers."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import warnings
import zlib

import numpy as np
import pytest

from rotaquant.index import FileChangedError, VectorIndex
from rotaquant.index import file_format as ff
from tests.conftest import unit_gaussian

_WRITER = """
import json, sys, numpy as np
from rotaquant.index import FileChangedError, VectorIndex
path, worker = sys.argv[1], int(sys.argv[2])
saved = []
for attempt in range(4):
    index = VectorIndex.load(path)
    ids = np.arange(20) + 1000 * (10 * worker + attempt + 1)
    index.add(np.random.default_rng(worker).standard_normal((20, 16)).astype(np.float32), ids)
    try:
        index.save(path)
    except FileChangedError:
        continue
    saved.extend(ids.tolist())
print(json.dumps(saved))
"""


def test_concurrent_writers_lose_nothing_silently(tmp_path):
    """Processes that each load, add and save one file at once: every save either lands or
    raises FileChangedError, and the file holds exactly the rows of the saves that landed."""
    path = tmp_path / "shared.rq"
    base = VectorIndex(16, 3)
    base.add(unit_gaussian(50, 16))
    base.save(path)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _WRITER, str(path), str(w)], stdout=subprocess.PIPE, text=True
        )
        for w in range(4)
    ]
    landed = [json.loads(p.communicate(timeout=120)[0]) for p in procs]
    assert all(p.returncode == 0 for p in procs)
    final = VectorIndex.load(path)
    expected = set(range(50)).union(*landed)
    assert sorted(final.ids.tolist()) == sorted(expected)
    assert sum(map(len, landed)) >= 20  # at least one save of the round landed


def test_save_refuses_to_overwrite_another_writers_commit(tmp_path):
    path = tmp_path / "idx.rq"
    first = VectorIndex(16, 3)
    first.add(unit_gaussian(30, 16))
    first.save(path)
    second = VectorIndex.load(path)
    second.add(unit_gaussian(5, 16, seed=1))
    second.save(path)  # appended: generation 2
    first.add(unit_gaussian(7, 16, seed=2))
    with pytest.raises(FileChangedError, match="another writer"):
        first.save(path)
    assert len(VectorIndex.load(path)) == 35  # untouched
    first.save(path, overwrite=True)
    assert len(VectorIndex.load(path)) == 37


def _damage_newest_commit(path):
    """Flip a byte inside the section the last append wrote (its CRC no longer holds)."""
    loaded = ff.read(path)
    last = loaded.commit.segments[-1]["arrays"][0]
    data = bytearray(path.read_bytes())
    data[int(last["offset"])] ^= 0xFF
    path.write_bytes(bytes(data))


def test_load_falls_back_to_the_newest_intact_commit_and_says_so(tmp_path):
    path = tmp_path / "idx.rq"
    index = VectorIndex(16, 3)
    index.add(unit_gaussian(40, 16))
    index.save(path)
    index.add(unit_gaussian(10, 16, seed=1))
    index.save(path)  # appended
    _damage_newest_commit(path)
    with pytest.warns(RuntimeWarning, match="generation 2"):
        recovered = VectorIndex.load(path)
    assert len(recovered) == 40 and "checksum" in recovered.recovered_from
    recovered.add(unit_gaussian(3, 16, seed=3))
    recovered.save(path)  # rewritten whole
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        again = VectorIndex.load(path)
    assert len(again) == 43 and again.recovered_from is None
    with pytest.raises(ValueError):  # a damaged only commit: nothing to fall back to
        _damage_newest_commit(path)
        VectorIndex.load(path)


def _loaded(tmp_path, **load_options):
    path = tmp_path / "idx.rq"
    index = VectorIndex(32, 4)
    index.add(unit_gaussian(500, 32))
    index.save(path)
    return path, VectorIndex.load(path, **load_options)


def test_truncating_a_mapped_file_is_detected_before_a_scan(tmp_path):
    path, index = _loaded(tmp_path)
    queries = unit_gaussian(2, 32, seed=4)
    index.search(queries, 5)
    os.truncate(path, ff.DATA_START + 100)
    for _ in range(2):  # and stays refused
        with pytest.raises(FileChangedError, match="truncated"):
            index.search(queries, 5)
    with pytest.raises(FileChangedError):
        index.remove([1])


def test_overwriting_a_mapped_file_in_place_is_detected(tmp_path):
    path, index = _loaded(tmp_path)
    section = ff.read(path).commit.segments[0]["arrays"][0]
    with open(path, "r+b") as f:
        f.seek(int(section["offset"]) + 3)
        f.write(b"\x5a")
    with pytest.raises(FileChangedError, match="modified in place"):
        index.search(unit_gaussian(1, 32), 5)


def test_a_mapped_reader_survives_another_writers_append(tmp_path):
    path, reader = _loaded(tmp_path)
    queries = unit_gaussian(3, 32, seed=5)
    before = reader.search(queries, 5)
    writer = VectorIndex.load(path)
    writer.add(unit_gaussian(50, 32, seed=6))
    writer.save(path)  # appended past the reader's committed end
    after = reader.search(queries, 5)  # re-verified once, still the reader's own rows
    np.testing.assert_array_equal(after[1], before[1])
    assert len(VectorIndex.load(path)) == 550


def test_private_copy_does_not_depend_on_the_file(tmp_path):
    path, index = _loaded(tmp_path, mmap=False)
    queries = unit_gaussian(2, 32, seed=7)
    before = index.search(queries, 5)
    os.truncate(path, 10)
    np.testing.assert_array_equal(index.search(queries, 5)[1], before[1])


def test_full_save_keeps_permissions_and_symlinks(tmp_path):
    target = tmp_path / "real.rq"
    link = tmp_path / "link.rq"
    index = VectorIndex(16, 3)
    index.add(unit_gaussian(20, 16))
    index.save(target)
    umask = os.umask(0o022)
    os.umask(umask)
    assert stat.S_IMODE(target.stat().st_mode) == 0o666 & ~umask
    os.chmod(target, 0o640)
    link.symlink_to(target)
    for _ in range(2):  # a full rewrite (other path), then an append through the link
        loaded = VectorIndex.load(link)
        loaded.add(unit_gaussian(5, 16, seed=len(loaded)))
        loaded.remove([0]) if len(loaded) == 25 else None
        loaded.save(link)
        assert link.is_symlink() and stat.S_IMODE(target.stat().st_mode) == 0o640
    assert len(VectorIndex.load(target)) == 29


def test_a_slot_claiming_a_huge_generation_is_not_a_commit(tmp_path):
    path = tmp_path / "idx.rq"
    index = VectorIndex(16, 3)
    index.add(unit_gaussian(20, 16))
    index.save(path)
    data = bytearray(path.read_bytes())
    body = bytearray(data[64 : 64 + ff._SLOT.size])
    gen, offset, length, committed, crc = ff._SLOT.unpack(bytes(body))
    slot = ff._slot_bytes(2**64 - 1, offset, length, committed, crc)
    data[128 : 128 + len(slot)] = slot
    path.write_bytes(bytes(data))
    loaded = VectorIndex.load(path)
    loaded.add(unit_gaussian(4, 16, seed=1))
    loaded.save(path)  # appended as generation 2 over the bogus slot
    assert len(VectorIndex.load(path)) == 24
    assert ff.read(path).commit.generation == 2


def test_search_work_is_bounded_by_the_index(tmp_path):
    index = VectorIndex(16, 3, keep_vectors=True)
    index.add(unit_gaussian(300, 16))
    queries = unit_gaussian(2, 16, seed=1)
    scores, ids = index.search(queries, k=10**6, rerank=10**7)
    assert ids.shape == (2, 10**6) and (ids[:, :300] >= 0).all() and (ids[:, 300:] == -1).all()
    assert np.isneginf(scores[:, 300:]).all()
    exact = index.search(queries, k=300, rerank=300)
    np.testing.assert_array_equal(ids[:, :300], exact[1])
    empty = VectorIndex(16, 3, keep_vectors=True)
    assert (empty.search(queries, k=5, rerank=50)[1] == -1).all()


def test_crafted_sizes_are_checked_before_allocating(tmp_path):
    """A small file whose header claims a huge dimension is refused without allocating."""
    path = tmp_path / "idx.rq"
    index = VectorIndex(16, 3)
    index.save(path)  # no rows: nothing to compare the dimension with but the header
    loaded = ff.read(path)
    header = json.loads(json.dumps(loaded.header))
    header["config"]["dim"] = 2**40
    manifest = json.dumps({"header": header, "segments": []}).encode()
    data = bytearray(path.read_bytes()[: ff.DATA_START]) + manifest
    slot = ff._slot_bytes(5, ff.DATA_START, len(manifest), len(data), zlib.crc32(manifest))
    data[64 : 64 + len(slot)] = slot
    path.write_bytes(bytes(data))
    with pytest.raises(ValueError, match="dim"):
        VectorIndex.load(path)


@pytest.mark.parametrize("how", ["rewrite", "append"])
def test_disk_full_during_a_save_keeps_the_previous_file(tmp_path, monkeypatch, how):
    """The disk fills up (ENOSPC at the fsync) during a full save or an append: the save
    raises OSError, the file still loads with its previous contents, no temp file is left,
    and a later save (space freed) completes."""
    import errno

    from rotaquant import _atomic

    path = tmp_path / "idx.rq"
    index = VectorIndex(16, 3)
    index.add(unit_gaussian(40, 16))
    index.save(path)
    index.add(unit_gaussian(10, 16, seed=1))
    if how == "rewrite":
        index.remove([0])
    module = _atomic if how == "rewrite" else ff

    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(module.os, "fsync", full)
        with pytest.raises(OSError, match="No space"):
            index.save(path)
    assert len(VectorIndex.load(path)) == 40
    assert sorted(os.listdir(tmp_path)) == ["idx.rq", "idx.rq.lock"]
    index.save(path)
    assert sorted(VectorIndex.load(path).ids.tolist()) == sorted(index.ids.tolist())


_BUSY_READER = """
import json, os, sys, threading, time
import numpy as np
from rotaquant.index import FileChangedError, VectorIndex
from rotaquant.index import file_format as ff

folder, mode, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
rng = np.random.default_rng(0)
source = VectorIndex(64, 4, seed=1)
source.add(rng.standard_normal((100_000, 64)).astype(np.float32))
queries = rng.standard_normal((4, 64)).astype(np.float32)
want = source.search(queries, 10)[1]
counts = {"same": 0, "different": 0, "refused": 0, "rounds_refused": 0}
for r in range(rounds):
    path = os.path.join(folder, f"{r}.rq")
    source.save(path)
    reader = VectorIndex.load(path, verify=False)
    stop = threading.Event()
    refused = []

    def search_loop():
        for _ in range(10_000):
            if stop.is_set():
                return
            try:
                got = reader.search(queries, 10)[1]
            except FileChangedError:
                refused.append(1)
                return
            counts["same" if np.array_equal(got, want) else "different"] += 1

    thread = threading.Thread(target=search_loop)
    thread.start()
    time.sleep(0.02 + 0.03 * rng.random())  # the change lands while the reader is busy
    if mode == "truncate":
        os.truncate(path, ff.DATA_START + 100)
    else:
        offset = int(ff.read(path).commit.segments[0]["arrays"][0]["offset"])
        with open(path, "r+b") as f:
            f.seek(offset)
            f.write(rng.integers(0, 256, 1 << 16, dtype=np.uint8).tobytes())
    time.sleep(0.05)
    stop.set()
    thread.join()
    counts["refused"] += len(refused)
    try:  # whatever the thread saw, the next read refuses the changed file
        reader.search(queries, 10)
    except FileChangedError:
        counts["rounds_refused"] += 1
    os.unlink(path)
print(json.dumps(counts))
"""


@pytest.mark.parametrize(("mode", "rounds"), [("truncate", 16), ("overwrite", 32)])
def test_a_busy_reader_meets_a_changed_file_with_an_error_never_a_crash_or_wrong_answer(
    tmp_path, mode, rounds
):
    """A thread searching a mapped index in a loop while the file is truncated (SIGBUS
    without the native fault guard) or overwritten in place: every answer is the right one
    or FileChangedError."""
    done = subprocess.run(
        [sys.executable, "-c", _BUSY_READER, str(tmp_path), mode, str(rounds)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    counts = json.loads(done.stdout)
    assert counts["different"] == 0, counts
    assert counts["rounds_refused"] == rounds, counts
    assert counts["same"] > 0, counts


def test_native_map_reads_zeros_past_a_truncation_and_says_so(tmp_path):
    from rotaquant import _core

    path = tmp_path / "data"
    path.write_bytes(b"\x07" * 50_000)
    with open(path, "rb") as f:
        mapping, slot = _core.map_file(f.fileno(), 50_000)
        other, other_slot = _core.map_file(f.fileno(), 50_000)
    assert mapping[40_000] == 7 and not _core.mapping_faulted(mapping, slot)
    os.truncate(path, 100)
    assert int(mapping[30_000:].sum()) == 0  # SIGBUS without the guard
    assert _core.mapping_faulted(mapping, slot)
    assert not _core.mapping_faulted(other, other_slot)  # each map on its own
    assert mapping[:100].tobytes() == b"\x07" * 100  # the pages before stay the file's
    with pytest.raises(ValueError, match="not an array and slot"):
        _core.mapping_faulted(other, slot)
    with open(path, "rb") as f, pytest.raises(ValueError, match="length must be positive"):
        _core.map_file(f.fileno(), 0)
    del mapping, other  # unregistered, then unmapped


def test_a_save_whose_mapped_source_is_truncated_meanwhile_commits_nothing(tmp_path, monkeypatch):
    """The rows written come from the mapped file; if it is truncated while they are being
    written, the check before the commit refuses, and the target keeps its contents."""
    from rotaquant import _atomic

    path, index = _loaded(tmp_path)
    target = tmp_path / "copy.rq"
    VectorIndex(32, 4).save(target)  # an older, empty index there
    index.add(unit_gaussian(10, 32, seed=8))  # the new rows too: a full rewrite of target

    def truncate_source(point):
        if point == "file-before-rename":
            os.truncate(path, ff.DATA_START + 100)

    monkeypatch.setattr(_atomic, "crash_hook", truncate_source)
    with pytest.raises(FileChangedError, match="truncated"):
        index.save(target)
    monkeypatch.setattr(_atomic, "crash_hook", None)
    assert len(VectorIndex.load(target)) == 0
    assert not list(tmp_path.glob(".copy.rq.*.tmp"))
