"""Scoring a few queries by table lookup over packed codes (a compiled numba kernel).

A packed stream of ``bits``-bit values is read in *units* of ``v`` consecutive values
(``v · bits ≤ 8`` bits, ``v`` dividing the row's channel count so that no unit straddles two
rows; e.g. a byte of four 2-bit values, or 6 bits holding two 3-bit values). For a rotated
query ``q`` build, once per query,

    table[p, u] = Σ_j q[p·v + j] · centroid[(u >> j·bits) & mask]        (units per row, 2^(v·bits))

and ⟨q, ĉ⟩ = Σ_p table[p, unit_p]: one lookup per unit instead of decoding ``v`` values and
multiplying them. Works at any dimension and width (units may start at any bit). One query
takes 1.9–7.1× less time than decode + matrix product, two 1.5–5.3× (``python -m
bench.index_design``); the per-unit gather loop is compiled with numba. Larger batches use
BLAS instead, where a matrix product beats lookups.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._parallel import pool, workers
from ..codec.codes import Codes

# Lookups win for m <= 2 queries on every set measured; BLAS catches up at m = 3-4
# (python -m bench.index_design).
MAX_QUERIES = 2
_SPLIT_LOOKUPS = 1 << 18  # scans with more lookups than this are split across cores


class _Stream:
    """How one packed stream is read: channels [start, start + channels) at ``bits`` each,
    ``per_unit`` values per lookup, and the values every unit decodes to (2^unit_bits, v)."""

    def __init__(self, start: int, channels: int, bits: int, values: np.ndarray):
        self.start, self.channels, self.bits = start, channels, bits
        self.per_unit = max(v for v in range(1, max(1, 8 // bits) + 1) if channels % v == 0)
        self.unit_bits = self.per_unit * bits
        units = np.arange(1 << self.unit_bits)[:, None] >> (np.arange(self.per_unit) * bits)
        self.unit_values = np.asarray(values, np.float32)[units & ((1 << bits) - 1)]

    @property
    def units_per_row(self) -> int:
        return self.channels // self.per_unit


class LookupScorer:
    """Scores rotated queries against rows of ``Codes`` by table lookup."""

    def __init__(self, quantizer):
        self.quantizer = quantizer
        self._streams = [
            _Stream(g.start, g.channels, g.bits, book.centroids) for g, book in quantizer.codebooks
        ]
        if quantizer.qjl is not None:  # the sign sketch: bit 1 means +1
            self._streams.append(_Stream(0, quantizer.dim, 1, np.array([-1.0, 1.0])))

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
        inputs = [(packed, rotated, norms) for packed in codes.streams]
        if self.quantizer.qjl is not None:
            residual = codes.residual_norms[rows].astype(np.float32) * self.quantizer.qjl.scale
            inputs.append((codes.qjl_signs, projected, residual))
        for stream, (packed, queries, scale) in zip(self._streams, inputs, strict=True):
            part = queries[:, stream.start : stream.start + stream.channels]
            units = part.reshape(m, stream.units_per_row, stream.per_unit)
            tables = np.einsum("mpv,uv->mpu", units, stream.unit_values).astype(np.float32)
            _in_parallel(packed, stream, tables, rows, scale, out)
        return out

    def squared_norms(self, codes: Codes, rows: np.ndarray) -> np.ndarray:
        """‖x̂‖² of ``rows`` (1, len(rows)) float32, by the same lookups (QJL bits excluded)."""
        out = np.zeros((1, rows.size), np.float32)
        scale = np.square(codes.norms[rows].astype(np.float32))
        for stream, packed in zip(self._streams[: len(codes.streams)], codes.streams, strict=True):
            squares = (stream.unit_values**2).sum(axis=1)
            tables = np.ascontiguousarray(
                np.broadcast_to(squares, (1, stream.units_per_row, squares.size))
            )
            _in_parallel(packed, stream, tables, rows, scale, out)
        return out


def _in_parallel(packed, stream: _Stream, tables, rows, scale, out) -> None:
    """Run the kernel over slices of ``rows`` on every core. The kernels drop the GIL, so a
    plain thread pool runs them in parallel and stays safe when several searches call it at
    once (numba's default parallel layer is not safe for concurrent callers)."""
    row_bits = stream.channels * stream.bits
    if stream.unit_bits == 8 and row_bits % 8 == 0:  # every unit is one whole byte
        kernel, layout = _accumulate_bytes, (packed.reshape(-1, row_bits // 8),)
    else:
        kernel, layout = _accumulate_bits, (packed, row_bits, stream.unit_bits)
    count = workers()
    if count == 1 or rows.size * stream.units_per_row < _SPLIT_LOOKUPS:
        kernel(*layout, tables, rows, scale, out)
        return
    bounds = np.linspace(0, rows.size, count + 1).astype(int)
    futures = [
        pool().submit(kernel, *layout, tables, rows[a:b], scale[a:b], out[:, a:b])
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for future in futures:
        future.result()


@njit(fastmath=True, cache=True, nogil=True)
def _accumulate_bytes(packed, tables, rows, scale, out):  # pragma: no cover - compiled
    """out[q, j] += scale[j] · Σ_p tables[q, p, packed[rows[j], p]]: one byte per unit (a
    separate kernel: without the bit arithmetic its loop runs 2.3× faster, bench.index_design)."""
    m, units = tables.shape[0], tables.shape[1]
    for j in range(rows.size):
        row = packed[rows[j]]
        for q in range(m):
            acc = np.float32(0.0)
            for p in range(units):
                acc += tables[q, p, row[p]]
            out[q, j] += acc * scale[j]


@njit(fastmath=True, cache=True, nogil=True)
def _accumulate_bits(packed, row_bits, unit_bits, tables, rows, scale, out):  # pragma: no cover
    """As ``_accumulate_bytes`` for units at any bit offset (rows of a stream are
    ``row_bits`` apart; a unit spans at most two bytes)."""
    m, units = tables.shape[0], tables.shape[1]
    mask = (1 << unit_bits) - 1
    for j in range(rows.size):
        first = rows[j] * row_bits
        for q in range(m):
            acc = np.float32(0.0)
            bit = first
            for p in range(units):
                byte = bit >> 3
                shift = bit & 7
                word = np.int32(packed[byte])
                if shift + unit_bits > 8:
                    word |= np.int32(packed[byte + 1]) << 8
                acc += tables[q, p, (word >> shift) & mask]
                bit += unit_bits
            out[q, j] += acc * scale[j]
