import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import integrate

from rotaquant.codec.codebook import coordinate_pdf, lloyd_max

# Lloyd–Max for N(0, 1): centroids and MSE (Max 1960; the paper's Table/DESIGN.md §3).
GAUSSIAN_CENTROIDS = {
    1: [0.7979],
    2: [0.4528, 1.5104],
    3: [0.2451, 0.7560, 1.3440, 2.1519],
}
GAUSSIAN_MSE = {1: 0.3634, 2: 0.1175, 3: 0.03454, 4: 0.009497}


@pytest.mark.parametrize("bits", [1, 2, 3])
def test_large_dim_matches_gaussian_lloyd_max(bits):
    dim = 100_000
    book = lloyd_max(dim, bits)
    positive = book.centroids[book.centroids > 0] * np.sqrt(dim)
    np.testing.assert_allclose(positive, GAUSSIAN_CENTROIDS[bits], atol=2e-4)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_large_dim_mse_matches_gaussian(bits):
    assert lloyd_max(100_000, bits).mse == pytest.approx(GAUSSIAN_MSE[bits], rel=2e-3)


@pytest.mark.parametrize("dim", [4, 16, 64, 128, 768, 1536])
@pytest.mark.parametrize("bits", range(1, 9))
def test_mse_between_paper_bounds(dim, bits):
    mse = lloyd_max(dim, bits).mse
    assert 4.0**-bits <= mse <= np.sqrt(3) * np.pi / 2 * 4.0**-bits


@pytest.mark.parametrize("bits", range(1, 9))
def test_dim3_law_is_uniform_so_optimum_is_uniform_quantizer(bits):
    # At d = 3 a rotated coordinate is uniform on [-1, 1]: Lloyd–Max is the uniform
    # quantizer, with total error 3 · (2/L)²/12 = 4^-b exactly.
    book = lloyd_max(3, bits)
    levels = 1 << bits
    np.testing.assert_allclose(book.centroids, -1 + (2 * np.arange(levels) + 1) / levels, atol=1e-6)
    assert book.mse == pytest.approx(4.0**-bits, rel=1e-6)


@pytest.mark.parametrize("dim", [2, 5, 50, 1536])
def test_density_is_normalized_with_variance_one_over_dim(dim):
    mass = integrate.quad(coordinate_pdf, -1, 1, args=(dim,), limit=200)[0]
    second = integrate.quad(lambda t: t * t * coordinate_pdf(t, dim), -1, 1, limit=200)[0]
    assert mass == pytest.approx(1, abs=1e-6)
    assert second == pytest.approx(1 / dim, rel=1e-5)


@pytest.mark.parametrize(("dim", "bits"), [(50, 3), (8, 2), (768, 4)])
def test_lloyd_max_conditions_hold(dim, bits):
    book = lloyd_max(dim, bits)
    c = book.centroids.astype(np.float64)
    np.testing.assert_allclose(book.boundaries, (c[1:] + c[:-1]) / 2, rtol=1e-6, atol=1e-9)
    np.testing.assert_array_equal(book.centroids, -book.centroids[::-1])
    edges = np.concatenate(([-1.0], book.boundaries, [1.0]))
    for i in range(c.size):
        lo, hi = edges[i], edges[i + 1]
        mass = integrate.quad(coordinate_pdf, lo, hi, args=(dim,))[0]
        moment = integrate.quad(lambda t: t * coordinate_pdf(t, dim), lo, hi)[0]
        assert moment / mass == pytest.approx(c[i], rel=1e-5, abs=1e-7)
    # and the reported MSE is the integral it claims to be
    err = sum(
        integrate.quad(lambda t, ci=ci: (t - ci) ** 2 * coordinate_pdf(t, dim), lo, hi)[0]
        for ci, lo, hi in zip(c, edges[:-1], edges[1:], strict=True)
    )
    assert book.mse == pytest.approx(dim * err, rel=1e-5)


def test_small_dim_codebook_beats_gaussian_codebook_on_real_sphere():
    # At d = 6 the exact law differs from N(0, 1/d): the exact codebook is measurably better
    # on genuine random unit vectors than the Gaussian codebook scaled by 1/sqrt(d).
    dim, bits = 6, 3
    rng = np.random.default_rng(0)
    u = rng.standard_normal((200_000, dim))
    u /= np.linalg.norm(u, axis=1, keepdims=True)
    exact = lloyd_max(dim, bits)
    gauss = lloyd_max(100_000, bits)
    gauss_centroids = gauss.centroids * np.sqrt(100_000 / dim)

    def mse(centroids):
        idx = np.abs(u[..., None] - centroids).argmin(-1)
        return ((u - centroids[idx]) ** 2).sum(1).mean()

    measured = mse(exact.centroids)
    assert measured == pytest.approx(exact.mse, rel=0.01)
    assert mse(gauss_centroids) > measured * 1.01


def test_deterministic_and_cached():
    assert lloyd_max(128, 4) is lloyd_max(128, 4)
    lloyd_max.cache_clear()
    again = lloyd_max(128, 4)
    np.testing.assert_array_equal(again.centroids, lloyd_max(128, 4).centroids)


@pytest.mark.parametrize(("dim", "bits"), [(1, 2), (128, 0), (128, 9), (128, 2.5)])
def test_rejects_bad_arguments(dim, bits):
    with pytest.raises(ValueError, match="dim|bits"):
        lloyd_max(dim, bits)


@settings(max_examples=60, deadline=None)
@given(
    dim=st.sampled_from([2, 3, 50, 128, 1536]),
    bits=st.integers(1, 8),
    seed=st.integers(0, 2**32 - 1),
)
def test_quantize_is_nearest_centroid(dim, bits, seed):
    book = lloyd_max(dim, bits)
    values = (np.random.default_rng(seed).standard_normal(4000) * 2 / np.sqrt(dim)).astype(
        np.float32
    )
    values = np.clip(values, -1, 1)
    codes = book.quantize(values)
    expected = np.searchsorted(book.boundaries, values, side="right")
    differ = codes != expected
    # Only values within float rounding of a boundary may land on the other side.
    near = np.abs(values[differ] - book.boundaries[np.minimum(codes, expected)[differ]])
    assert np.all(near <= 1e-6 * np.abs(book.boundaries).max())


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("count", [0, 1, 13, 64])
def test_dequantize_packed_equals_unpack_then_lookup(bits, count):
    from rotaquant.codec.packing import pack, unpack

    book = lloyd_max(40, bits)
    codes = np.random.default_rng(count).integers(0, 1 << bits, count).astype(np.uint8)
    packed = pack(codes, bits)
    np.testing.assert_array_equal(
        book.dequantize_packed(packed, count), book.centroids[unpack(packed, bits, count)]
    )
