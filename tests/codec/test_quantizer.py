import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rotaquant as rq
from rotaquant.codec import quantizer as quantizer_module

from ..conftest import unit_gaussian


def relative_mse(x: np.ndarray, x_hat: np.ndarray) -> float:
    return float((((x - x_hat) ** 2).sum(1) / (x**2).sum(1)).mean())


# ---------------------------------------------------------------- distortion
@pytest.mark.parametrize("dim", [50, 64, 128, 768, 1536])
@pytest.mark.parametrize("bits", [1, 2, 3, 4])
def test_mse_matches_lloyd_max_optimum(dim, bits):
    n = 200_000 // dim
    x = unit_gaussian(n, dim, seed=dim + bits)
    q = rq.TurboQuantizer(dim, bits)
    assert q.mse_optimum == pytest.approx(rq.lloyd_max(dim, bits).mse)
    assert relative_mse(x, q.decode(q.encode(x))) == pytest.approx(q.mse_optimum, rel=0.02)


@pytest.mark.parametrize(("dim", "bits"), [(128, 2.5), (128, 3.5), (50, 2.5), (768, 3.5)])
def test_fractional_width_mse_is_the_mix_of_its_groups(dim, bits):
    x = unit_gaussian(200_000 // dim, dim, seed=1)
    q = rq.TurboQuantizer(dim, bits)
    low, high = rq.lloyd_max(dim, math.floor(bits)).mse, rq.lloyd_max(dim, math.ceil(bits)).mse
    assert q.mse_optimum == pytest.approx((low + high) / 2)
    assert relative_mse(x, q.decode(q.encode(x))) == pytest.approx(q.mse_optimum, rel=0.02)


def test_haar_rotation_reaches_the_same_optimum():
    x = unit_gaussian(2000, 128)
    q = rq.TurboQuantizer(128, 3, rotation="haar")
    assert relative_mse(x, q.decode(q.encode(x))) == pytest.approx(q.mse_optimum, rel=0.02)


@pytest.mark.parametrize("bits", [2, 3, 4, 3.5])
def test_real_sentence_embeddings_near_optimum(minilm, bits):
    q = rq.TurboQuantizer(minilm.shape[1], bits)
    assert relative_mse(minilm, q.decode(q.encode(minilm))) == pytest.approx(
        q.mse_optimum, rel=0.06
    )


@pytest.mark.parametrize("bits", [2, 4])
def test_real_word_vectors_near_optimum(glove, bits):
    q = rq.TurboQuantizer(glove.shape[1], bits)
    assert relative_mse(glove, q.decode(q.encode(glove))) == pytest.approx(q.mse_optimum, rel=0.06)


def test_norms_are_kept_for_any_scale():
    x = unit_gaussian(500, 64) * np.geomspace(1e-3, 1e3, 500, dtype=np.float32)[:, None]
    q = rq.TurboQuantizer(64, 4)
    assert relative_mse(x, q.decode(q.encode(x))) == pytest.approx(q.mse_optimum, rel=0.1)


def test_norm_correction_restores_lengths():
    x = unit_gaussian(300, 96) * 5
    q = rq.TurboQuantizer(96, 2, norm_correction=True, norm_dtype="float32")
    x_hat = q.decode(q.encode(x))
    np.testing.assert_allclose(np.linalg.norm(x_hat, axis=1), 5, rtol=1e-5)
    plain = rq.TurboQuantizer(96, 2)
    assert np.linalg.norm(plain.decode(plain.encode(x)), axis=1).mean() < 4.8


@pytest.mark.parametrize(
    ("dim", "bits", "low", "high"),
    [(128, 1, 1.08, 1.14), (128, 2, 1.01, 1.04), (50, 4, 0.94, 0.97)],
)
def test_norm_correction_mse_on_random_vectors(dim, bits, low, high):
    # Measured (docs/codec.md): rescaling to the input length costs MSE at 1-2 bits and, at
    # low dim and >= 3 bits, lowers it; either way the length is exact.
    x = unit_gaussian(40_000, dim, seed=bits)
    q = rq.TurboQuantizer(dim, bits, norm_correction=True, norm_dtype="float32")
    assert low < relative_mse(x, q.decode(q.encode(x))) / q.mse_optimum < high


def test_zero_vector_decodes_to_zero():
    q = rq.TurboQuantizer(32, 3, mode="prod")
    x = np.zeros((8, 32), np.float32)
    codes = q.encode(x)
    np.testing.assert_array_equal(q.decode(codes), 0)
    np.testing.assert_array_equal(q.inner_product(np.ones((1, 32), np.float32), codes), 0)


# ---------------------------------------------------------------- inner products
def test_mse_inner_product_equals_decoded_dot_product(monkeypatch):
    monkeypatch.setattr(quantizer_module, "_SCORE_BLOCK_FLOATS", 64 * 40)  # force many blocks
    q = rq.TurboQuantizer(64, 3)
    x, y = unit_gaussian(1001, 64), unit_gaussian(7, 64, seed=9)
    codes = q.encode(x)
    np.testing.assert_allclose(q.inner_product(y, codes), y @ q.decode(codes).T, atol=1e-5)


@pytest.mark.parametrize("bits", [2, 3])
def test_prod_mode_is_unbiased_and_mse_mode_is_not(bits):
    dim, n = 128, 20_000
    rng = np.random.default_rng(bits)
    x = unit_gaussian(n, dim, seed=bits)
    # queries correlated with the data so that the true products are large
    y = (x[:5] * 3 + rng.standard_normal((5, dim)).astype(np.float32) * 0.1).astype(np.float32)
    truth = y @ x.T
    for mode, expect_unbiased in (("prod", True), ("mse", False)):
        q = rq.TurboQuantizer(dim, bits, mode=mode, norm_dtype="float32")
        err = (q.inner_product(y, q.encode(x)) - truth)[:, 5:]  # skip each query's own source
        err_on_big = (q.inner_product(y, q.encode(x[:5])) - truth[:, :5]).diagonal()
        if expect_unbiased:
            assert abs(err.mean()) < 4 * err.std() / np.sqrt(err.size)
            assert abs(err_on_big.mean()) < 0.05 * 3
        else:
            # Lloyd–Max shrinks vectors towards 0: large products are underestimated.
            assert err_on_big.mean() < -0.5 * q.mse_optimum * 3


def test_prod_variance_is_under_the_paper_bound():
    dim, bits = 128, 3
    x = unit_gaussian(20_000, dim, seed=4)
    y = unit_gaussian(3, dim, seed=5)
    q = rq.TurboQuantizer(dim, bits, mode="prod", norm_dtype="float32")
    err = q.inner_product(y, q.encode(x)) - y @ x.T
    mse_part = rq.lloyd_max(dim, bits - 1).mse  # E‖r‖² for unit vectors
    qjl_bound = np.pi / (2 * dim) * mse_part  # Lemma 4 with ‖y‖ = 1
    paper_bound = np.sqrt(3) * np.pi**2 / dim * 4.0**-bits  # Theorem 2, D_prod
    assert err.var() <= 1.1 * qjl_bound <= paper_bound


# ---------------------------------------------------------------- bytes
@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("dim", [50, 128, 384, 1536])
def test_nbytes_is_exactly_bits_times_dim_plus_norm(bits, dim):
    n = 13
    codes = rq.TurboQuantizer(dim, bits).encode(unit_gaussian(n, dim))
    assert codes.nbytes == math.ceil(n * dim * bits / 8) + 2 * n
    assert codes.bits_per_value == codes.nbytes * 8 / (n * dim)


@pytest.mark.parametrize(("dim", "bits"), [(128, 2.5), (50, 3.5), (768, 2.25), (384, 7.5)])
def test_nbytes_for_fractional_widths(dim, bits):
    n = 16
    codes = rq.TurboQuantizer(dim, bits).encode(unit_gaussian(n, dim))
    high = round((bits - math.floor(bits)) * dim)
    expected = math.ceil(n * high * math.ceil(bits) / 8) + math.ceil(
        n * (dim - high) * math.floor(bits) / 8
    )
    assert codes.nbytes == expected + 2 * n
    assert codes.bits_per_value == pytest.approx(bits + 16 / dim, abs=1e-9)


def test_nbytes_in_prod_mode_counts_sketch_and_both_norms():
    n, dim = 24, 128
    codes = rq.TurboQuantizer(dim, 4, mode="prod", norm_dtype="float32").encode(
        unit_gaussian(n, dim)
    )
    assert codes.nbytes == n * dim * 3 // 8 + n * dim // 8 + 2 * 4 * n
    assert codes.bits_per_value == pytest.approx(4 + 64 / dim)


# ---------------------------------------------------------------- inputs
def test_torch_in_torch_out():
    torch = pytest.importorskip("torch", reason="torch tensors need the [kv] extra")
    x = torch.randn(10, 64)
    q = rq.TurboQuantizer(64, 4)
    codes = q.encode(x)
    x_hat = q.decode(codes)
    assert isinstance(x_hat, torch.Tensor) and x_hat.dtype == torch.float32
    scores = q.inner_product(x[:2], codes)
    assert isinstance(scores, torch.Tensor) and scores.shape == (2, 10)
    np.testing.assert_allclose(x_hat.numpy(), q.decode(q.encode(x.numpy())), atol=0)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_numpy_float_dtypes(dtype):
    x = unit_gaussian(9, 32).astype(dtype)
    q = rq.TurboQuantizer(32, 4)
    out = q.decode(q.encode(x))
    assert out.dtype == np.float32 and isinstance(out, np.ndarray)


def test_empty_batch():
    q = rq.TurboQuantizer(48, 3, mode="prod")
    codes = q.encode(np.zeros((0, 48), np.float32))
    assert codes.n == 0 and codes.nbytes == 0 and codes.bits_per_value == 0
    assert q.decode(codes).shape == (0, 48)
    assert q.inner_product(np.ones((2, 48), np.float32), codes).shape == (2, 0)


def test_encoding_is_deterministic_and_independent_of_chunking():
    q = rq.TurboQuantizer(64, 3, mode="prod")
    x = unit_gaussian(20_000, 64)  # several chunks, encoded on worker threads
    whole = q.encode(x).to_bytes()
    assert whole == rq.TurboQuantizer(64, 3, mode="prod").encode(x).to_bytes()
    parts = [q.encode(x[i : i + 800]) for i in range(0, 20_000, 800)]
    np.testing.assert_array_equal(
        np.concatenate([p.streams[0] for p in parts]), q.encode(x).streams[0]
    )


BAD_INPUTS = [
    (np.full((2, 16), np.nan, np.float32), "NaN"),
    (np.array([[np.inf] * 16], np.float32), "NaN or infinite"),
    (np.zeros((2, 15), np.float32), "dimension 16"),
    (np.zeros(16, np.float32), "2-D"),
    (np.zeros((1, 2, 16), np.float32), "2-D"),
    (np.zeros((2, 16), np.int64), "dtype"),
    (np.zeros((2, 16), np.complex64), "dtype"),
    ([["a"] * 16], "dtype"),
]


@pytest.mark.parametrize(("bad", "message"), BAD_INPUTS)
def test_bad_inputs_raise_clear_errors(bad, message):
    q = rq.TurboQuantizer(16, 4)
    codes = q.encode(unit_gaussian(3, 16))
    with pytest.raises(ValueError, match=message):
        q.encode(bad)
    with pytest.raises(ValueError, match=message):
        q.inner_product(bad, codes)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(bits=0), "bits"),
        (dict(bits=9), "bits"),
        (dict(bits=float("nan")), "bits"),
        (dict(bits="4"), "bits"),
        (dict(bits=2.3), "multiples of 1/dim"),
        (dict(mode="qjl"), "mode"),
        (dict(rotation="dct"), "rotation"),
        (dict(norm_dtype="int8"), "norm_dtype"),
        (dict(dim=1), "dim"),
    ],
)
def test_bad_configuration(kwargs, message):
    with pytest.raises(ValueError, match=message):
        rq.TurboQuantizer(**{"dim": 128, **kwargs})


