"""Crash-safe writes: a file (temp file in the same folder, fsync, rename, fsync the folder)
or a whole directory (written beside it, then swapped in by renames).

A new file gets the permissions of the file it replaces (or the usual 0o666 minus the umask
for a new one), not the 0o600 of a temp file."""

from __future__ import annotations

import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

# Crash tests set this in a child process to stop it dead (os._exit) at a named point of a
# write: a deterministic stand-in for a kill at that moment (tests/index/test_vector_index.py).
crash_hook: Callable[[str], None] | None = None


def crash_point(name: str) -> None:
    """A point where a write may be interrupted: ``crash_hook(name)`` when one is set."""
    if crash_hook is not None:
        crash_hook(name)


def special_file(path: str | os.PathLike) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a directory (a device node,
    a FIFO, a socket): such a target is written in place, never replaced by a rename.
    Raises IsADirectoryError for a directory."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return False
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(f"{path} is a directory, not a file to write")
    return not stat.S_ISREG(mode)


def atomic_write(
    path: str | os.PathLike,
    chunks: Iterable[bytes],
    before_commit: Callable[[], None] | None = None,
) -> None:
    """Write ``chunks`` to ``path`` so that a crash leaves either the old file or the new one.
    A device node or FIFO at ``path`` is written in place (renaming over it would turn
    ``/dev/null`` into a regular file); a directory is refused. ``before_commit`` runs once
    the data is written and fsynced, before the rename: raising there leaves the old file."""
    if special_file(path):
        with open(path, "wb") as f:
            for chunk in chunks:
                f.write(chunk)
        return
    path = Path(path).resolve()  # through a symlink: the target is replaced, the link stays
    folder = path.parent if str(path.parent) else Path(".")
    mode = _mode_for(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            os.fchmod(f.fileno(), mode)
            for index, chunk in enumerate(chunks):
                f.write(chunk)
                if index == 0:
                    f.flush()
                    crash_point("file-partly-written")
            f.flush()
            os.fsync(f.fileno())
        crash_point("file-before-rename")
        if before_commit is not None:
            before_commit()
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_directory(folder)


def previous_directory(target: Path) -> Path:
    """Where :func:`replace_directory` keeps the old directory until the swap completes."""
    return target.with_name(f".{target.name}.previous")


def replace_directory(target: str | os.PathLike, write: Callable[[Path], None]) -> None:
    """Replace the directory ``target`` by one ``write(folder)`` fills: written beside it,
    then swapped in by two renames and fsynced; until the second one,
    ``.<name>.previous`` holds the old directory whole (readers fall back to it)."""
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    fresh = target.with_name(f".{target.name}.{os.getpid()}.new")
    shutil.rmtree(fresh, ignore_errors=True)
    fresh.mkdir()
    try:
        write(fresh)
        previous = previous_directory(target)
        shutil.rmtree(previous, ignore_errors=True)
        if target.exists():
            os.replace(target, previous)
        os.replace(fresh, target)
        fsync_directory(target.parent)
        shutil.rmtree(previous, ignore_errors=True)
    finally:
        shutil.rmtree(fresh, ignore_errors=True)


def fsync_file(path: Path) -> None:
    """Flush a file written by someone else (SQLite, say) to disk."""
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def fsync_directory(folder: Path) -> None:
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def _mode_for(path: Path) -> int:
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        umask = os.umask(0o022)  # read the umask (there is no getter) and put it back
        os.umask(umask)
        return 0o666 & ~umask
