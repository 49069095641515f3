"""Seeded random rotations of R^d for any d, applied to row batches.

* ``"hadamard"`` (default): a randomized Hadamard transform that works at any dimension
  without padding. Write ``d = a·b`` with ``a``, ``b`` as close to √d as the factors of ``d``
  allow; the transform is two rounds of "flip signs at random, then multiply by
  ``F_a ⊗ F_b``", where ``F_n`` is the normalized Sylvester–Hadamard matrix when ``n`` is a power
  of two and a seeded Haar-random orthogonal matrix otherwise. For d = 2^k one round is exactly
  the classic ``H·D``; the second round makes real, anisotropic vectors look like random ones.
  Cost O(d·(a+b)) per vector instead of O(d²).
* ``"haar"``: a dense Haar-random orthogonal matrix (QR of a Gaussian matrix), O(d²).

Both are orthogonal, so ``inverse(forward(x)) == x`` and norms and inner products are kept.
Outputs are in an internal coordinate order; only the codec ever looks at them.
"""

from __future__ import annotations

import numpy as np

ROTATIONS = ("hadamard", "haar")
# Below this dimension one dense GEMM with the materialized matrix beats the structured
# factors (small GEMMs do not reach BLAS speed); measured in bench/codec.py.
_DENSE_BELOW = 512


def _rng(seed: int, stream: str) -> np.random.Generator:
    return np.random.default_rng([int(seed), *stream.encode()])


def haar_orthogonal(n: int, rng: np.random.Generator) -> np.ndarray:
    """(n, n) float64 orthogonal matrix drawn from the Haar measure."""
    q, r = np.linalg.qr(rng.standard_normal((n, n)))
    return q * np.sign(np.diag(r))


def sylvester_hadamard(n: int) -> np.ndarray:
    """(n, n) float64 Hadamard matrix scaled to be orthogonal; n a power of two."""
    h = np.ones((1, 1))
    while h.shape[0] < n:
        h = np.block([[h, h], [h, -h]])
    return h / np.sqrt(n)


def _balanced_factors(dim: int) -> tuple[int, int]:
    a = int(np.sqrt(dim))
    while dim % a:
        a -= 1
    return a, dim // a


class Rotation:
    """An orthogonal map of R^dim. ``forward``/``inverse`` take (n, dim) float32 arrays."""

    kind: str

    def __init__(self, dim: int, seed: int):
        if not isinstance(dim, (int, np.integer)) or dim < 2:
            raise ValueError(f"dim must be an integer >= 2, got {dim!r}")
        self.dim = int(dim)
        self.seed = int(seed)
        self._matrix: np.ndarray | None = None

    @property
    def matrix(self) -> np.ndarray:
        """(dim, dim) float32 matrix R with forward(x) = x @ R.T."""
        if self._matrix is None:
            eye = np.eye(self.dim, dtype=np.float32)
            self._matrix = np.ascontiguousarray(self._structured_forward(eye).T)
        return self._matrix

    def forward(self, x: np.ndarray) -> np.ndarray:
        if self.dim < _DENSE_BELOW:
            return x @ self.matrix.T
        return self._structured_forward(x)

    def inverse(self, y: np.ndarray) -> np.ndarray:
        if self.dim < _DENSE_BELOW:
            return y @ self.matrix
        return self._structured_inverse(y)

    def native_form(self) -> tuple:
        """``forward`` as the native core's query map takes it: ``("dense", R^T)`` (dim, dim)
        float32 with forward(x) = x @ R^T, or ``("factored", signs, F_a^T, F_b^T)``."""
        return ("dense", np.ascontiguousarray(self.matrix.T))

    def _structured_forward(self, x: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def _structured_inverse(self, y: np.ndarray) -> np.ndarray:
        raise NotImplementedError


HAAR_MAX_DIM = 8192  # a dense d×d float32 matrix: 256 MiB here; "hadamard" has no such cost


class HaarRotation(Rotation):
    kind = "haar"

    def __init__(self, dim: int, seed: int = 0):
        super().__init__(dim, seed)
        if self.dim > HAAR_MAX_DIM:
            raise ValueError(
                f"rotation='haar' stores a dense dim x dim matrix; dim {self.dim} is above "
                f"{HAAR_MAX_DIM}: use rotation='hadamard'"
            )
        self._matrix = haar_orthogonal(self.dim, _rng(seed, "haar")).astype(np.float32)

    def forward(self, x: np.ndarray) -> np.ndarray:
        return x @ self.matrix.T

    def inverse(self, y: np.ndarray) -> np.ndarray:
        return y @ self.matrix


class HadamardRotation(Rotation):
    kind = "hadamard"
    rounds = 2

    def __init__(self, dim: int, seed: int = 0):
        super().__init__(dim, seed)
        rng = _rng(seed, "hadamard")
        self.shape = _balanced_factors(self.dim)
        self.factors = tuple(
            (sylvester_hadamard(n) if n & (n - 1) == 0 else haar_orthogonal(n, rng)).astype(
                np.float32
            )
            for n in self.shape
        )
        self.signs = rng.choice(np.array([-1.0, 1.0], np.float32), size=(self.rounds, self.dim))

    def native_form(self) -> tuple:
        if self.dim < _DENSE_BELOW:
            return super().native_form()
        fa, fb = self.factors
        return (
            "factored",
            np.ascontiguousarray(self.signs, np.float32),
            np.ascontiguousarray(fa.T),
            np.ascontiguousarray(fb.T),
        )

    def _kron(self, x: np.ndarray) -> np.ndarray:
        """x @ (F_a ⊗ F_b).T, written out in (b, a) order."""
        (a, b), (fa, fb) = self.shape, self.factors
        n = x.shape[0]
        y = x.reshape(n * a, b) @ fb.T
        y = np.ascontiguousarray(y.reshape(n, a, b).transpose(0, 2, 1)).reshape(n * b, a)
        return (y @ fa.T).reshape(n, self.dim)

    def _kron_inverse(self, y: np.ndarray) -> np.ndarray:
        (a, b), (fa, fb) = self.shape, self.factors
        n = y.shape[0]
        x = y.reshape(n * b, a) @ fa
        x = np.ascontiguousarray(x.reshape(n, b, a).transpose(0, 2, 1)).reshape(n * a, b)
        return (x @ fb).reshape(n, self.dim)

    def _structured_forward(self, x: np.ndarray) -> np.ndarray:
        for signs in self.signs:
            x = self._kron(x * signs)
        return x

    def _structured_inverse(self, y: np.ndarray) -> np.ndarray:
        for signs in self.signs[::-1]:
            y = self._kron_inverse(y) * signs
        return y


def make_rotation(kind: str, dim: int, seed: int = 0) -> Rotation:
    """Build a rotation by name (see ``ROTATIONS``)."""
    if kind == "hadamard":
        return HadamardRotation(dim, seed)
    if kind == "haar":
        return HaarRotation(dim, seed)
    raise ValueError(f"unknown rotation {kind!r}; choose one of {ROTATIONS}")
