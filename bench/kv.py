"""KV cache benchmark (issue 4): TurboQuantCache against DynamicCache and HF QuantizedCache.

Sections (all by default; ``--sections`` picks):

- ``quality``: SmolLM2-135M perplexity of ``--tokens`` tokens of Python's documentation fed in
  ``--chunk``-token pieces (most attention reads cached, i.e. compressed, tokens): TurboQuant
  at (8,8) … (2,2), fractional widths with and without outlier channels, QJL ("prod") keys,
  boundary layers; QuantizedCache (quanto, HQQ) at 4 and 2 bits. Real bytes held vs float16.
- ``needle``: pass-key retrieval at 1k / 2k / 4k tokens × depths 0.1 / 0.5 / 0.9 (SmolLM2
  and Gemma-3).
- ``speed``: decode tokens/s and bytes after 1k- and 4k-token prompts.
- ``gemma``: Gemma-3-270M (head_dim 256, sliding-window layers) perplexity, the stress case.
- ``bytes``: (4, 3) bytes against float16 at 1k / 4k tokens, float32 and bfloat16 model.
- ``profile``: where a decode step at 4k goes (linear layers vs cold-tier readers, readers on
  one thread and on the pool).
- ``attention``: one decode step's attention alone at 4k / 16k / 32k cached tokens, SmolLM2's
  head shape and Llama-3-8B's (8 KV heads, head_dim 128, 32 query heads): the compressed
  attention on TurboQuant (4, 3) against SDPA on float32 and float16 caches, with the bytes
  each reads.

    python -m bench.kv [--sections quality needle speed gemma] [--tokens 2048] [--chunk 256]

Writes bench/results/kv.{txt,json} and docs/kv_ppl_bits.png.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Sequence
from pathlib import Path

import torch
from transformers import DynamicCache, QuantizedCache

from rotaquant.contrib import data
from rotaquant.kv import TurboQuantCache, enable
from rotaquant.kv.evaluate import (
    decode_rate,
    held_nbytes,
    needle_found,
    needle_prompt,
    perplexity,
    prefill,
    score_text,
    step_rate,
)

from ._common import Column, add_isa_argument, apply_isa, format_table, metadata, publish

RESIDUAL = 128
SECTIONS = ("quality", "needle", "speed", "gemma", "bytes", "profile", "attention", "devset")
WIDTHS = ((8, 8), (4, 4), (4, 3), (3.5, 3.5), (3, 3), (2.5, 2.5), (2, 2))
# (label, TurboQuantCache kwargs) beyond the plain widths above
VARIANTS = (
    ("rotated split", {"key_bits": 3.5, "value_bits": 3.5, "outliers": False}),
    ("rotated split", {"key_bits": 2.5, "value_bits": 2.5, "outliers": False}),
    ("prod keys", {"key_bits": 4, "value_bits": 3, "key_mode": "prod"}),
    ("prod keys", {"key_bits": 3, "value_bits": 3, "key_mode": "prod"}),
    ("prod keys", {"key_bits": 2.5, "value_bits": 2.5, "key_mode": "prod"}),
    ("boundary 2@8", {"key_bits": 2.5, "value_bits": 2.5, "boundary_layers": 2}),
    ("boundary 2@8", {"key_bits": 2, "value_bits": 2, "boundary_layers": 2}),
)
# HF QuantizedCache: one group per (token, head) over head_dim (HQQ needs axis=1 for that: its
# default axis=0 groups values numel/64 apart and loses badly); "K per-channel" is KIVI-style.
PEERS = (
    ("quanto", 4, 0, 0),
    ("quanto", 2, 0, 0),
    ("quanto", 2, -1, 0),
    ("HQQ", 4, 1, 1),
    ("HQQ", 2, 1, 1),
)
CONTEXTS = (1024, 2048, 4096)
DEPTHS = (0.1, 0.5, 0.9)
NEEDLE_KEY = 71432

QUALITY_COLUMNS: list[Column] = [
    ("model", "model", ""),
    ("cache", "cache", ""),
    ("key_bits", "K bits", "g"),
    ("value_bits", "V bits", "g"),
    ("variant", "variant", ""),
    ("ppl", "ppl", ".3f"),
    ("ppl_change_pct", "vs dynamic %", "+.2f"),
    ("mbytes", "cache MB", ".2f"),
    ("fp16_ratio", "fp16/cache", ".2f"),
    ("bits_per_value", "bits/value", ".2f"),
]
NEEDLE_COLUMNS: list[Column] = [("cache", "cache", "")] + [
    (f"{c}@{d}", f"{c // 1024}k@{d}", "") for c in CONTEXTS for d in DEPTHS
]
SPEED_COLUMNS: list[Column] = [
    ("cache", "cache", ""),
    ("context", "context", "d"),
    ("tokens_per_s", "decode tok/s", ".1f"),
    ("vs_dynamic", "vs dynamic", ".2f"),
    ("mbytes", "cache MB", ".2f"),
    ("fp16_ratio", "fp16/cache", ".2f"),
]


def quantized_cache(
    model, backend: str, bits: int, key_axis: int, value_axis: int, residual: int = RESIDUAL
):
    return QuantizedCache(
        backend.lower(),
        model.config,
        nbits=bits,
        axis_key=key_axis,
        axis_value=value_axis,
        q_group_size=64,
        residual_length=residual,
    )


def _storage_leaves(tensor):
    """Plain tensors backing ``tensor`` (quanto's packed tensors are tensor subclasses)."""
    if type(tensor) is torch.Tensor or not hasattr(tensor, "__tensor_flatten__"):
        yield tensor
        return
    for name in tensor.__tensor_flatten__()[0]:
        yield from _storage_leaves(getattr(tensor, name))


def quantized_cache_nbytes(cache) -> int:
    """Bytes a QuantizedCache really holds: packed codes, per-group scales and zero points (in
    the model dtype) and the residual tensors, each storage counted once."""
    seen, total = set(), 0
    pending = []
    for layer in cache.layers:
        for quantized in (layer._quantized_keys, layer._quantized_values):
            if isinstance(quantized, tuple):  # HQQ: (codes, meta)
                codes, meta = quantized
                pending += [codes, meta.get("scale"), meta.get("zero")]
            elif quantized is not None:
                pending.append(quantized)
        if layer.is_initialized:
            pending += [layer.keys, layer.values]
    for tensor in pending:
        if not isinstance(tensor, torch.Tensor) or tensor.numel() == 0:
            continue
        for leaf in _storage_leaves(tensor):
            storage = leaf.untyped_storage()
            if storage.data_ptr() not in seen:
                seen.add(storage.data_ptr())
                total += storage.nbytes()
    return total


def fp16_nbytes(config, tokens: int) -> int:
    text = config.get_text_config(decoder=True)
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    return 2 * 2 * tokens * text.num_hidden_layers * text.num_key_value_heads * head_dim


def cache_nbytes(cache, config, tokens: int) -> tuple[int, int]:
    """(bytes held, float16 bytes for the same tokens) for any of the caches measured."""
    if isinstance(cache, QuantizedCache):
        return quantized_cache_nbytes(cache), fp16_nbytes(config, tokens)
    return held_nbytes(cache)


def gemma_models():
    """Packaged Gemma-3-270M: (model, tokenizer, a copy with the compressed attention)."""
    model, tokenizer = data.gemma3()
    compressed = copy.deepcopy(model)
    enable(compressed)
    return model, tokenizer, compressed


def _bits_per_value(cache, config, tokens: int) -> float:
    """Bits per cached value really held (float16 = 16)."""
    held, fp16 = cache_nbytes(cache, config, tokens)
    return 16 * held / fp16


def _row(model_name, cache_name, cache, config, tokens, ppl, base, **extra) -> dict:
    held, fp16 = cache_nbytes(cache, config, tokens)
    return {
        "model": model_name,
        "cache": cache_name,
        "ppl": ppl,
        "ppl_change_pct": 100 * (ppl / base - 1),
        "mbytes": held / 1e6,
        "fp16_ratio": fp16 / held,
        "bits_per_value": 16 * held / fp16,
        **extra,
    }


def turboquant_rows(name, model, compressed, ids, chunk, settings) -> tuple[list[dict], float]:
    """The DynamicCache row and one TurboQuantCache row per (variant, kwargs) setting, and the
    DynamicCache perplexity."""
    config, tokens = model.config, ids.shape[1]
    dynamic = DynamicCache(config=config)
    base = perplexity(model, ids, dynamic, chunk)
    rows = [_row(name, "DynamicCache", dynamic, config, tokens, base, base)]
    for variant, kwargs in settings:
        cache = TurboQuantCache(
            residual_length=RESIDUAL, attention="compressed", config=config, **kwargs
        )
        ppl = perplexity(compressed, ids, cache, chunk)
        rows.append(
            _row(
                name,
                "TurboQuantCache",
                cache,
                config,
                tokens,
                ppl,
                base,
                key_bits=kwargs["key_bits"],
                value_bits=kwargs["value_bits"],
                variant=variant or "mse",
            )
        )
        print(f"{name} TurboQuant {kwargs}: ppl {ppl:.3f}", flush=True)
    return rows, base


def quality(model, compressed, ids, chunk, sweep: bool = True) -> list[dict]:
    """SmolLM2 on Python docs: the width sweep (``sweep``) and QuantizedCache at 4 and 2 bits."""
    config, tokens = model.config, ids.shape[1]
    settings = [("", {"key_bits": k, "value_bits": v}) for k, v in WIDTHS] + list(VARIANTS)
    if not sweep:
        settings = [("", {"key_bits": 4, "value_bits": 3})]
    rows, base = turboquant_rows("SmolLM2", model, compressed, ids, chunk, settings)
    for backend, bits, key_axis, value_axis in PEERS:
        cache = quantized_cache(model, backend, bits, key_axis, value_axis)
        ppl = perplexity(model, ids, cache, chunk)
        variant = f"{backend}" + (" K per-channel" if key_axis == -1 else "")
        rows.append(
            _row(
                "SmolLM2",
                "QuantizedCache",
                cache,
                config,
                tokens,
                ppl,
                base,
                key_bits=bits,
                value_bits=bits,
                variant=variant,
            )
        )
        print(f"QuantizedCache {variant} {bits}: ppl {ppl:.3f}", flush=True)
    return rows


NEEDLE_CACHES = (
    ("DynamicCache", None),
    ("TurboQuant (4,3)", {"key_bits": 4, "value_bits": 3}),
    ("TurboQuant (3.5,3.5)", {"key_bits": 3.5, "value_bits": 3.5}),
    ("TurboQuant (2.5,2.5)", {"key_bits": 2.5, "value_bits": 2.5}),
    ("TurboQuant auto 3.5", {"bits": "auto", "budget": 3.5}),
    ("QuantizedCache quanto 4", ("quanto", 4, 0, 0)),
)
GEMMA_NEEDLE_CACHES = (
    ("DynamicCache", None),
    ("TurboQuant (4,3)", {"key_bits": 4, "value_bits": 3}),
    ("TurboQuant (6,4)", {"key_bits": 6, "value_bits": 4}),
    ("TurboQuant auto 3.5", {"bits": "auto", "budget": 3.5}),
)


def _make(model, compressed, spec):
    """(model to run, fresh cache) for a cache spec of NEEDLE_CACHES / the speed table."""
    if spec is None:
        return model, DynamicCache(config=model.config)
    if isinstance(spec, tuple):
        return model, quantized_cache(model, *spec)
    attention = spec.get("attention", "compressed")
    kwargs = {k: v for k, v in spec.items() if k != "attention"}
    cache = TurboQuantCache(
        residual_length=RESIDUAL, attention=attention, config=model.config, **kwargs
    )
    return (compressed if attention == "compressed" else model), cache


def needles(name, model, compressed, tokenizer, caches) -> list[dict]:
    rows = []
    for label, spec in caches:
        row = {"cache": f"{name} {label}"}
        for context in CONTEXTS:
            for depth in DEPTHS:
                ids = needle_prompt(tokenizer, context, depth, NEEDLE_KEY)
                which, cache = _make(model, compressed, spec)
                found = needle_found(which, tokenizer, ids, NEEDLE_KEY, cache)
                row[f"{context}@{depth}"] = "pass" if found else "FAIL"
        rows.append(row)
        print(row, flush=True)
    return rows


SPEED_CACHES = (
    ("DynamicCache", None),
    ("TurboQuant (4,3) compressed", {"key_bits": 4, "value_bits": 3}),
    ("TurboQuant (4,3) decoded", {"key_bits": 4, "value_bits": 3, "attention": "decoded"}),
    ("QuantizedCache quanto 4", ("quanto", 4, 0, 0)),
)


PROFILE_COLUMNS: list[Column] = [
    ("kernel_threads", "kernel threads", ""),
    ("tokens_per_s", "tok/s (no profiler)", ".1f"),
    ("ms_per_token", "ms/token (profiled)", ".1f"),
    ("linear_ms", "linear layers ms", ".1f"),
    ("cold_ms", "cold-tier readers ms", ".1f"),
    ("cold_ns_per_row", "ns per token row", ".0f"),
]


def profile(compressed, ids, context: int, steps: int) -> list[dict]:
    """Where a decode step at ``context`` tokens goes (TurboQuant (4,3), compressed attention):
    cProfile time in the model's linear layers and in the cold-tier readers, with the native
    readers on the calling thread and split over the thread pool."""
    import cProfile
    import pstats

    from rotaquant import _native
    from rotaquant.kv import cold

    rows, original = [], cold.READER_THREADS
    config = compressed.config.get_text_config(decoder=True)
    token_rows = 2 * context * config.num_hidden_layers * config.num_key_value_heads
    for threads in (1, _native.threads()):
        cold.READER_THREADS = threads
        cache = TurboQuantCache(
            key_bits=4, value_bits=3, residual_length=RESIDUAL, attention="compressed"
        )
        rate = decode_rate(compressed, ids, cache, context, steps)
        profiler = cProfile.Profile()
        token = ids[:, context : context + 1]
        with torch.no_grad():
            profiler.enable()
            for _ in range(steps):
                compressed(token, cache=cache, use_cache=True)
            profiler.disable()
        stats = pstats.Stats(profiler).stats  # (file, line, name) -> (cc, nc, tt, ct, callers)
        total = sum(tt for _, _, tt, _, _ in stats.values())
        linear = sum(v[2] for k, v in stats.items() if k[2].endswith("_nn.linear>"))
        readers = sum(
            v[3]
            for k, v in stats.items()
            if k[0] == cold.__file__ and k[2] in ("scores", "weighted_sum")
        )
        rows.append(
            {
                "kernel_threads": threads,
                "tokens_per_s": rate,
                "ms_per_token": 1e3 * total / steps,
                "linear_ms": 1e3 * linear / steps,
                "cold_ms": 1e3 * readers / steps,
                "cold_ns_per_row": 1e9 * readers / steps / token_rows,
            }
        )
        print(rows[-1], flush=True)
    cold.READER_THREADS = original
    return rows


def speed(
    model, compressed, ids, contexts, steps, rounds: int = 3, only: Sequence[str] | None = None
) -> list[dict]:
    """Decode tokens/s after each context: every cache prefilled, then ``rounds`` rounds in
    which each cache runs ``steps`` steps in turn (interleaved, so that a slow phase of this
    shared machine hits all alike); the best round of each. ``only``: these caches alone."""
    rows = []
    for context in contexts:
        caches = []
        for name, spec in SPEED_CACHES:
            if only is not None and name not in only:
                continue
            which, cache = _make(model, compressed, spec)
            with torch.no_grad():
                prefill(which, ids, cache, context)
            caches.append((name, which, cache))
        best = {name: 0.0 for name, _, _ in caches}
        for _ in range(rounds):
            for name, which, cache in caches:
                with torch.no_grad():
                    best[name] = max(best[name], step_rate(which, ids, cache, context, steps))
        first = len(rows)
        for name, _, cache in caches:
            held, fp16 = cache_nbytes(cache, model.config, context + 2 + rounds * steps)
            rows.append(
                {
                    "cache": name,
                    "context": context,
                    "tokens_per_s": best[name],
                    "mbytes": held / 1e6,
                    "fp16_ratio": fp16 / held,
                }
            )
            print(rows[-1], flush=True)
        for row in rows[first:]:
            row["vs_dynamic"] = row["tokens_per_s"] / rows[first]["tokens_per_s"]
        del caches
    return rows


ATTENTION_SHAPES = {"SmolLM2-135M": (3, 9, 64), "Llama-3-8B": (8, 32, 128)}  # kv, q heads, d
ATTENTION_COLUMNS: list[Column] = [
    ("shape", "head shape", ""),
    ("context", "cached tokens", ",d"),
    ("compressed_ms", "TurboQuant (4,3) ms", ".3f"),
    ("sdpa32_ms", "SDPA fp32 ms", ".3f"),
    ("sdpa16_ms", "SDPA fp16 ms", ".3f"),
    ("vs_fp32", "vs fp32", ".2f"),
    ("vs_fp16", "vs fp16", ".2f"),
    ("compressed_mb", "bytes read MB", ".1f"),
    ("fp32_mb", "fp32 MB", ".1f"),
]


def attention_only(contexts: Sequence[int], repeat: int = 20) -> list[dict]:
    """One decode step's attention over a filled cache, TurboQuant (4, 3) compressed attention
    (residual 128) against torch SDPA (enable_gqa) on the float32 and float16 caches."""
    from types import SimpleNamespace

    import torch.nn.functional as F

    from rotaquant.kv import KVConfig, TurboQuantLayer, compressed_attention

    from ._common import best_of

    rows = []
    generator = torch.Generator().manual_seed(0)
    # one layer as measured since the native readers landed: no sinks, centered keys and
    # values, no key channel scales
    layer_options = KVConfig(
        key_bits=4,
        value_bits=3,
        residual_length=RESIDUAL,
        attention="compressed",
        sink_tokens=0,
        center_values=True,
        key_scale=0.0,
    )
    for shape, (kv_heads, q_heads, head_dim) in ATTENTION_SHAPES.items():
        for context in contexts:
            keys = torch.randn(1, kv_heads, context + 1, head_dim, generator=generator)
            values = torch.randn(1, kv_heads, context + 1, head_dim, generator=generator)
            query = torch.randn(1, q_heads, 1, head_dim, generator=generator)
            layer = TurboQuantLayer(layer_options)
            layer.update(keys[..., :context, :], values[..., :context, :])
            hot_keys, hot_values = layer.update(keys[..., context:, :], values[..., context:, :])
            module = SimpleNamespace(num_key_value_groups=q_heads // kv_heads)

            def compressed(hot_keys=hot_keys, hot_values=hot_values, module=module, query=query):
                return compressed_attention(module, query, hot_keys, hot_values, None)

            exact = F.scaled_dot_product_attention(query, keys, values, enable_gqa=True)
            got = compressed()[0].transpose(1, 2)
            error = float((got - exact).abs().max() / exact.abs().max())
            times = {"compressed": best_of(compressed, repeat)[0]}
            for label, dtype in (("sdpa32", torch.float32), ("sdpa16", torch.float16)):
                q, k, v = (t.to(dtype) for t in (query, keys, values))
                times[label] = best_of(
                    lambda q=q, k=k, v=v: F.scaled_dot_product_attention(q, k, v, enable_gqa=True),
                    repeat,
                )[0]
            cold = sum(tier.nbytes for tier in layer.cold.values())
            hot = layer.keys.nbytes + layer.values.nbytes
            rows.append(
                {
                    "shape": shape,
                    "context": context,
                    "compressed_ms": 1e3 * times["compressed"],
                    "sdpa32_ms": 1e3 * times["sdpa32"],
                    "sdpa16_ms": 1e3 * times["sdpa16"],
                    "vs_fp32": times["compressed"] / times["sdpa32"],
                    "vs_fp16": times["compressed"] / times["sdpa16"],
                    "compressed_mb": (cold + hot) / 1e6,
                    "fp32_mb": (keys.nbytes + values.nbytes) / 1e6,
                    "relative_error": error,
                }
            )
            print(rows[-1], flush=True)
    return rows


BYTES_COLUMNS: list[Column] = [
    ("dtype", "model dtype", ""),
    ("context", "context", "d"),
    ("residual", "residual", "d"),
    ("mbytes", "cache MB", ".2f"),
    ("fp16_mbytes", "fp16 MB", ".2f"),
    ("fp16_ratio", "fp16/cache", ".3f"),
]


def bytes_held(ids: torch.Tensor) -> list[dict]:
    """TurboQuantCache(4, 3) bytes after prefilling 1k / 4k tokens, float32 and bfloat16 model
    (the hot window is held in the model dtype), residual 128 and 64."""
    rows = []
    for dtype in ("float32", "bfloat16"):
        model, _ = data.smollm2(dtype)
        enable(model)
        for context in (1024, 4096):
            for residual in (128, 64):
                cache = TurboQuantCache(
                    key_bits=4, value_bits=3, residual_length=residual, attention="compressed"
                )
                with torch.no_grad():
                    for start in range(0, context, 512):
                        model(ids[:, start : start + 512], cache=cache, use_cache=True)
                rows.append(
                    {
                        "dtype": dtype,
                        "context": context,
                        "residual": residual,
                        "mbytes": cache.nbytes / 1e6,
                        "fp16_mbytes": cache.fp16_nbytes / 1e6,
                        "fp16_ratio": cache.fp16_nbytes / cache.nbytes,
                    }
                )
                print(rows[-1], flush=True)
    return rows


GEMMA_SETTINGS = (
    ("", {"key_bits": 8, "value_bits": 8}),
    ("", {"key_bits": 4, "value_bits": 4}),
    ("", {"key_bits": 4, "value_bits": 3}),
    ("", {"key_bits": 3.5, "value_bits": 3.5}),
    ("", {"key_bits": 2.5, "value_bits": 2.5}),
    ("", {"key_bits": 5, "value_bits": 4}),
    ("", {"key_bits": 6, "value_bits": 4}),
    ("", {"key_bits": 8, "value_bits": 3}),
    ("", {"key_bits": 4, "value_bits": 8}),
    ("rotated split", {"key_bits": 3.5, "value_bits": 3.5, "outliers": False}),
    ("prod keys", {"key_bits": 4, "value_bits": 3, "key_mode": "prod"}),
)


def gemma(tokens: int, chunk: int, sweep: bool = True) -> tuple[list[dict], list[dict]]:
    """(the width sweep on Python docs, the robustness table) for Gemma-3-270M."""
    model, tokenizer, compressed = gemma_models()
    texts = real_texts(tokenizer, tokens)
    rows = []
    if sweep:
        rows = turboquant_rows(
            "Gemma-3-270M", model, compressed, texts["Python docs"], chunk, GEMMA_SETTINGS
        )[0]
    return rows, robustness("Gemma-3-270M", model, compressed, texts, chunk)


def real_texts(tokenizer, tokens: int) -> dict[str, torch.Tensor]:
    """Two real English texts as (1, tokens) ids: Python's documentation, and WordNet 3.0's
    dictionary definitions (nouns from the 20,000th synset on: not Python documentation)."""
    sources = {
        "Python docs": " ".join(data.pydoc_sentences()),
        "WordNet glosses": " ".join(data.wordnet_glosses()[20_000:26_000]),
    }
    return {
        name: tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
        for name, text in sources.items()
    }


# What the defaults were before issue 12, and each technique added on its own
BEFORE = {"sink_tokens": 0, "center_keys": False, "key_scale": 0.0, "hot_float16": False}
ROBUSTNESS_SETTINGS = (
    ("before", (4, 3), BEFORE),
    ("+ sinks", (4, 3), {"center_keys": False, "key_scale": 0.0}),
    ("+ sinks, centered keys", (4, 3), {"key_scale": 0.0}),
    ("now (+ key scales)", (4, 3), {}),
    ("before", (3.5, 3.5), BEFORE),
    ("now (+ key scales)", (3.5, 3.5), {}),
    ("before", (2.5, 2.5), BEFORE),
    ("now (+ key scales)", (2.5, 2.5), {}),
)
ROBUSTNESS_WINDOWS = (16, 128)
ROBUSTNESS_COLUMNS: list[Column] = [
    ("model", "model", ""),
    ("text", "text", ""),
    ("residual", "hot", "d"),
    ("key_bits", "K", "g"),
    ("value_bits", "V", "g"),
    ("variant", "settings", ""),
    ("ppl", "ppl", ".3f"),
    ("ppl_change_pct", "vs dynamic %", "+.2f"),
    ("top1_pct", "top-1 agree %", ".1f"),
    ("mbytes", "cache MB", ".2f"),
    ("fp16_ratio", "fp16/cache", ".2f"),
]


def robustness(name, model, compressed, texts: dict[str, torch.Tensor], chunk) -> list[dict]:
    """Perplexity, top-1 agreement with the uncompressed cache and bytes, per text × hot
    window × ROBUSTNESS_SETTINGS (the defaults before this issue, each technique, now)."""
    rows = []
    for text, ids in texts.items():
        config, tokens = model.config, ids.shape[1]
        reference = score_text(model, ids, DynamicCache(config=config), chunk)
        base = reference.perplexity
        for residual in ROBUSTNESS_WINDOWS:
            fp16 = fp16_nbytes(config, tokens)
            rows.append(
                {
                    "model": name,
                    "cache": "DynamicCache",
                    "text": text,
                    "residual": residual,
                    "variant": "float32",
                    "ppl": base,
                    "ppl_change_pct": 0.0,
                    "top1_pct": 100.0,
                    "mbytes": 2 * fp16 / 1e6,
                    "fp16_ratio": 0.5,
                }
            )
            for label, (key_bits, value_bits), kwargs in ROBUSTNESS_SETTINGS:
                cache = TurboQuantCache(
                    key_bits=key_bits,
                    value_bits=value_bits,
                    residual_length=residual,
                    attention="compressed",
                    config=config,
                    **kwargs,
                )
                scored = score_text(compressed, ids, cache, chunk)
                top1 = (scored.predictions == reference.predictions).float().mean().item()
                rows.append(
                    {
                        **_row(
                            name, "TurboQuantCache", cache, config, tokens, scored.perplexity, base
                        ),
                        "text": text,
                        "residual": residual,
                        "key_bits": key_bits,
                        "value_bits": value_bits,
                        "variant": label,
                        "top1_pct": 100 * top1,
                    }
                )
                print(
                    {
                        k: rows[-1][k]
                        for k in ("text", "residual", "variant", "key_bits", "ppl_change_pct")
                    },
                    flush=True,
                )
    return rows


# Issue 23's development set: the defaults against calibration and bits="auto"
DEVSET_SETTINGS = (
    ("fixed statistics", {"key_bits": 4, "value_bits": 3, "calibrate": False}),
    ("calibrated", {"key_bits": 4, "value_bits": 3}),
    ("calibrated", {"key_bits": 3.5, "value_bits": 3.5}),
    ("calibrated", {"key_bits": 2.5, "value_bits": 2.5}),
    ("auto 3.5", {"bits": "auto", "budget": 3.5}),
    ("auto 3.0", {"bits": "auto", "budget": 3.0}),
)
DEVSET_WINDOWS = (16, 128)
# Rotation seeds per setting at the target window: one seed's perplexity change on 1,536
# tokens moves by up to 1.5 points between seeds (SmolLM2 on Python source, (4, 3) fixed
# statistics: +0.04 to +1.55, bench/results/kv_devset_smollm2.log), so the targets are judged
# on the mean of these seeds and the spread is printed.
DEVSET_SEEDS = (0, 1, 2)
DEVSET_PEERS = (("quanto", 4, 0, 0), ("quanto", 2, 0, 0), ("HQQ", 4, 1, 1), ("HQQ", 2, 1, 1))
DEVSET_COLUMNS: list[Column] = [
    ("model", "model", ""),
    ("text", "text", ""),
    ("residual", "hot", "d"),
    ("variant", "settings", ""),
    ("widths", "K/V bits", ""),
    ("ppl_change_pct", "vs dynamic %", "+.2f"),
    ("spread", "seeds min..max %", ""),
    ("top1_pct", "top-1 agree %", ".1f"),
    ("bits_per_value", "bits/value held", ".2f"),
]
DEVSET_SUMMARY: list[Column] = [
    ("model", "model", ""),
    ("residual", "hot", "d"),
    ("variant", "settings", ""),
    ("widths", "K/V bits", ""),
    ("worst_pct", "worst text %", "+.2f"),
    ("worst_text", "worst text", ""),
    ("mean_pct", "mean %", "+.2f"),
    ("bits_per_value", "bits/value held", ".2f"),
]


def _widths(cache) -> str:
    """The layers' (key, value) widths: one pair, or the mean of an allocation."""
    pairs = cache.allocation
    if len(set(pairs)) == 1:
        return "{:g}/{:g}".format(*pairs[0])
    keys = sum(k for k, _ in pairs) / len(pairs)
    values = sum(v for _, v in pairs) / len(pairs)
    return f"auto {keys:.2f}/{values:.2f}"


def _devset_row(name, text, residual, variant, widths, scores, reference, bits) -> dict:
    """One setting on one text: the mean over ``scores`` (one per seed) of the perplexity
    change and top-1 agreement, and the seeds' range."""
    changes = [100 * (s.perplexity / reference.perplexity - 1) for s in scores]
    agree = [(s.predictions == reference.predictions).float().mean().item() for s in scores]
    row = {
        "model": name,
        "text": text,
        "residual": residual,
        "variant": variant,
        "widths": widths,
        "ppl_change_pct": sum(changes) / len(changes),
        "seed_changes_pct": changes,
        "spread": f"{min(changes):+.2f}..{max(changes):+.2f}" if len(changes) > 1 else "",
        "top1_pct": 100 * sum(agree) / len(agree),
        "bits_per_value": bits,
    }
    print(
        {k: row[k] for k in ("model", "text", "residual", "variant", "widths", "spread")},
        f"{row['ppl_change_pct']:+.2f}",
        flush=True,
    )
    return row


def devset(name, model, compressed, tokenizer, tokens, prefill, chunk, done=None) -> list[dict]:
    """Every development text (``data.development_texts``) × DEVSET_WINDOWS × DEVSET_SETTINGS
    (DEVSET_SEEDS at the first window, seed 0 at the others) and HF QuantizedCache
    (DEVSET_PEERS, same windows): perplexity change against DynamicCache, top-1 agreement,
    bits per value really held. QuantizedCache is skipped on models with sliding-window layers
    (transformers 5.24 refuses them). ``done(rows)`` is called after each text (the rows so
    far), so that a long run's results survive its interruption."""
    rows = []
    for text, source in data.development_texts(tokenizer).items():
        ids = tokenizer(source, return_tensors="pt").input_ids[:, :tokens]
        reference = score_text(model, ids, DynamicCache(config=model.config), chunk, prefill)
        for residual in DEVSET_WINDOWS:
            seeds = DEVSET_SEEDS if residual == DEVSET_WINDOWS[0] else DEVSET_SEEDS[:1]
            for label, options in DEVSET_SETTINGS:
                scores, bits, widths = [], [], []
                for seed in seeds:
                    cache = TurboQuantCache(
                        residual_length=residual,
                        attention="compressed",
                        config=model.config,
                        seed=seed,
                        **options,
                    )
                    scores.append(score_text(compressed, ids, cache, chunk, prefill))
                    bits.append(_bits_per_value(cache, model.config, ids.shape[1]))
                    widths.append(_widths(cache))
                shown = widths[0] if len(set(widths)) == 1 else f"{widths[0]} (seed 0)"
                rows.append(
                    _devset_row(
                        name, text, residual, label, shown, scores, reference, sum(bits) / len(bits)
                    )
                )
            sliding = "sliding_attention" in (getattr(model.config, "layer_types", None) or ())
            for backend, nbits, key_axis, value_axis in () if sliding else DEVSET_PEERS:
                cache = quantized_cache(model, backend, nbits, key_axis, value_axis, residual)
                scored = score_text(model, ids, cache, chunk, prefill)
                label = f"QuantizedCache {backend}"
                rows.append(
                    _devset_row(
                        name,
                        text,
                        residual,
                        label,
                        f"{nbits}/{nbits}",
                        [scored],
                        reference,
                        _bits_per_value(cache, model.config, ids.shape[1]),
                    )
                )
        if done is not None:
            done(rows)
    return rows


def devset_summary(rows: list[dict]) -> list[dict]:
    """Per model, window and setting: the worst text and the mean (of the seed means); and
    leave-one-text-out for the (4, 3) choice between fixed statistics and calibration."""

    def setting(row: dict) -> tuple:  # auto: one setting, its widths vary
        auto = row["variant"].startswith("auto")
        return row["model"], row["residual"], row["variant"], "auto" if auto else row["widths"]

    out = []
    for model, residual, variant, widths in sorted({setting(r) for r in rows}):
        mine = [r for r in rows if setting(r) == (model, residual, variant, widths)]
        worst = max(mine, key=lambda r: r["ppl_change_pct"])
        out.append(
            {
                "model": model,
                "residual": residual,
                "variant": variant,
                "widths": widths,
                "worst_pct": worst["ppl_change_pct"],
                "worst_text": worst["text"],
                "mean_pct": sum(r["ppl_change_pct"] for r in mine) / len(mine),
                "bits_per_value": sum(r["bits_per_value"] for r in mine) / len(mine),
            }
        )
    return out + leave_one_text_out(rows)


def leave_one_text_out(rows: list[dict]) -> list[dict]:
    """(4, 3) at the first window: fixed statistics or calibrated, chosen on five texts (the
    lower worst change), checked on the sixth."""
    out = []
    for model in sorted({r["model"] for r in rows}):
        pick = {
            (r["variant"], r["text"]): r["ppl_change_pct"]
            for r in rows
            if r["model"] == model
            and r["widths"] == "4/3"
            and r["residual"] == DEVSET_WINDOWS[0]
            and r["variant"] in ("fixed statistics", "calibrated")
        }
        texts = sorted({t for _, t in pick})
        for held_out in texts if len(texts) > 1 else ():
            others = [t for t in texts if t != held_out]
            chosen = min(
                ("fixed statistics", "calibrated"),
                key=lambda v: max(pick[(v, t)] for t in others),
            )
            out.append(
                {
                    "model": model,
                    "residual": DEVSET_WINDOWS[0],
                    "variant": f"held out: {held_out}",
                    "widths": chosen,
                    "worst_pct": pick[(chosen, held_out)],
                    "worst_text": held_out,
                    "mean_pct": max(pick[(chosen, t)] for t in others),
                    "bits_per_value": float("nan"),
                }
            )
    return out


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    groups = {}
    for row in rows:
        if row["model"] == "SmolLM2" and row["cache"] != "DynamicCache":
            label = f"{row['cache']} ({row['variant']})"
            groups.setdefault(label, []).append(row)
    for label, points in groups.items():
        points.sort(key=lambda r: r["bits_per_value"])
        ax.plot(
            [p["bits_per_value"] for p in points],
            [max(p["ppl_change_pct"], 0.01) for p in points],
            marker="o",
            label=label,
        )
    ax.set_yscale("log")
    ax.set_xlabel("bits per value held (codes, scales, hot window; float16 = 16)")
    ax.set_ylabel("perplexity increase over DynamicCache, %")
    ax.set_title("SmolLM2-135M, 2k tokens of Python docs")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=120)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--sections",
        nargs="+",
        default=list(SECTIONS),
        choices=SECTIONS,
    )
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument(
        "--sweep",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="quality/gemma: the full width sweep (--no-sweep: (4, 3) and the peers only)",
    )
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--contexts", type=int, nargs="+", default=[1024, 4096])
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument(
        "--speed-caches",
        nargs="+",
        choices=[name for name, _ in SPEED_CACHES],
        help="speed: only these caches (DynamicCache first: the ratios are to it)",
    )
    parser.add_argument(
        "--needle-models", nargs="+", choices=("smollm2", "gemma3"), default=["smollm2", "gemma3"]
    )
    parser.add_argument(
        "--devset-models", nargs="+", choices=("smollm2", "gemma3"), default=["smollm2", "gemma3"]
    )
    parser.add_argument("--attention-contexts", type=int, nargs="+", default=[4096, 16384, 32768])
    parser.add_argument("--out", default="kv", help="JSON path or name in bench/results")
    add_isa_argument(parser)
    args = parser.parse_args(argv)
    apply_isa(args.isa)

    model, tokenizer = data.smollm2()
    compressed = copy.deepcopy(model)
    enable(compressed)
    text = " ".join(data.pydoc_sentences())
    ids = tokenizer(text, return_tensors="pt").input_ids
    payload: dict = {}
    report = []
    if "quality" in args.sections or "gemma" in args.sections:
        rows, robust = [], []
        if "quality" in args.sections:
            rows += quality(model, compressed, ids[:, : args.tokens], args.chunk, args.sweep)
            texts = real_texts(tokenizer, args.tokens)
            robust += robustness("SmolLM2-135M", model, compressed, texts, args.chunk)
        if "gemma" in args.sections:
            sweep, gemma_robust = gemma(args.tokens, args.chunk, args.sweep)
            rows += sweep
            robust += gemma_robust
        payload["quality"], payload["robustness"] = rows, robust
        report.append(format_table(robust, ROBUSTNESS_COLUMNS))
        report.append(
            f"\nTeacher-forced perplexity of {args.tokens} tokens of each text fed in chunks of "
            f"{args.chunk} (float32 models), compressed attention, hot window 16 and 128 tokens. "
            f"before: the defaults before issue 12 ({BEFORE}); + sinks: the first 4 tokens kept "
            "exact; centered keys: minus each head's mean key; now: + key channels divided by "
            "rms^0.5 (the defaults). top-1 agree: share of positions where the next-token "
            "argmax equals the uncompressed cache's. cache MB: bytes really held (codes, "
            "scales, statistics, sinks and hot window, spare rows)."
        )
        report.append(format_table(rows, QUALITY_COLUMNS))
        report.append(
            f"\nPerplexity of {args.tokens} pydoc tokens fed in chunks of {args.chunk} (float32 "
            f"models); residual_length={RESIDUAL}; TurboQuant scored by the compressed attention. "
            "cache MB: bytes really held (codes, scales, zero points, sinks and hot window, "
            "spare rows); fp16/cache: float16 bytes for the same tokens / bytes held."
        )
        if "quality" in args.sections and args.sweep:
            plot(rows, Path(__file__).resolve().parents[1] / "docs" / "kv_ppl_bits.png")
    if "needle" in args.sections:
        payload["needle"] = []
        if "smollm2" in args.needle_models:
            payload["needle"] += needles("SmolLM2", model, compressed, tokenizer, NEEDLE_CACHES)
        if "gemma3" in args.needle_models:
            gemma_model, gemma_tokenizer, gemma_compressed = gemma_models()
            payload["needle"] += needles(
                "Gemma-3", gemma_model, gemma_compressed, gemma_tokenizer, GEMMA_NEEDLE_CACHES
            )
        report.append(format_table(payload["needle"], NEEDLE_COLUMNS))
        report.append(
            f"\nPass-key retrieval (key {NEEDLE_KEY}), context × depth of the needle; greedy, 8 "
            "new tokens (rotaquant.kv.evaluate.needle_prompt)."
        )
    if "speed" in args.sections:
        payload["speed"] = speed(
            model, compressed, ids, args.contexts, args.steps, only=args.speed_caches
        )
        report.append(format_table(payload["speed"], SPEED_COLUMNS))
        report.append(
            f"\nDecode: best of 3 interleaved rounds of {args.steps} single-token steps after "
            f"the prompt (SmolLM2, float32, "
            f"{torch.get_num_threads()} torch threads); bytes after the last step."
        )
    if "profile" in args.sections:
        payload["profile"] = profile(compressed, ids, max(args.contexts), args.steps)
        report.append(format_table(payload["profile"], PROFILE_COLUMNS))
        report.append(
            f"\nOne decode step after {max(args.contexts)} tokens, TurboQuantCache(4, 3), SmolLM2, "
            f"{args.steps} steps under cProfile; ns per token row: cold-tier reader time over "
            "(keys + values) × layers × KV heads × tokens."
        )
    if "bytes" in args.sections:
        payload["bytes"] = bytes_held(ids)
        report.append(format_table(payload["bytes"], BYTES_COLUMNS))
        report.append(
            "\nTurboQuantCache(4, 3) after prefilling the context in 512-token chunks (SmolLM2); "
            "bytes held include codes, float16 scales, spare rows and the hot window."
        )
    if "attention" in args.sections:
        payload["attention"] = attention_only(args.attention_contexts)
        report.append(format_table(payload["attention"], ATTENTION_COLUMNS))
        report.append(
            "\nAttention alone for one decode token over the cached tokens (+ the new one), best "
            "of 20: rotaquant's compressed attention on TurboQuantCache(4, 3) layers (residual "
            f"{RESIDUAL}, keys/values N(0, 1)) against torch SDPA with GQA on the same tokens in "
            "float32 and float16. vs: time ratio (below 1: faster). bytes read: the cache each "
            "scans (cold codes + scales + hot window; float32 K and V)."
        )
    if "devset" in args.sections:
        rows: list[dict] = []

        def partial(more: list[dict]) -> None:  # every finished text, written as it comes
            done = rows + more
            meta = metadata(torch=torch.__version__, partial=True)
            text = format_table(done, DEVSET_COLUMNS) + "\n\n(partial: the run goes on)"
            publish(args.out, {"meta": meta, "devset": done}, text)

        if "smollm2" in args.devset_models:
            rows += devset("SmolLM2-135M", model, compressed, tokenizer, 1664, 128, 64, partial)
        if "gemma3" in args.devset_models:
            gemma_model, gemma_tokenizer, gemma_compressed = gemma_models()
            rows += devset(
                "Gemma-3-270M",
                gemma_model,
                gemma_compressed,
                gemma_tokenizer,
                1664,
                128,
                64,
                partial,
            )
        payload["devset"] = rows
        payload["devset_summary"] = devset_summary(rows)
        report.append(format_table(rows, DEVSET_COLUMNS))
        report.append(format_table(payload["devset_summary"], DEVSET_SUMMARY))
        report.append(
            "\nDevelopment set (rotaquant.contrib.data.development_texts): 1,664 tokens of each "
            "text, a 128-token prefill then chunks of 64, teacher-forced, float32; TurboQuant "
            "scored by the compressed attention, QuantizedCache (one group of 64 per token and "
            "head, float32 model) by the model's own. vs dynamic: at hot window "
            f"{DEVSET_WINDOWS[0]} the mean over rotation seeds {DEVSET_SEEDS} (their range "
            "beside it), at the other windows seed 0. Summary: the worst text and the mean per "
            "setting; 'held out' rows: the (4, 3) choice between fixed statistics and "
            "calibration made on the other texts (by their worst change, shown as mean %) and "
            "its change on the held-out text (worst text %). bits/value held: nbytes over "
            "float16 bytes × 16 (codes, scales, zero points, statistics, sinks and the hot "
            "window)."
        )
    print("\n\n".join(report))
    meta = metadata(torch=torch.__version__, tokens=args.tokens, chunk=args.chunk)
    publish(args.out, {"meta": meta, **payload}, "\n\n".join(report))


if __name__ == "__main__":
    main()
