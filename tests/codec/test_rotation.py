import numpy as np
import pytest
from scipy import stats

from rotaquant.codec import rotation as rot
from rotaquant.codec.rotation import HaarRotation, HadamardRotation, make_rotation

DIMS = [2, 3, 50, 64, 127, 384, 768, 1536]


# a dense Haar rotation at d >= 768 is a d x d QR: seconds each on 2 cores (run by make test)
ROTATIONS = [
    pytest.param(kind, dim, marks=pytest.mark.slow if kind == "haar" and dim >= 768 else ())
    for kind in ("hadamard", "haar")
    for dim in DIMS
]


@pytest.mark.parametrize(("kind", "dim"), ROTATIONS)
def test_orthogonal_and_invertible(kind, dim):
    r = make_rotation(kind, dim, seed=3)
    m = r.matrix.astype(np.float64)
    np.testing.assert_allclose(m @ m.T, np.eye(dim), atol=2e-6)
    x = np.random.default_rng(0).standard_normal((17, dim)).astype(np.float32)
    y = r.forward(x)
    np.testing.assert_allclose(np.linalg.norm(y, axis=1), np.linalg.norm(x, axis=1), rtol=1e-5)
    np.testing.assert_allclose(r.inverse(y), x, atol=1e-5)
    np.testing.assert_allclose(y, x @ r.matrix.T, atol=1e-5)


@pytest.mark.parametrize("dim", [64, 768, 1536])
def test_structured_and_dense_paths_agree(dim):
    r = HadamardRotation(dim, seed=1)
    x = np.random.default_rng(1).standard_normal((9, dim)).astype(np.float32)
    np.testing.assert_allclose(r._structured_forward(x), x @ r.matrix.T, atol=1e-5)
    np.testing.assert_allclose(r._structured_inverse(x), x @ r.matrix, atol=1e-5)


def test_power_of_two_hadamard_has_plus_minus_entries():
    # For d = 2^k each round is a signed, permuted Sylvester–Hadamard matrix.
    r = HadamardRotation(64, seed=0)
    first = r._kron(np.eye(64, dtype=np.float32) * r.signs[0])
    np.testing.assert_allclose(np.abs(first), 1 / 8, atol=1e-6)


def test_seeded_and_reproducible():
    a, b, c = HadamardRotation(128, 5), HadamardRotation(128, 5), HadamardRotation(128, 6)
    np.testing.assert_array_equal(a.matrix, b.matrix)
    assert not np.allclose(a.matrix, c.matrix)
    np.testing.assert_array_equal(HaarRotation(50, 2).matrix, HaarRotation(50, 2).matrix)


def test_rejects_unknown_kind_and_bad_dim():
    with pytest.raises(ValueError, match="unknown rotation"):
        make_rotation("dct", 64)
    with pytest.raises(ValueError, match="dim"):
        make_rotation("hadamard", 1)


def _ks_to_coordinate_law(rotated: np.ndarray) -> float:
    dim = rotated.shape[1]
    a = (dim - 1) / 2
    t = (rotated.reshape(-1).astype(np.float64) + 1) / 2
    return stats.kstest(t, stats.beta(a, a).cdf).statistic


@pytest.mark.parametrize("kind", ["hadamard", "haar"])
def test_real_embeddings_follow_the_coordinate_law(kind, minilm):
    rotated = make_rotation(kind, minilm.shape[1], seed=0).forward(minilm)
    assert _ks_to_coordinate_law(rotated) < 0.02
    np.testing.assert_allclose(np.mean(rotated**2), 1 / minilm.shape[1], rtol=0.02)


@pytest.mark.parametrize("kind", ["hadamard", "haar"])
def test_rotation_evens_out_anisotropic_channels(kind, glove):
    # GloVe's channels carry very different energy; after rotation each channel carries
    # about 1/d of it, as for a random unit vector.
    unit = glove / np.linalg.norm(glove, axis=1, keepdims=True)
    dim = unit.shape[1]
    raw = (unit**2).mean(0) * dim
    rotated = (make_rotation(kind, dim, seed=0).forward(unit) ** 2).mean(0) * dim
    assert raw.max() / raw.min() > 5
    assert rotated.max() / rotated.min() < 3


def test_spike_vector_is_spread_evenly():
    dim = 1536
    spike = np.zeros((1, dim), np.float32)
    spike[0, 7] = 1
    y = HadamardRotation(dim, seed=0).forward(spike)
    assert np.abs(y).max() < 6 / np.sqrt(dim)


def test_dense_threshold_is_respected(monkeypatch):
    r = HadamardRotation(64, seed=0)
    x = np.ones((2, 64), np.float32)
    monkeypatch.setattr(rot, "_DENSE_BELOW", 0)
    np.testing.assert_allclose(r.forward(x), x @ r.matrix.T, atol=1e-5)
