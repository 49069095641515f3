"""The Triton kernels against the torch reference: under TRITON_INTERPRET=1 on CPU tensors
(the default run), compiled on CUDA tensors where a GPU is (TRITON_INTERPRET=0)."""

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

from rotaquant.kv import (  # noqa: E402
    TurboQuantCache,
    enable,
    triton_attention,
    triton_common,
    triton_encode,
)
from rotaquant.kv.attention import _reference  # noqa: E402
from rotaquant.kv.cache import ColdView  # noqa: E402
from rotaquant.kv.codec import HeadCodec, fit_heads  # noqa: E402
from rotaquant.kv.cold import ColdTier  # noqa: E402
from rotaquant.kv.config import FitOptions  # noqa: E402

from .test_cache import _config  # noqa: E402

INTERPRETING = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = torch.device("cpu" if INTERPRETING or not torch.cuda.is_available() else "cuda")
if not INTERPRETING and DEVICE.type == "cpu":
    pytest.skip("no GPU and TRITON_INTERPRET is not 1", allow_module_level=True)


def _codec(dim, bits, mode="mse", seed=0, states=None, fit=None):
    """A codec fitted to ``states`` with ``fit`` (FitOptions), or a plain one."""
    if fit is None:
        return HeadCodec(dim, bits, seed, mode)
    stats = fit_heads(states, bits, mode, fit)
    return HeadCodec(dim, bits, seed, mode, stats.outliers, stats.offset, stats.channel_scale)


KEYS_FIT = FitOptions(scale_power=0.5)  # the cache's key defaults: centered, scaled channels


@pytest.mark.parametrize(
    ("dim", "bits", "mode", "fit"),
    [
        (64, 2, "mse", None),
        (64, 3, "mse", KEYS_FIT),
        (64, 4, "mse", KEYS_FIT),
        (64, 8, "mse", None),
        (128, 3.5, "mse", KEYS_FIT),  # outlier channels: per-head rotations, two scales
        (128, 2.5, "mse", None),  # split in the rotated domain: one scale
        (64, 4, "prod", None),
        (128, 3.5, "prod", KEYS_FIT),
        (256, 3, "mse", KEYS_FIT),
        (256, 4, "prod", None),
        (16, 4, "mse", None),  # fewer channels than a tl.dot tile: padded
    ],
)
def test_encode_equals_the_torch_reference(dim, bits, mode, fit):
    torch.manual_seed(dim + int(bits * 2))
    states = torch.randn(2, 3, 37, dim) * 2 + 0.5  # 37: a partial block of tokens
    codec = _codec(dim, bits, mode, states=states, fit=fit)
    x = states.to(DEVICE)[..., 1:, :]  # a strided view, as the cache's hot-tier slices are
    packed, scales = triton_encode.encode(codec, x)
    ref_packed, ref_scales = codec.encode_reference(x)
    assert len(packed) == len(ref_packed) and len(scales) == len(ref_scales)
    for got, want in zip(packed, ref_packed, strict=True):
        assert got.shape == want.shape and got.dtype == torch.uint8
        # float32 sums in another order may flip a code sitting on a boundary, nothing more
        assert (got != want).float().mean().item() <= 1e-3
    for got, want in zip(scales, ref_scales, strict=True):
        assert got.dtype == torch.float16
        torch.testing.assert_close(got.float(), want.float(), rtol=2e-3, atol=1e-6)


def test_encode_of_zero_vectors_and_no_tokens():
    codec = HeadCodec(64, 4)
    zeros = torch.zeros(1, 2, 5, 64, device=DEVICE)
    packed, scales = triton_encode.encode(codec, zeros)
    ref_packed, ref_scales = codec.encode_reference(zeros)
    assert torch.equal(packed[0], ref_packed[0]) and torch.equal(scales[0], ref_scales[0])
    packed, scales = triton_encode.encode(codec, zeros[..., :0, :])
    assert packed[0].shape == (1, 2, 0, 32) and scales[0].shape == (1, 2, 0)


