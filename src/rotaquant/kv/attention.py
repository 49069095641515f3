"""Attention computed on the compressed cache (registered with transformers by ``enable``).

For each layer the cache hands attention its hot tokens (model dtype) plus a view of the cold
tier (packed codes + scales). Queries are rotated once into each key codec's domain and scored
against cold keys decoded a chunk at a time *in the rotated domain* (never rotated back); the
softmax weights of cold tokens multiply cold values decoded in their rotated domain, and the
sum gets one inverse rotation per output row. No full-precision copy of the cold keys or
values is ever built; peak extra memory is one chunk.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import torch

from . import backend
from .cold import CHUNK_TOKENS
from .interface import additive_mask

ROW_KERNEL_QUERIES = 16  # query rows per KV head up to which the CPU uses the row kernels


def compressed_attention(
    module: torch.nn.Module,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    scaling: float | None = None,
    dropout: float = 0.0,
    **kwargs,
) -> tuple[torch.Tensor, None]:
    """query (B, Hq, Tq, D), key/value (B, Hkv, Th, D) hot states -> (B, Tq, Hq, D)."""
    batch, q_heads, q_len, head_dim = query.shape
    kv_heads = key.shape[1]
    groups = q_heads // kv_heads
    scaling = head_dim**-0.5 if scaling is None else scaling
    # the scale folded into the queries: logits come out scaled, no pass over them
    q = (query.float() * scaling).reshape(batch, kv_heads, groups * q_len, head_dim)
    calibrate = getattr(key, "_rotaquant_calibrate", None)
    if calibrate is not None:  # the cache's first cold tokens wait for these queries
        calibrate(q, q_len, key, value)
    cold = getattr(key, "_rotaquant_cold", None)
    cold_length = 0 if cold is None else cold.length
    recording = torch.is_grad_enabled() and query.requires_grad
    chosen = backend.choose(query.device, recording) if cold_length else "torch"
    if chosen == "triton":
        from . import triton_attention

        softcap = kwargs.get("softcap")
        out = triton_attention.attend(q, q_len, key, value, cold, attention_mask, softcap)
        cold.consumed = True
    else:
        # the native readers write into plain arrays: with autograd recording, the torch path
        row_kernels = cold_length and chosen == "native" and groups * q_len <= ROW_KERNEL_QUERIES
        out = _reference(q, q_len, key, value, cold, row_kernels, attention_mask, kwargs)
    out = out.view(batch, kv_heads, groups, q_len, -1).reshape(batch, q_heads, q_len, -1)
    return out.transpose(1, 2).contiguous().to(query.dtype), None


def _reference(q, q_len, key, value, cold, row_kernels, attention_mask, kwargs):
    """The CPU (native readers) and torch paths: q (B, Hkv, groups·q_len, D) scaled float32,
    key/value the exact states -> (B, Hkv, groups·q_len, D) float32."""
    batch, kv_heads, rows, _ = q.shape
    cold_length = 0 if cold is None else cold.length
    hot = q @ key.float().transpose(-1, -2)
    if not cold_length:
        logits = hot
    elif row_kernels:  # the native readers write the cold logits in place, cold tokens first
        logits = torch.empty((*hot.shape[:-1], cold_length + hot.shape[-1]), dtype=torch.float32)
        logits[..., :cold_length] = 0
        logits[..., cold_length:] = hot
        cold.keys.scores(cold.keys.codec.query_domains(q), out=logits)
    else:
        rotated = cold.keys.codec.query_domains(q)["rotated"]  # decoded prod keys: QJL term in
        parts = [rotated @ k.transpose(-1, -2) for k in cold.keys.decoded(CHUNK_TOKENS)]
        logits = torch.cat([*parts, hot], dim=-1)
    offset = None if not cold_length else cold.keys.codec.offset_scores(q)
    if offset is not None:  # ⟨q, μ⟩: the centered keys' mean, one number per query row
        logits[..., :cold_length] += offset[..., None]
    softcap = kwargs.get("softcap")
    if softcap:
        logits = torch.tanh(logits / softcap) * softcap
    length = logits.shape[-1]
    if attention_mask is not None:
        mask = additive_mask(attention_mask[..., -length:])  # (B, 1, Tq, L), position order
        leading = cold.leading if cold_length else 0
        if leading:  # logits hold the cold tokens first, then the sinks, then the hot ones
            mask = torch.cat(
                [
                    mask[..., leading : leading + cold_length],
                    mask[..., :leading],
                    mask[..., leading + cold_length :],
                ],
                dim=-1,
            )
        logits = (logits.view(batch, kv_heads, -1, q_len, length) + mask[:, :, None]).view(
            batch, kv_heads, rows, length
        )
    weights = torch.softmax(logits, dim=-1)
    out = weights[..., cold_length:] @ value.float()
    if cold_length:
        if row_kernels:  # the readers take the weights' cold columns in place
            accumulated = cold.values.weighted_sum(weights)
        else:
            cold_weights = weights[..., :cold_length]
            accumulated, start = 0, 0
            for values in cold.values.decoded(CHUNK_TOKENS):
                stop = start + values.shape[-2]
                accumulated = accumulated + cold_weights[..., start:stop] @ values
                start = stop
        mass = weights[..., :cold_length].sum(dim=-1, keepdim=True)
        out = out + cold.values.codec.add_offset(cold.values.codec.unrotate(accumulated), mass)
        cold.consumed = True
    return out
