"""DocumentStore on disk under several handles and processes: nothing acknowledged is lost.

Writers run in processes forked from a forkserver that has rotaquant imported (a start costs
milliseconds), report each add or delete through a pipe only after the call returned (an
*acknowledged* write), and are killed with SIGKILL at random moments. After every kill, and
beside a writer that keeps going, the store is opened again and must hold exactly what was
acknowledged: every acknowledged document present and found by a search for its own vector,
every acknowledged delete gone. The counts are in docs/integrations.md.
"""

from __future__ import annotations

import multiprocessing
import random
import sqlite3
import time
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest

from rotaquant.integrations.document_store import DOCS_FILE, INDEX_FILE, DocumentStore

from ..conftest import unit_gaussian

DIM = 32


def _vector(doc: str) -> np.ndarray:
    """The (random, fixed) unit vector of document ``doc``."""
    return unit_gaussian(1, DIM, zlib.crc32(doc.encode()))[0]


def _writer(path: str, tag: str, pipe, deletes: bool, limit: int) -> None:
    """Open (or create) the store and write until killed or ``limit`` adds: each add of one
    document, and (``deletes``) every 4th add a delete of an earlier one, reported once
    acknowledged ("+id" / "-id")."""
    pipe.send("start")
    store = DocumentStore.open(4, metric="cosine", path=path)
    for i in range(limit):
        doc = f"{tag}-{i}"
        store.add(_vector(doc)[None], [doc], ids=[doc])
        pipe.send("+" + doc)
        if deletes and i % 4 == 3:
            gone = f"{tag}-{i - 2}"
            pipe.send("~" + gone)  # may be gone or not until acknowledged
            store.delete([gone])
            pipe.send("-" + gone)
    pipe.send("done")


@pytest.fixture(scope="module")
def context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rotaquant.integrations.document_store", "numpy"])
    return ctx


def _start(context, path, tag, deletes=True, limit=100_000):
    """A writer process, once it runs (its "start" received)."""
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=_writer, args=(str(path), tag, send, deletes, limit))
    process.start()
    send.close()
    assert receive.poll(60) and receive.recv() == "start"
    return process, receive


def _drain(receive, acked: set[str], deleted: set[str], wait: float = 0.0) -> bool:
    """Read acknowledgements (for up to ``wait`` s) into ``acked`` (documents that must be
    there) and ``deleted`` (that must not); True once the writer said "done"."""
    deadline = time.monotonic() + wait
    while True:
        left = deadline - time.monotonic()
        try:
            ready = receive.poll(max(left, 0))
        except (EOFError, OSError):
            return False
        if not ready:
            return False
        try:
            message = receive.recv()
        except (EOFError, OSError):
            return False
        if message == "done":
            return True
        sign, doc = message[0], message[1:]
        if sign == "+":
            acked.add(doc)
        else:  # "~": a delete under way (its document is no longer promised), "-": done
            acked.discard(doc)
            if sign == "-":
                deleted.add(doc)


