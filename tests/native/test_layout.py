"""The block layout (csrc/layout.h): pack/unpack against an independent numpy implementation of
the documented layout, a worked example byte for byte, and refusals at the boundary."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant import _core

NIBBLE_ROW = [0, 8, 1, 9, 2, 10, 3, 11, 4, 12, 5, 13, 6, 14, 7, 15]


def plane_widths(width):
    out = [4] * (width // 4)
    rest = width % 4
    if rest >= 2:
        out.append(2)
    if rest % 2:
        out.append(1)
    return out


def reference_stream(codes, bits):
    """The layout of csrc/layout.h written from its description, in numpy."""
    n, channels = codes.shape
    group = {1: 4, 2: 2, 3: 2, 4: 1}.get(bits, 1)
    blocks = -(-n // 32)
    padded = np.zeros((blocks * 32, channels), np.int64)
    padded[:n] = codes
    out = []
    for b in range(blocks):
        rows = padded[32 * b : 32 * b + 32]
        for first in range(0, channels, group):
            count = min(group, channels - first)
            index = sum(rows[:, first + j] << (j * bits) for j in range(count))
            low = 0
            for w in plane_widths(count * bits):
                values = (index >> low) & ((1 << w) - 1)
                if w == 4:
                    plane = [values[r] | values[r + 16] << 4 for r in NIBBLE_ROW]
                else:
                    per = 8 // w
                    plane = [
                        sum(int(values[per * t + i]) << (w * i) for i in range(per))
                        for t in range(4 * w)
                    ]
                out.extend(plane)
                low += w
    return np.array(out, np.uint8)


def packed(codes, bits, capacity=None, splits=()):
    block_bytes, _, _ = _core.layout_info(codes.shape[1], bits)
    rows = capacity or codes.shape[0]
    stream = np.zeros(-(-rows // 32) * block_bytes, np.uint8)
    bounds = [0, *splits, codes.shape[0]]
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        _core.pack_rows(np.ascontiguousarray(codes[a:b]), bits, stream, a)
    return stream


@pytest.mark.parametrize("bits", range(1, 9))
@pytest.mark.parametrize("channels", [1, 3, 5, 8, 50, 64])
@pytest.mark.parametrize("n", [1, 31, 32, 33, 100])
def test_pack_matches_the_documented_layout(bits, channels, n):
    rng = np.random.default_rng(bits * 1000 + channels * 10 + n)
    codes = rng.integers(0, 2**bits, (n, channels), dtype=np.uint8)
    stream = packed(codes, bits)
    block_bytes, _, _ = _core.layout_info(channels, bits)
    assert block_bytes == 4 * channels * bits  # exactly bits per value, no padding
    np.testing.assert_array_equal(stream, reference_stream(codes, bits))
    rows = np.arange(n, dtype=np.int64)[::-1].copy()
    np.testing.assert_array_equal(_core.unpack_rows(stream, channels, bits, rows), codes[::-1])


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
    # 4 bits, one channel: row r holds code r % 16; byte j = row P[j] | (row P[j] + 16) << 4
    codes = (np.arange(32) % 16).astype(np.uint8)[:, None]
    assert packed(codes, 4).tobytes().hex() == "00881199" "22aa33bb" "44cc55dd" "66ee77ff"
    # 3 bits, two channels (one 6-bit unit: 4-bit plane, then 2-bit plane); row 0 = (5, 6),
    # every other row 0: index 5 | 6 << 3 = 0b110101 -> low nibble 0b0101, high bits 0b11
    codes = np.zeros((32, 2), np.uint8)
    codes[0] = (5, 6)
    assert packed(codes, 3).tobytes() == bytes([0x05] + [0] * 15 + [0x03] + [0] * 7)
    # 1 bit, four channels (one 4-bit unit): row 17 = (1, 0, 1, 1) -> index 0b1101, in the
    # high nibble of the byte holding row 1 (byte 2)
    codes = np.zeros((32, 4), np.uint8)
    codes[17] = (1, 0, 1, 1)
    assert packed(codes, 1).tobytes() == bytes([0, 0, 0xD0] + [0] * 13)


def test_the_boundary_refuses_what_would_read_or_write_out_of_bounds():
    codes = np.ones((33, 4), np.uint8)
    with pytest.raises(ValueError, match="needed"):
        _core.pack_rows(codes, 4, np.zeros(64, np.uint8), 0)  # 2 blocks needed
    with pytest.raises(ValueError, match="does not fit"):
        _core.pack_rows(np.full((1, 4), 8, np.uint8), 3, np.zeros(48, np.uint8), 0)
    stream = packed(codes, 4)
    with pytest.raises(ValueError, match="outside"):
        _core.unpack_rows(stream, 4, 4, np.array([64], np.int64))
    with pytest.raises(ValueError, match="outside"):
        _core.unpack_rows(stream, 4, 4, np.array([-1], np.int64))
    with pytest.raises(ValueError, match="bits"):
        _core.layout_info(4, 9)
    with pytest.raises(TypeError):
        _core.pack_rows(codes.astype(np.int64), 4, stream, 0)
    with pytest.raises(TypeError):  # read-only destination
        frozen = stream.copy()
        frozen.flags.writeable = False
        _core.pack_rows(codes, 4, frozen, 0)
