"""TurboQuantCache in transformers generation: tiny random Llama, and SmolLM2 for real."""

import copy
import warnings

import pytest
import torch
from transformers import (
    DynamicCache,
    LlamaConfig,
    LlamaForCausalLM,
)

from rotaquant.contrib import data
from rotaquant.kv import TurboQuantCache, enable
from rotaquant.kv.cold import ColdSnapshot
from rotaquant.kv.evaluate import needle_found, needle_prompt, perplexity

from ..conftest import packaged


def _config(**overrides):
    values = dict(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
    )
    values.update(overrides)
    return LlamaConfig(**values)


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return LlamaForCausalLM(_config()).eval()


def test_generate_at_8_bits_matches_dynamic_cache(tiny):
    ids = torch.randint(0, 100, (2, 20))
    mask = torch.ones_like(ids)
    cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=4)
    out = tiny.generate(ids, attention_mask=mask, cache=cache, max_new_tokens=10, do_sample=False)
    ref = tiny.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False)
    assert torch.equal(out, ref)
    assert cache.get_seq_length() == 29  # the last generated token is not fed back


def test_tiers_and_exact_bytes(tiny):
    # the configured statistics (calibration would choose them per head: its bytes below)
    cache = TurboQuantCache(key_bits=4, value_bits=3, residual_length=8, calibrate=False)
    ids = torch.randint(0, 100, (3, 30))
    with torch.no_grad():
        tiny(ids, cache=cache, use_cache=True)
        for _ in range(5):
            tiny(torch.randint(0, 100, (3, 1)), cache=cache, use_cache=True)
    layer = cache.layers[0]
    # 4 exact sinks; the prefill's other 26 tokens: 18 go cold (>= 16 at a time), 8 stay
    # hot; decode steps add 5 hot ones (fewer than 16 beyond the window: not encoded yet)
    assert layer.sink_keys.shape == (3, 2, 4, 16) and layer.keys.shape == (3, 2, 13, 16)
    assert layer.cold["keys"].length == 18 and cache.get_seq_length() == 35
    rows = 3 * 2 * (18 + 18 // 16)  # cold (batch, head, token) rows: capacity + 1/16
    cold = rows * ((16 * 4 // 8 + 2) + (16 * 3 // 8 + 2))
    key_stats = 2 * (2 * 16 * 2)  # float16 mean key and key channel scales per head
    exact = 2 * 3 * 2 * (13 + 4) * 16 * 2  # float16 hot and sink keys and values
    assert cache.nbytes == 2 * (cold + key_stats + exact)
    assert cache.fp16_nbytes == 2 * 3 * 2 * 35 * 32 * 2


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_never_more_bytes_than_float16(tiny, dtype):
    """At every length from one token up (prefill and decode), the cache holds at most what
    float16 keys and values of the same tokens take, statistics and spare rows included."""
    model = copy.deepcopy(tiny).to(dtype)
    for residual in (0, 16):
        cache = TurboQuantCache(key_bits=4, value_bits=3, residual_length=residual)
        with torch.no_grad():
            for step in range(80):
                model(torch.randint(0, 100, (1, 1 if step else 3)), cache=cache, use_cache=True)
                assert 0 < cache.nbytes <= cache.fp16_nbytes, (residual, step)


@pytest.mark.parametrize(("residual", "sinks"), [(16, 4), (8, 0), (0, 4)])
def test_savings_begin_where_eval_kv_says(tiny, residual, sinks):
    """The length eval-kv prints: float16's bytes below it, fewer from it on."""
    from rotaquant.contrib.eval_kv import savings_begin

    cache = TurboQuantCache(key_bits=4, value_bits=3, residual_length=residual, sink_tokens=sinks)
    begin = savings_begin(cache.kv_config)
    with torch.no_grad():
        for length in range(1, begin + 3):
            tiny(torch.randint(0, 100, (1, 1)), cache=cache, use_cache=True)
            if length < begin:
                assert cache.nbytes == cache.fp16_nbytes, (length, begin)
            else:
                assert cache.nbytes < cache.fp16_nbytes, (length, begin)


def test_residual_zero_and_reset(tiny):
    cache = TurboQuantCache(key_bits=4, value_bits=4, residual_length=0)
    with torch.no_grad():
        tiny(torch.randint(0, 100, (1, 40)), cache=cache, use_cache=True)
    layer = cache.layers[0]
    assert layer.sink_keys.shape[-2] == 4 and layer.keys.shape[-2] == 0
    assert layer.cold["keys"].length == 36
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
        {"key_mode": "qjl"},
        {"key_mode": "prod", "key_bits": 1},
        {"max_tokens": 4, "sink_tokens": 4},
        {"sink_tokens": -1},
        {"boundary_layers": 2},
        {"boundary_bits": 0},
        {"boundary_bits": (4,)},
        {"boundary_bits": (4, 3, 2)},
        {"seed": -1},
        {"seed": 1.5},
        {"attention": "sdpa"},
    ],
)
def test_bad_configuration(kwargs):
    with pytest.raises(ValueError):
        TurboQuantCache(**kwargs)


def test_configuration_the_model_config_rules_out_is_refused_at_construction():
    config = _config()  # 2 layers
    with pytest.raises(ValueError, match="boundary_layers"):
        TurboQuantCache(key_bits=4, value_bits=3, config=config, boundary_layers=2)
    with pytest.raises(ValueError, match="head_dim=12"):
        TurboQuantCache(key_bits=4, value_bits=3, config=_config(head_dim=12, hidden_size=48))
    with pytest.raises(ValueError, match="head_dim"):  # boundary widths checked too
        TurboQuantCache(
            key_bits=4, value_bits=4, config=config, boundary_layers=1, boundary_bits=(4, 3.25)
        )
    assert TurboQuantCache(
        key_bits=4, value_bits=3, config=config, boundary_layers=1, boundary_bits=[8, 6]
    )


def test_a_new_batch_size_on_a_used_cache_is_a_clear_error(tiny):
    cache = TurboQuantCache(key_bits=4, value_bits=3, residual_length=2)
    with torch.no_grad():
        tiny(torch.randint(0, 100, (2, 6)), cache=cache, use_cache=True)
        with pytest.raises(ValueError, match="batch"):
            tiny(torch.randint(0, 100, (3, 1)), cache=cache, use_cache=True)


def _states(tokens=6, dtype=torch.float32, heads=2, head_dim=16):
    return torch.randn(1, heads, tokens, head_dim).to(dtype)


@pytest.mark.parametrize("dtype", [torch.int64, torch.bool, torch.complex64])
@pytest.mark.parametrize("wrong", ["key", "value"])
def test_states_that_are_not_floating_point_are_refused(dtype, wrong):
    states = {"key": _states(), "value": _states()}
    states[wrong] = _states(dtype=dtype)
    with pytest.raises(ValueError, match=rf"{wrong}_states must be floating point.*float16"):
        TurboQuantCache().update(states["key"], states["value"], 0)


def test_keys_and_values_must_agree_on_batch_heads_and_tokens():
    for keys, values in (
        (_states(6), _states(5)),  # transformers' Cache.update takes one length for both
        (_states(heads=2), _states(heads=1)),
        (_states()[0], _states()[0]),  # not (batch, kv heads, tokens, head_dim)
    ):
        with pytest.raises(ValueError, match="key_states"):
            TurboQuantCache().update(keys, values, 0)
    cache = TurboQuantCache()  # value head_dim may differ; float64 works as before
    keys, values = cache.update(_states(dtype=torch.float64), _states(head_dim=32), 0)
    assert keys.dtype == torch.float64 and values.shape == (1, 2, 6, 32)


def test_a_config_that_is_not_a_model_config_is_a_type_error():
    with pytest.raises(TypeError, match="config must be the model's transformers"):
        TurboQuantCache(config="str")
    with pytest.raises(TypeError, match="config"):
        TurboQuantCache.from_dict({"key_bits": 4}, config={"num_hidden_layers": 2})


def test_a_new_head_dim_on_a_used_layer_is_a_clear_error():
    cache = TurboQuantCache(residual_length=0)
    cache.update(_states(40), _states(40), 0)  # cold tokens, hot ones and sinks held
    with pytest.raises(ValueError, match=r"head_dim \(16, 16\).*\(32, 32\)"):
        cache.update(_states(1, head_dim=32), _states(1, head_dim=32), 0)


def test_the_decoded_path_decodes_chunks_straight_into_what_it_returns(monkeypatch):
    """The model's own attention gets the cold tier decoded 512 tokens at a time into the
    returned tensors (one float32 chunk of scratch, not the whole tier), equal to decoding
    the whole tier at once; nothing decoded is kept (the bytes held do not change)."""
    cache = TurboQuantCache(residual_length=0, attention="decoded")
    cache.update(_states(1300), _states(1300), 0)
    layer = cache.layers[0]
    cold = layer.cold["keys"].length
    whole = layer.cold["keys"].snapshot().decode()
    chunks = []
    decoded = ColdSnapshot.decoded

    def recording(self, tokens, rotated=True):
        for part in decoded(self, tokens, rotated):
            chunks.append(part.shape[-2])
            yield part

    monkeypatch.setattr(ColdSnapshot, "decoded", recording)
    held = layer.nbytes
    keys, values = layer.update(_states(1), _states(1))
    assert cold == 1296 and sum(chunks) == 2 * cold and max(chunks) <= 512
    torch.testing.assert_close(keys[..., 4 : 4 + cold, :], whole)
    assert keys.shape[-2] == values.shape[-2] == 1301
    assert layer.nbytes == held + 2 * (2 * 16 * 2)  # + the new hot token's float16 key, value


def test_the_decoded_path_warns_once_per_cache_on_a_long_cold_tier():
    """Each update of the decoded path decodes the whole cold tier (memory stays compressed,
    time grows with the context): past 4,096 cold tokens it says so once per cache and names
    the compressed attention."""
    for _ in range(2):  # a second cache warns again
        cache = TurboQuantCache(residual_length=0, attention="decoded")
        for layer in (0, 1):
            cache.update(_states(4200, heads=1), _states(4200, heads=1), layer)
        with pytest.warns(UserWarning) as caught:
            for _ in range(3):
                for layer in (0, 1):
                    cache.update(_states(1, heads=1), _states(1, heads=1), layer)
        assert len(caught) == 1, [str(w.message) for w in caught]
        message = str(caught[0].message)
        assert "4196 tokens" in message and "enable(model)" in message
        assert "attn_implementation='rotaquant'" in message
    short = TurboQuantCache(residual_length=0, attention="decoded")
    short.update(_states(400), _states(400), 0)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        short.update(_states(1), _states(1), 0)


def _real_model_perplexities(model, tokenizer, residual: int) -> tuple[float, float, object]:
    """(uncompressed, TurboQuantCache(4, 3)) perplexity of 1,024 tokens of Python docs fed in
    chunks of 128 (most attention reads compressed tokens), and the cache."""
    text = " ".join(data.pydoc_sentences()[:400])
    ids = tokenizer(text, return_tensors="pt").input_ids[:, :1024]
    base = perplexity(model, ids, DynamicCache(config=model.config), 128)
    cache = TurboQuantCache(
        key_bits=4, value_bits=3, residual_length=residual, attention="compressed"
    )
    compressed = copy.deepcopy(model)
    enable(compressed)
    return base, perplexity(compressed, ids, cache, 128), cache


def test_smollm2_perplexity_at_4_3_bits():
    """Real model, real text, a 16-token hot window: (4, 3) bits within 1 % of the
    uncompressed cache's perplexity, at 3.5x fewer bytes than float16 (at head_dim 64 the
    codes alone are 4.3x: float16 scales, sinks and the hot window take the rest)."""
    model, tokenizer = packaged(data.smollm2)
    base, compressed, cache = _real_model_perplexities(model, tokenizer, 16)
    assert compressed / base - 1 < 0.01
    assert cache.nbytes * 3.5 < cache.fp16_nbytes
    assert all(c is not None for c in cache.calibration)  # every layer chose from queries
    enable(model)
    # and a pass key hidden halfway through 2k tokens is still found through the cache
    key = 40917
    ids = needle_prompt(tokenizer, 2048, 0.5, key)
    assert needle_found(
        model,
        tokenizer,
        ids,
        key,
        TurboQuantCache(key_bits=4, value_bits=3, attention="compressed"),
    )


def test_gemma3_perplexity_at_4_3_bits():
    """The stress case (head_dim 256, QK-normed keys, sliding-window layers): (4, 3) bits
    within 1 % of the uncompressed perplexity with a 16-token hot window (it was +4.3 %
    before exact sinks and key centering)."""
    model, tokenizer = packaged(data.gemma3)
    base, compressed, cache = _real_model_perplexities(model, tokenizer, 16)
    assert compressed / base - 1 < 0.01
    assert cache.nbytes <= cache.fp16_nbytes
    assert all(c is not None for c in cache.calibration)  # every layer chose from queries


@pytest.fixture(scope="module")
def tiny_compressed(tiny):
    model = copy.deepcopy(tiny)
    enable(model)
    return model


def _decoded_twin(cache: TurboQuantCache) -> TurboQuantCache:
    """A copy of ``cache`` on the decoded path: the same tiers, codecs and measured
    calibration (the twin of a cache that is waiting for queries fits from what it copied)."""
    twin = copy.deepcopy(cache)
    twin.kv_config = twin.kv_config.replace(attention="decoded")
    for layer in twin.layers:
        layer.attention, layer._last_view = "decoded", None
    return twin


@pytest.mark.parametrize(
    ("key_bits", "value_bits", "residual", "fit"),
    [
        (3, 2, 5, {}),
        (4, 3.5, 0, {}),
        (4, 3, 5, {"center_values": True, "key_scale": 0.5}),
        (3.5, 2.5, 0, {"center_keys": False, "key_scale": 1.0, "sink_tokens": 0}),
        (4, 3, 5, {"calibrate": False, "center_values": True, "key_scale": 0.5}),
    ],
)
def test_compressed_attention_equals_decode_then_sdpa(
    tiny, tiny_compressed, key_bits, value_bits, residual, fit
):
    """Scoring packed keys in the rotated domain and summing rotated values gives the same
    logits as decoding everything and running SDPA, chunked prefill and decode steps alike,
    with means subtracted and channels scaled (their contributions added back exactly), and
    with the codecs calibrated from the queries (each step checked against a decoded-path
    twin of the cache as it stood before the step)."""
    ids = torch.randint(0, 100, (2, 40))
    compressed = TurboQuantCache(
        key_bits=key_bits,
        value_bits=value_bits,
        residual_length=residual,
        attention="compressed",
        **fit,
    )
    steps = [ids[:, s : s + 8] for s in range(0, 40, 8)] + [ids[:, :1]] * 3
    with torch.no_grad():
        for chunk in steps:
            decoded = _decoded_twin(compressed)
            a = tiny(chunk, cache=decoded, use_cache=True).logits
            b = tiny_compressed(chunk, cache=compressed, use_cache=True).logits
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    assert all(layer.cold["keys"].length for layer in compressed.layers)


def test_compressed_attention_with_autograd_recording(tiny_compressed):
    """A forward pass outside no_grad (a plain loop over the model) takes the differentiable
    torch path: same logits, and gradients reach the queries."""
    ids = torch.randint(0, 100, (1, 30))
    caches = [
        TurboQuantCache(key_bits=4, value_bits=3, residual_length=4, attention="compressed")
        for _ in "ab"
    ]
    with torch.no_grad():
        tiny_compressed(ids[:, :24], cache=caches[0], use_cache=True)
        expected = tiny_compressed(ids[:, 24:26], cache=caches[0], use_cache=True).logits
    with torch.no_grad():
        tiny_compressed(ids[:, :24], cache=caches[1], use_cache=True)
    logits = tiny_compressed(ids[:, 24:26], cache=caches[1], use_cache=True).logits
    torch.testing.assert_close(logits.detach(), expected, rtol=1e-4, atol=1e-5)
    logits.sum().backward()
    grads = [p.grad for p in tiny_compressed.parameters() if p.grad is not None]
    assert grads and all(torch.isfinite(g).all() for g in grads)
    tiny_compressed.zero_grad(set_to_none=True)


def test_compressed_attention_generates(tiny_compressed):
    ids = torch.randint(0, 100, (1, 12))
    cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=2, attention="compressed")
    out = tiny_compressed.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        cache=cache,
        max_new_tokens=6,
        do_sample=False,
    )
    assert out.shape == (1, 18) and cache.get_seq_length() == 17


