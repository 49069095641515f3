"""TurboQuantizer: rotate, scalar-quantize against a Lloyd–Max codebook, pack.

Encoding one vector ``x`` (dimension d):

1. ``ν = ‖x‖``, ``u = x / ν`` (a zero vector stays zero);
2. ``y = R u`` with a seeded random rotation ``R``: every coordinate of ``y`` now follows the
   known law of a coordinate of a random unit vector (see ``codebook``);
3. each coordinate is replaced by the index of its nearest Lloyd–Max centroid, with a
   per-channel-group width (fractional widths split the channels into two groups);
4. the indices are bit-packed and ``ν`` is stored (float16 by default). With
   ``norm_correction=True`` the stored scale is ``ν / ‖ĉ‖`` so the decoded vector has exactly
   the original length (measured: more MSE at 1–2 bits, a little less at ≥ 3 bits in small d).

``mode="prod"`` spends one bit per value on a QJL sign sketch of the residual instead (the
paper's TurboQuant_prod): its inner-product estimates are unbiased.

Everything that scores works in the rotated domain: queries are rotated once and the database
is never rotated back.

This is the numpy implementation, for batches of arbitrary vectors (the index, ``Codes``
blobs, the command line): any dimension, one packed stream per channel group across the
whole batch (no per-row padding), ‖x‖ or norm-corrected scales in float16 or float32, Haar or
Hadamard rotations. ``rotaquant.kv.codec.HeadCodec`` is the same codec in torch for attention
heads (rows of whole bytes, outlier channels); both take their codebooks, rotations, bit
layout, channel split and QJL projection from the modules of this package.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .._arrays import check_matrix, from_numpy, to_numpy
from .._deprecation import keyword_only_after
from .._parallel import pool, single_threaded_blas
from .codebook import Codebook, lloyd_max
from .codes import ChannelGroup, CodecConfig, Codes
from .packing import pack, packed_nbytes
from .qjl import QJLSketch
from .rotation import make_rotation

# Rows per work unit: a multiple of 8 (so every group's stream splits on a byte boundary),
# about 1 MiB of float32 so a chunk stays in cache through rotate → quantize → pack.
_CHUNK_FLOATS = 1 << 18
# Decoded block size for scoring: bounded memory however large the database is.
_SCORE_BLOCK_FLOATS = 1 << 22


class QuantizedRows(NamedTuple):
    """Unpacked codes of n vectors (what ``Codes`` holds packed)."""

    codes: tuple[np.ndarray, ...]  # per channel group: (n, channels) uint8
    norms: np.ndarray  # (n,) in the norm dtype: the scale each decoded unit vector gets
    signs: np.ndarray | None  # (n, dim) uint8 0/1 QJL sign bits (prod mode)
    residual_norms: np.ndarray | None  # (n,) in the norm dtype (prod mode)


def _row_ranges(n: int, dim: int, floats: int) -> list[tuple[int, int]]:
    """[start, stop) row ranges of about ``floats`` values each; starts are multiples of 8,
    so every packed stream splits there on a byte boundary."""
    rows = max(8, (floats // dim) // 8 * 8)
    return [(start, min(n, start + rows)) for start in range(0, n, rows)]


class TurboQuantizer:
    """TurboQuant codec for vectors of dimension ``dim``.

    Args:
        dim: vector dimension (≥ 2). Any value: no padding is stored.
        bits: bits per value, 1..8; fractional widths such as 2.5 or 3.5 split the channels in
            two groups (must be a multiple of 1/dim).
        mode: ``"mse"`` (TurboQuant_mse) or ``"prod"`` ((bits − 1)-bit MSE code + 1-bit QJL
            residual sketch; unbiased inner products).
        rotation: ``"hadamard"`` (fast, default) or ``"haar"`` (dense).
        seed: seeds the rotation and the QJL projection.
        norm_dtype: ``"float16"`` (default) or ``"float32"`` storage of per-vector norms.
        norm_correction: store ``‖x‖/‖ĉ‖`` so decoded vectors keep the input's length.
    """

    @keyword_only_after(
        2, ("mode", "rotation", "seed", "norm_dtype", "norm_correction")
    )  # the 0.1 positional order
    def __init__(
        self,
        dim: int,
        bits: float = 4,
        *,
        mode: str = "mse",
        rotation: str = "hadamard",
        seed: int = 0,
        norm_dtype: str = "float16",
        norm_correction: bool = False,
    ):
        self.config = CodecConfig(
            dim=dim,
            bits=bits,
            mode=mode,
            rotation=rotation,
            seed=seed,
            norm_dtype=norm_dtype,
            norm_correction=bool(norm_correction),
        )
        self.rotation = make_rotation(rotation, dim, seed)
        self.codebooks: tuple[tuple[ChannelGroup, Codebook], ...] = tuple(
            (group, lloyd_max(dim, group.bits)) for group in self.config.groups
        )
        self.qjl = QJLSketch(dim, seed) if mode == "prod" else None
        self._norm_dtype = np.dtype(norm_dtype)
        # Channels coded with 0 bits (prod mode below 2 bits) decode to 0.
        self._coded_channels = sum(group.channels for group, _ in self.codebooks)

    @classmethod
    def from_config(cls, config: CodecConfig) -> TurboQuantizer:
        """The quantizer that made codes with this configuration (e.g. ``codes.config``)."""
        return cls(
            config.dim,
            config.bits,
            mode=config.mode,
            rotation=config.rotation,
            seed=config.seed,
            norm_dtype=config.norm_dtype,
            norm_correction=config.norm_correction,
        )

    def __repr__(self) -> str:
        c = self.config
        return (
            f"TurboQuantizer(dim={c.dim}, bits={c.bits}, mode={c.mode!r}, "
            f"rotation={c.rotation!r}, seed={c.seed})"
        )

    @property
    def dim(self) -> int:
        return self.config.dim

    @property
    def bits(self) -> float:
        return self.config.bits

    @property
    def mse_optimum(self) -> float:
        """Expected ‖u − û‖² of a unit vector under the Lloyd–Max codebooks (the theory)."""
        # Channels coded with 0 bits decode to 0: they lose all their energy.
        kept = sum(book.mse * group.channels for group, book in self.codebooks)
        return (kept + self.dim - self._coded_channels) / self.dim

    # ------------------------------------------------------------------ encode
    def encode(self, x: Any) -> Codes:
        """Compress ``x`` (n, dim) float16/32/64 numpy array or torch tensor into ``Codes``."""
        arr, origin = to_numpy(x, "encode")
        check_matrix(arr, self.dim, "encode", finite=False)  # checked per chunk, for free
        n = arr.shape[0]
        streams = tuple(
            np.empty(packed_nbytes(n * g.channels, g.bits), np.uint8) for g, _ in self.codebooks
        )
        signs = np.empty(packed_nbytes(n * self.dim, 1), np.uint8) if self.qjl else None
        norms = np.empty(n, self._norm_dtype)
        residual_norms = np.empty(n, self._norm_dtype) if self.qjl else None

        def work(start: int, stop: int) -> None:
            rows = self._quantize_rows(arr[start:stop])
            for (group, _), stream, codes in zip(self.codebooks, streams, rows.codes, strict=True):
                lo, hi = (packed_nbytes(i * group.channels, group.bits) for i in (start, stop))
                stream[lo:hi] = pack(codes, group.bits)
            norms[start:stop] = rows.norms
            if signs is not None:
                lo, hi = (packed_nbytes(i * self.dim, 1) for i in (start, stop))
                signs[lo:hi] = pack(rows.signs, 1)
                residual_norms[start:stop] = rows.residual_norms

        self._map_chunks(n, work)
        return Codes(self.config, n, streams, norms, signs, residual_norms, origin=origin)

    def quantize(self, x: Any) -> QuantizedRows:
        """The codes of ``x`` (n, dim) unpacked: what ``encode`` packs into ``Codes`` (and the
        index lays out in blocks). Same input checks as ``encode``."""
        arr, _ = to_numpy(x, "encode")
        check_matrix(arr, self.dim, "encode", finite=False)
        n = arr.shape[0]
        out = QuantizedRows(
            tuple(np.empty((n, g.channels), np.uint8) for g, _ in self.codebooks),
            np.empty(n, self._norm_dtype),
            np.empty((n, self.dim), np.uint8) if self.qjl else None,
            np.empty(n, self._norm_dtype) if self.qjl else None,
        )

        def work(start: int, stop: int) -> None:
            rows = self._quantize_rows(arr[start:stop])
            for target, codes in zip(out.codes, rows.codes, strict=True):
                target[start:stop] = codes
            out.norms[start:stop] = rows.norms
            if out.signs is not None:
                out.signs[start:stop] = rows.signs
                out.residual_norms[start:stop] = rows.residual_norms

        self._map_chunks(n, work)
        return out

    def _quantize_rows(self, block: np.ndarray) -> QuantizedRows:
        """Codes of a chunk of rows (float32, (rows, dim)); raises on NaN/inf or overflow."""
        lengths = np.sqrt(np.einsum("ij,ij->i", block, block))
        if not np.isfinite(lengths).all():  # NaN/inf in the input, or a norm beyond float32
            check_matrix(block, self.dim, "encode")
            raise ValueError("encode: a vector norm overflows float32; rescale the input")
        inv = np.divide(1.0, lengths, out=np.zeros_like(lengths), where=lengths > 0)
        rotated = self.rotation.forward(block * inv[:, None])
        reconstruction = np.zeros_like(rotated) if self._needs_reconstruction else None
        codes = []
        for group, book in self.codebooks:
            group_codes = book.quantize(np.ascontiguousarray(rotated[:, group.start : group.stop]))
            codes.append(group_codes)
            if reconstruction is not None:
                reconstruction[:, group.start : group.stop] = book.centroids[group_codes]
        scale = lengths
        if self.config.norm_correction:
            decoded_length = np.sqrt(np.einsum("ij,ij->i", reconstruction, reconstruction))
            scale = np.divide(
                lengths, decoded_length, out=np.zeros_like(lengths), where=decoded_length > 0
            )
        with np.errstate(over="ignore"):
            norms = scale.astype(self._norm_dtype)
        signs = residual_norms = None
        if self.qjl is not None:
            kept = norms.astype(np.float32)[:, None]
            residual = rotated * lengths[:, None] - reconstruction * kept
            signs = (self.qjl.project(residual) >= 0).view(np.uint8)
            with np.errstate(over="ignore"):
                residual_norms = np.sqrt(np.einsum("ij,ij->i", residual, residual)).astype(
                    self._norm_dtype
                )
        stored = (norms,) if residual_norms is None else (norms, residual_norms)
        if not all(np.isfinite(np.max(np.abs(a), initial=0)) for a in stored):
            raise ValueError(
                f"encode: a vector norm overflows {self.config.norm_dtype}; "
                "use norm_dtype='float32'"
            )
        return QuantizedRows(tuple(codes), norms, signs, residual_norms)

    @property
    def _needs_reconstruction(self) -> bool:
        return self.config.norm_correction or self.qjl is not None

    # ------------------------------------------------------------------ decode
    def decode(self, codes: Codes) -> Any:
        """Reconstruct (n, dim) float32 vectors, in the library (and device) ``encode`` saw.

        Only the MSE part decodes; QJL bits serve inner products only.
        """
        self._check_codes(codes)
        out = np.empty((codes.n, self.dim), np.float32)

        def work(start: int, stop: int) -> None:
            out[start:stop] = self.rotation.inverse(self.decode_rotated(codes, start, stop))

        self._map_chunks(codes.n, work)
        return from_numpy(out, codes.origin)

    def decode_rotated(self, codes: Codes, start: int, stop: int) -> np.ndarray:
        """Rows [start, stop) (start a multiple of 8) in the rotated domain, norms applied:
        (stop − start, dim) float32. Inner products with rotated queries equal ⟨q, x̂⟩."""
        rows = stop - start
        fill = np.empty if self._coded_channels == self.dim else np.zeros
        out = fill((rows, self.dim), np.float32)
        for (group, book), stream in zip(self.codebooks, codes.streams, strict=True):
            lo = packed_nbytes(start * group.channels, group.bits)
            hi = packed_nbytes(stop * group.channels, group.bits)
            values = book.dequantize_packed(stream[lo:hi], rows * group.channels)
            out[:, group.start : group.stop] = values.reshape(rows, group.channels)
        out *= codes.norms[start:stop, None].astype(np.float32)
        return out

    # ------------------------------------------------------------------ scoring
    def inner_product(self, queries: Any, codes: Codes) -> Any:
        """Estimates of ⟨q_i, x_j⟩: (m, n) float32 for queries (m, dim) against ``codes``.

        Works in the rotated domain (queries are rotated once), decoding the database a block
        at a time, so memory stays bounded apart from the (m, n) result. Unbiased in prod mode;
        in mse mode the estimate is ⟨q, x̂⟩.
        """
        arr, origin = to_numpy(queries, "queries")
        check_matrix(arr, self.dim, "queries")
        self._check_codes(codes)
        rotated = self.rotation.forward(arr)
        projected = self.qjl.project(rotated) if self.qjl is not None else None
        scores = np.empty((arr.shape[0], codes.n), np.float32)
        for start, stop in self.score_blocks(codes.n):
            scores[:, start:stop] = self.score_block(rotated, projected, codes, start, stop)
        return from_numpy(scores, origin)

    def score_blocks(self, n: int) -> list[tuple[int, int]]:
        """Row ranges of a database of ``n`` codes, sized to decode in bounded memory."""
        return _row_ranges(n, self.dim, _SCORE_BLOCK_FLOATS)

    def score_block(
        self,
        rotated_queries: np.ndarray,
        projected_queries: np.ndarray | None,
        codes: Codes,
        start: int,
        stop: int,
    ) -> np.ndarray:
        """(m, stop − start) scores of rotated queries against database rows [start, stop)."""
        scores = rotated_queries @ self.decode_rotated(codes, start, stop).T
        if self.qjl is not None:
            scores += self.qjl_correction(projected_queries, codes, start, stop)
        return scores

    def qjl_correction(
        self, projected_queries: np.ndarray, codes: Codes, start: int, stop: int
    ) -> np.ndarray:
        """prod mode: the QJL residual term of rows [start, stop), (m, stop − start) float32."""
        lo, hi = (packed_nbytes(i * self.dim, 1) for i in (start, stop))
        return self.qjl.estimate(
            projected_queries, codes.qjl_signs[lo:hi], codes.residual_norms[start:stop]
        )

    # ------------------------------------------------------------------ helpers
    def _check_codes(self, codes: Codes) -> None:
        if not isinstance(codes, Codes):
            raise ValueError(f"expected rotaquant.Codes, got {type(codes).__name__}")
        if codes.config != self.config:
            raise ValueError(
                f"codes were made by a different quantizer ({codes.config}); this one is "
                f"{self.config}"
            )

    def _map_chunks(self, n: int, fn) -> None:
        """Run fn(start, stop) over row chunks on a thread pool (numpy drops the GIL).

        BLAS is held to one thread meanwhile: the pool already fills the cores, and nested
        BLAS threads on small chunks halved rotation throughput at d=1536 in a development
        micro-benchmark (end-to-end speeds: ``python -m bench.codec``).
        """
        bounds = _row_ranges(n, self.dim, _CHUNK_FLOATS)
        if len(bounds) <= 1:
            for start, stop in bounds:
                fn(start, stop)
            return
        with single_threaded_blas():
            for _ in pool().map(lambda b: fn(*b), bounds):
                pass
