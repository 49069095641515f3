"""Input checking and the numpy/torch boundary.

The codec computes in numpy. Torch tensors (any device) are accepted at the public API and
results are handed back as torch tensors on the input's device.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any

import numpy as np

_FLOAT_KINDS = ("float16", "float32", "float64", "bfloat16")

# What parsing a crafted header or manifest can raise (JSONDecodeError is a ValueError);
# readers of files turn all of them into one ValueError naming the file.
MALFORMED = (
    ValueError,
    KeyError,
    TypeError,
    IndexError,
    OverflowError,
    AttributeError,
    RecursionError,
)


_JSON_KINDS = (
    (bool, "true or false"),
    (dict, "an object"),
    (list, "a list"),
    (str, "a string"),
    (int, "an integer"),
    (float, "a number"),
    (type(None), "null"),
)


def json_kind(value: Any) -> str:
    """What a parsed JSON value is, in words (``"an object"``, ``"a list"``, ...), with the
    value itself when it is short."""
    words = next((w for kind, w in _JSON_KINDS if isinstance(value, kind)), type(value).__name__)
    shown = repr(value)
    return f"{words} ({shown})" if len(shown) <= 40 and not isinstance(value, dict) else words


def json_field(mapping: dict, key: str, where: str, kind: type | None = None) -> Any:
    """``mapping[key]`` of a parsed header, else ValueError ``"<where> field '<key>' is
    missing"``; with ``kind`` (dict, list, str or int; bools are not ints), of that kind,
    else ValueError saying what it is instead."""
    if key not in mapping:
        raise ValueError(f"{where} field {key!r} is missing")
    value = mapping[key]
    if kind is not None and (
        not isinstance(value, kind) or (kind is int and isinstance(value, bool))
    ):
        wanted = next(w for k, w in _JSON_KINDS if k is kind)
        raise ValueError(f"{where} field {key!r} must be {wanted}, got {json_kind(value)}")
    return value


@dataclass(frozen=True)
class Origin:
    """Where an input came from, so the output can go back there."""

    library: str  # "numpy" | "torch"
    device: Any = None


_NUMPY = Origin("numpy")


def to_numpy(x: Any, name: str) -> tuple[np.ndarray, Origin]:
    """Return (float32 C-contiguous numpy array, origin). Raises ValueError on a bad dtype."""
    if type(x) is np.ndarray and x.dtype == np.float32 and x.flags.c_contiguous:
        return x, _NUMPY  # the common case, without a copy or a dtype lookup
    if type(x).__module__.startswith("torch"):
        import torch

        if not x.is_floating_point():
            raise ValueError(f"{name}: unsupported dtype {x.dtype}; pass a floating-point tensor")
        origin = Origin("torch", x.device)
        return x.detach().to(device="cpu", dtype=torch.float32).contiguous().numpy(), origin
    arr = np.asarray(x)
    if arr.dtype.name not in _FLOAT_KINDS:
        raise ValueError(
            f"{name}: unsupported dtype {arr.dtype}; pass float16, float32 or float64 values"
        )
    return np.ascontiguousarray(arr, dtype=np.float32), _NUMPY


def from_numpy(arr: np.ndarray, origin: Origin) -> Any:
    """Hand ``arr`` back in the caller's library (and device)."""
    if origin.library == "torch":
        import torch

        return torch.from_numpy(arr).to(origin.device)
    return arr


def check_matrix(arr: np.ndarray, dim: int, name: str, finite: bool = True) -> None:
    """Require shape (n, dim) and (unless ``finite=False``) finite values."""
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected a 2-D array of shape (n, {dim}), got shape {arr.shape}")
    if arr.shape[1] != dim:
        raise ValueError(f"{name}: expected vectors of dimension {dim}, got {arr.shape[1]}")
    if finite and arr.size and not np.isfinite(arr).all():
        row = int(np.argmin(np.isfinite(arr).all(axis=1)))
        raise ValueError(f"{name}: contains NaN or infinite values (first in row {row})")


def positive_int(value: Any, name: str) -> int:
    """``value`` as an int ≥ 1 (bools and non-integers refused), else ValueError naming it."""
    return _integer_at_least(value, 1, name, "a positive integer")


RESULT_BYTES_PER_HIT = 12  # a float32 score and an int64 id


@functools.cache
def _physical_memory() -> int:
    """Bytes of physical memory (1 TiB where the system does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return 1 << 40


def check_result_fits(rows: int, k: int) -> None:
    """Refuse (ValueError naming k) a search whose (rows, k) result alone would not fit in
    this machine's physical memory — before anything is allocated."""
    need = rows * k * RESULT_BYTES_PER_HIT
    memory = _physical_memory()
    if need > memory:
        raise ValueError(
            f"k={k} for {rows} queries asks for a {need / 2**30:,.1f} GiB result, more than "
            f"this machine's {memory / 2**30:,.1f} GiB of memory: ask for fewer results"
        )


def non_negative_int(value: Any, name: str) -> int:
    """``value`` as an int ≥ 0 (bools and non-integers refused), else ValueError naming it."""
    return _integer_at_least(value, 0, name, "an integer >= 0")


def _integer_at_least(value: Any, minimum: int, name: str, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)
