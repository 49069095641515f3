"""Scoring a few queries by table lookup over packed bytes (a compiled numba kernel).

For a stream whose values fill bytes whole (``bits`` ∈ {1, 2, 4, 8}) and whose rows end on a
byte boundary (``channels · bits`` a multiple of 8), byte ``p`` of a row holds values
``p·v … p·v + v − 1`` (``v = 8 / bits``). For a rotated query ``q`` build, once per query,

    table[p, byte] = Σ_j q[p·v + j] · centroid[(byte >> j·bits) & mask]      (bytes_per_row, 256)

and ⟨q, ĉ⟩ = Σ_p table[p, row[p]]: one lookup per byte instead of decoding ``v`` values and
multiplying them. For one query this is 4–8× faster than decode + matrix–vector product
(numpy gathers alone were no faster, so the loop is compiled). Batches of queries use BLAS
instead, where a matrix product beats lookups.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
from numba import njit

from .codes import CodecConfig, Codes
from .packing import packed_nbytes

MAX_QUERIES = 4  # above this, decode + matrix product (BLAS) is faster (measured)
_SPLIT_BYTES = 1 << 18  # scans over more packed bytes than this are split across cores


def supported(config: CodecConfig) -> bool:
    """Whether every packed stream of this configuration is byte-aligned per row."""
    widths = [(g.channels, g.bits) for g in config.groups]
    if config.mode == "prod":
        widths.append((config.dim, 1))
    return all(8 % bits == 0 and channels * bits % 8 == 0 for channels, bits in widths)


class LookupScorer:
    """Scores rotated queries against rows of ``Codes`` by table lookup."""

    def __init__(self, quantizer):
        self.quantizer = quantizer
        # (first channel, channels, bits, values of each byte (256, 8 / bits)) per stream
        self._streams = [
            (g.start, g.channels, g.bits, _byte_values(book.centroids, g.bits))
            for g, book in quantizer.codebooks
        ]
        if quantizer.qjl is not None:  # the sign sketch: bit 1 means +1
            self._streams.append((0, quantizer.dim, 1, _byte_values(np.array([-1.0, 1.0]), 1)))

    def squared_norms(self, codes: Codes, rows: np.ndarray) -> np.ndarray:
        """‖x̂‖² of ``rows`` (1, len(rows)) float32, by the same lookups (QJL bits excluded)."""
        out = np.zeros((1, rows.size), np.float32)
        scale = np.square(codes.norms[rows].astype(np.float32))
        for (_, channels, bits, byte_values), stream in zip(
            self._streams[: len(codes.streams)], codes.streams, strict=True
        ):
            per_row = channels * bits // 8
            tables = np.broadcast_to((byte_values**2).sum(axis=1), (1, per_row, 256))
            packed = stream[: packed_nbytes(codes.n * channels, bits)].reshape(codes.n, per_row)
            _in_parallel(packed, np.ascontiguousarray(tables), rows, scale, out)
        return out

    def scores(
        self,
        rotated: np.ndarray,
        projected: np.ndarray | None,
        codes: Codes,
        rows: np.ndarray,
    ) -> np.ndarray:
        """(m, len(rows)) float32: ⟨q, x̂⟩ (+ the QJL term in prod mode) for ``rows``."""
        m = rotated.shape[0]
        out = np.zeros((m, rows.size), np.float32)
        norms = codes.norms[rows].astype(np.float32)
        inputs = [(stream, rotated, norms) for stream in codes.streams]
        if self.quantizer.qjl is not None:
            residual = codes.residual_norms[rows].astype(np.float32) * self.quantizer.qjl.scale
            inputs.append((codes.qjl_signs, projected, residual))
        for (start, channels, bits, byte_values), (stream, queries, scale) in zip(
            self._streams, inputs, strict=True
        ):
            part = queries[:, start : start + channels]
            per_row = channels * bits // 8
            tables = np.einsum(
                "mpv,bv->mpb", part.reshape(m, per_row, 8 // bits), byte_values
            ).astype(np.float32)
            packed = stream[: packed_nbytes(codes.n * channels, bits)].reshape(codes.n, per_row)
            _in_parallel(packed, tables, rows, scale, out)
        return out


def _byte_values(values: np.ndarray, bits: int) -> np.ndarray:
    """(256, 8/bits): the values packed in each possible byte."""
    mask = (1 << bits) - 1
    lanes = np.arange(8 // bits) * bits
    return np.asarray(values, np.float32)[(np.arange(256)[:, None] >> lanes) & mask]


def _in_parallel(packed, tables, rows, scale, out) -> None:
    """Run the kernel over slices of ``rows`` on every core. The kernel drops the GIL; plain
    threads (rather than numba's OpenMP layer, whose spinning workers starved BLAS in the
    same process) keep concurrent searches safe."""
    workers = _pool()._max_workers
    if workers == 1 or rows.size * packed.shape[1] < _SPLIT_BYTES:
        _accumulate(packed, tables, rows, scale, out)
        return
    bounds = np.linspace(0, rows.size, workers + 1).astype(int)
    futures = [
        _pool().submit(_accumulate, packed, tables, rows[a:b], scale[a:b], out[:, a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for future in futures:
        future.result()


@functools.lru_cache(maxsize=1)
def _pool() -> ThreadPoolExecutor:
    return ThreadPoolExecutor(max(1, min(4, os.cpu_count() or 1)), "rotaquant-scan")


@njit(fastmath=True, cache=True, nogil=True)
def _accumulate(packed, tables, rows, scale, out):  # pragma: no cover - compiled
    """out[q, j] += scale[j] · Σ_p tables[q, p, packed[rows[j], p]]."""
    m, per_row = tables.shape[0], tables.shape[1]
    for j in range(rows.size):
        row = packed[rows[j]]
        for q in range(m):
            acc = np.float32(0.0)
            for p in range(per_row):
                acc += tables[q, p, row[p]]
            out[q, j] += acc * scale[j]
