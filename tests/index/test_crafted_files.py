"""Crafted index files whose checksums are all valid: every structural lie in the manifest,
and garbage contents in any section, is refused with a ValueError at load or is searched
without reading out of bounds (the native kernels check every array they are handed; under
``make sanitize`` an out-of-bounds access aborts the run)."""

from __future__ import annotations

import json
import re
import shutil
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rotaquant.index import VectorIndex
from rotaquant.index import file_format as ff
from tests.conftest import FIXTURES, mutated_json, unit_gaussian


def _build(tmp_path: Path, **kwargs) -> Path:
    path = tmp_path / "good.rq"
    index = VectorIndex(20, 3, **kwargs)
    index.add(unit_gaussian(100, 20))
    index.save(path)
    return path


def _recommit(
    path: Path, out: Path, header: dict, entries: list[dict], patches=(), manifest=None
) -> None:
    """Write ``path`` to ``out`` with section bytes replaced (``patches``: (offset, bytes),
    CRCs recomputed) and a new manifest committed with valid checksums (``manifest``: the
    whole manifest instead of ``{"header": header, "segments": entries}``)."""
    data = bytearray(path.read_bytes())
    for offset, payload in patches:
        data[offset : offset + len(payload)] = payload
    sections = [
        section
        for entry in (entries if isinstance(entries, list) else [])
        if isinstance(entry, dict) and isinstance(entry.get("arrays"), list)
        for section in entry["arrays"]
        if isinstance(section, dict)
    ]
    for section in sections:  # fuzzed entries may lack or garble these: leave them so
        start, size = section.get("offset"), section.get("nbytes")
        ints = isinstance(start, int) and isinstance(size, int)
        if ints and 0 <= start <= start + size <= len(data) and "crc32" in section:
            section["crc32"] = zlib.crc32(bytes(data[start : start + size]))
    data += bytes(-len(data) % 64)
    if manifest is None:
        manifest = {"header": header, "segments": entries}
    manifest = json.dumps(manifest).encode()
    offset = len(data)
    data += manifest
    slot = ff._slot_bytes(1 << 40, offset, len(manifest), len(data), zlib.crc32(manifest))
    data[ff._SLOT_OFFSETS[0] : ff._SLOT_OFFSETS[0] + len(slot)] = slot
    out.write_bytes(bytes(data))


def _load_and_use(path: Path) -> None:
    """Load and exercise the index; only ValueError may escape."""
    try:
        index = VectorIndex.load(path)
    except ValueError:
        return
    queries = unit_gaussian(3, index.dim, seed=5)
    for k in (1, 10, 200):
        scores, ids = index.search(queries, k)
        assert scores.shape == ids.shape == (3, k)
    live = index.ids
    if live.size:
        index.search(queries, 5, allow=live[::3])
        index.remove(live[:2])
    index.add(unit_gaussian(40, index.dim, seed=6))
    index.search(queries, 5)


def _manifest(path: Path) -> tuple[dict, list[dict]]:
    loaded = ff.read(path)
    return loaded.header, [json.loads(json.dumps(e)) for e in loaded.commit.segments]


def _resized(delta: int, itemsize: int = 1):
    """A section entry change: ``delta`` more elements, the byte count to match."""
    return lambda s: {"nbytes": s["nbytes"] + delta * itemsize, "shape": [s["shape"][0] + delta]}


