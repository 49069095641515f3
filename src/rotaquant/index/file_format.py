"""The on-disk format of a VectorIndex: one file, checksummed, crash-safe, appendable.

Layout::

    [0, 4096)      preamble: magic b"RQINDEX\\0", format version, two commit slots
    [4096, ...)    array sections (64-byte aligned), then a JSON manifest, per commit

A *commit slot* (generation, manifest offset and length, committed file length, manifest
CRC-32, and its own CRC-32) names the manifest that describes the file; the manifest lists
every segment's arrays with offset, dtype, shape and CRC-32. Readers take the valid slot with
the highest generation and ignore any bytes past its committed length.

* ``write_new`` writes a whole file to a temporary name, fsyncs and renames it over the target:
  a crash leaves the old file or the new one.
* ``append`` adds segments to a file in place: new sections and a new manifest go after the
  committed end, are fsynced, and only then is the *other* slot overwritten with generation + 1
  (and fsynced). A crash before the slot write leaves the previous commit intact (the extra
  bytes are ignored); a torn slot write fails its checksum, so readers fall back to the other
  slot. Each commit costs the new data, the manifest and one 64-byte slot, whatever the file
  size.
* ``read`` memory-maps the file copy-on-write (changes made in memory never reach the file)
  and returns array views, after checking structure, sizes and (with ``verify=True``) every
  section's CRC-32. It takes the newest commit that verifies: when the newest is damaged (a
  torn or foreign write) and an older one is intact, it reads the older one and says so
  (``Loaded.recovered_from``), never silently.

Writers coordinate through ``file_guard`` (a lock file beside the index, generation checks);
this module only knows the bytes.
"""

from __future__ import annotations

import json
import os
import re
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .._arrays import MALFORMED, json_field, json_kind
from .._atomic import atomic_write, crash_point
from .file_guard import FileChangedError, MappedSource

MAGIC = b"RQINDEX\0"
VERSION = 2  # 2: segments in the native core's 32-row block layout; 1: row-major streams
IVF_VERSION = 3  # 3: version 2 plus an IVF index's centroids, buffer and list-tagged segments
READABLE = (1, 2, 3)
_PREAMBLE = struct.Struct("<8sI")
_SLOT = struct.Struct("<QQQQI")  # generation, manifest offset, manifest length, length, crc
_SLOT_CRC = struct.Struct("<I")
_SLOT_OFFSETS = (64, 128)
DATA_START = 4096
_ALIGN = 64
MAX_GENERATION = 1 << 62  # a slot claiming more is not one of ours (and could never advance)


@dataclass(frozen=True)
class Commit:
    """Where a file stood after a write: enough to append to it safely later."""

    path: str
    device: int
    inode: int
    generation: int
    slot: int
    length: int
    segments: tuple[dict, ...]
    version: int = VERSION
    observed: int = 0  # the newest generation any valid slot named when this was made
    manifest_crc: int = 0  # CRC-32 of the commit's manifest: names this commit's contents


@dataclass
class Loaded:
    """What ``read`` found: the header, every segment's arrays (name → array), the commit
    they belong to, why a newer commit was skipped (None when none was), and the open file
    behind memory-mapped arrays (None for a private copy)."""

    header: dict
    segments: list[dict[str, np.ndarray]]
    commit: Commit
    recovered_from: str | None
    source: MappedSource | None


def write_new(
    path: str | os.PathLike,
    header: dict,
    segments: list[dict[str, np.ndarray]],
    before_commit: Callable[[], None] | None = None,
    version: int = VERSION,
) -> Commit:
    """Write a complete file atomically (temp file, fsync, rename). Returns its commit.
    ``before_commit`` runs after the data is on disk, before the rename (raising aborts);
    ``version``: what the preamble says (``IVF_VERSION`` for an IVF index)."""
    chunks: list[Any] = [_preamble(version)]
    entries, end = _layout_sections(segments, DATA_START, chunks)
    manifest = _manifest(header, entries)
    chunks.append(manifest)
    length = end + len(manifest)
    slots = bytearray(DATA_START - len(chunks[0]))
    slot = _slot_bytes(1, end, len(manifest), length, zlib.crc32(manifest))
    slots[_SLOT_OFFSETS[0] - _PREAMBLE.size : _SLOT_OFFSETS[0] - _PREAMBLE.size + len(slot)] = slot
    chunks.insert(1, bytes(slots))
    atomic_write(path, chunks, before_commit)
    stat = os.stat(path)
    return Commit(
        _real(path),
        stat.st_dev,
        stat.st_ino,
        1,
        0,
        length,
        tuple(entries),
        version,
        observed=1,
        manifest_crc=zlib.crc32(manifest),
    )


