"""transformers' own switches: cache_implementation="rotaquant", pipelines, assisted decoding."""

import copy

import pytest
import torch
from transformers import DynamicCache, LlamaForCausalLM, pipeline

from rotaquant.contrib import data
from rotaquant.kv import KVConfig, TurboQuantCache, enable

from ..conftest import packaged
from .test_cache import _config


@pytest.fixture(scope="module")
def models():
    torch.manual_seed(0)
    plain = LlamaForCausalLM(_config()).eval()
    enabled = copy.deepcopy(plain)
    enable(enabled)
    return plain, enabled


def test_cache_implementation_rotaquant_builds_our_cache(models, monkeypatch):
    """Also: nothing here uses a spelling transformers calls deprecated (``past_key_values``)."""
    from transformers.utils import generic

    logged = []
    monkeypatch.setattr(
        generic.logger, "warning_once", lambda message, *a, **k: logged.append(message)
    )
    plain, enabled = models
    ids = torch.randint(0, 100, (2, 30))
    mask = torch.ones_like(ids)
    reference = plain.generate(ids, attention_mask=mask, max_new_tokens=8, do_sample=False)
    out = enabled.generate(
        ids,
        attention_mask=mask,
        max_new_tokens=8,
        do_sample=False,
        cache_implementation="rotaquant",
        cache_config={"key_bits": 8, "value_bits": 8, "residual_length": 4},
        return_dict_in_generate=True,
    )
    assert isinstance(out.cache, TurboQuantCache)
    assert out.cache.layers[0].cold["keys"].length > 0  # tokens were compressed
    assert out.cache.attention == "compressed"  # the enabled model's fast path
    assert torch.equal(out.sequences, reference)
    assert not [message for message in logged if "deprecated" in message], logged
    with pytest.warns(DeprecationWarning, match='"turboquant" is deprecated'):
        old = enabled.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=8,
            do_sample=False,
            cache_implementation="turboquant",  # the 0.1 name
            cache_config={"key_bits": 8, "value_bits": 8, "residual_length": 4},
        )
    assert torch.equal(old, reference)


def test_generation_config_route_and_bad_options(models):
    _, enabled = models
    model = copy.deepcopy(enabled)
    enable(model)  # enabling twice wraps generate once
    model.generation_config.cache_implementation = "rotaquant"
    model.generation_config.cache_config = {"key_bits": 4, "value_bits": 3, "residual_length": 2}
    ids = torch.randint(0, 100, (1, 26))
    out = model.generate(ids, max_new_tokens=3, do_sample=False, return_dict_in_generate=True)
    assert isinstance(out.cache, TurboQuantCache)
    assert out.cache.key_bits == 4 and out.cache.residual_length == 2
    with pytest.raises(ValueError, match="unknown TurboQuantCache option"):
        model.generate(ids, max_new_tokens=1, cache_config={"nbits": 4})
    with pytest.raises(ValueError, match="use one"):
        model.generate(ids, max_new_tokens=1, cache=DynamicCache())


def test_from_dict():
    cache = TurboQuantCache.from_dict({"key_bits": 3.5, "value_bits": 2.5, "sink_tokens": 2})
    assert (cache.key_bits, cache.value_bits, cache.sink_tokens) == (3.5, 2.5, 2)
    assert cache.kv_config == KVConfig(key_bits=3.5, value_bits=2.5, sink_tokens=2).replace(
        attention="decoded"  # resolved: the model (none given) was not enabled
    )
    again = TurboQuantCache.from_dict(cache.kv_config.to_dict())
    assert again.kv_config == cache.kv_config
    with pytest.raises(ValueError, match="accepted: key_bits"):
        TurboQuantCache.from_dict({"nbits": 4})
    with pytest.raises(ValueError, match="key_bits= and value_bits="):
        TurboQuantCache.from_dict({"bits": 4})
    with pytest.raises(ValueError, match="key_bits"):
        TurboQuantCache.from_dict({"key_bits": 0})


def test_assisted_decoding_crops_hot_tokens_and_stays_lossless(models):
    """A different (random) draft model: most drafts are rejected and the cache is cropped;
    the output is the main model's own greedy continuation."""
    plain, enabled = models
    torch.manual_seed(1)
    draft = LlamaForCausalLM(_config(num_hidden_layers=1)).eval()
    ids = torch.randint(0, 100, (1, 70))
    reference = plain.generate(ids, max_new_tokens=12, do_sample=False)
    cache = TurboQuantCache(key_bits=8, value_bits=8, residual_length=32, config=enabled.config)
    crops = []
    crop = cache.crop
    cache.crop = lambda n: (crops.append(n), crop(n))
    out = enabled.generate(
        ids, cache=cache, assistant_model=draft, max_new_tokens=12, do_sample=False
    )
    assert torch.equal(out, reference)
    assert cache.layers[0].cold["keys"].length > 0 and crops


def test_crop_refuses_compressed_tokens(models):
    _, enabled = models
    cache = TurboQuantCache(key_bits=4, value_bits=4, residual_length=4, config=enabled.config)
    with torch.no_grad():
        enabled(torch.randint(0, 100, (1, 40)), cache=cache, use_cache=True)
        # the prefill's queries calibrated the codecs; the next step compresses
        enabled(torch.randint(0, 100, (1, 2)), cache=cache, use_cache=True)
    layer = cache.layers[0]
    hot = layer.keys.shape[-2]
    cache.crop(-2)
    assert layer.keys.shape[-2] == hot - 2 and cache.get_seq_length() == 40
    with pytest.raises(ValueError, match="compressed"):
        cache.crop(-(hot - 1))
    with pytest.raises(ValueError, match="negative"):
        layer.crop(3)
    evicting = TurboQuantCache(
        key_bits=4, value_bits=4, residual_length=4, max_tokens=20, config=enabled.config
    )
    assert not evicting.is_croppable  # evicted tokens would not come back after a crop


def test_text_generation_pipeline_on_smollm2():
    model, tokenizer = packaged(data.smollm2)
    enable(model)
    pipe = pipeline("text-generation", model=model, tokenizer=tokenizer)
    prompt = " ".join(data.pydoc_sentences()[:6])  # ~100 tokens: most of them go cold
    kwargs = {"max_new_tokens": 8, "do_sample": False, "return_full_text": False}
    reference = pipe(prompt, cache=DynamicCache(), **kwargs)[0]["generated_text"]
    route = pipe(
        prompt,
        cache_implementation="rotaquant",
        cache_config={"key_bits": 8, "value_bits": 8, "residual_length": 16},
        **kwargs,
    )[0]["generated_text"]
    passed = pipe(
        prompt,
        cache=TurboQuantCache(key_bits=8, value_bits=8, residual_length=16, config=model.config),
        **kwargs,
    )
    assert route == reference == passed[0]["generated_text"]
