"""GPU benchmark (issue 13): the Triton kernels on a CUDA device, in one prepared run (≤ 8 min).

Sections (all by default; ``--sections`` picks):

- ``attention``: one decode step's attention over 4k / 32k / 128k cached tokens, Llama-3-8B's
  head shape (8 KV heads, head_dim 128, 32 query heads), batch 1 and 16: the compressed
  attention on TurboQuant (4, 3) (Triton kernels; residual 128, 4 sinks) against
  ``F.scaled_dot_product_attention`` (enable_gqa) on a bfloat16 cache of the same tokens. Time
  per step (``triton.testing.do_bench``: L2 flushed, median), bytes each reads, and the
  fraction of the memory bandwidth that is — against the device-to-device copy bandwidth
  measured in the same run and against the H200's nominal 4.8 TB/s.
- ``e2e``: SmolLM2-135M's architecture (30 layers, 9 query / 3 KV heads, head_dim 64) in
  bfloat16: decode tokens/s after a 4k prompt for DynamicCache, TurboQuantCache (4, 3) on the
  Triton kernels and HF QuantizedCache (quanto, HQQ: when installed); then perplexity of 1,024
  tokens through TurboQuantCache (4, 3) on the GPU (Triton) and on the CPU (native kernels),
  float32, which must agree. The weights are SmolLM2's when ``--model DIR`` names its
  converted copy (``rotaquant.contrib.data.smollm2()`` writes one; 540 MB, too big to carry to a
  lent machine), else seeded random weights of the same shape (same speed; the perplexity
  comparison then checks the kernels, not the model).

Run here (no GPU): ``TRITON_INTERPRET=1 python -m bench.gpu --smoke`` runs every section at
toy sizes on CPU tensors (a test does this). On a lent GPU machine (torch + triton there,
transformers 5.24 carried as a wheel; see docs/kv.md "GPU")::

    python -m bench.gpu --out "$OUT"      # tables on stdout, gpu.json and gpu.txt in $OUT

Writes bench/results/gpu.{txt,json} by default.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from types import SimpleNamespace

import torch
import torch.nn.functional as F

from ._common import RESULTS, Column, best_of, format_table, metadata, publish
from .kv import cache_nbytes

SECTIONS = ("attention", "e2e")
NOMINAL_TBPS = 4.8  # H200 HBM3e, as NVIDIA states it
LLAMA3_8B = (8, 32, 128)  # KV heads, query heads, head_dim
SMOLLM2 = dict(
    vocab_size=49152,
    hidden_size=576,
    intermediate_size=1536,
    num_hidden_layers=30,
    num_attention_heads=9,
    num_key_value_heads=3,
    head_dim=64,
    rope_theta=100000.0,
    max_position_embeddings=8192,
    tie_word_embeddings=True,
)
RESIDUAL = 128

ATTENTION_COLUMNS: list[Column] = [
    ("batch", "batch", "d"),
    ("context", "cached tokens", ",d"),
    ("turboquant_ms", "TurboQuant (4,3) ms", ".3f"),
    ("sdpa_ms", "SDPA bf16 ms", ".3f"),
    ("speedup", "speed vs SDPA", ".2f"),
    ("turboquant_mb", "TQ reads MB", ".1f"),
    ("sdpa_mb", "SDPA reads MB", ".1f"),
    ("turboquant_bw", "TQ % of copy bw", ".0f"),
    ("sdpa_bw", "SDPA % of copy bw", ".0f"),
    ("turboquant_nominal", "TQ % of 4.8 TB/s", ".0f"),
    ("relative_error", "max rel. error", ".1e"),
]
E2E_COLUMNS: list[Column] = [
    ("cache", "cache", ""),
    ("context", "prompt", "d"),
    ("tokens_per_s", "decode tok/s", ".1f"),
    ("vs_dynamic", "vs DynamicCache", ".2f"),
    ("mbytes", "cache MB", ".1f"),
]


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def time_ms(fn, device: torch.device, repeat: int) -> float:
    """ms of ``fn``: the median of triton's do_bench on a GPU (L2 flushed between calls), the
    best of ``repeat`` wall-clock runs elsewhere."""
    if device.type == "cuda":
        from triton.testing import do_bench

        return float(do_bench(fn, warmup=10, rep=max(50, 10 * repeat)))
    return 1e3 * best_of(fn, repeat)[0]


def copy_bandwidth(device: torch.device, nbytes: int) -> float:
    """Bytes/s of a device-to-device copy, counting bytes read and written."""
    source = torch.empty(nbytes // 2, dtype=torch.bfloat16, device=device)
    target = torch.empty_like(source)
    ms = time_ms(lambda: target.copy_(source), device, 5)
    return 2 * source.nbytes / (ms / 1e3)


def attention(device, contexts, batches, repeat: int) -> list[dict]:
    from rotaquant.kv import KVConfig, TurboQuantLayer, compressed_attention
    from rotaquant.kv.triton_attention import bytes_read

    kv_heads, q_heads, head_dim = LLAMA3_8B
    bandwidth = copy_bandwidth(device, 1 << 31 if device.type == "cuda" else 1 << 24)
    print(f"device-to-device copy: {bandwidth / 1e12:.2f} TB/s", flush=True)
    generator = torch.Generator(device=device).manual_seed(0)
    module = SimpleNamespace(num_key_value_groups=q_heads // kv_heads)
    rows = []
    for batch in batches:
        for context in contexts:
            shape = (batch, kv_heads, context + 1, head_dim)
            keys = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16)
            values = torch.randn(shape, generator=generator, device=device, dtype=torch.bfloat16)
            query = torch.randn(
                (batch, q_heads, 1, head_dim), generator=generator, device=device
            ).to(torch.bfloat16)
            layer = TurboQuantLayer(
                KVConfig(
                    key_bits=4,
                    value_bits=3,
                    residual_length=RESIDUAL,
                    attention="compressed",
                    center_values=True,  # the layer's defaults when this was first measured
                    key_scale=0.0,
                    calibrate=False,
                )
            )
            layer.update(keys[..., :context, :], values[..., :context, :])
            exact_keys, exact_values = layer.update(
                keys[..., context:, :], values[..., context:, :]
            )
            cold = exact_keys._rotaquant_cold

            def ours(k=exact_keys, v=exact_values, q=query):
                return compressed_attention(module, q, k, v, None)[0]

            def sdpa(q=query, k=keys, v=values):
                return F.scaled_dot_product_attention(q, k, v, enable_gqa=True)

            want = sdpa().transpose(1, 2).float()
            got = ours().float()
            error = float((got - want).abs().max() / want.abs().max())
            ours_ms, sdpa_ms = time_ms(ours, device, repeat), time_ms(sdpa, device, repeat)
            ours_bytes = bytes_read(cold, exact_keys.shape[-2], exact_keys.element_size())
            sdpa_bytes = keys.nbytes + values.nbytes
            rows.append(
                {
                    "batch": batch,
                    "context": context,
                    "turboquant_ms": ours_ms,
                    "sdpa_ms": sdpa_ms,
                    "speedup": sdpa_ms / ours_ms,
                    "turboquant_mb": ours_bytes / 1e6,
                    "sdpa_mb": sdpa_bytes / 1e6,
                    "turboquant_bw": 100 * ours_bytes / (ours_ms / 1e3) / bandwidth,
                    "sdpa_bw": 100 * sdpa_bytes / (sdpa_ms / 1e3) / bandwidth,
                    "turboquant_nominal": 100 * ours_bytes / (ours_ms / 1e3) / NOMINAL_TBPS / 1e12,
                    "relative_error": error,
                    "copy_tbps": bandwidth / 1e12,
                }
            )
            print(rows[-1], flush=True)
            del keys, values, layer, exact_keys, exact_values, cold
    return rows


def _model(model_dir: str | None, dtype: torch.dtype, device, layers: int | None):
    from transformers import LlamaConfig, LlamaForCausalLM

    if model_dir:
        model = LlamaForCausalLM.from_pretrained(model_dir, dtype=dtype)
    else:
        config = dict(SMOLLM2)
        if layers:
            config.update(
                num_hidden_layers=layers,
                vocab_size=1000,
                hidden_size=192,
                intermediate_size=256,
                num_attention_heads=6,
                num_key_value_heads=2,
                head_dim=32,
            )
        torch.manual_seed(0)
        model = LlamaForCausalLM(LlamaConfig(**config)).to(dtype)
    return model.eval().to(device)


def _decode_rate(model, cache, ids, context: int, steps: int, device) -> float:
    with torch.no_grad():
        for start in range(0, context, 512):
            model(ids[:, start : min(context, start + 512)], cache=cache, use_cache=True)
        token = ids[:, context : context + 1]
        for _ in range(3):
            model(token, cache=cache, use_cache=True)
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            model(token, cache=cache, use_cache=True)
        sync(device)
    return steps / (time.perf_counter() - start)


def _perplexity(model, cache, ids, chunk: int) -> float:
    from rotaquant.kv.evaluate import perplexity

    with torch.no_grad():
        return perplexity(model, ids, cache, chunk)


def end_to_end(device, model_dir, context: int, steps: int, ppl_tokens: int, layers) -> tuple:
    """(speed rows, perplexity row)."""
    from transformers import DynamicCache, QuantizedCache

    from rotaquant.kv import TurboQuantCache, enable

    model = _model(model_dir, torch.bfloat16, device, layers)
    compressed = _model(model_dir, torch.bfloat16, device, layers)
    enable(compressed)
    config = model.config
    vocab = config.vocab_size
    ids = torch.randint(0, vocab, (1, context + 1), generator=torch.Generator().manual_seed(1))
    ids = ids.to(device)
    caches = [
        ("DynamicCache", model, lambda: DynamicCache(config=config)),
        (
            "TurboQuant (4,3) Triton",
            compressed,
            lambda: TurboQuantCache(
                key_bits=4,
                value_bits=3,
                residual_length=RESIDUAL,
                attention="compressed",
                config=config,
            ),
        ),
    ]
    for backend in ("quanto", "hqq"):
        caches.append(
            (
                f"QuantizedCache {backend} 4",
                model,
                lambda backend=backend: QuantizedCache(
                    backend,
                    config,
                    nbits=4,
                    q_group_size=64,
                    residual_length=RESIDUAL,
                    axis_key=0 if backend == "quanto" else 1,
                    axis_value=0 if backend == "quanto" else 1,
                ),
            )
        )
    rows = []
    for name, which, make in caches:
        try:
            cache = make()
            rate = _decode_rate(which, cache, ids, context, steps, device)
        except Exception as error:  # noqa: BLE001 - a peer that is not installed: say so
            print(f"{name}: skipped ({type(error).__name__}: {error})", flush=True)
            continue
        held = cache_nbytes(cache, config, context + 3 + steps)[0]
        rows.append(
            {
                "cache": name,
                "context": context,
                "tokens_per_s": rate,
                "mbytes": held / 1e6,
            }
        )
        print(rows[-1], flush=True)
        del cache
    for row in rows:
        row["vs_dynamic"] = row["tokens_per_s"] / rows[0]["tokens_per_s"]
    # perplexity: GPU (Triton) against CPU (native), float32, the same weights and tokens
    del model, compressed
    scored = ids[:, :ppl_tokens]
    gpu_model = _model(model_dir, torch.float32, device, layers)
    enable(gpu_model)
    cpu_model = _model(model_dir, torch.float32, torch.device("cpu"), layers)
    enable(cpu_model)
    chunk = max(ppl_tokens // 8, 16)
    residual = min(64, ppl_tokens // 4)  # most scored tokens attend to cold ones

    def cache():
        return TurboQuantCache(
            key_bits=4,
            value_bits=3,
            residual_length=residual,
            attention="compressed",
            config=gpu_model.config,
        )

    gpu_ppl = _perplexity(gpu_model, cache(), scored, chunk)
    cpu_backend = os.environ.pop("ROTAQUANT_KV_BACKEND", None)  # the CPU run: native kernels
    try:
        cpu_ppl = _perplexity(cpu_model, cache(), scored.cpu(), chunk)
    finally:
        if cpu_backend is not None:
            os.environ["ROTAQUANT_KV_BACKEND"] = cpu_backend
    check = {
        "tokens": ppl_tokens,
        "gpu_ppl": gpu_ppl,
        "cpu_ppl": cpu_ppl,
        "relative_difference": abs(gpu_ppl - cpu_ppl) / cpu_ppl,
        "weights": model_dir or "random (SmolLM2 shape)",
    }
    print(check, flush=True)
    return rows, check


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument("--contexts", nargs="+", type=int, default=[4096, 32768, 131072])
    parser.add_argument("--batches", nargs="+", type=int, default=[1, 16])
    parser.add_argument("--e2e-context", type=int, default=4096)
    parser.add_argument("--steps", type=int, default=64)
    parser.add_argument("--ppl-tokens", type=int, default=1024)
    parser.add_argument("--model", default=None, help="SmolLM2 converted copy (directory)")
    parser.add_argument("--out", default=None, help="directory for gpu.json / gpu.txt")
    parser.add_argument("--smoke", action="store_true", help="toy sizes (CPU, interpreter)")
    args = parser.parse_args(argv)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    layers = None
    if args.smoke:
        args.contexts, args.batches = [200], [1, 2]
        args.e2e_context, args.steps, args.ppl_tokens, layers = 150, 2, 64, 2
    if device.type == "cpu":
        if os.environ.get("TRITON_INTERPRET") != "1":
            parser.error("no CUDA device: run with TRITON_INTERPRET=1 (and --smoke)")
        os.environ["ROTAQUANT_KV_BACKEND"] = "triton"  # the kernels, interpreted
    repeat = 3 if args.smoke else 20
    results = {"meta": metadata(device=_device_name(device), torch=torch.__version__)}
    text = []
    if "attention" in args.sections:
        rows = attention(device, args.contexts, args.batches, repeat)
        results["attention"] = rows
        text += [
            "Decode attention, Llama-3-8B heads (8 KV, 32 q, d=128)",
            format_table(rows, ATTENTION_COLUMNS),
            "",
        ]
    if "e2e" in args.sections:
        rows, check = end_to_end(
            device, args.model, args.e2e_context, args.steps, args.ppl_tokens, layers
        )
        results["e2e"], results["perplexity"] = rows, check
        text += [
            "SmolLM2-135M shape, bfloat16, decode after the prompt",
            format_table(rows, E2E_COLUMNS),
            "",
            f"perplexity of {check['tokens']} tokens, TurboQuant (4,3), float32: "
            f"GPU {check['gpu_ppl']:.4f} vs CPU {check['cpu_ppl']:.4f} "
            f"(relative difference {check['relative_difference']:.1e}; {check['weights']})",
        ]
    report = "\n".join(text)
    print(report)
    out = Path(args.out) if args.out else (None if args.smoke else RESULTS)
    if out is not None:  # a smoke run writes only where asked
        publish(out / "gpu.json", results, report)


def _device_name(device: torch.device) -> str:
    return torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu (interpreter)"


if __name__ == "__main__":
    main()