def test_codes_from_another_quantizer_are_refused():
    codes = rq.TurboQuantizer(32, 4, seed=1).encode(unit_gaussian(4, 32))
    with pytest.raises(ValueError, match="different quantizer"):
        rq.TurboQuantizer(32, 4, seed=2).decode(codes)
    with pytest.raises(ValueError, match="Codes"):
        rq.TurboQuantizer(32, 4).decode(np.zeros(3))


def test_norm_overflowing_float16_is_an_error_not_garbage():
    x = np.full((2, 16), 3e4, np.float32)
    with pytest.raises(ValueError, match="float32"):
        rq.TurboQuantizer(16, 4).encode(x)
    q = rq.TurboQuantizer(16, 4, norm_dtype="float32")
    assert relative_mse(x, q.decode(q.encode(x))) < 0.05


@settings(max_examples=40, deadline=None)
@given(
    dim=st.integers(2, 300),
    half_bits=st.integers(2, 16),
    mode=st.sampled_from(["mse", "prod"]),
    n=st.integers(0, 40),
    seed=st.integers(0, 1000),
)
def test_any_realisable_width_round_trips_with_exact_size(dim, half_bits, mode, n, seed):
    bits = half_bits / 2
    if (bits * dim) % 1:
        return  # not realisable at this dim (covered by test_bad_configuration)
    q = rq.TurboQuantizer(np.int64(dim), np.float64(bits), mode=mode, seed=seed)
    x = unit_gaussian(n, dim, seed) * 2
    codes = rq.Codes.from_bytes(q.encode(x).to_bytes())
    norms = 2 if mode == "prod" else 1
    stream_bytes = sum(-(-n * g.channels * g.bits // 8) for g in codes.config.groups)
    sketch_bytes = -(-n * dim // 8) if mode == "prod" else 0
    assert codes.nbytes == stream_bytes + sketch_bytes + 2 * norms * n
    x_hat = q.decode(codes)
    assert x_hat.shape == (n, dim)
    if n >= 20 and dim >= 8:  # enough values for the mean error to be near its expectation
        err = ((x - x_hat) ** 2).sum(1).mean() / 4
        assert err <= 1.5 * q.mse_optimum + 0.02