LIES = {  # one per name: (section, change to its manifest entry)
    "stream one byte short": ("stream0", _resized(-1)),
    "stream one block short": ("stream0", _resized(-240)),
    "stream empty": ("stream0", lambda s: {"nbytes": 0, "shape": [0]}),
    "stream runs into the next section": ("stream0", _resized(64)),
    "stream as uint16": ("stream0", lambda s: {"dtype": "<u2", "shape": [s["shape"][0] // 2]}),
    "stream 2-d": ("stream0", lambda s: {"shape": [s["shape"][0] // 4, 4]}),
    "norms short": ("norms", _resized(-1, 2)),
    "norms as float32": ("norms", lambda s: {"dtype": "<f4", "shape": [s["shape"][0] // 2]}),
    "ids short": ("ids", _resized(-1, 8)),
    "ids long": ("ids", _resized(1, 8)),
    "ids as int32": ("ids", lambda s: {"dtype": "<i4", "shape": [s["shape"][0] * 2]}),
    "ids renamed": ("ids", lambda s: {"name": "idz"}),
    "stream renamed": ("stream0", lambda s: {"name": "stream7"}),
    "offset before the data": ("stream0", lambda s: {"offset": 0}),
    "negative length": ("norms", lambda s: {"nbytes": -2, "shape": [-1]}),
    # dtype strings numpy would parse as structured, object or Python syntax
    "norms dtype a lone comma": ("norms", lambda s: {"dtype": ","}),
    "norms dtype structured": ("norms", lambda s: {"dtype": "<f2,<f2", "shape": [50]}),
    "norms dtype subarray": ("norms", lambda s: {"dtype": "(2,)<f2", "shape": [50]}),
    "norms dtype object": ("norms", lambda s: {"dtype": "O"}),
    "norms dtype a number": ("norms", lambda s: {"dtype": 2}),
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_manifest_lies_about_a_section(tmp_path, lie):
    good = _build(tmp_path)
    header, entries = _manifest(good)
    name, change = LIES[lie]
    section = next(s for s in entries[0]["arrays"] if s["name"] == name)
    section.update(change(section))
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries)
    with pytest.raises(ValueError):
        VectorIndex.load(crafted)


HEADER_LIES = {
    "dim": ("dim", 21),
    "dim zero": ("dim", 0),
    "bits": ("bits", 4),
    "bits fractional": ("bits", 3.5),
    "bits huge": ("bits", 9),
    "mode prod": ("mode", "prod"),
    "mode unknown": ("mode", "nope"),
    "norm dtype": ("norm_dtype", "float32"),
    "rotation unknown": ("rotation", "nope"),
    "seed": ("seed", 7),
}


@pytest.mark.parametrize("lie", sorted(HEADER_LIES))
def test_header_lies_about_the_codec(tmp_path, lie):
    good = _build(tmp_path)
    header, entries = _manifest(good)
    key, value = HEADER_LIES[lie]
    header["config"][key] = value
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries)
    _load_and_use(crafted)


@pytest.mark.parametrize(
    "change",
    [("metric", "l2"), ("keep_vectors", True), ("next_id", -5), ("format", "other"), ("metric", 3)],
)
def test_header_lies_about_the_index(tmp_path, change):
    good = _build(tmp_path)
    header, entries = _manifest(good)
    header[change[0]] = change[1]
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries)
    _load_and_use(crafted)


@pytest.mark.parametrize("kwargs", [{}, {"metric": "l2"}, {"mode": "prod"}, {"keep_vectors": True}])
@pytest.mark.parametrize("seed", range(4))
def test_garbage_in_every_section_with_valid_checksums(tmp_path, kwargs, seed):
    good = _build(tmp_path, **kwargs)
    header, entries = _manifest(good)
    rng = np.random.default_rng(seed)
    patches = []
    for section in entries[0]["arrays"]:
        garbage = rng.integers(0, 256, section["nbytes"], dtype=np.uint8).tobytes()
        patches.append((section["offset"], garbage))
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries, patches)
    _load_and_use(crafted)


@pytest.mark.parametrize("seed", range(30))
def test_random_manifest_numbers(tmp_path, seed):
    """Any integer in the manifest replaced by a nearby, zero, negative or huge value."""
    good = _build(tmp_path, metric="l2")
    header, entries = _manifest(good)
    rng = np.random.default_rng(seed)
    fields = [(s, key) for s in entries[0]["arrays"] for key in ("offset", "nbytes")]
    fields += [(s, "shape") for s in entries[0]["arrays"]]
    section, key = fields[rng.integers(len(fields))]
    value = [1, -1, 64, 0, -(2**40), 2**62][rng.integers(6)]
    if key == "shape":
        section["shape"] = [max(0, section["shape"][0] + value) if abs(value) < 100 else value]
    else:
        section[key] = section[key] + value if abs(value) < 100 else value
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries)
    _load_and_use(crafted)


_FUZZ_KINDS = [{}, {"metric": "l2", "mode": "prod"}, {"keep_vectors": True, "metric": "cosine"}]


def _fuzz_manifest(tmp_path_factory, data) -> None:
    """One random edit set of a real file's manifest (header and segment list), checksums
    recomputed: loading and using the result gives correct results or ValueError."""
    kind = data.draw(st.sampled_from(range(len(_FUZZ_KINDS))))
    folder = tmp_path_factory.mktemp("fuzz")
    good = _build(folder, **_FUZZ_KINDS[kind])
    header, entries = _manifest(good)
    tree = data.draw(mutated_json({"header": header, "segments": entries}))
    crafted = folder / "crafted.rq"
    _recommit(good, crafted, tree.get("header"), tree.get("segments"))
    _load_and_use(crafted)


_FUZZ_SETTINGS = {"deadline": None, "suppress_health_check": [HealthCheck.function_scoped_fixture]}


@settings(max_examples=60, **_FUZZ_SETTINGS)
@given(data=st.data())
def test_fuzzed_manifests_load_correctly_or_raise_value_error(tmp_path_factory, data):
    _fuzz_manifest(tmp_path_factory, data)


@pytest.mark.slow
@settings(max_examples=3000, **_FUZZ_SETTINGS)
@given(data=st.data())
def test_fuzzed_manifests_many(tmp_path_factory, data):
    _fuzz_manifest(tmp_path_factory, data)


def _commit_edit(tmp_path, edit, **kwargs) -> Path:
    good = _build(tmp_path, **kwargs)
    header, entries = _manifest(good)
    header, entries = edit(header, entries) or (header, entries)
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries)
    return crafted


def _float_ids(header, entries):
    ids = next(s for s in entries[0]["arrays"] if s["name"] == "ids")
    ids["dtype"] = "<f8"


INVARIANT_LIES = {  # what a writer never produces, each refused even without checksums
    "segment listed twice": lambda h, e: (h, e + e),
    "next id below a stored id": lambda h, e: h.update(next_id=50),
    "next id negative": lambda h, e: h.update(next_id=-1),
    "float ids": _float_ids,
    "keep_vectors false beside stored vectors": lambda h, e: h.update(keep_vectors=False),
}


@pytest.mark.parametrize("lie", sorted(INVARIANT_LIES))
@pytest.mark.parametrize("verify", [True, False])
def test_broken_invariants_are_refused_at_load(tmp_path, lie, verify):
    crafted = _commit_edit(tmp_path, INVARIANT_LIES[lie], keep_vectors=True)
    with pytest.raises(ValueError):
        VectorIndex.load(crafted, verify=verify)


# ---------------------------------------------------------------------- messages in words
def _section(tree: dict, name: str) -> dict:
    return next(s for s in tree["segments"][0]["arrays"] if s["name"] == name)


def _drop(where, key):
    """An edit deleting ``key`` from the dict ``where(tree)`` picks."""

    def edit(tree):
        del where(tree)[key]

    return edit


def _set(where, key, value):
    """An edit setting ``where(tree)[key] = value``."""
    return lambda tree: where(tree).__setitem__(key, value)


def _without_section(name):
    def edit(tree):
        arrays = tree["segments"][0]["arrays"]
        arrays.remove(next(s for s in arrays if s["name"] == name))

    return edit


_HEADER = lambda tree: tree["header"]  # noqa: E731
_CONFIG = lambda tree: tree["header"]["config"]  # noqa: E731
_SEGMENTS = lambda tree: tree["segments"]  # noqa: E731
_ENTRY = lambda tree: tree["segments"][0]  # noqa: E731
_ARRAYS = lambda tree: tree["segments"][0]["arrays"]  # noqa: E731
_STREAM = lambda tree: _section(tree, "stream0")  # noqa: E731
_PROD, _L2, _KEEP = {"mode": "prod"}, {"metric": "l2"}, {"keep_vectors": True}
_V1 = "index_v1_cosine.rq"  # a format-1 file (keep_vectors=True)

# name: (what the file is built as: VectorIndex options or a format-1 fixture, the edit to its
# manifest (a returned value replaces the whole manifest), words the message must contain)
WORDED = {
    "header without format": ({}, _drop(_HEADER, "format"), "header field 'format' is missing"),
    "header without config": ({}, _drop(_HEADER, "config"), "header field 'config' is missing"),
    "header without metric": ({}, _drop(_HEADER, "metric"), "header field 'metric' is missing"),
    "header without keep_vectors": (
        {},
        _drop(_HEADER, "keep_vectors"),
        "header field 'keep_vectors' is missing",
    ),
    "header without next_id": ({}, _drop(_HEADER, "next_id"), "header field 'next_id' is missing"),
    "header a list": (
        {},
        _set(lambda t: t, "header", []),
        "'header' must be an object, got a list",
    ),
    "config a list": ({}, _set(_HEADER, "config", [20, 3]), "'config' must be an object"),
    "config without dim": ({}, _drop(_CONFIG, "dim"), "config field 'dim' is missing"),
    "config without bits": ({}, _drop(_CONFIG, "bits"), "config field 'bits' is missing"),
    "config without norm_correction": (
        {},
        _drop(_CONFIG, "norm_correction"),
        "config field 'norm_correction' is missing",
    ),
    "config with an unknown field": ({}, _set(_CONFIG, "foo", 1), "unknown config field 'foo'"),
    "config bits a string": ({}, _set(_CONFIG, "bits", "x"), "bits must be a number"),
    "config bits a huge integer": ({}, _set(_CONFIG, "bits", 10**400), "bits must be in [1, 8]"),
    "config dim a string": ({}, _set(_CONFIG, "dim", "20"), "dim must be an integer"),
    "metric a number": ({}, _set(_HEADER, "metric", 3), "metric must be one of"),
    "keep_vectors a string": ({}, _set(_HEADER, "keep_vectors", "yes"), "must be True or False"),
    "next_id a string": ({}, _set(_HEADER, "next_id", "7"), "'next_id' must be an integer"),
    "next_id true": ({}, _set(_HEADER, "next_id", True), "'next_id' must be an integer"),
    "manifest a list": ({}, lambda tree: [tree], "manifest must be an object, got a list"),
    "manifest without segments": (
        {},
        _drop(lambda t: t, "segments"),
        "manifest field 'segments' is missing",
    ),
    "segments an object": ({}, _set(lambda t: t, "segments", {}), "'segments' must be a list"),
    "segment a number": (
        {},
        _set(_SEGMENTS, 0, 5),
        "segment 0 must be an object, got an integer (5)",
    ),
    "segment without arrays": ({}, _drop(_ENTRY, "arrays"), "segment 0 field 'arrays' is missing"),
    "arrays an object": ({}, _set(_ENTRY, "arrays", {}), "field 'arrays' must be a list"),
    "section a string": ({}, _set(_ARRAYS, 0, "stream0"), "section 0 must be an object"),
    "section without name": ({}, _drop(_STREAM, "name"), "section 0 field 'name' is missing"),
    "section without offset": (
        {},
        _drop(_STREAM, "offset"),
        "section 'stream0' field 'offset' is missing",
    ),
    "section without crc32": ({}, _drop(_STREAM, "crc32"), "field 'crc32' is missing"),
    "section name a number": ({}, _set(_STREAM, "name", 5), "field 'name' must be a string"),
    "section shape a number": ({}, _set(_STREAM, "shape", 5), "field 'shape' must be a list"),
    "section shape a string": ({}, _set(_STREAM, "shape", ["a"]), "must be a list of integers"),
    "section offset a string": ({}, _set(_STREAM, "offset", "4096"), "must be an integer"),
    "section nbytes a float": ({}, _set(_STREAM, "nbytes", 1.5), "must be an integer"),
    "no ids section": ({}, _without_section("ids"), "segment 0 has no 'ids' section"),
    "no stream0 section": ({}, _without_section("stream0"), "segment 0 has no 'stream0' section"),
    "no norms section": ({}, _without_section("norms"), "segment 0 has no 'norms' section"),
    "no vectors section": (
        _KEEP,
        _without_section("vectors"),
        "segment 0 has no 'vectors' section (keep_vectors=True files store one)",
    ),
    "no residual_norms section": (
        _PROD,
        _without_section("residual_norms"),
        "no 'residual_norms' section (mode='prod' files store one)",
    ),
    "no qjl_signs section": (
        _PROD,
        _without_section("qjl_signs"),
        "no 'qjl_signs' section (mode='prod' files store one)",
    ),
    "no l2_shift section": (
        _L2,
        _without_section("l2_shift"),
        "no 'l2_shift' section (metric='l2' files store one)",
    ),
    "vectors as float32": (
        _KEEP,
        lambda t: _section(t, "vectors").update(dtype="<f4", shape=[50, 20]),
        "'vectors' should be float16 of shape (100, 20), got float32 of shape (50, 20)",
    ),
    "ids 2-d": (
        {},
        lambda t: _section(t, "ids").update(shape=[50, 2]),
        "'ids' should be int64 of shape (n,), got int64 of shape (50, 2)",
    ),
    "format 1 without ids": (_V1, _without_section("ids"), "segment 0 has no 'ids' section"),
    "format 1 without norms": (_V1, _without_section("norms"), "segment 0 has no 'norms' section"),
    "format 1 without stream0": (_V1, _without_section("stream0"), "no 'stream0' section"),
    "format 1 without vectors": (
        _V1,
        _without_section("vectors"),
        "segment 0 has no 'vectors' section (keep_vectors=True files store one)",
    ),
}

# what Python says about a key, an index or a type, never what the file lacks
_PYTHON_INTERNALS = (
    "KeyError",
    "TypeError",
    "object is not",
    "indices must be",
    "invalid literal",
    "positional argument",
    "keyword argument",
    "must be a mapping",
    "too large to convert",
)


@pytest.mark.parametrize("case", sorted(WORDED))
def test_crafted_file_errors_say_what_is_wrong(tmp_path, case):
    kind, edit, words = WORDED[case]
    if isinstance(kind, str):
        good = tmp_path / kind
        shutil.copy(FIXTURES / kind, good)
    else:
        good = _build(tmp_path, **kind)
    header, entries = _manifest(good)
    tree = {"header": header, "segments": entries}
    replaced = edit(tree)
    crafted = tmp_path / "crafted.rq"
    _recommit(good, crafted, header, entries, manifest=tree if replaced is None else replaced)
    with pytest.raises(ValueError) as caught:
        VectorIndex.load(crafted)
    message = str(caught.value)
    assert words in message
    assert not re.search(r": '[^']*'\)?$", message), message  # a bare key
    assert not any(text in message for text in _PYTHON_INTERNALS), message
