"""The files of a saved ShardedIndex: a checksummed manifest and the shard files it names.

A save is one commit across shards. Each shard first commits its rows to a file: appended in
place to the file the current manifest names when only adds happened since (the file's new
generation lies past what the manifest names, which readers ignore), otherwise written whole
to a new name ``shard-NNNN-gGGGGGG.rq`` (G: the manifest generation being committed), never
over a file the manifest names. Only then is ``manifest.json`` replaced atomically, naming for
every shard its file, the file commit (generation and manifest CRC-32, which names the
commit's contents) and its row count. Loading opens each shard file *at that commit*, so a
driver killed anywhere in a save leaves the previous save intact, and files no manifest
names are removed by the next save.

Binding: the manifest carries a SHA-256 of its own content; each shard file must hold the
named commit, the manifest's codec configuration, the named row count, and only ids that
route to its shard number (so a swapped, foreign or stale file is refused, even under a
manifest whose checksum was recomputed).

Version 1 manifests (no checksum, files ``shard-NNNN.rq`` at their newest commit) still load;
the next save writes version 2.
"""

from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path
from typing import Any

import numpy as np

from ..index import IndexConfig, VectorIndex
from ..index.validation import MAX_ID

MANIFEST = "manifest.json"
FORMAT = "rotaquant.ShardedIndex"
VERSION = 2
READABLE = (1, 2)
_COMMON = {"format", "version", "shards", "dim", "bits", "metric", "index_options", "next_id"}
_FIELDS = {1: _COMMON | {"generation"}, 2: _COMMON | {"generation", "files", "checksum"}}
_NAME = re.compile(r"shard-(\d{4})(?:-g\d{6,})?\.rq\Z")


def shard_of(ids: np.ndarray, shards: int) -> np.ndarray:
    """The shard of each int64 id: splitmix64(id) mod ``shards`` (stable everywhere)."""
    z = ids.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15)
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z = z ^ (z >> np.uint64(31))
    return (z % np.uint64(shards)).astype(np.int64)


def shard_file(shard: int, generation: int) -> str:
    """The name of a shard file written whole by the save that commits ``generation``."""
    return f"shard-{shard:04d}-g{generation:06d}.rq"


def is_shard_file(name: str, shard: int | None = None) -> bool:
    """Whether ``name`` is a shard file's name (of shard number ``shard``, if given)."""
    match = _NAME.match(name)
    return match is not None and (shard is None or int(match.group(1)) == shard)


def _checksum(body: dict) -> str:
    canonical = json.dumps(body, sort_keys=True, separators=(",", ":"))
    return "sha256:" + hashlib.sha256(canonical.encode()).hexdigest()


def encode(
    config: IndexConfig, next_id: int, generation: int, entries: list[dict[str, Any]]
) -> bytes:
    """The manifest's bytes: configuration, next id, generation, one entry per shard
    (``file``, ``commit`` [generation, manifest CRC-32], ``count``), and their checksum."""
    body = {
        "format": FORMAT,
        "version": VERSION,
        "shards": len(entries),
        "dim": config.dim,
        "bits": config.bits,
        "metric": config.metric,
        "index_options": {k: v for k, v in config.options().items() if k != "metric"},
        "next_id": next_id,
        "generation": generation,
        "files": entries,
    }
    return json.dumps({**body, "checksum": _checksum(body)}, indent=2).encode()


