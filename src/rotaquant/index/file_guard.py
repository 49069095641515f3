"""Index files shared with other processes: one writer at a time, mapped readers watched.

* **Writers** (``writer_lock``) hold an exclusive ``flock`` on ``<file>.lock`` beside the index
  for the whole save, and under it check that the file still is the commit they started from
  (``file_format.newest_generation``); so two processes saving one file never interleave, and
  the later one fails with ``FileChangedError`` instead of overwriting the other's rows. The
  lock also makes temp files left by killed saves safe to delete (nobody else is writing).
* **Mapped readers** (``MappedSource``) keep the file open with a shared ``flock`` on it for as
  long as its arrays are mapped: a tool that means to modify an index file in place (not
  something rotaquant ever does: it appends past the committed end or renames a new file over
  it) must take an exclusive ``flock`` on the file first, and will then wait for the readers.
  Before and after each use, ``check`` compares the file's size and mtime with what it saw: a
  file cut below its committed length is refused, and any other change (another process
  appending, or someone overwriting bytes) re-verifies every committed section's checksum
  from the file, refusing the file if a byte changed (and again at every call while the change
  is under half a second old: the kernel stamps mtime before a write's bytes land, so a
  verify that raced the write saw the old bytes); the check after a read discards
  what the read computed. The map comes from the native core (``csrc/mapped.cpp``): a read
  that meets the file truncated underneath it reads zeros instead of dying of SIGBUS, and
  ``check`` then refuses the file.

``flock`` is advisory and POSIX-only; on network file systems it may not reach other machines.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
import weakref
import zlib
from contextlib import contextmanager, suppress
from pathlib import Path

from .. import _core

_VERIFY_CHUNK = 1 << 24  # bytes read at a time when re-verifying a changed file
SETTLE_NS = 500_000_000  # a change younger than this may still be landing (see check)


class FileChangedError(RuntimeError):
    """The index file was changed by someone else: another writer committed to it since this
    index read or wrote it, or it was truncated or overwritten underneath a memory map."""


def lock_path(target: Path) -> Path:
    return target.with_name(target.name + ".lock")


@contextmanager
def flocked(lock: Path, exclusive: bool = True, follow_unlink: bool = False):
    """Hold ``flock`` on the lock file ``lock`` (created if absent), exclusive or shared.
    ``follow_unlink``: the holder may remove the file, so a waiter that locked a removed file
    locks the new one instead (every retry means another holder made progress)."""
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o666)
        fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            if not follow_unlink or os.fstat(fd).st_ino == os.stat(lock).st_ino:
                break
        except FileNotFoundError:
            pass
        os.close(fd)
    try:
        yield
    finally:
        os.close(fd)  # releases the lock


@contextmanager
def writer_lock(target: Path):
    """Hold the exclusive writer lock of the index file ``target`` (resolved, no symlink);
    temp files of earlier saves that were killed are removed once it is held. A save that
    fails before ``target`` exists leaves no lock file behind (removed while held)."""
    lock = lock_path(target)
    with flocked(lock, follow_unlink=True):
        for stale in target.parent.glob(f".{target.name}.*.tmp"):
            stale.unlink(missing_ok=True)
        try:
            yield
        except BaseException:
            if not target.exists():  # nothing was ever committed there
                lock.unlink(missing_ok=True)
            raise


class MappedSource:
    """An index file behind memory-mapped arrays: a duplicate of the open file's descriptor
    under a shared ``flock``, the copy-on-write map, and what the file looked like."""

    def __init__(self, f, path) -> None:
        self.path = str(path)
        self._fd = os.dup(f.fileno())
        self._lock = threading.Lock()
        self._problem: str | None = None
        self._length = 0
        self._sections: list[tuple[int, int, int]] = []  # offset, nbytes, crc32
        with suppress(OSError):  # an exclusive holder is modifying it: checks still apply
            fcntl.flock(self._fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        self.mapping, self._slot = _core.map_file(self._fd, os.fstat(self._fd).st_size)
        self._stamp = self._now()
        self._finalizer = weakref.finalize(self, os.close, self._fd)

    def watch(self, length: int, segments) -> None:
        """Remember the committed length and every section of the commit being read."""
        self._length = length
        self._sections = [
            (int(a["offset"]), int(a["nbytes"]), int(a["crc32"]))
            for entry in segments
            for a in entry["arrays"]
        ]

    def acknowledge(self, length: int, segments) -> None:
        """This process committed to the file itself (an append): accept its new state."""
        with self._lock:
            self.watch(length, segments)
            self._stamp = self._now()

    def check(self) -> None:
        """Raise ``FileChangedError`` if the mapped file was truncated or its committed bytes
        changed since it was read (cost: one ``fstat``; a checksum pass after a change)."""
        faulted = _core.mapping_faulted(self.mapping, self._slot)
        if self._problem is None and not faulted and self._now() == self._stamp:
            return
        with self._lock:
            if self._problem is None and faulted:
                self._problem = "the file was truncated under the map during a read"
            if self._problem is None:
                stamp = self._now()
                if stamp != self._stamp:
                    self._problem = self._verify(stamp[0])
                    # the kernel stamps mtime before a write's bytes land: a verify that ran
                    # meanwhile passed on the old bytes, so a recent stamp is not accepted
                    # yet (every call re-verifies until the change is SETTLE_NS old)
                    if time.time_ns() - stamp[1] >= SETTLE_NS:
                        self._stamp = stamp
            if self._problem is not None:
                raise FileChangedError(f"{self.path}: {self._problem}; load it again")

    def _now(self) -> tuple[int, int]:
        stat = os.fstat(self._fd)
        return stat.st_size, stat.st_mtime_ns

    def _verify(self, size: int) -> str | None:
        if size < self._length:
            return f"the file was truncated to {size} bytes under the map ({self._length} used)"
        for offset, nbytes, crc in self._sections:
            value, done = 0, 0
            while done < nbytes:
                chunk = os.pread(self._fd, min(_VERIFY_CHUNK, nbytes - done), offset + done)
                if not chunk:
                    return "the file was truncated under the map"
                value, done = zlib.crc32(chunk, value), done + len(chunk)
            if value != crc:
                return f"the file was modified in place at bytes {offset}..{offset + nbytes}"
        return None