def append(
    commit: Commit,
    header: dict,
    segments: list[dict[str, np.ndarray]],
    before_commit: Callable[[], None] | None = None,
) -> Commit:
    """Add ``segments`` to the file of ``commit`` in place (see the module docstring);
    ``before_commit`` runs after the new data is on disk, before the slot write.

    Raises ``FileChangedError`` if the file is no longer the one ``commit`` describes (replaced,
    or committed to by someone else since), or cannot take another generation.
    """
    with open(commit.path, "r+b") as f:
        stat = os.fstat(f.fileno())
        if (stat.st_dev, stat.st_ino) != (commit.device, commit.inode):
            raise FileChangedError(f"{commit.path} was replaced since this index last wrote it")
        if commit.version != VERSION:
            raise FileChangedError(f"{commit.path} is in format version {commit.version}")
        slots = _valid_slots(_read_exact(f, 0, DATA_START), stat.st_size)
        newest = slots[0][0] if slots else 0
        if newest != commit.observed or commit.generation + 1 > MAX_GENERATION:
            raise FileChangedError(
                f"{commit.path} was committed to by someone else since this index last read "
                f"or wrote it (generation {commit.observed} -> {newest})"
            )
        chunks: list[Any] = []
        entries, end = _layout_sections(segments, commit.length, chunks)
        manifest = _manifest(header, list(commit.segments) + entries)
        f.seek(commit.length)
        for index, chunk in enumerate(chunks):
            f.write(chunk)
            if index == 0:
                f.flush()
                crash_point("append-partly-written")
        f.write(manifest)
        f.flush()
        os.fsync(f.fileno())
        crash_point("append-before-commit")
        if before_commit is not None:
            before_commit()
        generation, slot = commit.generation + 1, 1 - commit.slot
        length = end + len(manifest)
        f.seek(_SLOT_OFFSETS[slot])
        f.write(_slot_bytes(generation, end, len(manifest), length, zlib.crc32(manifest)))
        f.flush()
        os.fsync(f.fileno())
    segments_all = tuple(list(commit.segments) + entries)
    return Commit(
        commit.path,
        commit.device,
        commit.inode,
        generation,
        slot,
        length,
        segments_all,
        observed=generation,
        manifest_crc=zlib.crc32(manifest),
    )


def newest_generation(path: str | os.PathLike) -> tuple[int, int, int] | None:
    """(device, inode, newest valid generation or 0) of the file at ``path``; None if absent."""
    try:
        with open(path, "rb") as f:
            stat = os.fstat(f.fileno())
            head = _read_exact(f, 0, DATA_START)
            slots = _valid_slots(head, stat.st_size) if len(head) == DATA_START else []
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino, slots[0][0] if slots else 0