def _view(dim, key_bits, value_bits, key_mode, cold, leading, evict, batch, heads, fitted):
    torch.manual_seed(dim + cold)
    keys = torch.randn(batch, heads, cold, dim) * 1.5 + 0.3
    values = torch.randn(batch, heads, cold, dim)
    fits = (KEYS_FIT, FitOptions(center=False)) if fitted else (None, None)
    tiers = (
        ColdTier(_codec(dim, key_bits, key_mode, 0, keys, fits[0])),
        ColdTier(_codec(dim, value_bits, "mse", 1, values, fits[1])),
    )
    for tier, states in zip(tiers, (keys, values), strict=True):
        states = states.to(DEVICE)
        tier.append(states[..., : cold // 2, :])  # two appends, then a cut: several ranges
        tier.append(states[..., cold // 2 :, :])
        if evict:
            tier.evict(keep=3, count=5)
    return ColdView(tiers[0].snapshot(), tiers[1].snapshot(), leading)


def _mask(batch, q_len, length, padded):
    """Additive (batch, 1, q_len, length + 3) mask in position order: causal over the newest
    q_len positions, the first ``padded`` positions of batch row 0 masked (left padding)."""
    low = torch.finfo(torch.float32).min
    mask = torch.zeros(batch, 1, q_len, length + 3)
    mask[0, :, :, 3 : 3 + padded] = low
    for t in range(q_len):
        mask[:, :, t, length + 3 - q_len + t + 1 :] = low
    return mask.to(DEVICE)


CASES = {
    # name: dim, key bits, value bits, key mode, GQA groups, query positions, cold tokens,
    #       exact tokens, sinks, padding, softcap, eviction, fitted codecs
    "4-3": (64, 4, 3, "mse", 3, 1, 40, 9, 4, 2, None, False, True),
    "2-8-gqa8": (64, 2, 8, "mse", 8, 1, 33, 5, 4, 2, None, True, True),
    "3.5-2.5-evicted": (64, 3.5, 2.5, "mse", 4, 1, 77, 20, 0, 0, None, True, True),
    "2.5-3.5-plain": (128, 2.5, 3.5, "mse", 1, 1, 45, 3, 0, 0, None, False, False),
    "prod-4-softcap": (128, 4, 4, "prod", 1, 3, 50, 7, 2, 1, 30.0, False, True),
    "prod-3.5": (128, 3.5, 3, "prod", 4, 1, 61, 11, 4, 3, None, False, True),
    "256-prod-softcap": (256, 3, 3, "prod", 2, 1, 41, 6, 0, 1, 50.0, False, True),
    "256-4-3": (256, 4, 3, "mse", 4, 1, 35, 4, 4, 0, None, True, True),
    "prefill-chunk": (64, 4, 3, "mse", 4, 9, 50, 30, 4, 2, None, False, True),  # 36 rows
    "no-mask": (64, 3, 2, "mse", 3, 1, 29, 6, 4, None, None, False, True),
}


@pytest.mark.parametrize("name", CASES)
@pytest.mark.parametrize("programs", [2, 16], ids=["one-range", "split-k"])
def test_attention_equals_the_torch_reference(name, programs, monkeypatch):
    dim, kb, vb, mode, groups, q_len, cold, exact, leading, padded, softcap, evict, fitted = CASES[
        name
    ]
    monkeypatch.setattr(triton_attention, "INTERPRETER_PROGRAMS", programs)
    batch, heads = 2, 2
    view = _view(dim, kb, vb, mode, cold, leading, evict, batch, heads, fitted)
    exact_keys = torch.randn(batch, heads, exact, dim, device=DEVICE).half()
    exact_values = torch.randn(batch, heads, exact, dim, device=DEVICE).half()
    q = torch.randn(batch, heads, groups * q_len, dim, device=DEVICE) * dim**-0.5
    length = view.length + exact
    mask = None if padded is None else _mask(batch, q_len, length, padded)
    out = triton_attention.attend(q, q_len, exact_keys, exact_values, view, mask, softcap)
    want = _reference(q, q_len, exact_keys, exact_values, view, False, mask, {"softcap": softcap})
    tolerance = 1e-5 if INTERPRETING else 2e-3  # tf32 products on a GPU
    torch.testing.assert_close(out, want, rtol=tolerance, atol=tolerance)


def test_attention_with_a_boolean_mask_equals_the_additive_one():
    view = _view(64, 4, 3, "mse", 40, 4, False, 1, 2, True)
    exact = torch.randn(1, 2, 6, 64, device=DEVICE)
    q = torch.randn(1, 2, 4, 64, device=DEVICE) * 0.125
    additive = _mask(1, 1, view.length + 6, 5)
    boolean = additive == 0
    a = triton_attention.attend(q, 1, exact, exact, view, additive, None)
    b = triton_attention.attend(q, 1, exact, exact, view, boolean, None)
    torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ in generation, end to end


@pytest.fixture(scope="module")
def tiny():
    """The tiny random Llama of test_cache (GQA 2, head_dim 16), on the compressed attention."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    model = LlamaForCausalLM(_config()).eval().to(DEVICE)
    enable(model)
    return model


@pytest.mark.parametrize(
    ("key_bits", "value_bits", "kwargs"),
    [
        (4, 3, {}),
        (3.5, 2.5, {"key_mode": "prod"}),
        (4, 4, {"max_tokens": 24, "sink_tokens": 2}),  # eviction
    ],
)
def test_triton_backend_gives_the_torch_reference_logits(
    tiny, key_bits, value_bits, kwargs, monkeypatch
):
    """The same steps (chunked prefill, then decode) through the torch reference and through
    the Triton kernels (encode and attention): the same logits."""
    ids = torch.randint(0, 100, (2, 40), device=DEVICE)
    steps = [ids[:, s : s + 10] for s in range(0, 40, 10)] + [ids[:, :1]] * 3
    launched = []
    launch = triton_common.launch

    def counting(kernel, *args, **constants):
        launched.append(kernel.__name__)
        launch(kernel, *args, **constants)

    monkeypatch.setattr(triton_common, "launch", counting)
    logits = {}
    for backend in ("triton", "torch"):
        monkeypatch.setenv("ROTAQUANT_KV_BACKEND", backend)
        cache = TurboQuantCache(
            key_bits=key_bits,
            value_bits=value_bits,
            residual_length=4,
            attention="compressed",
            **kwargs,
        )
        with torch.no_grad():
            logits[backend] = [tiny(chunk, cache=cache, use_cache=True).logits for chunk in steps]
    for got, want in zip(logits["triton"], logits["torch"], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-4)
    assert {"_encode_kernel", "_attention_partial", "_attention_combine"} <= set(launched)


def test_triton_backend_generates_a_left_padded_batch_like_dynamic_cache(tiny, monkeypatch):
    ids = torch.randint(1, 100, (2, 24), device=DEVICE)
    mask = torch.ones_like(ids)
    mask[1, :9] = 0
    plain = copy.deepcopy(tiny)
    plain.set_attn_implementation("eager")
    ref = plain.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    monkeypatch.setenv("ROTAQUANT_KV_BACKEND", "triton")
    cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=3, attention="compressed")
    out = tiny.generate(ids, attention_mask=mask, cache=cache, max_new_tokens=8, do_sample=False)
    assert torch.equal(out, ref)


def test_triton_backend_on_sliding_window_layers(tiny_gemma, monkeypatch):
    """Gemma-3 layout (sliding-window layers, head_dim 32, one KV head): generation at 8 bits
    equals the uncompressed cache's."""
    model = copy.deepcopy(tiny_gemma).to(DEVICE)
    ids = torch.randint(0, 100, (1, 20), device=DEVICE)
    ref = model.generate(ids, max_new_tokens=6, do_sample=False)
    enable(model)
    monkeypatch.setenv("ROTAQUANT_KV_BACKEND", "triton")
    cache = TurboQuantCache(
        key_bits=8, value_bits=8, residual_length=2, attention="compressed", config=model.config
    )
    out = model.generate(ids, cache=cache, max_new_tokens=6, do_sample=False)
    assert torch.equal(out, ref)
    assert cache.layers[0].held_length == 7


# ------------------------------------------------------------------ the compiler accepts them


def test_kernels_compile_for_hopper_and_ampere():
    """Every kernel variant the wrappers launch compiles to sm_90 and sm_80 machine code
    (no GPU needed) within the chips' shared memory (tests/kv/triton_compile.py)."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    script = Path(__file__).with_name("triton_compile.py")
    run = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert run.stdout.count("_attention_partial") >= 10


def test_the_gpu_benchmark_runs_at_toy_sizes(tmp_path):
    """bench/gpu.py, the script prepared for a lent GPU, runs end to end here (interpreter,
    toy sizes) and its GPU and CPU perplexities agree."""
    import json

    root = Path(__file__).parents[2]
    env = dict(os.environ, TRITON_INTERPRET="1")
    command = [sys.executable, "-m", "bench.gpu", "--smoke", "--out", str(tmp_path)]
    run = subprocess.run(command, cwd=root, env=env, capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    results = json.loads((tmp_path / "gpu.json").read_text())
    assert [row["batch"] for row in results["attention"]] == [1, 2]
    assert results["e2e"][1]["cache"].startswith("TurboQuant")
    assert results["perplexity"]["relative_difference"] < 1e-4
    header, _, tables = (tmp_path / "gpu.txt").read_text().partition("\n\n")
    assert header.startswith("# gpu.py --smoke") and "ISA" in header  # the run's provenance
    assert tables.startswith("Decode attention")
    assert results["meta"]["isa"] and results["meta"]["argv"][0] == "gpu.py"


def test_attention_refuses_a_mask_that_does_not_fit():
    view = _view(64, 4, 3, "mse", 40, 4, False, 1, 2, True)
    exact = torch.randn(1, 2, 6, 64, device=DEVICE)
    q = torch.randn(1, 2, 4, 64, device=DEVICE)
    short = torch.zeros(1, 1, 1, view.length + 5, device=DEVICE)  # one position too few
    with pytest.raises(ValueError, match="positions"):
        triton_attention.attend(q, 1, exact, exact, view, short, None)
    other_batch = torch.zeros(3, 1, 1, view.length + 6, device=DEVICE)
    with pytest.raises(ValueError, match="does not fit"):
        triton_attention.attend(q, 1, exact, exact, view, other_batch, None)
