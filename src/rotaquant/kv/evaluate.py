"""Measuring a KV cache on a real model: perplexity, greedy agreement, decode speed, needles.

Shared by ``rotaquant eval-kv``, the demo and ``python -m bench.kv``. Models are Hugging Face
causal LMs in eval mode; every function runs under ``torch.no_grad``.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import math
import time
from typing import NamedTuple

import torch


def held_nbytes(cache) -> tuple[int, int]:
    """(bytes held, float16 bytes for the same tokens) of a TurboQuantCache or of a cache whose
    layers hold plain ``keys``/``values`` tensors (DynamicCache)."""
    if hasattr(cache, "fp16_nbytes"):
        return cache.nbytes, cache.fp16_nbytes
    tensors = [t for layer in cache.layers for t in (layer.keys, layer.values)]
    return sum(t.nbytes for t in tensors), sum(2 * t.numel() for t in tensors)


class TextScore(NamedTuple):
    perplexity: float
    predictions: torch.Tensor  # (scored positions,) int64: the argmax next token at each


@torch.no_grad()
def score_text(model, ids: torch.Tensor, cache, chunk: int, prefill: int = 0) -> TextScore:
    """Perplexity of ``ids`` (1, n) fed through ``cache`` ``chunk`` tokens at a time (after a
    first piece of ``prefill`` tokens, if given), so most attention reads tokens already in
    the cache (compressed ones, for a compressed cache), and the model's top-1 prediction at
    every scored position (teacher-forced)."""
    nll, count, predictions = 0.0, 0, []
    starts = [0, *range(prefill, ids.shape[1], chunk)] if prefill else range(0, ids.shape[1], chunk)
    ends = [*starts[1:], ids.shape[1]]
    for start, end in zip(starts, ends, strict=True):
        piece = ids[:, start:end]
        logits = model(piece, cache=cache, use_cache=True).logits[:, :-1].float()
        nll += torch.nn.functional.cross_entropy(
            logits.reshape(-1, logits.shape[-1]), piece[:, 1:].reshape(-1), reduction="sum"
        ).item()
        predictions.append(logits.argmax(dim=-1).reshape(-1))
        count += piece.shape[1] - 1
    return TextScore(math.exp(nll / count), torch.cat(predictions))


def perplexity(model, ids: torch.Tensor, cache, chunk: int) -> float:
    """:func:`score_text`'s perplexity."""
    return score_text(model, ids, cache, chunk).perplexity


@torch.no_grad()
def greedy(model, ids: torch.Tensor, cache, new_tokens: int) -> torch.Tensor:
    """The ``new_tokens`` greedy continuation of ``ids`` (1, n): (new_tokens,) int64."""
    out = model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        cache=cache,
        max_new_tokens=new_tokens,
        min_new_tokens=new_tokens,
        do_sample=False,
    )
    return out[0, ids.shape[1] :]


def agreement(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int]:
    """(tokens equal position by position, index of the first difference or len)."""
    same = (a == b).tolist()
    first = same.index(False) if False in same else len(same)
    return sum(same), first


@torch.no_grad()
def prefill(model, ids: torch.Tensor, cache, context: int) -> None:
    """Feed the first ``context`` tokens in 512-token chunks, then two warm-up decode steps."""
    for start in range(0, context, 512):
        model(ids[:, start : min(context, start + 512)], cache=cache, use_cache=True)
    for _ in range(2):
        model(ids[:, context : context + 1], cache=cache, use_cache=True)


@torch.no_grad()
def step_rate(model, ids: torch.Tensor, cache, context: int, steps: int) -> float:
    """Tokens/s of ``steps`` single-token forward steps on a prefilled cache."""
    token = ids[:, context : context + 1]
    start = time.perf_counter()
    for _ in range(steps):
        model(token, cache=cache, use_cache=True)
    return steps / (time.perf_counter() - start)


def decode_rate(model, ids: torch.Tensor, cache, context: int, steps: int) -> float:
    """Tokens/s of single-token forward steps after a ``context``-token prompt."""
    prefill(model, ids, cache, context)
    return step_rate(model, ids, cache, context, steps)


# Passkey retrieval, shaped for 135M-270M models: the pass key announced up front, the needle in
# its own paragraph and a "Question/Answer" ending (python -m bench.kv --sections needle).
NEEDLE_INTRO = (
    "Below is a long text. Somewhere inside it there is a pass key, a five-digit number. "
    "Find the pass key and remember it; after the text I will ask you what the pass key is.\n\n"
)
NEEDLE = "\n\nThe pass key is {key}. Remember it. {key} is the pass key.\n\n"
NEEDLE_QUESTION = "\n\nQuestion: What is the pass key?\nAnswer: The pass key is"
NEEDLE_FILLER = (
    "The grass is green.",
    "The sky is blue.",
    "The sun is yellow.",
    "Here we go.",
    "There and back again.",
)


def needle_prompt(tokenizer, context_tokens: int, depth: float, key: int) -> torch.Tensor:
    """(1, context_tokens) ids: filler sentences with the pass-key paragraph after a ``depth``
    fraction of them, then the question."""

    def ids(text: str) -> list[int]:
        return tokenizer(text, add_special_tokens=False).input_ids

    bos = [tokenizer.bos_token_id] if tokenizer.bos_token_id is not None else []
    head, needle, tail = ids(NEEDLE_INTRO), ids(NEEDLE.format(key=key)), ids(NEEDLE_QUESTION)
    budget = context_tokens - len(bos) - len(head) - len(needle) - len(tail)
    sentences = [ids(" " + s) for s in NEEDLE_FILLER]
    filler, index = [], 0
    while sum(map(len, filler)) + len(sentences[index % len(sentences)]) <= budget:
        filler.append(sentences[index % len(sentences)])
        index += 1
    cut = round(depth * len(filler))
    before = [t for s in filler[:cut] for t in s]
    after = [t for s in filler[cut:] for t in s]
    pad = [t for s in filler for t in s][: budget - len(before) - len(after)]
    tokens = bos + head + pad + before + needle + after + tail
    return torch.tensor([tokens])


def needle_found(model, tokenizer, ids: torch.Tensor, key: int, cache) -> bool:
    """Whether greedy decoding after the prompt names the pass key."""
    answer = greedy(model, ids, cache, 8)
    return str(key) in tokenizer.decode(answer)