def read(
    path: str | os.PathLike,
    verify: bool = True,
    mmap_file: bool = True,
    pinned: tuple[int, int] | None = None,
) -> Loaded:
    """The newest intact commit of the file at ``path``, as array views of a copy-on-write
    memory map (``mmap_file=True``) or of a private copy read into memory. ``pinned``:
    (generation, manifest CRC-32) — that commit only, none newer or older (a file holds its
    last two commits).

    Raises ValueError for anything that is not an intact rotaquant index file, or that no
    longer holds the ``pinned`` commit.
    """
    with open(path, "rb") as f:
        stat = os.fstat(f.fileno())
        size = stat.st_size
        if size < DATA_START:
            raise ValueError(f"{path}: not a rotaquant index or truncated ({size} bytes)")
        magic, version = _PREAMBLE.unpack(_read_exact(f, 0, _PREAMBLE.size))
        if magic != MAGIC:
            raise ValueError(f"{path}: not a rotaquant index file (bad magic bytes)")
        if version not in READABLE:
            raise ValueError(
                f"{path}: index format version {version} is not supported (this reads {READABLE})"
            )
        if mmap_file:
            source = MappedSource(f, path)
            data = source.mapping
        else:
            source, data = None, bytearray(size)
            f.seek(0)
            if f.readinto(data) != size:
                raise ValueError(f"{path}: the file shrank while being read")
    slots = _valid_slots(bytes(data[:DATA_START]), None)
    if not slots:
        raise ValueError(f"{path}: both commit records are corrupted")
    candidates = slots
    if pinned is not None:
        candidates = [s for s in slots if (s[0], s[5]) == tuple(pinned)]
        if not candidates:
            held = ", ".join(f"generation {s[0]} (manifest CRC {s[5]:#010x})" for s in slots)
            raise ValueError(
                f"{path}: does not hold generation {pinned[0]} with manifest CRC "
                f"{pinned[1]:#010x} (it holds {held})"
            )
    skipped = []
    for generation, slot, manifest_offset, manifest_length, length, manifest_crc in candidates:
        try:
            if size < length:
                raise ValueError(f"file is truncated ({size} bytes, {length} committed)")
            manifest_bytes = bytes(data[manifest_offset : manifest_offset + manifest_length])
            if zlib.crc32(manifest_bytes) != manifest_crc:
                raise ValueError("manifest is corrupted (checksum mismatch)")
            header, entries, segments = _parse_manifest(data, manifest_bytes, length, verify)
        except ValueError as exc:
            skipped.append(f"generation {generation}: {exc}")
            continue
        recovered = None
        if skipped:
            recovered = "; ".join(skipped) + f"; read generation {generation} instead"
        commit = Commit(
            _real(path),
            stat.st_dev,
            stat.st_ino,
            generation,
            slot,
            length,
            tuple(entries),
            version,
            observed=slots[0][0],
            manifest_crc=manifest_crc,
        )
        if source is not None:
            source.watch(length, commit.segments)
        return Loaded(header, segments, commit, recovered, source)
    raise ValueError(f"{path}: no intact commit ({'; '.join(skipped)})")


# ---------------------------------------------------------------------- internals
def _real(path: str | os.PathLike) -> str:
    return str(Path(path).resolve())


def _preamble(version: int = VERSION) -> bytes:
    return _PREAMBLE.pack(MAGIC, version)


def _slot_bytes(generation: int, offset: int, manifest_length: int, length: int, crc: int) -> bytes:
    body = _SLOT.pack(generation, offset, manifest_length, length, crc)
    return body + _SLOT_CRC.pack(zlib.crc32(body))


def _valid_slots(head: bytes, size: int | None) -> list[tuple[int, ...]]:
    """(generation, slot, manifest offset, manifest length, length, manifest crc) of every
    slot whose checksum holds, newest first (with ``size``: only those that fit in it)."""
    found = []
    for slot, offset in enumerate(_SLOT_OFFSETS):
        body = head[offset : offset + _SLOT.size]
        (crc,) = _SLOT_CRC.unpack_from(head, offset + _SLOT.size)
        if zlib.crc32(body) != crc:
            continue
        generation, manifest_offset, manifest_length, length, manifest_crc = _SLOT.unpack(body)
        if not 0 < generation <= MAX_GENERATION or (size is not None and size < length):
            continue
        found.append((generation, slot, manifest_offset, manifest_length, length, manifest_crc))
    return sorted(found, reverse=True)