def test_compressed_cache_without_its_attention_fails_loudly(tiny):
    cache = TurboQuantCache(key_bits=4, value_bits=4, residual_length=2, attention="compressed")
    with torch.no_grad():
        tiny(torch.randint(0, 100, (1, 30)), cache=cache, use_cache=True)
        tiny(torch.randint(0, 100, (1, 1)), cache=cache, use_cache=True)  # first cold tokens
        with pytest.raises(RuntimeError, match="enable"):  # layer 0 ignored its cold tokens,
            tiny(torch.randint(0, 100, (1, 1)), cache=cache, use_cache=True)  # layer 1 reports


def test_eviction_keeps_sinks_and_the_most_recent_tokens(tiny):
    """max_tokens=20 with 4 sinks: after 50 tokens each layer holds tokens 0-3 and the newest
    ones (8-bit codes: decoded keys match the uncompressed cache's at those positions)."""
    ids = torch.randint(0, 100, (1, 50))
    reference = DynamicCache()
    cache = TurboQuantCache(
        key_bits=8, value_bits=8, residual_length=6, max_tokens=20, sink_tokens=4
    )
    with torch.no_grad():
        tiny(ids, cache=reference, use_cache=True)
        for start in range(0, 50, 10):
            tiny(ids[:, start : start + 10], cache=cache, use_cache=True)
    layer = cache.layers[0]
    assert layer.held_length == 20 and cache.get_seq_length() == 50
    assert cache.get_mask_sizes(3, 0) == (23, 30)
    parts = (layer.sink_keys, layer.cold["keys"].snapshot().decode(), layer.keys)
    held = torch.cat([part.float() for part in parts], dim=-2)
    expected = reference.layers[0].keys[..., list(range(4)) + list(range(34, 50)), :]
    torch.testing.assert_close(held, expected, rtol=0.05, atol=0.05)
    assert cache.fp16_nbytes == 2 * 1 * 2 * 20 * 32 * 2


