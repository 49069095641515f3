"""Argument checks of the VectorIndex API: each raises ValueError naming the argument."""

from __future__ import annotations

from typing import Any

import numpy as np

from .._arrays import check_matrix, to_numpy

MAX_ID = np.iinfo(np.int64).max


def as_matrix(x: Any, dim: int, name: str) -> np.ndarray:
    """A 2-D (n, dim) floating array or tensor, not yet converted (chunks convert)."""
    if type(x).__module__.startswith("torch"):
        arr, _ = to_numpy(x, name)
    else:
        arr = np.asarray(x)
        if arr.dtype.kind != "f":
            raise ValueError(f"{name}: unsupported dtype {arr.dtype}; pass floating-point vectors")
    check_matrix(arr, dim, name, finite=False)
    return arr


def as_ids(ids: Any, n: int | None, name: str, unique: bool = True) -> np.ndarray:
    """Ids as int64 (k,): integers in [0, 2**63 − 1], ``n`` of them if given, distinct if
    ``unique``."""
    arr = np.asarray(ids)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.ndim != 1:
        raise ValueError(f"{name}: ids must be a 1-D array, got shape {arr.shape}")
    if arr.size == 0:
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise ValueError(f"{name}: ids must be integers, got dtype {arr.dtype}")
    if n is not None and arr.size != n:
        raise ValueError(f"{name}: {arr.size} ids for {n} vectors")
    if arr.size and (arr.min() < 0 or (arr.dtype.kind == "u" and arr.max() > MAX_ID)):
        raise ValueError(f"{name}: ids must lie in [0, 2**63 - 1]")
    keys = arr.astype(np.int64)
    if unique and keys.size > 1:
        ordered = np.sort(keys)
        repeated = ordered[1:][ordered[1:] == ordered[:-1]]
        if repeated.size:
            raise ValueError(f"{name}: repeated ids (e.g. {preview(repeated)})")
    return keys


def id_set(value: Any, name: str) -> np.ndarray:
    """``allow``/``deny`` as int64 ids: an id array or list, a set, or a boolean mask over ids
    (``mask[i]``: id ``i``)."""
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    arr = np.asarray(value)
    if arr.dtype == np.bool_:
        if arr.ndim != 1:
            raise ValueError(f"{name}: a boolean mask must be 1-D, got shape {arr.shape}")
        return np.flatnonzero(arr).astype(np.int64)
    if arr.dtype == object:
        raise ValueError(f"{name}: ids must be integers in [0, 2**63 - 1]")
    return as_ids(arr, None, name, unique=False)


def normalized(x: np.ndarray, name: str = "queries") -> np.ndarray:
    """Rows of ``x`` (n, d) scaled to unit length; a zero row is an error."""
    lengths = np.sqrt(np.einsum("ij,ij->i", x, x))
    if (lengths == 0).any():
        raise ValueError(f"{name}: zero vector (row {int(np.argmin(lengths))}) has no cosine")
    return x / lengths[:, None]


def float16_copy(x: np.ndarray) -> np.ndarray:
    """``x`` as float16 (the re-ranking copy); values beyond float16's range are an error."""
    with np.errstate(over="ignore"):
        half = x.astype(np.float16)
    if not np.isfinite(half).all():
        raise ValueError("add: keep_vectors stores float16; values must lie within ±65504")
    return half


def preview(values: np.ndarray, count: int = 5) -> str:
    """The first ``count`` values, comma-separated, for error messages."""
    shown = ", ".join(str(v) for v in values[:count].tolist())
    return shown + (", ..." if values.size > count else "")
