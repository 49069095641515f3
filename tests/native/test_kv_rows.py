"""The native KV row readers (csrc/kv.cpp + variants) against numpy: scores, weighted sums and
decodes of packed rows, every width, odd channel counts (multiples of 8), several ranges,
every kernel variant and thread setting."""

import numpy as np
import pytest

from rotaquant import _core, _native
from rotaquant.codec.packing import pack_rows


def stream(rng, heads, capacity, channels, bits):
    codes = rng.integers(0, 2**bits, (heads, capacity, channels), dtype=np.uint8)
    packed = pack_rows(codes, bits)
    values = np.sort(rng.standard_normal(2**bits)).astype(np.float32)
    scales = rng.uniform(0.5, 2.0, (heads, capacity)).astype(np.float16)
    decoded = values[codes] * scales.astype(np.float32)[..., None]  # (heads, capacity, channels)
    return packed, values, scales.view(np.uint16), decoded


CASES = [(bits, channels) for bits in range(1, 9) for channels in (8, 64)] + [
    (4, 256),
    (3, 136),
    (2, 1024),
    (5, 72),
    (8, 96),
]


@pytest.mark.parametrize(("bits", "channels"), CASES)
def test_readers_equal_numpy(bits, channels):
    rng = np.random.default_rng(bits * 100 + channels)
    heads, capacity, queries = 3, 150, 5
    packed, values, scales, decoded = stream(rng, heads, capacity, channels, bits)
    ranges = np.array([[3, 40], [64, 150]], np.int64)
    live = np.concatenate([np.arange(a, b) for a, b in ranges])
    rows = decoded[:, live]  # (heads, L, channels)
    q = rng.standard_normal((heads, queries, channels)).astype(np.float32)
    w = rng.standard_normal((heads, queries, live.size)).astype(np.float32)
    for variant in _native.variants():
        with _native.using_variant(variant):
            for threads in (1, 2):
                scores = np.ones((heads, queries, live.size), np.float32)  # accumulated into
                _core.kv_scores(packed, bits, values, scales, ranges, q, scores, threads)
                expected = q @ rows.transpose(0, 2, 1)
                np.testing.assert_allclose(scores - 1, expected, rtol=1e-4, atol=1e-4)
                summed = np.zeros((heads, queries, channels), np.float32)
                _core.kv_weighted_sum(packed, bits, values, scales, ranges, w, summed, threads)
                np.testing.assert_allclose(summed, w @ rows, rtol=1e-4, atol=1e-3)
                out = np.zeros((heads, live.size, channels), np.float32)
                _core.kv_decode(packed, bits, values, scales, ranges, out, threads)
                np.testing.assert_allclose(out, rows, rtol=1e-6, atol=1e-6)


def test_scales_wider_than_the_rows_are_read_per_head():
    """scales (heads, >= capacity): each head's scales start at its own row of the array."""
    rng = np.random.default_rng(5)
    packed, values, scales, decoded = stream(rng, 2, 40, 8, 4)
    wide = np.zeros((2, 43), np.uint16)
    wide[:, :40] = scales
    ranges = np.array([[0, 40]], np.int64)
    out = np.zeros((2, 40, 8), np.float32)
    _core.kv_decode(packed, 4, values, wide, ranges, out, 1)
    np.testing.assert_allclose(out, decoded, rtol=1e-6)


def test_the_boundary_checks_every_array():
    rng = np.random.default_rng(0)
    packed, values, scales, _ = stream(rng, 2, 40, 16, 4)
    ranges = np.array([[0, 40]], np.int64)
    q = np.zeros((2, 1, 16), np.float32)
    out = np.zeros((2, 1, 40), np.float32)
    with pytest.raises(ValueError, match="outside"):
        _core.kv_scores(packed, 4, values, scales, np.array([[0, 41]], np.int64), q, out, 1)
    with pytest.raises(ValueError, match="values"):
        _core.kv_scores(packed, 4, values[:8], scales, ranges, q, out, 1)
    with pytest.raises(ValueError, match="scales"):
        _core.kv_scores(packed, 4, values, scales[:1], ranges, q, out, 1)
    with pytest.raises(ValueError, match="out must be"):
        _core.kv_scores(packed, 4, values, scales, ranges, q, np.zeros((2, 1, 39), np.float32), 1)
    with pytest.raises(ValueError, match="queries"):
        _core.kv_scores(packed, 4, values, scales, ranges, np.zeros((2, 1, 8), np.float32), out, 1)
    with pytest.raises(ValueError, match="multiple of 8"):
        narrow = np.ascontiguousarray(packed[:, :, :3])  # 6 channels
        _core.kv_decode(narrow, 4, values, scales, ranges, np.zeros((2, 40, 6), np.float32), 1)
    with pytest.raises(TypeError):  # wrong dtype, or not C-contiguous: refused, never converted
        _core.kv_scores(packed, 4, values, scales.view(np.float16), ranges, q, out, 1)
    with pytest.raises(TypeError):
        _core.kv_scores(packed, 4, values, scales, ranges, q, out[:, :, ::2], 1)
