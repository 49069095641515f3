"""Index files of format version 1 (rotaquant 0.1 before the native core): segments held the
codec's own row-major streams (``Codes`` layout: n·channels codes per group, packed as one bit
stream) instead of 32-row blocks. Loading converts them; saving writes the current format."""

from __future__ import annotations

import numpy as np

from ..codec.codes import CodecConfig
from ..codec.packing import packed_nbytes, unpack
from ..codec.quantizer import QuantizedRows


def rows_from_v1(
    config: CodecConfig, arrays: dict[str, np.ndarray]
) -> tuple[QuantizedRows, np.ndarray | None]:
    """The unpacked codes and row arrays of one version-1 segment (sizes checked)."""
    n = int(arrays["ids"].shape[0])
    norm = np.dtype(config.norm_dtype)

    def stream(name: str, channels: int, bits: int) -> np.ndarray:
        data = np.asarray(arrays[name])
        if data.dtype != np.uint8 or data.shape != (packed_nbytes(n * channels, bits),):
            raise ValueError(f"version-1 array {name!r} has the wrong size")
        return unpack(data, bits, n * channels).reshape(n, channels)

    def row_array(name: str) -> np.ndarray:
        data = np.asarray(arrays[name])
        if data.dtype != norm or data.shape != (n,):
            raise ValueError(f"version-1 array {name!r} has the wrong size")
        return data

    codes = tuple(stream(f"stream{i}", g.channels, g.bits) for i, g in enumerate(config.groups))
    prod = config.mode == "prod"
    signs = stream("qjl_signs", config.dim, 1) if prod else None
    residual = row_array("residual_norms") if prod else None
    vectors = arrays.get("vectors")
    if vectors is not None and (vectors.dtype != np.float16 or vectors.shape != (n, config.dim)):
        raise ValueError("version-1 array 'vectors' has the wrong size")
    return QuantizedRows(codes, row_array("norms"), signs, residual), vectors
