import importlib.util
import os
import sys

# tools/sanitize.sh runs the kernel tests against a build of the native core made with
# AddressSanitizer + UBSan in its own directory: $ROTAQUANT_TEST_CORE names that extension, and
# it is loaded as rotaquant._core before anything imports the package (the installed one stays).
if os.environ.get("ROTAQUANT_TEST_CORE"):
    _spec = importlib.util.spec_from_file_location(
        "rotaquant._core", os.environ["ROTAQUANT_TEST_CORE"]
    )
    sys.modules["rotaquant._core"] = _core = importlib.util.module_from_spec(_spec)
    _spec.loader.exec_module(_core)

# The Triton kernels run on CPU tensors through Triton's interpreter (it is read when the
# kernels are defined, so before anything imports them). On a GPU machine, TRITON_INTERPRET=0
# runs the same tests compiled, on CUDA tensors.
os.environ.setdefault("TRITON_INTERPRET", "1")

import copy
from pathlib import Path

import numpy as np
import pytest
from hypothesis import strategies as st

from rotaquant.contrib import data

FIXTURES = Path(__file__).parent / "fixtures"  # files written by earlier versions


def unit_gaussian(n: int, dim: int, seed: int = 0) -> np.ndarray:
    """(n, dim) float32 rows uniform on the unit sphere."""
    x = np.random.default_rng(seed).standard_normal((n, dim), dtype=np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def packaged(load, *args, **kwargs):
    """``load(*args, **kwargs)`` of ``rotaquant.contrib.data``, or a skip that says what to
    install when the package holding that model or data set is missing."""
    try:
        return load(*args, **kwargs)
    except data.MissingData as missing:
        pytest.skip(str(missing))


@pytest.fixture(scope="session")
def minilm() -> np.ndarray:
    """Real 384-d sentence embeddings (unit norm) of Python's documentation sentences."""
    return packaged(data.minilm_embeddings, data.pydoc_sentences())


@pytest.fixture(scope="session")
def glove() -> np.ndarray:
    """Real 50-d GloVe word vectors: a fixed sample of 20k rows."""
    vectors = packaged(data.glove_50d)
    rows = np.random.default_rng(0).choice(vectors.shape[0], 20_000, replace=False)
    return np.asarray(vectors[np.sort(rows)], dtype=np.float32)


@pytest.fixture(scope="session")
def v1_expected() -> dict[str, np.ndarray]:
    """Results computed by the version that wrote the format-v1 fixtures (tests/fixtures)."""
    with np.load(FIXTURES / "v1_expected.npz") as f:
        return dict(f)


# ---------------------------------------------------------------------- crafted-header fuzzing
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)
NUMBER_NUDGES = (-1, 1, -8, 8, 64, -(2**31), 2**31, 2**40, -(2**62), 2**63)


def _paths(tree, prefix=()):
    yield prefix
    children = (
        tree.items()
        if isinstance(tree, dict)
        else enumerate(tree)
        if isinstance(tree, list)
        else ()
    )
    for key, value in children:
        yield from _paths(value, (*prefix, key))


@st.composite
def mutated_json(draw, tree):
    """``tree`` (parsed JSON) with 1–3 random edits: a node replaced by any JSON value,
    deleted, or (integers) nudged to a nearby, negative or huge value."""
    tree = copy.deepcopy(tree)
    for _ in range(draw(st.integers(1, 3))):
        paths = list(_paths(tree))[1:]
        if not paths:
            break
        path = draw(st.sampled_from(paths))
        parent = tree
        for key in path[:-1]:
            parent = parent[key]
        key, action = path[-1], draw(st.sampled_from(["replace", "delete", "nudge"]))
        value = parent[key]
        if action == "delete":
            del parent[key]
        elif action == "nudge" and isinstance(value, int) and not isinstance(value, bool):
            parent[key] = value + draw(st.sampled_from(NUMBER_NUDGES))
        else:
            parent[key] = draw(JSON_VALUES)
    return tree
