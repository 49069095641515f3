"""``rotaquant eval-kv``: a packaged real LM generating with TurboQuantCache against the
uncompressed cache (perplexity, bytes, top-1 agreement, a greedy continuation, a pass key).

The cache's options are a :class:`~rotaquant.kv.KVConfig`: the command line's flags are its
fields (``--key-bits``, ``--residual-length``, ...), checked before any model loads.
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from typing import Any

from ..kv.config import KVConfig

MODELS = ("smollm2", "gemma3")
MODEL_HEAD_DIMS = {"smollm2": 64, "gemma3": 256}  # the packaged models' (checked by a test)
# what eval-kv measures with (not cache options)
EVALUATION = {
    "tokens": (2048, "text tokens for perplexity"),
    "chunk": (256, "tokens per forward pass"),
    "new_tokens": (48, "greedy tokens to compare"),
    "needle_tokens": (2048, "pass-key prompt length"),
}
# eval-kv's own defaults where they differ from KVConfig's (it measures the fast path)
CACHE_DEFAULTS = {"attention": "compressed"}
CHOICES = {
    "attention": ("compressed", "decoded"),
    "key_mode": ("mse", "prod"),
    "bits": ("auto",),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """``--model``, one flag per KVConfig field, and the evaluation's sizes."""
    parser.add_argument("--model", choices=MODELS, default="smollm2", help="packaged LM")
    hints = typing.get_type_hints(KVConfig)
    for field in dataclasses.fields(KVConfig):
        flag = "--" + field.name.replace("_", "-")
        default = CACHE_DEFAULTS.get(field.name, field.default)
        kind = hints[field.name]
        if kind is bool:
            parser.add_argument(
                flag,
                action=argparse.BooleanOptionalAction,
                default=default,
                help=field.metadata["help"],
            )
            continue
        parse = _parser_for(field.name, kind)
        parser.add_argument(
            flag,
            type=parse,
            default=default,
            choices=CHOICES.get(field.name),
            help=field.metadata["help"],
        )
    parser.add_argument(  # the 0.1 spelling of --residual-length
        "--residual", type=int, dest="old_residual", default=None, help=argparse.SUPPRESS
    )
    for name, (default, text) in EVALUATION.items():
        parser.add_argument("--" + name.replace("_", "-"), type=int, default=default, help=text)


def _parser_for(name: str, kind: Any):
    if name == "boundary_bits":  # "8" or "8,4" (key bits, value bits)
        return lambda text: tuple(float(part) for part in text.split(","))
    if name == "max_tokens":
        return lambda text: None if text.lower() == "none" else int(text)
    if kind is int:
        return int
    if kind is float:
        return float
    return str


def config_from(args: argparse.Namespace) -> KVConfig:
    """The KVConfig the flags describe (ValueError naming the option, before anything loads)."""
    options = {field.name: getattr(args, field.name) for field in dataclasses.fields(KVConfig)}
    if args.old_residual is not None:
        from .._deprecation import warn

        warn("eval-kv --residual is now --residual-length", stacklevel=2)
        options["residual_length"] = args.old_residual
    bits = options["boundary_bits"]
    if isinstance(bits, tuple) and len(bits) == 1:
        options["boundary_bits"] = bits[0]
    return KVConfig(**options)


def savings_begin(kv: KVConfig) -> int:
    """The sequence length from which a cache of ``kv`` holds fewer bytes than float16: the
    sinks, the hot window and the 16 tokens that go cold at once (a shorter one is exact and
    holds float16's bytes)."""
    return kv.sink_tokens + kv.residual_length + 16


def describe_window(kv: KVConfig) -> str:
    """One line: which tokens a cache with ``kv`` keeps exact, and from what length it holds
    fewer bytes than float16."""
    residual = kv.residual_length
    return (
        f"exact: the first {kv.sink_tokens} tokens (sinks) and the newest "
        f"{residual}-{residual + 15} (float16 for a float32 model); compressed: everything "
        "between, once 16 or more tokens are past the hot window — so a sequence holds fewer "
        f"bytes than float16 from {savings_begin(kv)} tokens on (shorter: float16's bytes)"
    )


def run(args: argparse.Namespace) -> None:
    """The ``eval-kv`` command: every option checked, at the model's head_dim too, before
    anything loads."""
    kv = config_from(args)
    kv.check_head_dim(MODEL_HEAD_DIMS[args.model])
    report(
        args.model,
        kv,
        **{name: getattr(args, name) for name in EVALUATION},
    )


