"""The block layout (csrc/layout.h): pack/unpack against an independent numpy implementation of
the documented layout, a worked example byte for byte, and refusals at the boundary."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant import _core
from rotaquant.codec.packing import pack


def reference_stream(codes, bits):
    """The layout of csrc/layout.h written from its description, in numpy: per block of 32
    rows, per group of 4 channels, the rows' codes of the group as one packed bit stream."""
    n, channels = codes.shape
    blocks = -(-n // 32)
    padded = np.zeros((blocks * 32, channels), np.uint8)
    padded[:n] = codes
    out = []
    for b in range(blocks):
        rows = padded[32 * b : 32 * b + 32]
        for first in range(0, channels, 4):
            out.append(pack(rows[:, first : first + 4], bits))
    return np.concatenate(out) if out else np.zeros(0, np.uint8)


def packed(codes, bits, capacity=None, splits=()):
    block_bytes, _ = _core.layout_info(codes.shape[1], bits)
    rows = capacity or codes.shape[0]
    stream = np.zeros(-(-rows // 32) * block_bytes, np.uint8)
    bounds = [0, *splits, codes.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        _core.pack_blocks(np.ascontiguousarray(codes[a:b]), bits, stream, a)
    return stream


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("channels", [1, 3, 5, 8, 50, 64])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 100])
def test_pack_matches_the_documented_layout(bits, channels, n):
    rng = np.random.default_rng(bits * 1000 + channels * 10 + n)
    codes = rng.integers(0, 2**bits, (n, channels), dtype=np.uint8)
    stream = packed(codes, bits)
    block_bytes, _ = _core.layout_info(channels, bits)
    assert block_bytes == 4 * channels * bits  # exactly bits per value, no padding
    np.testing.assert_array_equal(stream, reference_stream(codes, bits))
    rows = np.arange(n, dtype=np.int64)[::-1].copy()
    np.testing.assert_array_equal(_core.unpack_blocks(stream, channels, bits, rows), codes[::-1])


@settings(max_examples=60, deadline=None)
@given(
    bits=st.integers(1, 8),
    channels=st.integers(1, 40),
    n=st.integers(1, 150),
    data=st.data(),
)
def test_packing_in_pieces_at_any_row_equals_packing_at_once(bits, channels, n, data):
    splits = sorted(data.draw(st.sets(st.integers(1, max(1, n - 1)), max_size=4)))
    splits = [s for s in splits if 0 < s < n]
    codes = np.random.default_rng(n).integers(0, 2**bits, (n, channels), dtype=np.uint8)
    np.testing.assert_array_equal(packed(codes, bits, splits=splits), packed(codes, bits))


@pytest.mark.parametrize("bits", [1, 3, 4, 7])
def test_copy_row_moves_one_row_between_streams(bits):
    rng = np.random.default_rng(bits)
    a = rng.integers(0, 2**bits, (70, 13), dtype=np.uint8)
    b = rng.integers(0, 2**bits, (40, 13), dtype=np.uint8)
    sa, sb = packed(a, bits), packed(b, bits)
    _core.copy_row(sa, 5, sb, 39, 13, bits)
    _core.copy_row(sa, 69, sa, 0, 13, bits)  # within one stream
    expected = a.copy()
    expected[5] = b[39]
    expected[69] = a[0]
    np.testing.assert_array_equal(sa, reference_stream(expected, bits))


def test_worked_example():
    # 4 bits, 5 channels: groups (channels 0-3) then (channel 4). Row r's group-0 codes are
    # (r % 16, 1, 2, 3): bytes 2r = (r % 16) | 1 << 4 and 2r + 1 = 2 | 3 << 4; group 1 holds
    # 32 rows x 1 code of 4 bits: 16 bytes, two rows per byte (row 2i low nibble).
    codes = np.zeros((32, 5), np.uint8)
    codes[:, 0] = np.arange(32) % 16
    codes[:, 1:4] = (1, 2, 3)
    codes[:, 4] = 7
    stream = packed(codes, 4)
    assert stream.size == 4 * 5 * 4  # 80 bytes: 32 rows x 5 channels x 4 bits
    assert stream[:4].tobytes().hex() == "10321132"  # rows 0 and 1
    assert stream[62:64].tobytes().hex() == "1f32"  # row 31: code 15
    assert stream[64:].tobytes() == bytes([0x77] * 16)
    # 3 bits, 2 channels (one partial group): row 0 = (5, 6), row 1 = (7, 1), others 0:
    # bits 0-2 = 5, 3-5 = 6, 6-8 = 7, 9-11 = 1 -> 0b11_110_101 = 0xF5, then 0b0000_001_1 = 0x03
    codes = np.zeros((32, 2), np.uint8)
    codes[0], codes[1] = (5, 6), (7, 1)
    stream = packed(codes, 3)
    assert stream.size == 4 * 2 * 3 and stream[:2].tobytes() == bytes([0xF5, 0x03])
    assert not stream[2:].any()


def test_the_boundary_refuses_what_would_read_or_write_out_of_bounds():
    codes = np.ones((33, 4), np.uint8)
    with pytest.raises(ValueError, match="needed"):
        _core.pack_blocks(codes, 4, np.zeros(64, np.uint8), 0)  # 2 blocks of 64 bytes needed
    with pytest.raises(ValueError, match="does not fit"):
        _core.pack_blocks(np.full((1, 4), 8, np.uint8), 3, np.zeros(48, np.uint8), 0)
    stream = packed(codes, 4)
    with pytest.raises(ValueError, match="outside"):
        _core.unpack_blocks(stream, 4, 4, np.array([64], np.int64))
    with pytest.raises(ValueError, match="outside"):
        _core.unpack_blocks(stream, 4, 4, np.array([-1], np.int64))
    with pytest.raises(ValueError, match="bits"):
        _core.layout_info(4, 9)
    with pytest.raises(TypeError):
        _core.pack_blocks(codes.astype(np.int64), 4, stream, 0)
    with pytest.raises(TypeError):  # read-only destination
        frozen = stream.copy()
        frozen.flags.writeable = False
        _core.pack_blocks(codes, 4, frozen, 0)


def test_the_native_core_under_test_is_the_one_asked_for():
    """tools/sanitize.sh points $ROTAQUANT_TEST_CORE at its instrumented build: these tests
    must run against that one, not the installed extension."""
    asked = os.environ.get("ROTAQUANT_TEST_CORE")
    if asked:
        assert os.path.samefile(_core.__file__, asked)
    else:  # the installed extension, never a leftover instrumented build
        assert "sanitize" not in Path(_core.__file__).parts