def _check(path: Path, acked: set[str], deleted: set[str], sample: int = 8, after=None) -> None:
    """The store at ``path`` holds every acknowledged document and none deleted. ``after``
    (beside a running writer): called once the store is read, returns the documents whose
    delete began meanwhile (no longer promised)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "documents dropped" warning either
        store = DocumentStore.load(path)
    try:
        present = {record.id for record in store.get(sorted(acked | deleted))}
        hits = {}
        for doc in random.Random(len(acked)).sample(sorted(acked), min(sample, len(acked))):
            hits[doc] = [record.id for record, _ in store.search(_vector(doc)[None], 3)[0]]
    finally:
        store.close()
    excused = after() if after is not None else set()
    lost = acked - present - excused
    assert not lost, f"lost {len(lost)} acknowledged documents"
    assert not (deleted & present), f"{len(deleted & present)} deleted documents came back"
    for doc, found in hits.items():
        assert doc in found or doc in excused


def _kill_loop(context, path: Path, kills: int, fresh_each_time: bool) -> int:
    """Writers killed at random moments; returns the documents acknowledged in all."""
    rng = random.Random(kills)
    acked: set[str] = set()
    deleted: set[str] = set()
    total = 0
    for round_ in range(kills):
        target = path / f"s{round_}" if fresh_each_time else path
        if fresh_each_time:
            acked, deleted = set(), set()
        process, receive = _start(context, target, f"w{round_}")
        _drain(receive, acked, deleted, wait=rng.uniform(0.0, 0.15))
        process.kill()
        process.join()
        _drain(receive, acked, deleted)
        total += len(acked)
        if (target / DOCS_FILE).exists() or acked:
            store = DocumentStore.open(4, metric="cosine", path=target)  # interrupted: created
            store.close()
            _check(target, acked, deleted)
    return total


def test_a_writer_killed_at_random_loses_nothing(context, tmp_path):
    assert _kill_loop(context, tmp_path / "store", kills=12, fresh_each_time=False) > 0


def test_a_store_killed_while_being_created_opens(context, tmp_path):
    _kill_loop(context, tmp_path, kills=12, fresh_each_time=True)


@pytest.mark.slow
def test_a_hundred_kills_lose_nothing(context, tmp_path):
    acked = _kill_loop(context, tmp_path / "store", kills=100, fresh_each_time=False)
    _kill_loop(context, tmp_path / "fresh", kills=100, fresh_each_time=True)
    print(f"\n100 kills mid-write: {acked} acknowledged, 0 lost; 100 kills at creation: ok")


def _opens_beside_a_writer(context, path: Path, opens: int) -> int:
    DocumentStore(4, metric="cosine", path=path).close()
    process, receive = _start(context, path, "w", limit=100_000)
    acked: set[str] = set()
    deleted: set[str] = set()
    try:
        for _ in range(opens):
            _drain(receive, acked, deleted, wait=0.01)
            before, gone = set(acked), set(deleted)

            def deleted_meanwhile(before=before):
                _drain(receive, acked, deleted)
                return before - acked

            _check(path, before, gone, sample=2, after=deleted_meanwhile)
    finally:
        process.kill()
        process.join()
    _drain(receive, acked, deleted)
    _check(path, acked, deleted)
    return len(acked)


def test_opening_beside_a_writer_loses_nothing(context, tmp_path):
    assert _opens_beside_a_writer(context, tmp_path / "store", opens=15) > 0


@pytest.mark.slow
def test_a_hundred_opens_beside_a_writer(context, tmp_path):
    acked = _opens_beside_a_writer(context, tmp_path / "store", opens=100)
    print(f"\n100 opens beside a writer: {acked} acknowledged, 0 lost")


def test_two_writer_processes_both_keep_everything(context, tmp_path):
    path = tmp_path / "store"
    DocumentStore(4, metric="cosine", path=path).close()
    writers = [_start(context, path, tag, limit=60) for tag in ("a", "b")]
    acked: set[str] = set()
    deleted: set[str] = set()
    for process, receive in writers:
        done = False
        deadline = time.monotonic() + 120
        while not done and time.monotonic() < deadline:
            done = _drain(receive, acked, deleted, wait=1.0)
        process.join(timeout=60)
        assert done and process.exitcode == 0, "a writer failed"
    assert len(acked) == 2 * 45  # 60 adds, 15 deletes each
    _check(path, acked, deleted, sample=20)


def test_two_handles_before_the_index_file_exists(tmp_path):
    """The first add of each handle of a store that had no index file yet: both kept."""
    path = tmp_path / "store"
    first = DocumentStore(4, metric="cosine", path=path)
    second = DocumentStore.load(path)
    first.add(_vector("a")[None], ["a"], ids=["a"])
    second.add(_vector("b")[None], ["b"], ids=["b"])
    first.add(_vector("c")[None], ["c"], ids=["c"])
    for handle in (first, second):
        assert [r.id for r, _ in handle.search(_vector("b")[None], 1)[0]] == ["b"]
        assert [r.id for r, _ in handle.search(_vector("c")[None], 1)[0]] == ["c"]
    first.close()
    second.close()
    _check(path, {"a", "b", "c"}, set())


def test_a_reader_searching_after_another_handle_deleted(tmp_path):
    path = tmp_path / "store"
    writer = DocumentStore(4, metric="cosine", path=path)
    docs = [f"d{i}" for i in range(20)]
    writer.add(np.stack([_vector(d) for d in docs]), docs, ids=docs)
    reader = DocumentStore.load(path)
    writer.delete(docs[:10])
    found = {r.id for row in reader.search(np.stack([_vector(d) for d in docs]), 5) for r, _ in row}
    assert found and not found & set(docs[:10])  # no KeyError, no deleted document
    writer.add(_vector("new")[None], ["new"], ids=["new"])
    assert [r.id for r, _ in reader.search(_vector("new")[None], 1)[0]] == ["new"]
    writer.close()
    reader.close()


def test_an_interrupted_creation_left_by_an_older_version(tmp_path):
    """A docs.sqlite with tables but no schema row (created in place, killed before commit)."""
    path = tmp_path / "store"
    path.mkdir()
    db = sqlite3.connect(path / DOCS_FILE)
    db.execute("CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL)")
    db.commit()
    db.close()
    with pytest.raises(ValueError, match="creation was interrupted"):
        DocumentStore.load(path)
    store = DocumentStore.open(4, metric="cosine", path=path)
    store.add(_vector("x")[None], ["x"], ids=["x"])
    store.close()
    _check(path, {"x"}, set())
    assert (path / INDEX_FILE).exists()
