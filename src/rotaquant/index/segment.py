"""Segments: the blocks of rows a VectorIndex stores, in the native scan's layout.

A segment holds rows ``[0, count)`` of a fixed capacity (a multiple of 64 in memory; loaded
segments hold exactly their blocks). Per codec stream (each channel group, then the QJL signs
in prod mode) one uint8 array in the *block layout* of the native core (``csrc/layout.h``):
blocks of 32 rows, each block cutting the channels into groups of four and storing, group
after group, the 32 rows' codes as one little-endian bit stream — exactly ``bits`` bits per
value, no per-row padding; rows past ``count`` in the last block are zero. Beside them, per
row: the norm-correcting scale (float16 or float32), the QJL residual norm (prod mode),
−‖x̂‖² (float32 ``l2_shift``, for ``metric="l2"``: added to 2⟨q, x̂⟩ it ranks by distance), and
the float16 copy (``keep_vectors``).

Worked example (asserted by tests/index/test_segment.py): dim 5 at 4 bits is two groups,
channels 0-3 (64 bytes per block: row r's four codes in bytes 2r, 2r+1, low nibble first) and
channel 4 (16 bytes: rows 2i and 2i+1 share byte i); a block takes 80 bytes = 32 × 5 × 4 bits.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .. import _core
from ..codec.codes import CodecConfig
from ..codec.quantizer import QuantizedRows, TurboQuantizer

BLOCK_ROWS = 32
SEGMENT_ROWS = 1 << 16  # rows per in-memory segment (a multiple of 64)
FIRST_CAPACITY = 64


class StreamSpec(NamedTuple):
    """One stream of the layout: ``channels`` codes of ``bits`` bits per row."""

    name: str
    channels: int
    bits: int

    @property
    def block_bytes(self) -> int:
        return 4 * self.channels * self.bits

    def nbytes(self, rows: int) -> int:
        """Bytes of a stream holding ``rows`` rows (whole blocks)."""
        return -(-rows // BLOCK_ROWS) * self.block_bytes


def stream_specs(config: CodecConfig) -> tuple[StreamSpec, ...]:
    """The streams of a codec configuration, in order: groups, then QJL signs."""
    specs = [StreamSpec(f"stream{i}", g.channels, g.bits) for i, g in enumerate(config.groups)]
    if config.mode == "prod":
        specs.append(StreamSpec("qjl_signs", config.dim, 1))
    return tuple(specs)


def check_sections(
    arrays: dict[str, np.ndarray],
    number: int,
    config: CodecConfig,
    keep_vectors: bool,
    keep_l2_shift: bool,
) -> None:
    """Refuse (ValueError naming it and why it belongs) a section missing from file segment
    ``number`` that an index of these options stores."""
    streams = [spec.name for spec in stream_specs(config) if spec.name != "qjl_signs"]
    why = dict.fromkeys(["ids", "norms"], "every segment stores one")
    why.update(dict.fromkeys(streams, f"this codec's codes are stored in {', '.join(streams)}"))
    if config.mode == "prod":
        why.update(dict.fromkeys(["qjl_signs", "residual_norms"], "mode='prod' files store one"))
    if keep_l2_shift:
        why["l2_shift"] = "metric='l2' files store one"
    if keep_vectors:
        why["vectors"] = "keep_vectors=True files store one"
    for name, reason in why.items():
        if name not in arrays:
            raise ValueError(f"segment {number} has no {name!r} section ({reason})")


class Rows(NamedTuple):
    """Unpacked rows to store: codes per stream (n, channels) uint8 and the per-row arrays."""

    codes: tuple[np.ndarray, ...]
    norms: np.ndarray
    residual_norms: np.ndarray | None
    l2_shift: np.ndarray | None  # (n,) float32 −‖x̂‖², l2 indexes
    vectors: np.ndarray | None  # (n, dim) float16

    @property
    def n(self) -> int:
        return self.norms.shape[0]


def encode_rows(
    quantizer: TurboQuantizer,
    x: np.ndarray,
    l2: bool,
    vectors: np.ndarray | None,
    centroids: np.ndarray | None = None,
    assigned: np.ndarray | None = None,
) -> Rows:
    """What a segment stores for vectors ``x`` (n, dim) float32: the codes of ``x``, or of its
    residual ``x − centroids[assigned]`` (an IVF list's rows), and ``vectors`` (the float16
    copy, or None). See ``quantized_rows``."""
    base = None if centroids is None else centroids[assigned]
    quantized = quantizer.quantize(x if base is None else x - base)
    return quantized_rows(quantizer, quantized, l2, vectors, base)


def quantized_rows(
    quantizer: TurboQuantizer,
    quantized: QuantizedRows,
    l2: bool,
    vectors: np.ndarray | None,
    base: np.ndarray | None = None,
) -> Rows:
    """Rows of quantized vectors (of residuals to ``base`` (n, dim), if given): the codes of
    every stream (QJL signs last), the scales and, for l2, −‖x̂‖² with x̂ the decoded vector
    (``base`` included)."""
    codes = quantized.codes + ((quantized.signs,) if quantized.signs is not None else ())
    shift = None
    if l2:  # −‖x̂‖² = −(‖c‖² + 2⟨c, r̂⟩ + ‖r̂‖²), r̂ = scale · levels in the rotated domain
        scale = quantized.norms.astype(np.float64)
        rotated_base = None if base is None else quantizer.rotation.forward(base)
        squares = np.zeros(scale.size)
        cross = np.zeros(scale.size)
        for (group, book), c in zip(quantizer.codebooks, quantized.codes, strict=True):
            levels = book.centroids[c]
            squares += np.square(levels).sum(axis=1)
            if rotated_base is not None:
                cross += (levels * rotated_base[:, group.start : group.stop]).sum(axis=1)
        norm2 = scale * scale * squares + 2 * scale * cross
        if base is not None:
            norm2 += np.square(base).sum(axis=1)
        shift = (-norm2).astype(np.float32)
    return Rows(codes, quantized.norms, quantized.residual_norms, shift, vectors)


class Segment:
    """Rows ``[0, count)`` of a fixed-capacity block of codes (+ per-row arrays)."""

    def __init__(
        self,
        config: CodecConfig,
        streams: tuple[np.ndarray, ...],
        rows: dict[str, np.ndarray],
        count: int,
        in_memory: bool,
    ):
        self.config = config
        self.specs = stream_specs(config)
        self.streams = streams
        self.rows = rows  # "norms", optional "residual_norms", "l2_shift", "vectors"
        self.count = count
        self.in_memory = in_memory

    @property
    def capacity(self) -> int:
        return self.rows["norms"].shape[0]

    @property
    def norms(self) -> np.ndarray:
        return self.rows["norms"]

    @property
    def vectors(self) -> np.ndarray | None:
        return self.rows.get("vectors")

    @property
    def nbytes(self) -> int:
        held = sum(s.nbytes for s in self.streams)
        return int(held + sum(a.nbytes for a in self.rows.values()))

    @classmethod
    def allocate(
        cls, config: CodecConfig, capacity: int, keep_vectors: bool, keep_l2_shift: bool
    ) -> Segment:
        norm = np.dtype(config.norm_dtype)
        streams = tuple(np.zeros(s.nbytes(capacity), np.uint8) for s in stream_specs(config))
        rows = {"norms": np.zeros(capacity, norm)}
        if config.mode == "prod":
            rows["residual_norms"] = np.zeros(capacity, norm)
        if keep_l2_shift:
            rows["l2_shift"] = np.zeros(capacity, np.float32)
        if keep_vectors:
            rows["vectors"] = np.zeros((capacity, config.dim), np.float16)
        return cls(config, streams, rows, 0, in_memory=True)

    @classmethod
    def from_arrays(
        cls,
        config: CodecConfig,
        arrays: dict[str, np.ndarray],
        keep_vectors: bool,
        keep_l2_shift: bool,
        number: int = 0,
    ) -> Segment:
        """Segment ``number`` of a file (memory-mapped arrays); sections and sizes checked."""
        check_sections(arrays, number, config, keep_vectors, keep_l2_shift)
        where = f"segment {number} section"
        ids = arrays["ids"]
        if ids.dtype != np.int64 or ids.ndim != 1:
            raise ValueError(
                f"{where} 'ids' should be int64 of shape (n,), got {ids.dtype} of shape {ids.shape}"
            )
        count = int(ids.shape[0])
        streams = []
        for spec in stream_specs(config):
            stream = arrays[spec.name]
            if stream.dtype != np.uint8 or stream.shape != (spec.nbytes(count),):
                raise ValueError(
                    f"{where} {spec.name!r} should hold {spec.nbytes(count)} bytes for {count} "
                    f"rows, got {stream.dtype} of shape {stream.shape}"
                )
            streams.append(stream)
        expected = {"norms": (np.dtype(config.norm_dtype), (count,))}
        if config.mode == "prod":
            expected["residual_norms"] = expected["norms"]
        if keep_l2_shift:
            expected["l2_shift"] = (np.dtype(np.float32), (count,))
        if keep_vectors:
            expected["vectors"] = (np.dtype(np.float16), (count, config.dim))
        unexpected = set(arrays) - {"ids", *(spec.name for spec in stream_specs(config)), *expected}
        if unexpected:  # e.g. a keep_vectors or metric flag that disagrees with the arrays
            raise ValueError(
                f"segment {number} sections {sorted(unexpected)} do not belong to this index's "
                "layout"
            )
        rows = {}
        for name, (dtype, shape) in expected.items():
            arr = arrays[name]
            if arr.dtype != dtype or arr.shape != shape:
                raise ValueError(
                    f"{where} {name!r} should be {dtype} of shape {shape}, got {arr.dtype} of "
                    f"shape {arr.shape}"
                )
            rows[name] = arr
        return cls(config, tuple(streams), rows, count, in_memory=False)

    def grown(self, capacity: int) -> Segment:
        bigger = Segment.allocate(
            self.config, capacity, "vectors" in self.rows, "l2_shift" in self.rows
        )
        for old, new in zip(self.streams, bigger.streams, strict=True):
            new[: old.size] = old
        for name, arr in self.rows.items():
            bigger.rows[name][: arr.shape[0]] = arr
        bigger.count = self.count
        return bigger

    # ------------------------------------------------------------------ rows
    def write(self, row: int, rows: Rows, start: int, stop: int) -> None:
        """Store rows [start, stop) of ``rows`` at rows [row, row + stop − start)."""
        for spec, stream, codes in zip(self.specs, self.streams, rows.codes, strict=True):
            _core.pack_blocks(np.ascontiguousarray(codes[start:stop]), spec.bits, stream, row)
        end = row + stop - start
        self.rows["norms"][row:end] = rows.norms[start:stop]
        for name, source in (
            ("residual_norms", rows.residual_norms),
            ("l2_shift", rows.l2_shift),
            ("vectors", rows.vectors),
        ):
            if name in self.rows:
                self.rows[name][row:end] = source[start:stop]

    def copy_row(self, row: int, source: Segment, source_row: int) -> None:
        for spec, dst, src in zip(self.specs, self.streams, source.streams, strict=True):
            _core.copy_row(dst, row, src, source_row, spec.channels, spec.bits)
        for name, arr in self.rows.items():
            arr[row] = source.rows[name][source_row]

    def clear(self, start: int, stop: int) -> None:
        """Zero the codes of rows [start, stop) (rows past ``count`` stay zero)."""
        for spec, stream in zip(self.specs, self.streams, strict=True):
            zeros = np.zeros((stop - start, spec.channels), np.uint8)
            _core.pack_blocks(zeros, spec.bits, stream, start)

    def codes(self, rows: np.ndarray) -> tuple[np.ndarray, ...]:
        """Codes of segment ``rows`` (int64 (k,)): per stream (k, channels) uint8."""
        rows = np.ascontiguousarray(rows, np.int64)
        return tuple(
            _core.unpack_blocks(stream, spec.channels, spec.bits, rows)
            for spec, stream in zip(self.specs, self.streams, strict=True)
        )

    def slice_arrays(self, start: int, stop: int) -> dict[str, np.ndarray]:
        """Rows [start, stop) as file arrays (their own blocks from row 0). Whole blocks are
        byte slices when ``start`` is a multiple of 32; otherwise the rows are repacked."""
        out: dict[str, np.ndarray] = {}
        count = stop - start
        if start % BLOCK_ROWS == 0:
            first = start // BLOCK_ROWS
            for spec, stream in zip(self.specs, self.streams, strict=True):
                lo = first * spec.block_bytes
                out[spec.name] = stream[lo : lo + spec.nbytes(count)]
        else:
            codes = self.codes(np.arange(start, stop))
            for spec, spec_codes in zip(self.specs, codes, strict=True):
                stream = np.zeros(spec.nbytes(count), np.uint8)
                _core.pack_blocks(spec_codes, spec.bits, stream, 0)
                out[spec.name] = stream
        for name, arr in self.rows.items():
            out[name] = arr[start:stop]
        return out

    def scan_view(self, first_row: int, allow: np.ndarray | None) -> tuple:
        """The segment as the native scan takes it (``allow``: uint64 bitmap or None)."""
        return (
            self.count,
            first_row,
            list(self.streams),
            self.rows["norms"],
            self.rows.get("residual_norms"),
            self.rows.get("l2_shift"),
            allow,
        )


def capacity_for(rows: int) -> int:
    """Segment capacity for ``rows``: a multiple of 64 in [64, SEGMENT_ROWS]."""
    return min(SEGMENT_ROWS, max(FIRST_CAPACITY, -(-rows // 64) * 64))