def _int(value: Any, name: str, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise ValueError(f"field {name!r} must be an integer in [{low}, {high}], got {value!r}")
    return value


def _field(mapping: dict, name: str) -> Any:
    if name not in mapping:
        raise ValueError(f"field {name!r} is missing")
    return mapping[name]


def read(path: Path) -> dict[str, Any]:
    """The checked manifest of the ShardedIndex under ``path``: ``config`` (IndexConfig),
    ``shards``, ``next_id``, ``generation`` and ``files`` (per shard: ``file``, ``commit``
    (generation, CRC) or None for version 1, ``count`` or None).

    Raises FileNotFoundError when there is none, ValueError for anything damaged or changed.
    """
    file = path / MANIFEST
    try:
        raw = file.read_bytes()
    except FileNotFoundError:
        raise FileNotFoundError(f"no ShardedIndex at {path} (missing {MANIFEST})") from None
    try:
        manifest = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{file} is not valid JSON: {error}") from None
    try:
        return _checked(manifest)
    except ValueError as error:
        raise ValueError(f"{file}: {error}") from None


def _checked(manifest: Any) -> dict[str, Any]:
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise ValueError("not a ShardedIndex manifest")
    version = manifest.get("version")
    if isinstance(version, bool) or version not in READABLE:
        raise ValueError(f"manifest version {version!r} is not supported (this reads {READABLE})")
    if version >= 2:
        body = {k: v for k, v in manifest.items() if k != "checksum"}
        if manifest.get("checksum") != _checksum(body):
            raise ValueError("checksum mismatch: the manifest was changed or damaged")
    unknown = set(manifest) - _FIELDS[version]
    if unknown:
        raise ValueError(
            f"unknown fields {sorted(unknown)} (accepted: {', '.join(sorted(_FIELDS[version]))})"
        )
    shards = _int(_field(manifest, "shards"), "shards", 1, 1 << 20)
    options = _field(manifest, "index_options")
    if not isinstance(options, dict):
        raise ValueError(f"field 'index_options' must be an object, got {options!r}")
    try:
        config = IndexConfig.from_dict(
            {
                "dim": _field(manifest, "dim"),
                "bits": _field(manifest, "bits"),
                "metric": _field(manifest, "metric"),
                **options,
            }
        )
    except (TypeError, ValueError) as error:
        raise ValueError(f"invalid configuration: {error}") from None
    checked = {
        "config": config,
        "shards": shards,
        "next_id": _int(_field(manifest, "next_id"), "next_id", 0, MAX_ID + 1),
        "generation": _int(_field(manifest, "generation"), "generation", 0, 1 << 62),
    }
    if version == 1:
        files = [
            {"file": f"shard-{shard:04d}.rq", "commit": None, "count": None}
            for shard in range(shards)
        ]
    else:
        entries = _field(manifest, "files")
        if not isinstance(entries, list) or len(entries) != shards:
            raise ValueError(f"field 'files' must list {shards} shards (the 'shards' field)")
        files = [_entry(entry, shard) for shard, entry in enumerate(entries)]
    return {**checked, "files": files}


def _entry(entry: Any, shard: int) -> dict[str, Any]:
    where = f"files[{shard}]"
    if not isinstance(entry, dict):
        raise ValueError(f"{where} must be an object, got {entry!r}")
    name = _field(entry, "file")
    if not isinstance(name, str) or not is_shard_file(name, shard):
        raise ValueError(f"{where}.file must name a file of shard {shard}, got {name!r}")
    commit = _field(entry, "commit")
    if not isinstance(commit, list) or len(commit) != 2:
        raise ValueError(f"{where}.commit must be [generation, manifest CRC-32], got {commit!r}")
    return {
        "file": name,
        "commit": (
            _int(commit[0], f"{where}.commit generation", 1, 1 << 62),
            _int(commit[1], f"{where}.commit CRC", 0, (1 << 32) - 1),
        ),
        "count": _int(_field(entry, "count"), f"{where}.count", 0, MAX_ID),
    }


def open_shard(directory: Path, saved: dict[str, Any], shard: int) -> VectorIndex:
    """Shard number ``shard``'s index, opened from the checked manifest ``saved`` (at the
    commit it names) and checked against it; ValueError saying what does not match."""
    entry, shards, config = saved["files"][shard], saved["shards"], saved["config"]
    file = directory / entry["file"]
    try:
        index = VectorIndex.load(file, mmap=False, pinned=entry["commit"])
    except FileNotFoundError:
        raise ValueError(f"shard {shard}: its file {file} is missing") from None
    except ValueError as error:
        raise ValueError(f"shard {shard}: damaged shard file: {error}") from None
    if index.config != config:
        raise ValueError(
            f"shard {shard}: {file} was written for {index.config}, the manifest says {config}"
        )
    if entry["count"] is not None and len(index) != entry["count"]:
        raise ValueError(
            f"shard {shard}: {file} holds {len(index)} vectors, the manifest says {entry['count']}"
        )
    ids = index.ids
    stray = ids[shard_of(ids, shards) != shard]
    if stray.size:
        raise ValueError(
            f"shard {shard}: {file} holds ids of other shards (e.g. {int(stray[0])}): it is "
            f"not shard {shard} of {shards}"
        )
    if ids.size and int(ids.max()) >= saved["next_id"]:
        raise ValueError(
            f"shard {shard}: {file} holds id {int(ids.max())}, but the manifest's next id "
            f"is {saved['next_id']}: next id {saved['next_id']} is not above every stored id"
        )
    return index


def entry_of(name: str, index: VectorIndex) -> dict[str, Any]:
    """The manifest entry of ``index`` just saved to the file ``name``."""
    generation, crc = index.commit
    return {"file": name, "commit": [generation, crc], "count": len(index)}