def test_eviction_generates_like_the_decoded_path(tiny, tiny_compressed):
    ids = torch.randint(0, 100, (1, 30))
    kwargs = {"residual_length": 4, "max_tokens": 16, "sink_tokens": 2}
    a = tiny.generate(
        ids,
        cache=TurboQuantCache(key_bits=4, value_bits=4, **kwargs),
        max_new_tokens=8,
        do_sample=False,
    )
    b = tiny_compressed.generate(
        ids,
        cache=TurboQuantCache(key_bits=4, value_bits=4, attention="compressed", **kwargs),
        max_new_tokens=8,
        do_sample=False,
    )
    assert torch.equal(a, b)


def test_left_padded_batch_matches_dynamic_cache(tiny, tiny_compressed):
    ids = torch.randint(1, 100, (2, 24))
    mask = torch.ones_like(ids)
    mask[1, :9] = 0  # the second prompt is 9 tokens shorter (left padding)
    ref = tiny.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    for model, attention in ((tiny, "decoded"), (tiny_compressed, "compressed")):
        cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=3, attention=attention)
        out = model.generate(
            ids, attention_mask=mask, cache=cache, max_new_tokens=8, do_sample=False
        )
        assert torch.equal(out, ref)


def test_beam_search_reorders_every_tier(tiny):
    ids = torch.randint(0, 100, (1, 16))
    ref = tiny.generate(ids, num_beams=3, max_new_tokens=6, do_sample=False)
    cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=2)
    out = tiny.generate(ids, num_beams=3, max_new_tokens=6, do_sample=False, cache=cache)
    assert torch.equal(out, ref)


