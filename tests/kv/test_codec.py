"""HeadCodec: the codec on torch head vectors."""

import numpy as np
import pytest
import torch

import rotaquant as rq
from rotaquant.kv.codec import HeadCodec, pack, unpack
from rotaquant.packing import pack as pack_numpy


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_matches_the_numpy_bit_stream(bits):
    codes = torch.randint(0, 2**bits, (3, 5, 32))
    packed = pack(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 5, 4 * bits)
    assert (unpack(packed, bits, 32) == codes).all()
    expected = pack_numpy(codes.numpy().astype(np.uint8).reshape(-1), bits)
    np.testing.assert_array_equal(packed.numpy().reshape(-1), expected)


@pytest.mark.parametrize("bits", [2, 3, 3.5, 4])
def test_distortion_near_lloyd_max_and_norm_kept(bits):
    x = torch.randn(4000, 64) * 3
    codec = HeadCodec(64, bits)
    streams, scales = codec.encode(x)
    y = codec.decode(streams, scales)
    mse = (((x - y) ** 2).sum(-1) / (x**2).sum(-1)).mean().item()
    optimum = rq.TurboQuantizer(64, bits, norm_correction=True).mse_optimum
    assert mse == pytest.approx(optimum, rel=0.05)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=2e-3, atol=1e-3)
    assert codec.bytes_per_vector() == int(64 * bits / 8) + 2
    rotated = codec.decode(streams, scales, rotated=True)
    torch.testing.assert_close(codec.unrotate(rotated), y)


def test_bad_layouts_are_refused():
    with pytest.raises(ValueError, match="multiple of 8"):
        HeadCodec(12, 4)
    with pytest.raises(ValueError):
        HeadCodec(64, 9)
