"""Segments: the blocks of rows a VectorIndex stores, and the unit of scan work.

A segment holds rows ``[0, count)`` of a fixed-capacity ``Codes`` (in memory, or
memory-mapped copy-on-write from a saved file) and, optionally, their float16 copies. Rows are
copied, appended and sliced at the bit level, so segments keep the codec's stream layout (no
per-row padding) whatever ``bits · dim`` is.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from ..codec.codes import CodecConfig, Codes
from ..codec.packing import pack, packed_nbytes, read_values, write_values

SEGMENT_ROWS = 1 << 16  # rows per in-memory segment (a multiple of 8)
FIRST_CAPACITY = 64


class Segment:
    """Rows ``[0, count)`` of a fixed-capacity block of codes (+ optional float16 vectors)."""

    def __init__(self, codes: Codes, count: int, vectors: np.ndarray | None, in_memory: bool):
        self.codes = codes
        self.count = count
        self.vectors = vectors
        self.in_memory = in_memory

    @property
    def capacity(self) -> int:
        return self.codes.n

    @property
    def nbytes(self) -> int:
        return self.codes.nbytes + (self.vectors.nbytes if self.vectors is not None else 0)

    @classmethod
    def allocate(cls, config: CodecConfig, capacity: int, keep_vectors: bool) -> Segment:
        norm = np.dtype(config.norm_dtype)
        streams = tuple(
            np.zeros(packed_nbytes(capacity * g.channels, g.bits), np.uint8) for g in config.groups
        )
        prod = config.mode == "prod"
        codes = Codes(
            config,
            capacity,
            streams,
            np.zeros(capacity, norm),
            np.zeros(packed_nbytes(capacity * config.dim, 1), np.uint8) if prod else None,
            np.zeros(capacity, norm) if prod else None,
        )
        vectors = np.zeros((capacity, config.dim), np.float16) if keep_vectors else None
        return cls(codes, 0, vectors, in_memory=True)

    @classmethod
    def from_arrays(cls, config: CodecConfig, arrays: dict[str, np.ndarray]) -> Segment:
        """A memory-mapped segment read back from a file."""
        n = int(arrays["ids"].size)
        streams = tuple(arrays[f"stream{i}"] for i in range(len(config.groups)))
        codes = Codes(
            config,
            n,
            streams,
            arrays["norms"],
            arrays.get("qjl_signs"),
            arrays.get("residual_norms"),
        )
        return cls(codes, n, arrays.get("vectors"), in_memory=False)

    def grown(self, capacity: int) -> Segment:
        bigger = Segment.allocate(self.codes.config, capacity, self.vectors is not None)
        for (_, old, *_), (_, new, *_) in zip(
            self._bit_streams(), bigger._bit_streams(), strict=True
        ):
            new[: old.size] = old
        for (_, old), (_, new) in zip(self._row_arrays(), bigger._row_arrays(), strict=True):
            new[: old.shape[0]] = old
        bigger.count = self.count
        return bigger

    def _bit_streams(self) -> list[tuple[str, np.ndarray, int, int]]:
        """(name, stream, values per row, bits) of every packed stream, groups first."""
        config = self.codes.config
        streams = [
            (f"stream{i}", s, g.channels, g.bits)
            for i, (s, g) in enumerate(zip(self.codes.streams, config.groups, strict=True))
        ]
        if self.codes.qjl_signs is not None:
            streams.append(("qjl_signs", self.codes.qjl_signs, config.dim, 1))
        return streams

    def _row_arrays(self) -> list[tuple[str, np.ndarray]]:
        """(name, array) of every array with one entry per row."""
        arrays = [("norms", self.codes.norms)]
        if self.codes.residual_norms is not None:
            arrays.append(("residual_norms", self.codes.residual_norms))
        if self.vectors is not None:
            arrays.append(("vectors", self.vectors))
        return arrays

    def write_rows(
        self, row: int, codes: Codes, start: int, stop: int, vectors: np.ndarray | None
    ) -> None:
        """Store rows [start, stop) of ``codes`` at rows [row, …) (bytes are copied whole
        when both ends sit on byte boundaries)."""
        src = Segment(codes, codes.n, vectors, in_memory=True)
        count = stop - start
        for (_, dst_stream, per_row, bits), (_, src_stream, *_) in zip(
            self._bit_streams(), src._bit_streams(), strict=True
        ):
            if (start * per_row * bits) % 8 == 0 and (row * per_row * bits) % 8 == 0:
                lo = start * per_row * bits // 8
                hi = packed_nbytes(stop * per_row, bits)
                at = row * per_row * bits // 8
                dst_stream[at : at + hi - lo] = src_stream[lo:hi]
            else:  # bit-level copy (only the few rows that realign a tail take this path)
                values = read_values(src_stream, start * per_row, count * per_row, bits)
                write_values(dst_stream, row * per_row, values, bits)
        for (_, dst), (_, src_arr) in zip(self._row_arrays(), src._row_arrays(), strict=True):
            dst[row : row + count] = src_arr[start:stop]

    def copy_row(self, row: int, source: Segment, source_row: int) -> None:
        for (_, dst, per_row, bits), (_, src, *_) in zip(
            self._bit_streams(), source._bit_streams(), strict=True
        ):
            values = read_values(src, source_row * per_row, per_row, bits)
            write_values(dst, row * per_row, values, bits)
        for (_, dst), (_, src) in zip(self._row_arrays(), source._row_arrays(), strict=True):
            dst[row] = src[source_row]

    def slice_arrays(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows [start, stop) as standalone arrays named as in ``Codes`` (for saving)."""
        out: dict[str, np.ndarray] = {}
        for name, stream, per_row, bits in self._bit_streams():
            if start * per_row * bits % 8 == 0:
                lo = start * per_row * bits // 8
                out[name] = stream[lo : lo + packed_nbytes((stop - start) * per_row, bits)]
            else:
                values = read_values(stream, start * per_row, (stop - start) * per_row, bits)
                out[name] = pack(values, bits)
        for name, arr in self._row_arrays():
            out[name] = arr[start:stop]
        return out

    def gather_groups(self, groups: np.ndarray) -> tuple[Codes, np.ndarray]:
        """Codes of the 8-row groups ``groups`` (sorted) as one compact block, and the segment
        row of each of its rows (rows past ``count`` in a last partial group are excluded
        from ``row_map`` by being beyond any eligible row)."""
        rows = (groups[:, None] * 8 + np.arange(8)).reshape(-1)
        clipped = np.minimum(rows, self.count - 1)
        taken = {
            name: _take_groups(stream, groups, per_row * bits)
            for name, stream, per_row, bits in self._bit_streams()
        }
        codes = self.codes
        gathered = Codes(
            codes.config,
            rows.size,
            tuple(taken[f"stream{i}"] for i in range(len(codes.streams))),
            codes.norms[clipped],
            taken.get("qjl_signs"),
            codes.residual_norms[clipped] if codes.residual_norms is not None else None,
        )
        return gathered, rows


def capacity_for(rows: int) -> int:
    """Segment capacity for ``rows``: a multiple of 64 in [64, SEGMENT_ROWS]."""
    return min(SEGMENT_ROWS, max(FIRST_CAPACITY, -(-rows // 64) * 64))


def _take_groups(stream: np.ndarray, groups: np.ndarray, group_bytes: int) -> np.ndarray:
    """Bytes of 8-row groups (each ``group_bytes`` long) of a stream, zero-padding a short
    last group."""
    full = stream.size // group_bytes
    out = np.zeros((groups.size, group_bytes), np.uint8)
    inside = groups < full
    out[inside] = stream[: full * group_bytes].reshape(full, group_bytes)[groups[inside]]
    if not inside.all():
        tail = stream[full * group_bytes :]
        out[~inside, : tail.size] = tail
    return out.reshape(-1)


class Block(NamedTuple):
    """One unit of scan work: rows [start, stop) of ``codes``; ``columns`` (or all) of them
    are eligible and map to index rows ``rows``."""

    codes: Codes
    start: int
    stop: int
    rows: np.ndarray
    columns: np.ndarray | None = None
