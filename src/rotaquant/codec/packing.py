"""Pack b-bit codes (b = 1..8) into a dense little-endian bit stream, and back.

The one bit layout of the package (the index's segments, ``Codes`` blobs and the KV cache's
rows all use it): value ``j`` of a stream occupies bits ``[j·b, (j+1)·b)``, counting from the
least significant bit of byte 0. A stream of ``count`` values takes exactly
``ceil(count·b / 8)`` bytes, so a 3-bit code packs 8 values into 3 bytes and nothing but the
final partial byte is padding. Because every group of 8 values fills exactly ``b`` bytes, a
stream can be cut at any multiple of 8 values on a byte boundary.

Worked example (asserted by the tests), 3 bits, values 1, 2, 3, 4, 5, 6, 7, 0::

    bits 0-2: 1 (001)  bits 3-5: 2 (010)  bits 6-8: 3 (011)  ...  bits 21-23: 0 (000)
    word = 1 | 2<<3 | 3<<6 | 4<<9 | 5<<12 | 6<<15 | 7<<18 | 0<<21 = 0x1F58D1
    bytes = D1 58 1F

Two implementations read and write it: :func:`pack`/:func:`unpack` for flat numpy streams of
any length (the codec's and the index's; fast paths per width), and :func:`pack_rows`/
:func:`unpack_rows` for rows of a multiple of 8 codes in numpy *or torch* (on the tensor's
device; the KV cache packs one row per token and head). Rows of ``pack_rows`` are exactly the
streams ``pack`` writes for them.
"""

from __future__ import annotations

import numpy as np

_LITTLE_U32 = np.dtype("<u4")
_LITTLE_U64 = np.dtype("<u8")


def lane_shifts(bits: int) -> np.ndarray:
    """(8,) int64: where each of 8 consecutive values starts in their ``bits``-byte word."""
    return np.arange(8, dtype=np.int64) * bits


def byte_shifts(bits: int) -> np.ndarray:
    """(bits,) int64: where each byte of an 8-value word starts."""
    return np.arange(bits, dtype=np.int64) * 8


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
        shifts = lane_shifts(bits).astype(word)
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


def pack_rows(codes, bits: int):
    """(..., c) integer codes < 2**bits, c a multiple of 8 → (..., c·bits/8) uint8 rows.

    ``codes`` is a numpy array or a torch tensor; the result is of the same library, on the
    same device. Each row is the stream :func:`pack` writes for that row's codes.
    """
    _check_bits(bits)
    *lead, c = codes.shape
    if c % 8:
        raise ValueError(f"pack_rows: rows must hold a multiple of 8 codes, got {c}")
    lanes = _as_int64(codes).reshape(*lead, c // 8, 8)
    words = (lanes << _like(lanes, lane_shifts(bits))).sum(-1)  # disjoint bits: sum == or
    out = (words[..., None] >> _like(words, byte_shifts(bits))) & 0xFF
    return _as_uint8(out).reshape(*lead, c * bits // 8)


def unpack_rows(packed, bits: int, channels: int):
    """Inverse of :func:`pack_rows`: (..., channels·bits/8) uint8 → (..., channels) int64."""
    _check_bits(bits)
    *lead, _ = packed.shape
    chunks = _as_int64(packed).reshape(*lead, channels // 8, bits)
    words = (chunks << _like(chunks, byte_shifts(bits))).sum(-1)
    codes = (words[..., None] >> _like(words, lane_shifts(bits))) & ((1 << bits) - 1)
    return codes.reshape(*lead, channels)


def _is_torch(x) -> bool:
    return type(x).__module__.startswith("torch")


def _as_int64(x):
    return x.long() if _is_torch(x) else x.astype(np.int64)


def _as_uint8(x):
    return x.byte() if _is_torch(x) else x.astype(np.uint8)


def _like(x, values: np.ndarray):
    """``values`` in ``x``'s library (and device, dtype)."""
    return x.new_tensor(values) if _is_torch(x) else values