def test_boundary_layers_and_prod_keys(tiny):
    cache = TurboQuantCache(
        key_bits=3,
        value_bits=2,
        residual_length=0,
        key_mode="prod",
        boundary_layers=1,
        boundary_bits=(6, 5),
        config=tiny.config,
    )
    with torch.no_grad():
        tiny(torch.randint(0, 100, (1, 24)), cache=cache, use_cache=True)
    first, second = cache.layers  # two layers: both are boundary layers
    assert first.cold["keys"].codec.bits == 6 and first.cold["values"].codec.bits == 5
    assert first.cold["keys"].codec.mode == "prod"
    four = TurboQuantCache(
        key_bits=4, value_bits=3, boundary_layers=1, config=_config(num_hidden_layers=4)
    )
    assert [layer.key_bits for layer in four.layers] == [8, 4, 4, 8]


@pytest.mark.parametrize("attention", ["decoded", "compressed"])
def test_sliding_window_layers_keep_their_window(tiny_gemma, attention):
    """Gemma-3 layout: with config, sliding layers hold at most window - 1 tokens between
    steps and generation equals the uncompressed cache's at 8 bits."""
    model = copy.deepcopy(tiny_gemma)
    if attention == "compressed":
        enable(model)
    ids = torch.randint(0, 100, (1, 20))
    ref = tiny_gemma.generate(ids, max_new_tokens=10, do_sample=False)
    cache = TurboQuantCache(
        key_bits=8, value_bits=8, residual_length=2, attention=attention, config=tiny_gemma.config
    )
    out = model.generate(ids, cache=cache, max_new_tokens=10, do_sample=False)
    assert torch.equal(out, ref)
    assert [layer.is_sliding for layer in cache.layers] == [True, True, False]
    assert cache.layers[0].held_length == 7 and cache.layers[2].held_length == 29


