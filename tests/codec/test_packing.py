import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rotaquant.codec.packing import (
    pack,
    pack_rows,
    packed_nbytes,
    read_values,
    unpack,
    unpack_rows,
    write_values,
)


def reference_bitstream(values: np.ndarray, bits: int) -> np.ndarray:
    planes = (values[:, None].astype(np.uint16) >> np.arange(bits)) & 1
    return np.packbits(planes.reshape(-1).astype(np.uint8), bitorder="little")


@settings(max_examples=200, deadline=None)
@given(bits=st.integers(1, 8), count=st.integers(0, 300), seed=st.integers(0, 2**32 - 1))
def test_round_trip_and_exact_size(bits, count, seed):
    values = np.random.default_rng(seed).integers(0, 1 << bits, count).astype(np.uint8)
    packed = pack(values, bits)
    assert packed.dtype == np.uint8
    assert packed.size == packed_nbytes(count, bits) == -(-count * bits // 8)
    np.testing.assert_array_equal(unpack(packed, bits, count), values)
    np.testing.assert_array_equal(packed, reference_bitstream(values, bits))


@pytest.mark.parametrize("bits", range(1, 9))
def test_eight_values_fill_exactly_bits_bytes_and_streams_split_there(bits):
    values = np.random.default_rng(bits).integers(0, 1 << bits, 64).astype(np.uint8)
    packed = pack(values, bits)
    assert packed.size == 8 * bits
    np.testing.assert_array_equal(packed[: 3 * bits], pack(values[:24], bits))
    np.testing.assert_array_equal(packed[3 * bits :], pack(values[24:], bits))


def test_three_bits_pack_eight_values_in_three_bytes():
    assert pack(np.arange(8, dtype=np.uint8), 3).tolist() == [0b10001000, 0b11000110, 0b11111010]


def test_bad_arguments():
    with pytest.raises(ValueError, match="1..8"):
        pack(np.zeros(4, np.uint8), 9)
    with pytest.raises(ValueError, match="1..8"):
        unpack(np.zeros(4, np.uint8), 0, 4)
    with pytest.raises(ValueError, match="bytes"):
        unpack(np.zeros(2, np.uint8), 3, 8)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 8), st.integers(0, 40), st.integers(0, 40), st.integers(0, 2**32))
def test_read_write_values_at_any_offset(bits, start, count, seed):
    rng = np.random.default_rng(seed)
    values = rng.integers(0, 2**bits, 100).astype(np.uint8)
    stream = pack(values, bits)
    np.testing.assert_array_equal(
        read_values(stream, start, count, bits), values[start : start + count]
    )
    new = rng.integers(0, 2**bits, count).astype(np.uint8)
    write_values(stream, start, new, bits)
    values[start : start + count] = new
    np.testing.assert_array_equal(unpack(stream, bits, 100), values)


def test_worked_example_of_the_layout():
    """The example drawn in the packing module's docstring, byte for byte."""
    values = np.array([1, 2, 3, 4, 5, 6, 7, 0], np.uint8)
    assert pack(values, 3).tobytes() == bytes([0xD1, 0x58, 0x1F])
    assert pack_rows(values[None], 3).tobytes() == bytes([0xD1, 0x58, 0x1F])
    # 4 bits: two values per byte, the first in the low nibble
    assert pack(np.array([0x1, 0xA], np.uint8), 4).tobytes() == bytes([0xA1])


@pytest.mark.parametrize("bits", range(1, 9))
def test_pack_rows_is_the_stream_of_each_row_in_numpy_and_torch(bits):
    torch = pytest.importorskip("torch")
    codes = torch.randint(0, 2**bits, (3, 5, 32))
    packed = pack_rows(codes, bits)
    assert packed.dtype == torch.uint8 and packed.shape == (3, 5, 4 * bits)
    assert (unpack_rows(packed, bits, 32) == codes).all()
    expected = pack(codes.numpy().astype(np.uint8).reshape(-1), bits)
    np.testing.assert_array_equal(packed.numpy().reshape(-1), expected)
    from_numpy = pack_rows(codes.numpy(), bits)
    assert from_numpy.dtype == np.uint8
    np.testing.assert_array_equal(from_numpy.reshape(-1), expected)
    np.testing.assert_array_equal(unpack_rows(from_numpy, bits, 32), codes.numpy())


def test_pack_rows_needs_whole_groups_of_eight():
    with pytest.raises(ValueError, match="multiple of 8"):
        pack_rows(np.zeros((2, 12), np.uint8), 3)
