"""Compiled (numba) kernels that read packed KV codes on the CPU without building a
full-precision copy of the cache.

Each token's row of a stream (8 codes of ``bits`` bits in every ``bits`` bytes, the layout of
``rotaquant.codec.packing``) is decoded into a small buffer that stays in L1, then used at once:

- :func:`scores`: ⟨q, k̂_t⟩ for the few query rows of a decode step;
- :func:`weighted_sum`: Σ_t w_t · v̂_t, the attention output of the cold tokens;
- :func:`decode`: the decoded rows themselves (a chunk at a time, for a matrix product when
  there are many queries).

The kernels work in a stream's own domain (rotated channels, or QJL projections). Row ranges
of every head run as tasks on a thread pool (the kernels release the GIL).

Layouts: ``packed`` (heads, rows·row_bytes) uint8 (one head's rows back to back), ``scales``
(heads, columns) float32 already gathered into output columns, ``tasks`` (k, 4) int64 rows of
(head, first row, stop row, first output column); tasks of one call never write the same
output element unless the output has one slot per task.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .._parallel import pool, workers

_SPLIT_VALUES = 1 << 16  # calls decoding fewer values than this run on the calling thread


def make_tasks(heads: int, ranges, pieces: int) -> np.ndarray:
    """(k, 4) tasks covering row ``ranges`` [(start, stop), ...] of every head, each range cut
    into ``pieces``; output columns follow the ranges back to back."""
    tasks, column = [], 0
    for start, stop in ranges:
        bounds = [start + (stop - start) * i // pieces for i in range(pieces + 1)]
        for head in range(heads):
            for a, b in zip(bounds[:-1], bounds[1:], strict=True):
                if b > a:
                    tasks.append((head, a, b, column + a - start))
        column += stop - start
    return np.asarray(tasks, np.int64).reshape(-1, 4)


def run(kernel, tasks: np.ndarray, channels: int, args: tuple, out: np.ndarray, split_out=False):
    """``kernel(*args, tasks, out)`` over all tasks, split across cores when the work is
    large enough. With ``split_out`` the output has one slot per task and is split with them;
    otherwise tasks write disjoint parts of one output."""
    count = workers()
    total = int((tasks[:, 2] - tasks[:, 1]).sum()) * channels if tasks.size else 0
    if count == 1 or total < _SPLIT_VALUES or len(tasks) == 1:
        kernel(*args, tasks, out)
        return
    parts = min(count, len(tasks))
    bounds = [len(tasks) * i // parts for i in range(parts + 1)]
    futures = [
        pool().submit(kernel, *args, tasks[a:b], out[a:b] if split_out else out)
        for a, b in zip(bounds[:-1], bounds[1:], strict=True)
    ]
    for future in futures:
        future.result()


@njit(fastmath=True, cache=True, nogil=True)
def _decode_row(row, base, bits, centroids, values):  # pragma: no cover - compiled
    """values[:] = centroids of the row starting at byte ``base`` (8 codes per ``bits``
    bytes, read as one little-endian word)."""
    mask = np.uint64((1 << bits) - 1)
    for g in range(values.size // 8):
        word = np.uint64(0)
        for i in range(bits):
            word |= np.uint64(row[base + g * bits + i]) << np.uint64(8 * i)
        for j in range(8):
            values[8 * g + j] = centroids[np.int64((word >> np.uint64(j * bits)) & mask)]


@njit(fastmath=True, cache=True, nogil=True)
def scores(packed, bits, centroids, queries, scales, tasks, out):  # pragma: no cover
    """out[h, q, col] += scale · ⟨queries[h, q], decoded row⟩ for every task's rows."""
    channels = queries.shape[2]
    row_bytes = channels * bits // 8
    values = np.empty(channels, np.float32)
    for k in range(tasks.shape[0]):
        head, first, stop, column = tasks[k, 0], tasks[k, 1], tasks[k, 2], tasks[k, 3]
        row, query = packed[head], queries[head]
        for t in range(first, stop):
            _decode_row(row, t * row_bytes, bits, centroids, values)
            col = column + t - first
            s = scales[head, col]
            for q in range(query.shape[0]):
                acc = np.float32(0.0)
                for c in range(channels):
                    acc += query[q, c] * values[c]
                out[head, q, col] += acc * s


@njit(fastmath=True, cache=True, nogil=True)
def weighted_sum(packed, bits, centroids, weights, scales, tasks, out):  # pragma: no cover
    """out[k, q] += weights[h, q, col] · scale · decoded row, over task k's rows."""
    channels = out.shape[2]
    row_bytes = channels * bits // 8
    values = np.empty(channels, np.float32)
    for k in range(tasks.shape[0]):
        head, first, stop, column = tasks[k, 0], tasks[k, 1], tasks[k, 2], tasks[k, 3]
        row, target = packed[head], out[k]
        for t in range(first, stop):
            _decode_row(row, t * row_bytes, bits, centroids, values)
            col = column + t - first
            s = scales[head, col]
            for q in range(target.shape[0]):
                w = weights[head, q, col] * s
                for c in range(channels):
                    target[q, c] += w * values[c]


@njit(fastmath=True, cache=True, nogil=True)
def decode(packed, bits, centroids, scales, tasks, out):  # pragma: no cover - compiled
    """out[h, col] = scale · decoded row for every task's rows."""
    channels = out.shape[2]
    row_bytes = channels * bits // 8
    values = np.empty(channels, np.float32)
    for k in range(tasks.shape[0]):
        head, first, stop, column = tasks[k, 0], tasks[k, 1], tasks[k, 2], tasks[k, 3]
        row = packed[head]
        for t in range(first, stop):
            _decode_row(row, t * row_bytes, bits, centroids, values)
            col = column + t - first
            s = scales[head, col]
            for c in range(channels):
                out[head, col, c] = values[c] * s
