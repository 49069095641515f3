"""Pack b-bit codes (b = 1..8) into a dense little-endian bit stream, and back.

Value ``j`` of a stream occupies bits ``[j·b, (j+1)·b)``, counting from the least significant
bit of byte 0. A stream of ``count`` values takes exactly ``ceil(count·b / 8)`` bytes, so a
3-bit code packs 8 values into 3 bytes and nothing but the final partial byte is padding.
Because every group of 8 values fills exactly ``b`` bytes, a stream can be cut at any multiple
of 8 values on a byte boundary.
"""

from __future__ import annotations

import numpy as np

_LITTLE_U32 = np.dtype("<u4")
_LITTLE_U64 = np.dtype("<u8")


def packed_nbytes(count: int, bits: int) -> int:
    """Bytes taken by ``count`` values of ``bits`` bits: ``ceil(count·bits/8)``."""
    return (count * bits + 7) // 8


def _check_bits(bits: int) -> None:
    if not 1 <= bits <= 8:
        raise ValueError(f"packing supports 1..8 bits per value, got {bits}")


def pack(values: np.ndarray, bits: int) -> np.ndarray:
    """Pack codes into a byte stream.

    ``values``: any shape, integer dtype, every value < 2**bits (not checked: the caller's
    quantizer guarantees it; higher bits would bleed into the neighbour). Returns a 1-D uint8
    array of ``packed_nbytes(values.size, bits)`` bytes.
    """
    _check_bits(bits)
    flat = np.ascontiguousarray(values, dtype=np.uint8).reshape(-1)
    count = flat.size
    if bits == 8:
        return flat.copy()
    groups = -(-count // 8)
    if groups * 8 != count:
        flat = np.concatenate((flat, np.zeros(groups * 8 - count, np.uint8)))
    if 8 % bits == 0:
        per_byte = 8 // bits
        lanes = flat.reshape(-1, per_byte)
        out = lanes[:, 0].copy()
        for lane in range(1, per_byte):
            out |= lanes[:, lane] << np.uint8(lane * bits)
    else:
        # 8 values fill exactly `bits` bytes: assemble them in one little-endian word.
        word = _LITTLE_U32 if bits <= 4 else _LITTLE_U64
        lanes = flat.reshape(-1, 8)
        acc = lanes[:, 0].astype(word)
        for lane in range(1, 8):
            acc |= lanes[:, lane].astype(word) << word.type(lane * bits)
        out = acc.view(np.uint8).reshape(groups, word.itemsize)[:, :bits].reshape(-1)
    return out[: packed_nbytes(count, bits)].copy()


def unpack(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """Inverse of :func:`pack`: the first ``count`` values of a stream, as uint8 (count,)."""
    _check_bits(bits)
    packed = np.asarray(packed, dtype=np.uint8).reshape(-1)
    need = packed_nbytes(count, bits)
    if packed.size < need:
        raise ValueError(f"bit stream holds {packed.size} bytes, {need} needed for {count} values")
    if bits == 8:
        return packed[:count].copy()
    groups = -(-count // 8)
    full = groups * bits
    if packed.size < full:
        packed = np.concatenate((packed[:need], np.zeros(full - need, np.uint8)))
    else:
        packed = packed[:full]
    mask = np.uint8((1 << bits) - 1)
    if 8 % bits == 0:
        shifts = np.arange(0, 8, bits, dtype=np.uint8)
        out = (packed[:, None] >> shifts) & mask
    else:
        word = _LITTLE_U32 if bits <= 4 else _LITTLE_U64
        padded = np.zeros((groups, word.itemsize), np.uint8)
        padded[:, :bits] = packed.reshape(groups, bits)
        words = padded.view(word).reshape(groups, 1)
        shifts = (np.arange(8) * bits).astype(word)
        out = ((words >> shifts) & word.type(mask)).astype(np.uint8)
    return out.reshape(-1)[:count]


def read_values(packed: np.ndarray, start: int, count: int, bits: int) -> np.ndarray:
    """Values ``[start, start + count)`` of a stream, from any bit offset: uint8 (count,)."""
    _check_bits(bits)
    first, stop_bit = start * bits, (start + count) * bits
    covering = packed[first // 8 : (stop_bit + 7) // 8]
    bitarray = np.unpackbits(covering, bitorder="little")[first % 8 : first % 8 + count * bits]
    return np.packbits(bitarray.reshape(count, bits), axis=1, bitorder="little").reshape(count)


def write_values(packed: np.ndarray, start: int, values: np.ndarray, bits: int) -> None:
    """Overwrite values ``[start, start + len(values))`` of a stream in place (any bit offset)."""
    _check_bits(bits)
    values = np.asarray(values, dtype=np.uint8).reshape(-1)
    first, stop_bit = start * bits, (start + values.size) * bits
    lo, hi = first // 8, (stop_bit + 7) // 8
    bitarray = np.unpackbits(packed[lo:hi], bitorder="little")
    new_bits = np.unpackbits(values[:, None], axis=1, bitorder="little")[:, :bits]
    bitarray[first % 8 : first % 8 + values.size * bits] = new_bits.reshape(-1)
    packed[lo:hi] = np.packbits(bitarray, bitorder="little")