def report(
    model_name: str,
    kv: KVConfig,
    *,
    tokens: int = 2048,
    chunk: int = 256,
    new_tokens: int = 48,
    needle_tokens: int = 2048,
) -> None:
    """Print the comparison for ``model_name`` ("smollm2" | "gemma3") with a cache of ``kv``."""
    import copy

    from transformers import DynamicCache

    from ..kv import TurboQuantCache, enable
    from ..kv.evaluate import (
        agreement,
        greedy,
        held_nbytes,
        needle_found,
        needle_prompt,
        score_text,
    )
    from . import data

    model, tokenizer = data.gemma3() if model_name == "gemma3" else data.smollm2()
    config = model.config
    tq_model = model
    if kv.attention != "decoded":
        tq_model = copy.deepcopy(model)
        enable(tq_model)

    def turboquant() -> TurboQuantCache:
        return TurboQuantCache(kv, config=tq_model.config)

    text = " ".join(data.pydoc_sentences())
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :tokens]
    label = f"TurboQuantCache({kv.key_bits:g}, {kv.value_bits:g})"
    if kv.bits == "auto":
        label = f"TurboQuantCache(bits='auto', budget={kv.budget:g})"
    residual = kv.residual_length
    print(
        f"\n{type(model).__name__} ({model_name}), {ids.shape[1]} tokens of Python docs fed in "
        f"chunks of {chunk}; {label}, residual_length={residual}, "
        f"attention={turboquant().kv_config.attention!r}, key_mode={kv.key_mode!r}"
    )
    print(describe_window(kv))
    dynamic = DynamicCache(config=config)
    base, base_predictions = score_text(model, ids, dynamic, chunk)
    cache = turboquant()
    ppl, predictions = score_text(tq_model, ids, cache, chunk)
    header = f"{'cache':<26} {'perplexity':>10} {'change':>8} {'MiB held':>9} {'x vs fp16':>9}"
    print(header + "\n" + "-" * len(header))
    for name, value, held in (
        (f"DynamicCache ({model.dtype})".replace("torch.", ""), base, dynamic),
        (label, ppl, cache),
    ):
        nbytes, fp16 = held_nbytes(held)
        print(
            f"{name:<26} {value:>10.3f} {100 * (value / base - 1):>+7.2f}% "
            f"{nbytes / 2**20:>9.2f} {fp16 / nbytes:>9.2f}"
        )
    print_calibration(cache)
    top1 = (predictions == base_predictions).float().mean().item()
    print(
        f"\nnext-token top-1 agreement with the uncompressed cache (same text): {100 * top1:.1f}%"
    )
    prompt = ids[:, : tokens // 2]
    reference = greedy(model, prompt, DynamicCache(config=config), new_tokens)
    continuation = greedy(tq_model, prompt, turboquant(), new_tokens)
    same, first = agreement(continuation, reference)
    print(
        f"greedy continuation of a {prompt.shape[1]}-token prompt: {same}/{new_tokens} tokens "
        f"equal to the uncompressed cache's (first difference at token {first})"
    )
    print(f"  uncompressed: {tokenizer.decode(reference)!r}")
    print(f"  compressed:   {tokenizer.decode(continuation)!r}")
    key = 71432
    found = needle_found(
        tq_model, tokenizer, needle_prompt(tokenizer, needle_tokens, 0.5, key), key, turboquant()
    )
    print(
        f"pass key hidden halfway through {needle_tokens} tokens: "
        f"{'found' if found else 'NOT found'} through the compressed cache"
    )


def print_calibration(cache) -> None:
    """Each layer's (key, value) widths and the statistics its heads were calibrated to."""
    rows = [
        (index, widths, chosen)
        for index, (widths, chosen) in enumerate(
            zip(cache.allocation, cache.calibration, strict=True)
        )
    ]
    if not any(chosen for _, _, chosen in rows) and cache.kv_config.bits != "auto":
        return
    print("\nlayer  K bits  V bits  key statistics per head (calibrated from the queries)")
    for index, (key_bits, value_bits), chosen in rows:
        heads = ", ".join(chosen["keys"].labels) if chosen else "(not calibrated yet)"
        print(f"{index:>5}  {key_bits:>6g}  {value_bits:>6g}  {heads}")
    widths = [bits for pair in cache.allocation for bits in pair]
    print(f"mean width: {sum(widths) / len(widths):.3f} bits per value (codes)")
