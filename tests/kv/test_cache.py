"""TurboQuantCache in transformers generation: tiny random Llama, and SmolLM2 for real."""

import copy

import pytest
import torch
from transformers import DynamicCache, LlamaConfig, LlamaForCausalLM

from rotaquant import data
from rotaquant.kv import TurboQuantCache, enable


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    return LlamaForCausalLM(config).eval()


def test_generate_at_8_bits_matches_dynamic_cache(tiny):
    ids = torch.randint(0, 100, (2, 20))
    mask = torch.ones_like(ids)
    cache = TurboQuantCache(8, 8, residual_length=4)
    out = tiny.generate(
        ids, attention_mask=mask, past_key_values=cache, max_new_tokens=10, do_sample=False
    )
    ref = tiny.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(out, ref)
    assert cache.get_seq_length() == 29  # the last generated token is not fed back


def test_tiers_and_exact_bytes(tiny):
    cache = TurboQuantCache(key_bits=4, value_bits=3, residual_length=8)
    ids = torch.randint(0, 100, (3, 30))
    with torch.no_grad():
        tiny(ids, cache=cache, use_cache=True)
        for _ in range(5):
            tiny(torch.randint(0, 100, (3, 1)), cache=cache, use_cache=True)
    layer = cache.layers[0]
    # prefill leaves exactly 8 hot tokens; decode steps migrate 16 at a time
    assert layer.keys.shape == (3, 2, 13, 16) and layer.cold["keys"].length == 22
    assert cache.get_seq_length() == 35
    vectors = 3 * 2 * 64  # cold (batch, head, token) rows per layer: capacity grows by 64
    cold = vectors * ((16 * 4 // 8 + 2) + (16 * 3 // 8 + 2))
    hot = 2 * 3 * 2 * 13 * 16 * 4  # float32 keys and values
    assert cache.nbytes == 2 * (cold + hot)
    assert cache.fp16_nbytes == 2 * 3 * 2 * 35 * 32 * 2


def test_residual_zero_and_reset(tiny):
    cache = TurboQuantCache(4, 4, residual_length=0)
    with torch.no_grad():
        tiny(torch.randint(0, 100, (1, 12)), cache=cache, use_cache=True)
    assert cache.layers[0].keys.shape[-2] == 0 and cache.layers[0].cold["keys"].length == 12
    cache.reset()
    assert cache.get_seq_length() == 0 and cache.nbytes == 0


@pytest.mark.parametrize(
    "kwargs",
    [
        {"key_bits": 0},
        {"value_bits": 9},
        {"key_bits": "4"},
        {"residual_length": -1},
        {"residual_length": 2.5},
    ],
)
def test_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        TurboQuantCache(**kwargs)


def test_smollm2_perplexity_at_4_3_bits():
    """Real model, real text: 1,024 tokens fed in chunks of 128 so most attention reads
    compressed tokens, scored by the compressed attention; (4, 3) bits within 1% of the
    uncompressed cache's perplexity."""
    model, tokenizer = data.smollm2()
    text = " ".join(data.pydoc_sentences()[:400])
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :1024]

    def perplexity(cache):
        nll, count = 0.0, 0
        with torch.no_grad():
            for start in range(0, ids.shape[1], 128):
                chunk = ids[:, start : start + 128]
                logits = model(chunk, cache=cache, use_cache=True).logits[:, :-1]
                nll += torch.nn.functional.cross_entropy(
                    logits.reshape(-1, logits.shape[-1]), chunk[:, 1:].reshape(-1), reduction="sum"
                ).item()
                count += chunk.shape[1] - 1
        return float(torch.exp(torch.tensor(nll / count)))

    base = perplexity(DynamicCache())
    cache = TurboQuantCache(4, 3, residual_length=64, attention="compressed")
    enable(model)
    compressed = perplexity(cache)
    assert compressed / base - 1 < 0.01
    assert cache.nbytes * 2.5 < cache.fp16_nbytes  # float32 model: the hot window is float32


@pytest.fixture(scope="module")
def tiny_compressed(tiny):
    model = copy.deepcopy(tiny)
    enable(model)
    return model


@pytest.mark.parametrize(("key_bits", "value_bits", "residual"), [(3, 2, 5), (4, 3.5, 0)])
def test_compressed_attention_equals_decode_then_sdpa(
    tiny, tiny_compressed, key_bits, value_bits, residual
):
    """Scoring packed keys in the rotated domain and summing rotated values gives the same
    logits as decoding everything and running SDPA, chunked prefill and decode steps alike."""
    ids = torch.randint(0, 100, (2, 40))
    decoded = TurboQuantCache(key_bits, value_bits, residual_length=residual)
    compressed = TurboQuantCache(
        key_bits, value_bits, residual_length=residual, attention="compressed"
    )
    steps = [ids[:, s : s + 8] for s in range(0, 40, 8)] + [ids[:, :1]] * 3
    with torch.no_grad():
        for chunk in steps:
            a = tiny(chunk, cache=decoded, use_cache=True).logits
            b = tiny_compressed(chunk, cache=compressed, use_cache=True).logits
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert compressed.nbytes == decoded.nbytes


def test_compressed_attention_generates(tiny_compressed):
    ids = torch.randint(0, 100, (1, 12))
    cache = TurboQuantCache(8, 8, residual_length=2, attention="compressed")
    out = tiny_compressed.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        past_key_values=cache,
        max_new_tokens=6,
        do_sample=False,
    )
    assert out.shape == (1, 18) and cache.get_seq_length() == 17


def test_compressed_cache_without_its_attention_fails_loudly(tiny):
    cache = TurboQuantCache(4, 4, residual_length=2, attention="compressed")
    with torch.no_grad():
        tiny(torch.randint(0, 100, (1, 4)), cache=cache, use_cache=True)
        with pytest.raises(RuntimeError, match="enable"):  # layer 0 ignored its cold tokens,
            tiny(torch.randint(0, 100, (1, 1)), cache=cache, use_cache=True)  # layer 1 reports
