"""1-bit Quantized Johnson–Lindenstrauss (QJL) sketch of a residual.

For a residual ``r`` in R^d and a Gaussian matrix ``S`` (d × d, i.i.d. N(0, 1)), store
``sign(S r)`` (d bits) and ``‖r‖``. For any query ``q``,

    ⟨q, r⟩ ≈ ‖r‖ · √(π/2) / d · ⟨S q, sign(S r)⟩,

which is unbiased because E[⟨s, q⟩ sign(⟨s, r⟩)] = √(2/π) ⟨q, r⟩ / ‖r‖ for s ~ N(0, I), with
variance at most π/(2d) · ‖q‖² ‖r‖² (Zandieh et al., Lemma 4). The codec sketches residuals in
its rotated domain; since S·R is again Gaussian for an orthogonal R, nothing changes.
"""

from __future__ import annotations

import numpy as np

from .packing import pack, unpack


class QJLSketch:
    """Seeded Gaussian projection ``S`` (dim × dim) and the sign-sketch estimator."""

    def __init__(self, dim: int, seed: int = 0):
        self.dim = int(dim)
        rng = np.random.default_rng([int(seed), *b"qjl"])
        self.projection = rng.standard_normal((self.dim, self.dim), dtype=np.float32)
        self.scale = np.float32(np.sqrt(np.pi / 2) / self.dim)

    def project(self, x: np.ndarray) -> np.ndarray:
        """S x for each row: (n, dim) float32 -> (n, dim) float32."""
        return x @ self.projection.T

    def sketch(self, residual: np.ndarray) -> np.ndarray:
        """Packed sign bits of S r: (n, dim) float32 -> uint8 stream of n·dim bits."""
        return pack(self.project(residual) >= 0, 1)

    def signs(self, packed: np.ndarray, rows: int) -> np.ndarray:
        """±1 float32 (rows, dim) from a packed sign stream."""
        bits = unpack(packed, 1, rows * self.dim).reshape(rows, self.dim)
        return bits.astype(np.float32) * 2 - 1

    def estimate(
        self, projected_queries: np.ndarray, packed: np.ndarray, residual_norms: np.ndarray
    ) -> np.ndarray:
        """Estimates of ⟨q_i, r_j⟩: (m, rows) float32 from S·q (m, dim) and rows' sketches."""
        rows = residual_norms.shape[0]
        dots = projected_queries @ self.signs(packed, rows).T
        return dots * (residual_norms.astype(np.float32) * self.scale)