def _parse_manifest(
    data, manifest_bytes: bytes, length: int, verify: bool
) -> tuple[dict, list[dict], list[dict[str, np.ndarray]]]:
    try:
        manifest = json.loads(manifest_bytes)
        if not isinstance(manifest, dict):
            raise ValueError(f"the manifest must be an object, got {json_kind(manifest)}")
        header = json_field(manifest, "header", "manifest", dict)
        entries = json_field(manifest, "segments", "manifest", list)
        segments = [
            _segment_views(data, entry, number, length, verify)
            for number, entry in enumerate(entries)
        ]
        spans = sorted(
            (a["offset"], a["nbytes"]) for e in entries for a in e["arrays"] if a["nbytes"]
        )
        for (start, size), (following, _) in zip(spans, spans[1:], strict=False):
            if start + size > following:  # e.g. one segment listed twice
                raise ValueError(f"sections overlap at byte {following}")
    except MALFORMED as exc:
        raise ValueError(f"invalid manifest: {exc}") from exc  # JSONDecodeError: a ValueError
    return header, entries, segments


def _read_exact(f, offset: int, count: int) -> bytes:
    f.seek(offset)
    return f.read(count)


def _layout_sections(
    segments: list[dict[str, np.ndarray]], start: int, chunks: list
) -> tuple[list[dict], int]:
    """Append aligned section bytes to ``chunks``; return manifest entries and the end offset."""
    entries, offset = [], start
    for segment in segments:
        arrays = []
        for name, arr in segment.items():
            pad = -offset % _ALIGN
            if pad:
                chunks.append(bytes(pad))
                offset += pad
            data = np.ascontiguousarray(arr)
            arrays.append(
                {
                    "name": name,
                    "dtype": data.dtype.str,
                    "shape": list(data.shape),
                    "offset": offset,
                    "nbytes": data.nbytes,
                    "crc32": zlib.crc32(data),
                }
            )
            chunks.append(memoryview(data).cast("B"))
            offset += data.nbytes
        entries.append({"arrays": arrays})
    return entries, offset


def _manifest(header: dict, entries: list[dict]) -> bytes:
    return json.dumps({"header": header, "segments": entries}, sort_keys=True).encode()


_PLAIN_DTYPE = re.compile(r"[<>|=]?[biuf][1248]")


def _plain_dtype(section: dict, where: str) -> np.dtype:
    """The section's dtype, refused unless a plain number type (numpy would parse anything)."""
    spec = json_field(section, "dtype", where)
    if not isinstance(spec, str) or not _PLAIN_DTYPE.fullmatch(spec):
        raise ValueError(f"{where} has an unusable dtype {spec!r}")
    return np.dtype(spec)


def _section_shape(section: dict, where: str) -> tuple[int, ...]:
    shape = json_field(section, "shape", where, list)
    if not all(isinstance(s, int) and not isinstance(s, bool) for s in shape):
        raise ValueError(f"{where} field 'shape' must be a list of integers, got {shape!r:.60}")
    return tuple(shape)


def _segment_views(
    data, entry: Any, number: int, length: int, verify: bool
) -> dict[str, np.ndarray]:
    if not isinstance(entry, dict):
        raise ValueError(f"segment {number} must be an object, got {json_kind(entry)}")
    views = {}
    for position, section in enumerate(json_field(entry, "arrays", f"segment {number}", list)):
        where = f"segment {number} section {position}"
        if not isinstance(section, dict):
            raise ValueError(f"{where} must be an object, got {json_kind(section)}")
        name = json_field(section, "name", where, str)
        where = f"segment {number} section {name!r}"
        if name in views:
            raise ValueError(f"{where} is listed twice")
        dtype = _plain_dtype(section, where)
        shape = _section_shape(section, where)
        offset, nbytes, crc = (json_field(section, key, where, int) for key in _NUMBERS)
        count = 1
        for extent in shape:
            if extent < 0:
                raise ValueError(f"{where} has a negative extent")
            count *= extent  # Python ints: no overflow on crafted shapes
        if offset < DATA_START or offset + nbytes > length or nbytes != dtype.itemsize * count:
            raise ValueError(f"{where} lies outside the committed file")
        view = np.frombuffer(data, dtype=dtype, count=count, offset=offset)
        if verify and zlib.crc32(view) != crc:
            raise ValueError(f"{where} is corrupted (checksum mismatch)")
        views[name] = view.reshape(shape)
    return views


_NUMBERS = ("offset", "nbytes", "crc32")  # the integer fields of a section entry
