"""The Triton encode kernel of the KV cache: :meth:`HeadCodec.encode` on CUDA tensors.

One program per (batch·head, 16 tokens): x − μ, rotate by the codec's forward matrix F
(``tl.dot`` in IEEE float32, K-chunks of 32 channels, one column block per stream), per-slot
norm, Lloyd–Max code by a b-step binary search of the stream's boundaries, pack 8 codes into
``bits`` bytes, store the norm-correcting float16 scale; in ``mode="prod"`` also the residual's
QJL signs (r @ Sᵀ, packed 1-bit) and ‖r‖·√(π/2)/d. Nothing returns to the host. The contract is
:meth:`HeadCodec.encode_reference`'s.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
from typing import TYPE_CHECKING

import torch
import triton
import triton.language as tl

from . import triton_common as common
from .triton_common import store_packed

if TYPE_CHECKING:
    from .codec import HeadCodec

ENCODE_TOKENS = 16  # tokens per encode program
ENCODE_K = 32  # rotation K-chunk, and sign columns per QJL chunk


@triton.jit
def _rotate_block(
    x_row,
    t_ok,
    x_stride_d,
    offset_row,
    f_ptr,
    START,
    C: tl.constexpr,
    CP: tl.constexpr,
    D: tl.constexpr,
    HAS_OFFSET: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
):
    """((x − μ) @ F)[:, START:START+C] for the rows at ``x_row`` (BT,): (BT, CP) float32."""
    c = tl.arange(0, CP)
    acc = tl.zeros((BT, CP), tl.float32)
    for k0 in range(0, D, BK):
        kk = k0 + tl.arange(0, BK)
        x = tl.load(
            x_row[:, None] + kk[None, :] * x_stride_d,
            mask=t_ok[:, None] & (kk[None, :] < D),
            other=0.0,
        ).to(tl.float32)
        if HAS_OFFSET:
            x = x - tl.load(offset_row + kk, mask=kk < D, other=0.0)[None, :]
        f = tl.load(
            f_ptr + kk[:, None] * D + START + c[None, :],
            mask=(kk[:, None] < D) & (c[None, :] < C),
            other=0.0,
        )
        acc += tl.dot(x, f, input_precision="ieee")
    return acc


@triton.jit
def _bucketize(u, boundaries, BITS: tl.constexpr):
    """Number of boundaries below u (torch.bucketize): a BITS-step binary search."""
    code = tl.zeros(u.shape, tl.int32)
    for i in tl.static_range(BITS):
        candidate = code + (1 << (BITS - 1 - i))
        edge = tl.load(boundaries + candidate - 1)
        code = tl.where(u > edge, candidate, code)
    return code


@triton.jit
def _encode_kernel(
    x_ptr,
    sx_b,
    sx_h,
    sx_t,
    sx_d,
    offset_ptr,
    f_ptr,
    f_head_stride,
    st_ptr,
    bound0,
    cent0,
    packed0,
    scale0,
    bound1,
    cent1,
    packed1,
    scale1,
    qjl_packed,
    qjl_scale_out,
    qjl_scale,
    heads,
    tokens,
    D: tl.constexpr,
    DP: tl.constexpr,
    BITS0: tl.constexpr,
    START0: tl.constexpr,
    C0: tl.constexpr,
    CP0: tl.constexpr,
    BITS1: tl.constexpr,
    START1: tl.constexpr,
    C1: tl.constexpr,
    CP1: tl.constexpr,
    SPLIT_SCALES: tl.constexpr,
    PROD: tl.constexpr,
    HAS_OFFSET: tl.constexpr,
    BT: tl.constexpr,
    BK: tl.constexpr,
    QJL_CHUNK: tl.constexpr,
):
    bh = tl.program_id(0).to(tl.int64)  # offsets in int64: caches beyond 2**31 bytes
    b = bh // heads
    h = bh % heads
    t = tl.program_id(1) * BT + tl.arange(0, BT)
    t_ok = t < tokens
    x_row = x_ptr + b * sx_b + h * sx_h + t * sx_t
    offset_row = offset_ptr + h * D
    f_head = f_ptr + h * f_head_stride
    out_row = bh * tokens + t  # row of the (batch·heads·tokens) outputs
    c0 = tl.arange(0, CP0)
    rot0 = _rotate_block(
        x_row, t_ok, sx_d, offset_row, f_head, START0, C0, CP0, D, HAS_OFFSET, BT, BK
    )
    sq0 = tl.sum(rot0 * rot0, axis=1)
    if BITS1 > 0:
        c1 = tl.arange(0, CP1)
        rot1 = _rotate_block(
            x_row, t_ok, sx_d, offset_row, f_head, START1, C1, CP1, D, HAS_OFFSET, BT, BK
        )
        sq1 = tl.sum(rot1 * rot1, axis=1)
        if SPLIT_SCALES:
            len0 = tl.sqrt(sq0)
            len1 = tl.sqrt(sq1)
        else:
            len0 = tl.sqrt(sq0 + sq1)
            len1 = len0
    else:
        len0 = tl.sqrt(sq0)
    code0 = _bucketize(rot0 / tl.maximum(len0, 1.1754943508222875e-38)[:, None], bound0, BITS0)
    value0 = tl.where(c0[None, :] < C0, tl.load(cent0 + code0), 0.0)
    squares0 = tl.sum(value0 * value0, axis=1)
    if BITS1 > 0:
        code1 = _bucketize(rot1 / tl.maximum(len1, 1.1754943508222875e-38)[:, None], bound1, BITS1)
        value1 = tl.where(c1[None, :] < C1, tl.load(cent1 + code1), 0.0)
        squares1 = tl.sum(value1 * value1, axis=1)
        if SPLIT_SCALES:
            s0 = len0 / tl.maximum(tl.sqrt(squares0), 1.1754943508222875e-38)
            s1 = len1 / tl.maximum(tl.sqrt(squares1), 1.1754943508222875e-38)
            tl.store(scale1 + out_row, s1.to(tl.float16), mask=t_ok)
        else:
            s0 = len0 / tl.maximum(tl.sqrt(squares0 + squares1), 1.1754943508222875e-38)
            s1 = s0
        store_packed(packed1 + out_row * (C1 * BITS1 // 8), t_ok, code1, BITS1, C1, BT)
    else:
        s0 = len0 / tl.maximum(tl.sqrt(squares0), 1.1754943508222875e-38)
    tl.store(scale0 + out_row, s0.to(tl.float16), mask=t_ok)
    store_packed(packed0 + out_row * (C0 * BITS0 // 8), t_ok, code0, BITS0, C0, BT)
    if PROD:  # the residual r = rotated − decoded, sketched as sign(r @ Sᵀ)
        r0 = rot0 - value0 * s0[:, None]
        r_squares = tl.sum(r0 * r0, axis=1)
        if BITS1 > 0:
            r1 = rot1 - value1 * s1[:, None]
            r_squares += tl.sum(r1 * r1, axis=1)
        tl.store(
            qjl_scale_out + out_row, (tl.sqrt(r_squares) * qjl_scale).to(tl.float16), mask=t_ok
        )
        for j0 in tl.static_range(0, DP, QJL_CHUNK):  # sign columns a chunk at a time
            j = j0 + tl.arange(0, QJL_CHUNK)
            st0 = tl.load(
                st_ptr + (START0 + c0)[:, None] * D + j[None, :],
                mask=(c0[:, None] < C0) & (j[None, :] < D),
                other=0.0,
            )
            projected = tl.dot(r0, st0, input_precision="ieee")
            if BITS1 > 0:
                st1 = tl.load(
                    st_ptr + (START1 + c1)[:, None] * D + j[None, :],
                    mask=(c1[:, None] < C1) & (j[None, :] < D),
                    other=0.0,
                )
                projected += tl.dot(r1, st1, input_precision="ieee")
            signs = (projected >= 0).to(tl.int32)
            store_packed(qjl_packed + out_row * (D // 8) + j0 // 8, t_ok, signs, 1, D - j0, BT)


def encode(codec: HeadCodec, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """:meth:`HeadCodec.encode` of x (batch, heads, tokens, head_dim) in one kernel."""
    batch, heads, tokens, dim = x.shape
    device = x.device
    codec.to_device(device)
    mse = [layout for layout in codec.layouts if layout.domain == "rotated"]
    if not 1 <= len(mse) <= 2:
        raise ValueError(f"the encode kernel takes one or two Lloyd–Max streams, got {len(mse)}")
    rows = batch * heads * tokens
    packed = [
        torch.empty((batch, heads, tokens, layout.nbytes), dtype=torch.uint8, device=device)
        for layout in codec.layouts
    ]
    scales = [
        torch.empty((batch, heads, tokens), dtype=torch.float16, device=device)
        for _ in range(codec.scale_count)
    ]
    forward = codec.forward_matrix.contiguous()
    per_head = forward.dim() == 3
    if per_head and forward.shape[0] != heads:
        raise ValueError(f"codec fitted for {forward.shape[0]} heads, got {heads}")
    offset = codec.offset.contiguous() if codec.offset is not None else forward
    prod = codec.mode == "prod"
    sketch = codec.projection.T.contiguous() if prod else forward
    second = mse[1] if len(mse) == 2 else None
    dummy = packed[0]
    if rows:
        grid = (batch * heads, triton.cdiv(tokens, ENCODE_TOKENS))
        common.launch(
            _encode_kernel,
            grid,
            x,
            *x.stride(),
            offset,
            forward,
            dim * dim if per_head else 0,
            sketch,
            codec.boundaries[0],
            codec.centroids[0],
            packed[0],
            scales[mse[0].scale],
            codec.boundaries[1] if second else codec.boundaries[0],
            codec.centroids[1] if second else codec.centroids[0],
            packed[1] if second else dummy,
            scales[second.scale] if second else scales[0],
            packed[-1] if prod else dummy,
            scales[-1] if prod else scales[0],
            codec.qjl_scale if prod else 0.0,
            heads,
            tokens,
            D=dim,
            DP=common.pow2(dim),
            BITS0=mse[0].bits,
            START0=mse[0].start,
            C0=mse[0].channels,
            CP0=common.pow2(mse[0].channels),
            BITS1=second.bits if second else 0,
            START1=second.start if second else 0,
            C1=second.channels if second else 8,
            CP1=common.pow2(second.channels) if second else 16,
            SPLIT_SCALES=codec.scale_count - prod > 1,
            PROD=prod,
            HAS_OFFSET=codec.offset is not None,
            BT=ENCODE_TOKENS,
            BK=ENCODE_K,
            QJL_CHUNK=ENCODE_K,
        )
    return packed, scales
