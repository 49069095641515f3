"""The Triton attention kernels of the KV cache: attention on the packed cold tier (CUDA).

Flash-decoding (split-K). The cold tier is cut into ``splits`` token ranges, plus one or more
ranges of the exact tokens (sinks and hot window); a program handles one (batch·kv head, block
of 16+ query rows, range). Per tile of ``BLOCK_N`` cold tokens it loads each stream's packed
rows (one or two bytes per code, through the live-row map so evicted rows are skipped), decodes
the codes to centroids in registers, scores them against the rotated (or QJL-projected) query
slice with ``tl.dot``, multiplies by the per-token scales, adds ⟨q, μ⟩, softcaps, adds the
additive mask column of the token's *position* (sinks come first in position order), and folds
the tile into an online softmax whose weights multiply the decoded value tile (``tl.dot`` again,
rotated value domain). Exact-token ranges do the same on the model-dtype keys and values. A
second kernel merges the ranges' (max, sum, accumulator) triples; the caller applies the
values' inverse rotation once per output row and adds μ_v · (cold softmax mass). Bytes read per
step: the packed codes and float16 scales of every cold token once per query-row block
(decode: once), the exact tokens, the queries. The contract is the torch path of
``compressed_attention``'s.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import math

import torch
import triton
import triton.language as tl

from . import triton_common as common
from .interface import additive_mask
from .triton_common import load_codes

BLOCK_M = 16  # query rows per attention program (tl.dot needs ≥ 16)


@triton.jit
def _stream_rows(
    packed,
    scales,
    centroids,
    rows,
    row_ok,
    head_base,
    capacity,
    BITS: tl.constexpr,
    C: tl.constexpr,
    CP: tl.constexpr,
):
    """One stream's tile: centroids of the codes (BLOCK_N, CP) float32 (0 where not
    ``row_ok``) and the tokens' scales (BLOCK_N,) float32."""
    row_ptr = packed + (head_base * capacity + rows) * (C * BITS // 8)
    codes = load_codes(row_ptr, row_ok, BITS, C, CP)
    values = tl.where(row_ok[:, None], tl.load(centroids + codes), 0.0)
    scale = tl.load(scales + head_base * capacity + rows, mask=row_ok, other=0.0).to(tl.float32)
    return values, scale


@triton.jit
def _stream_scores(
    q,
    packed,
    scales,
    centroids,
    rows,
    row_ok,
    head_base,
    capacity,
    BITS: tl.constexpr,
    C: tl.constexpr,
    CP: tl.constexpr,
    PRECISION: tl.constexpr,
):
    """scale_t · ⟨q_m, centroids[codes_t]⟩ for one stream: (BLOCK_M, BLOCK_N) float32."""
    values, scale = _stream_rows(
        packed, scales, centroids, rows, row_ok, head_base, capacity, BITS, C, CP
    )
    return tl.dot(q, tl.trans(values), input_precision=PRECISION) * scale[None, :]


@triton.jit
def _load_query(
    q_ptr, bh, m, m_ok, rows, START, C: tl.constexpr, CP: tl.constexpr, D: tl.constexpr
):
    c = tl.arange(0, CP)
    return tl.load(
        q_ptr + (bh * rows + m)[:, None] * D + START + c[None, :],
        mask=m_ok[:, None] & (c[None, :] < C),
        other=0.0,
    )


@triton.jit
def _finish_logits(
    s,
    m_ok,
    n_ok,
    position,
    mask_row,
    mask_stride_col,
    softcap,
    HAS_MASK: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
):
    """Softcap, the additive mask of each token's position, −inf outside the tile."""
    if HAS_SOFTCAP:  # tanh(x) = 1 − 2 / (e^{2x} + 1), exact at ±∞
        s = (1.0 - 2.0 / (tl.exp(2.0 * s / softcap) + 1.0)) * softcap
    ok = m_ok[:, None] & n_ok[None, :]
    if HAS_MASK:
        s += tl.load(
            mask_row[:, None] + position[None, :] * mask_stride_col, mask=ok, other=0.0
        ).to(tl.float32)
    return tl.where(ok, s, float("-inf"))


@triton.jit
def _online_softmax(s, m_i, l_i):
    """Fold logits s (BLOCK_M, BLOCK_N) into running (max, sum): (p, rescale, max, sum)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_use = tl.where(m_new == float("-inf"), 0.0, m_new)
    alpha = tl.exp(m_i - m_use)
    p = tl.exp(s - m_use[:, None])
    return p, alpha, m_new, l_i * alpha + tl.sum(p, axis=1)


@triton.jit
def _attention_partial(
    q_rot,
    q_proj,
    q_model,
    offset_ptr,
    kp0,
    ks0,
    kt0,
    kp1,
    ks1,
    kt1,
    kp2,
    ks2,
    kt2,
    vp0,
    vs0,
    vt0,
    vp1,
    vs1,
    vt1,
    rows_ptr,
    ek_ptr,
    sek_b,
    sek_h,
    sek_t,
    ev_ptr,
    sev_b,
    sev_h,
    sev_t,
    mask_ptr,
    sm_b,
    sm_q,
    sm_c,
    mask_first,
    acc_ptr,
    max_ptr,
    sum_ptr,
    heads,
    M,
    q_len,
    cold_len,
    exact_len,
    leading,
    cold_splits,
    key_capacity,
    value_capacity,
    softcap,
    D: tl.constexpr,
    DP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    COLD_TILES: tl.constexpr,
    EXACT_TILES: tl.constexpr,
    KB0: tl.constexpr,
    KS0: tl.constexpr,
    KC0: tl.constexpr,
    KCP0: tl.constexpr,
    KQ0: tl.constexpr,
    KB1: tl.constexpr,
    KS1: tl.constexpr,
    KC1: tl.constexpr,
    KCP1: tl.constexpr,
    KQ1: tl.constexpr,
    KB2: tl.constexpr,
    KS2: tl.constexpr,
    KC2: tl.constexpr,
    KCP2: tl.constexpr,
    KQ2: tl.constexpr,
    VB0: tl.constexpr,
    VS0: tl.constexpr,
    VC0: tl.constexpr,
    VCP0: tl.constexpr,
    VB1: tl.constexpr,
    VS1: tl.constexpr,
    VC1: tl.constexpr,
    VCP1: tl.constexpr,
    HAS_OFFSET: tl.constexpr,
    HAS_MASK: tl.constexpr,
    HAS_SOFTCAP: tl.constexpr,
    PRECISION: tl.constexpr,
):
    bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(2)
    splits = tl.num_programs(2)
    b = bh // heads
    h = bh % heads
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < M
    mask_row = mask_ptr + b * sm_b + (m % q_len) * sm_q + mask_first * sm_c
    m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    l_i = tl.zeros((BLOCK_M,), tl.float32)
    part = (bh * splits + split) * M + m  # (batch·heads, splits, M) row of the partials
    if split < cold_splits:
        q0 = _load_query(q_proj if KQ0 else q_rot, bh, m, m_ok, M, KS0, KC0, KCP0, D)
        if KB1 > 0:
            q1 = _load_query(q_proj if KQ1 else q_rot, bh, m, m_ok, M, KS1, KC1, KCP1, D)
        if KB2 > 0:
            q2 = _load_query(q_proj if KQ2 else q_rot, bh, m, m_ok, M, KS2, KC2, KCP2, D)
        if HAS_OFFSET:
            offset = tl.load(offset_ptr + bh * M + m, mask=m_ok, other=0.0)
        acc0 = tl.zeros((BLOCK_M, VCP0), tl.float32)
        acc1 = tl.zeros((BLOCK_M, VCP1), tl.float32)
        first = split * (COLD_TILES * BLOCK_N)
        last = tl.minimum(first + COLD_TILES * BLOCK_N, cold_len)
        for tile in range(0, COLD_TILES):  # the last range's tail is masked
            n = first + tile * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = n < last
            rows = tl.load(rows_ptr + n, mask=n_ok, other=0)
            s = _stream_scores(
                q0, kp0, ks0, kt0, rows, n_ok, bh, key_capacity, KB0, KC0, KCP0, PRECISION
            )
            if KB1 > 0:
                s += _stream_scores(
                    q1, kp1, ks1, kt1, rows, n_ok, bh, key_capacity, KB1, KC1, KCP1, PRECISION
                )
            if KB2 > 0:
                s += _stream_scores(
                    q2, kp2, ks2, kt2, rows, n_ok, bh, key_capacity, KB2, KC2, KCP2, PRECISION
                )
            if HAS_OFFSET:
                s += offset[:, None]
            s = _finish_logits(
                s, m_ok, n_ok, leading + n, mask_row, sm_c, softcap, HAS_MASK, HAS_SOFTCAP
            )
            p, alpha, m_i, l_i = _online_softmax(s, m_i, l_i)
            v0, v0_scale = _stream_rows(
                vp0, vs0, vt0, rows, n_ok, bh, value_capacity, VB0, VC0, VCP0
            )
            v0 = v0 * v0_scale[:, None]
            acc0 = acc0 * alpha[:, None] + tl.dot(p, v0, input_precision=PRECISION)
            if VB1 > 0:
                v1, v1_scale = _stream_rows(
                    vp1, vs1, vt1, rows, n_ok, bh, value_capacity, VB1, VC1, VCP1
                )
                v1 = v1 * v1_scale[:, None]
                acc1 = acc1 * alpha[:, None] + tl.dot(p, v1, input_precision=PRECISION)
        c0 = tl.arange(0, VCP0)
        tl.store(
            acc_ptr + part[:, None] * D + VS0 + c0[None, :],
            acc0,
            mask=m_ok[:, None] & (c0[None, :] < VC0),
        )
        if VB1 > 0:
            c1 = tl.arange(0, VCP1)
            tl.store(
                acc_ptr + part[:, None] * D + VS1 + c1[None, :],
                acc1,
                mask=m_ok[:, None] & (c1[None, :] < VC1),
            )
    else:
        d = tl.arange(0, DP)
        q = _load_query(q_model, bh, m, m_ok, M, 0, D, DP, D)
        acc = tl.zeros((BLOCK_M, DP), tl.float32)
        first = (split - cold_splits) * (EXACT_TILES * BLOCK_N)
        last = tl.minimum(first + EXACT_TILES * BLOCK_N, exact_len)
        for tile in range(0, EXACT_TILES):
            n = first + tile * BLOCK_N + tl.arange(0, BLOCK_N)
            n_ok = n < last
            tile_ok = n_ok[:, None] & (d[None, :] < D)
            k = tl.load(
                ek_ptr + b * sek_b + h * sek_h + n[:, None] * sek_t + d[None, :],
                mask=tile_ok,
                other=0.0,
            ).to(tl.float32)
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION)
            position = tl.where(n < leading, n, cold_len + n)
            s = _finish_logits(
                s, m_ok, n_ok, position, mask_row, sm_c, softcap, HAS_MASK, HAS_SOFTCAP
            )
            p, alpha, m_i, l_i = _online_softmax(s, m_i, l_i)
            v = tl.load(
                ev_ptr + b * sev_b + h * sev_h + n[:, None] * sev_t + d[None, :],
                mask=tile_ok,
                other=0.0,
            ).to(tl.float32)
            acc = acc * alpha[:, None] + tl.dot(p, v, input_precision=PRECISION)
        tl.store(
            acc_ptr + part[:, None] * D + d[None, :], acc, mask=m_ok[:, None] & (d[None, :] < D)
        )
    tl.store(max_ptr + part, m_i, mask=m_ok)
    tl.store(sum_ptr + part, l_i, mask=m_ok)


@triton.jit
def _attention_combine(
    acc_ptr,
    max_ptr,
    sum_ptr,
    cold_out,
    exact_out,
    mass_out,
    M,
    splits,
    cold_splits,
    D: tl.constexpr,
    DP: tl.constexpr,
    BLOCK_M: tl.constexpr,
    SPLITS_P2: tl.constexpr,
):
    """Merge the ranges' online softmax states: cold (rotated value domain) and exact
    (model domain) sums over the total softmax sum, and the cold tokens' softmax mass."""
    bh = tl.program_id(0).to(tl.int64)
    m = tl.program_id(1) * BLOCK_M + tl.arange(0, BLOCK_M)
    m_ok = m < M
    d = tl.arange(0, DP)
    ok = m_ok[:, None] & (d[None, :] < D)
    top = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    # SPLITS_P2: a power of two ≥ splits (few compiled variants); the ranges past ``splits``
    # are padding. Their rows are masked by one comparison against a bound that is 0 past
    # ``splits``: ``m_ok & (split < splits)`` (a block and a run-time scalar condition) is an
    # int32 mask under Triton 3.9's interpreter, which its loads refuse.
    for split in range(0, SPLITS_P2):
        live = m < tl.where(split < splits, M, 0)
        top = tl.maximum(
            top,
            tl.load(max_ptr + (bh * splits + split) * M + m, mask=live, other=float("-inf")),
        )
    top = tl.where(top == float("-inf"), 0.0, top)
    total = tl.zeros((BLOCK_M,), tl.float32)
    mass = tl.zeros((BLOCK_M,), tl.float32)
    cold = tl.zeros((BLOCK_M, DP), tl.float32)
    exact = tl.zeros((BLOCK_M, DP), tl.float32)
    for split in range(0, SPLITS_P2):
        row = (bh * splits + split) * M + m
        live = m < tl.where(split < splits, M, 0)
        weight = tl.exp(tl.load(max_ptr + row, mask=live, other=float("-inf")) - top)
        part_sum = tl.load(sum_ptr + row, mask=live, other=0.0) * weight
        acc = tl.load(acc_ptr + row[:, None] * D + d[None, :], mask=ok & live[:, None], other=0.0)
        is_cold = (split < cold_splits).to(tl.float32)
        total += part_sum
        mass += part_sum * is_cold
        cold += acc * (weight * is_cold)[:, None]
        exact += acc * (weight * (1.0 - is_cold))[:, None]
    inverse = 1.0 / tl.where(total > 0, total, 1.0)  # rows past M: nothing stored
    out = (bh * M + m)[:, None] * D + d[None, :]
    tl.store(cold_out + out, cold * inverse[:, None], mask=ok)
    tl.store(exact_out + out, exact * inverse[:, None], mask=ok)
    tl.store(mass_out + bh * M + m, mass * inverse, mask=m_ok)


INTERPRETER_PROGRAMS = 2  # tests raise it to cut the cold tier into several ranges


def _programs_wanted(device: torch.device) -> int:
    """Programs to spread one attention call over: 4 per multiprocessor on a GPU; a few
    under the interpreter (each program runs in turn there)."""
    if device.type == "cuda":
        return 4 * torch.cuda.get_device_properties(device).multi_processor_count
    return INTERPRETER_PROGRAMS


def _ranges(tokens: int, block: int, wanted: int) -> tuple[int, int]:
    """(tiles per range, ranges) covering ``tokens`` in about ``wanted`` ranges. Tiles per
    range is a power of two: a compile-time loop bound with few distinct values (each value
    compiles once), and the interpreter needs compile-time loop bounds."""
    if tokens == 0:
        return 1, 0
    tiles = triton.next_power_of_2(triton.cdiv(triton.cdiv(tokens, block), wanted))
    return tiles, triton.cdiv(tokens, tiles * block)


def _stream_args(snapshot, layouts, count: int, with_domain: bool):
    """Pointer args and constexprs of up to ``count`` streams (absent ones: bits 0)."""
    tensors, constants = [], {}
    prefix = "K" if with_domain else "V"
    for index in range(count):
        if index < len(layouts):
            layout = layouts[index]
            tensors += [
                snapshot.packed[index].contiguous(),
                snapshot.scales[layout.scale].contiguous(),
                snapshot.codec.centroids[index],
            ]
            bits, start, channels = layout.bits, layout.start, layout.channels
        else:
            tensors += tensors[:3]
            bits, start, channels = 0, 0, 8
        constants.update(
            {
                f"{prefix}B{index}": bits,
                f"{prefix}S{index}": start,
                f"{prefix}C{index}": channels,
                f"{prefix}CP{index}": common.pow2(channels),
            }
        )
        if with_domain:
            projected = index < len(layouts) and layouts[index].domain == "projected"
            constants[f"KQ{index}"] = int(projected)
    return tensors, constants


def attend(
    q: torch.Tensor,
    q_len: int,
    exact_keys: torch.Tensor,
    exact_values: torch.Tensor,
    cold,
    mask: torch.Tensor | None,
    softcap: float | None,
) -> torch.Tensor:
    """Attention of scaled queries q (batch, kv heads, rows, head_dim) float32 (rows: groups ×
    ``q_len`` query positions, group-major) over the cold tier ``cold`` (a ColdView) and the exact
    tokens (batch, kv heads, tokens, head_dim) (sinks first), with the additive ``mask``
    (batch, 1, query positions, ≥ positions) in position order: (batch, kv heads, rows,
    head_dim) float32. Same contract as the torch path of ``compressed_attention``."""
    batch, heads, rows, dim = q.shape
    keys, values = cold.keys, cold.values
    key_codec, value_codec = keys.codec, values.codec
    if len(key_codec.layouts) > 3 or len(value_codec.layouts) > 2:
        raise ValueError("the attention kernel takes ≤ 3 key and ≤ 2 value streams")
    device = q.device
    value_codec.to_device(device)
    domains = key_codec.query_domains(q)
    q_rot = domains["rotated"].contiguous()
    q_proj = domains.get("projected", q_rot).contiguous()
    q_model = q.contiguous()
    offset = key_codec.offset_scores(q)
    cold_len, exact_len = keys.length, exact_keys.shape[-2]
    exact_keys = exact_keys if exact_keys.stride(-1) == 1 else exact_keys.contiguous()
    exact_values = exact_values if exact_values.stride(-1) == 1 else exact_values.contiguous()
    if mask is not None:
        if mask.dtype == torch.bool:
            mask = additive_mask(mask)
        if mask.dim() != 4 or mask.shape[1] != 1 or mask.shape[-1] < cold_len + exact_len:
            raise ValueError(
                f"the attention mask must be (batch, 1, queries, ≥ {cold_len + exact_len}) "
                f"positions, got {tuple(mask.shape)}"
            )
        if mask.shape[0] not in (1, batch) or mask.shape[2] not in (1, q_len):
            raise ValueError(f"mask {tuple(mask.shape)} does not fit {batch} × {q_len} queries")
    if values.length != cold_len:
        raise ValueError(f"cold keys hold {cold_len} tokens, cold values {values.length}")
    block_n = 64 if dim <= 128 else 16
    blocks_m = triton.cdiv(rows, BLOCK_M)
    wanted = max(1, _programs_wanted(device) // (batch * heads * blocks_m))
    cold_tiles, cold_splits = _ranges(cold_len, block_n, wanted)
    exact_tiles, exact_splits = _ranges(exact_len, block_n, wanted)
    splits = cold_splits + exact_splits
    partial_acc = torch.empty((batch * heads, splits, rows, dim), device=device)
    partial_max = torch.empty((batch * heads, splits, rows), device=device)
    partial_sum = torch.empty((batch * heads, splits, rows), device=device)
    key_args, key_constants = _stream_args(keys, key_codec.layouts, 3, True)
    value_args, value_constants = _stream_args(values, value_codec.layouts, 2, False)
    length = cold_len + exact_len
    mask_arg = mask if mask is not None else q_model
    mask_strides = (0, 0, 0)
    if mask is not None:  # broadcast dimensions (size 1) read with stride 0
        mask_strides = tuple(
            0 if mask.shape[axis] == 1 else mask.stride(axis) for axis in (0, 2, 3)
        )
    common.launch(
        _attention_partial,
        (batch * heads, blocks_m, splits),
        q_rot,
        q_proj,
        q_model,
        offset.contiguous() if offset is not None else q_model,
        *key_args,
        *value_args,
        keys.live_rows,
        exact_keys,
        exact_keys.stride(0),
        exact_keys.stride(1),
        exact_keys.stride(2),
        exact_values,
        exact_values.stride(0),
        exact_values.stride(1),
        exact_values.stride(2),
        mask_arg,
        *mask_strides,
        (mask.shape[-1] - length) if mask is not None else 0,
        partial_acc,
        partial_max,
        partial_sum,
        heads,
        rows,
        q_len,
        cold_len,
        exact_len,
        cold.leading,
        cold_splits,
        keys.capacity,
        values.capacity,
        float(softcap or 1.0),
        D=dim,
        DP=common.pow2(dim),
        BLOCK_M=BLOCK_M,
        BLOCK_N=block_n,
        COLD_TILES=cold_tiles,
        EXACT_TILES=exact_tiles,
        **key_constants,
        **value_constants,
        HAS_OFFSET=offset is not None,
        HAS_MASK=mask is not None,
        HAS_SOFTCAP=bool(softcap),
        PRECISION="ieee" if common.interpreting(q) else "tf32",
    )
    cold_sum = torch.empty((batch, heads, rows, dim), device=device)
    exact_sum = torch.empty_like(cold_sum)
    mass = torch.empty((batch, heads, rows, 1), device=device)
    common.launch(
        _attention_combine,
        (batch * heads, blocks_m),
        partial_acc,
        partial_max,
        partial_sum,
        cold_sum,
        exact_sum,
        mass,
        rows,
        splits,
        cold_splits,
        D=dim,
        DP=common.pow2(dim),
        BLOCK_M=BLOCK_M,
        SPLITS_P2=triton.next_power_of_2(splits),
    )
    return exact_sum + value_codec.add_offset(value_codec.unrotate(cold_sum), mass)


def bytes_read(cold, exact_tokens: int, dtype_bytes: int) -> int:
    """Bytes one decode step's :func:`attend` reads from the cache (codes, scales, row map,
    exact tokens), for the bandwidth figures of ``bench.gpu``."""
    keys, values = cold.keys, cold.values
    heads = math.prod(keys.scales[0].shape[:-1])
    per_token = keys.codec.bytes_per_vector() + values.codec.bytes_per_vector()
    exact = 2 * exact_tokens * keys.codec.head_dim * dtype_bytes
    return heads * (keys.length * per_token + exact) + 4 * keys.length
