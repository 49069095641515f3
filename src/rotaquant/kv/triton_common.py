"""What the Triton kernels of the KV cache share: the one launch point, sizes, and the device
helpers that read and write the package's bit layout (8 codes of b bits fill b bytes,
little-endian; ``codec/packing.py``).

The kernels (``triton_encode``, ``triton_attention``) run on CUDA tensors, and under
``TRITON_INTERPRET=1`` on CPU tensors: how the tests check them against the torch reference on
machines without a GPU. ``rotaquant.kv.backend`` decides when they run.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import torch
import triton
import triton.language as tl


def launch(kernel, grid: tuple[int, ...], *args, **constants) -> None:
    """Run ``kernel`` over ``grid`` (the one place kernels start: the ahead-of-time compile
    test records the launches here instead)."""
    kernel[grid](*args, **constants)


def pow2(n: int) -> int:
    """The block size covering ``n`` channels: a power of two, at least 16 (``tl.dot``)."""
    return max(16, triton.next_power_of_2(n))


def interpreting(t: torch.Tensor) -> bool:
    """Whether kernels on ``t`` run in Triton's interpreter (CPU tensors)."""
    return t.device.type != "cuda"


@triton.jit
def store_packed(row_ptr, row_ok, codes, BITS: tl.constexpr, C, BT: tl.constexpr):
    """Pack codes (BT, CP) int32 < 2**BITS, the first C (a multiple of 8) of each row, into
    C·BITS/8 bytes at ``row_ptr`` (BT,): 8 codes fill BITS bytes, little-endian."""
    CP: tl.constexpr = codes.shape[1]
    G: tl.constexpr = CP // 8
    lanes = tl.reshape(codes.to(tl.int64), (BT, G, 8))
    shift = (tl.arange(0, 8) * BITS).to(tl.int64)
    word = tl.sum(lanes << shift[None, None, :], axis=2)  # disjoint bits: sum == or
    k = tl.arange(0, 8)
    byte = (word[:, :, None] >> (k[None, None, :] * 8).to(tl.int64)) & 0xFF
    g = tl.arange(0, G)
    offsets = g[None, :, None] * BITS + k[None, None, :]
    ok = row_ok[:, None, None] & (g[None, :, None] < C // 8) & (k[None, None, :] < BITS)
    tl.store(row_ptr[:, None, None] + offsets, byte.to(tl.uint8), mask=ok)


@triton.jit
def load_codes(row_ptr, row_ok, BITS: tl.constexpr, C: tl.constexpr, CP: tl.constexpr):
    """Codes (BN, CP) int32 of packed rows at ``row_ptr`` (BN,) (0 beyond C or ``row_ok``)."""
    c = tl.arange(0, CP)
    bit = c * BITS
    byte = bit // 8
    ok = row_ok[:, None] & (c[None, :] < C)
    word = tl.load(row_ptr[:, None] + byte[None, :], mask=ok, other=0).to(tl.int32)
    if (8 % BITS) != 0:  # 3, 5, 6, 7 bits: a code may straddle two bytes
        ROW_BYTES: tl.constexpr = C * BITS // 8
        ok_hi = ok & (byte[None, :] + 1 < ROW_BYTES)
        high = tl.load(row_ptr[:, None] + byte[None, :] + 1, mask=ok_hi, other=0).to(tl.int32)
        word = word | (high << 8)
    return (word >> (bit % 8)[None, :]) & ((1 << BITS) - 1)