def test_sliding_window_model_without_config_still_masks_right(tiny_gemma):
    ids = torch.randint(0, 100, (1, 20))
    ref = tiny_gemma.generate(ids, max_new_tokens=6, do_sample=False)
    out = tiny_gemma.generate(
        ids,
        cache=TurboQuantCache(key_bits=8, value_bits=8, residual_length=2),
        max_new_tokens=6,
        do_sample=False,
    )
    assert torch.equal(out, ref)


def test_unsupported_layouts_are_refused():
    odd = LlamaForCausalLM(_config(head_dim=12, hidden_size=48)).eval()
    with torch.no_grad(), pytest.raises(ValueError, match="head_dim=12"):
        odd(
            torch.randint(0, 100, (1, 4)),
            cache=TurboQuantCache(key_bits=4, value_bits=3),
            use_cache=True,
        )
    chunked = _config(layer_types=["full_attention", "chunked_attention"])
    chunked.attention_chunk_size = 8  # (Llama 4 style chunked attention)
    with pytest.raises(ValueError, match="chunked_attention"):
        TurboQuantCache(key_bits=4, value_bits=3, config=chunked)


def test_attention_defaults_to_compressed_for_an_enabled_model(tiny, tiny_compressed):
    assert TurboQuantCache(key_bits=4, value_bits=3).attention == "decoded"
    assert TurboQuantCache(key_bits=4, value_bits=3, config=tiny.config).attention == "decoded"
    cache = TurboQuantCache(
        key_bits=4, value_bits=3, residual_length=2, config=tiny_compressed.config
    )
    assert cache.attention == "compressed" and cache.layers[0].attention == "compressed"
    ids = torch.randint(0, 100, (1, 12))
    out = tiny_compressed.generate(ids, cache=cache, max_new_tokens=4, do_sample=False)
    assert out.shape == (1, 16)
