"""KV cache (first part of issue 4): perplexity, bytes and decode speed on SmolLM2-135M.

Real text (Python's documentation sentences) is fed through the cache in chunks, so most
attention reads compressed tokens; perplexity of TurboQuantCache (compressed attention) at
several (key, value) widths against DynamicCache, the cache's real bytes against float16, and
greedy decode tokens/s after a 1k-token prompt for DynamicCache and both TurboQuantCache
attention modes. HF QuantizedCache, needles and Gemma-3 are not measured yet.

    python -m bench.kv [--tokens 2048] [--chunk 256]
"""

from __future__ import annotations

import argparse
import copy
import time
from collections.abc import Sequence

import torch
from transformers import DynamicCache

from rotaquant import data
from rotaquant.kv import TurboQuantCache, enable

from ._common import Column, format_table, metadata, write_json

WIDTHS = ((8, 8), (4, 4), (4, 3), (3.5, 3.5), (3, 3), (2.5, 2.5), (2, 2))
RESIDUAL = 128


def perplexity(model, ids: torch.Tensor, cache, chunk: int) -> float:
    nll, count = 0.0, 0
    with torch.no_grad():
        for start in range(0, ids.shape[1], chunk):
            piece = ids[:, start : start + chunk]
            logits = model(piece, cache=cache, use_cache=True).logits[:, :-1]
            nll += torch.nn.functional.cross_entropy(
                logits.reshape(-1, logits.shape[-1]), piece[:, 1:].reshape(-1), reduction="sum"
            ).item()
            count += piece.shape[1] - 1
    return float(torch.exp(torch.tensor(nll / count)))


def decode_rate(model, ids: torch.Tensor, cache, context: int, steps: int) -> float:
    """Tokens/s of single-token forward steps after a ``context``-token prompt."""
    with torch.no_grad():
        model(ids[:, :context], cache=cache, use_cache=True)
        token = ids[:, context : context + 1]
        start = time.perf_counter()
        for _ in range(steps):
            model(token, cache=cache, use_cache=True)
        return steps / (time.perf_counter() - start)


COLUMNS: list[Column] = [
    ("cache", "cache", ""),
    ("key_bits", "K bits", "g"),
    ("value_bits", "V bits", "g"),
    ("ppl", "ppl", ".3f"),
    ("ppl_change_pct", "vs dynamic %", "+.2f"),
    ("mbytes", "cache MB", ".2f"),
    ("fp16_mbytes", "fp16 MB", ".2f"),
    ("fp16_ratio", "fp16/cache", ".2f"),
]

SPEED_COLUMNS: list[Column] = [
    ("cache", "cache", ""),
    ("context", "context", "d"),
    ("tokens_per_s", "decode tok/s", ".1f"),
    ("vs_dynamic", "vs dynamic", ".2f"),
]


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokens", type=int, default=2048)
    parser.add_argument("--chunk", type=int, default=256)
    parser.add_argument("--context", type=int, default=1024)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--out", default="kv", help="JSON path or name in bench/results")
    args = parser.parse_args(argv)

    model, tokenizer = data.smollm2()
    compressed_model = copy.deepcopy(model)
    enable(compressed_model)
    text = " ".join(data.pydoc_sentences())
    ids = tokenizer(text, return_tensors="pt").input_ids[:, : args.tokens]

    base = perplexity(model, ids, DynamicCache(), args.chunk)
    rows = [{"cache": "DynamicCache", "ppl": base}]
    for key_bits, value_bits in WIDTHS:
        cache = TurboQuantCache(key_bits, value_bits, RESIDUAL, attention="compressed")
        ppl = perplexity(compressed_model, ids, cache, args.chunk)
        rows.append(
            {
                "cache": "TurboQuantCache",
                "key_bits": key_bits,
                "value_bits": value_bits,
                "ppl": ppl,
                "ppl_change_pct": 100 * (ppl / base - 1),
                "mbytes": cache.nbytes / 1e6,
                "fp16_mbytes": cache.fp16_nbytes / 1e6,
                "fp16_ratio": cache.fp16_nbytes / cache.nbytes,
            }
        )
        print(f"({key_bits}, {value_bits}): ppl {ppl:.3f}", flush=True)

    caches = {
        "DynamicCache": (model, DynamicCache),
        "TurboQuant (4,3) decoded": (model, lambda: TurboQuantCache(4, 3, RESIDUAL)),
        "TurboQuant (4,3) compressed": (
            compressed_model,
            lambda: TurboQuantCache(4, 3, RESIDUAL, attention="compressed"),
        ),
    }
    speed = []
    for name, (which, make) in caches.items():
        rate = decode_rate(which, ids, make(), args.context, args.steps)
        speed.append({"cache": name, "context": args.context, "tokens_per_s": rate})
    for row in speed:
        row["vs_dynamic"] = row["tokens_per_s"] / speed[0]["tokens_per_s"]

    print(format_table(rows, COLUMNS))
    print()
    print(format_table(speed, SPEED_COLUMNS))
    print(
        f"\nSmolLM2-135M-Instruct (float32), {ids.shape[1]} tokens of pydoc text in chunks of "
        f"{args.chunk}; residual_length={RESIDUAL} (hot window in the model dtype, counted); "
        f"decode: {args.steps} single-token steps after a {args.context}-token prompt."
    )
    meta = metadata(torch=torch.__version__, tokens=int(ids.shape[1]), chunk=args.chunk)
    print(f"wrote {write_json(args.out, {'meta': meta, 'rows': rows, 'speed': speed})}")


if __name__ == "__main__":
    main()
