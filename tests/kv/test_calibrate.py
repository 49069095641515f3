"""Calibration from queries (rotaquant.kv.calibrate): choices on heads whose answer is known,
the width allocation, and bits="auto" in a cache."""

import copy

import pytest
import torch
from transformers import LlamaForCausalLM

from rotaquant.kv import KVConfig, TurboQuantCache, enable
from rotaquant.kv.calibrate import Sample, allocate, choose
from rotaquant.kv.config import FitOptions

from .test_cache import _config, _decoded_twin

HEADS, TOKENS, DIM = 2, 192, 64


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return LlamaForCausalLM(_config()).eval()


RAW, CENTERED = FitOptions(False, 0.0), FitOptions(True, 0.0)


def _sample(keys: torch.Tensor, seed: int = 0) -> Sample:
    """Queries that look at the keys (their own noisy copies), values N(0, 1); tokens
    [4, TOKENS − 16) go cold."""
    generator = torch.Generator().manual_seed(seed)
    values = torch.randn(keys.shape, generator=generator)
    queries = keys[..., -64:, :] + 0.5 * torch.randn((1, HEADS, 64, DIM), generator=generator)
    return Sample.from_attention(queries * DIM**-0.5, 64, keys, values, 4, TOKENS - 16)


def test_a_dominant_key_mean_makes_calibration_center_the_keys():
    """Keys = a large shared mean + small variation: coding them raw spends the codebook on
    the mean. With raw as the configured default, every head still moves to a centered
    coding, and its measured error is far below raw's."""
    generator = torch.Generator().manual_seed(1)
    mean = 8 * torch.randn((1, HEADS, 1, DIM), generator=generator)
    keys = mean + torch.randn((1, HEADS, TOKENS, DIM), generator=generator)
    sample = _sample(keys)
    chosen = choose(sample, "keys", 3, "mse", 0, RAW)
    assert all(label != "raw" for label in chosen.labels)
    assert chosen.fit.offset is not None
    assert (chosen.errors < 0.5 * _error_of(sample, RAW)).all()


def _error_of(sample: Sample, option: FitOptions) -> torch.Tensor:
    """(heads,) error of one option, fitted and scored as ``choose`` does."""
    from rotaquant.kv.codec import HeadCodec, fit_heads

    fit = fit_heads(sample.fitted_on("keys"), 3, "mse", option)
    codec = HeadCodec(DIM, 3, 0, "mse", fit.outliers, fit.offset, fit.channel_scale)
    return sample.error("keys", codec.decode(*codec.encode(sample.tested_on("keys"))))


def test_a_drifting_mean_makes_calibration_keep_keys_raw():
    """A model where centering hurts: the keys' mean drifts with position (older tokens at
    +m, newer at −m, as a RoPE'd channel's can), so the mean fitted on older tokens doubles
    the newer tokens' offset. With centering as the configured default, every head moves to
    the raw coding."""
    generator = torch.Generator().manual_seed(2)
    drift = 3 * torch.randn((1, HEADS, 1, DIM), generator=generator)
    sign = torch.where(torch.arange(TOKENS) < TOKENS // 2, 1.0, -1.0)[None, None, :, None]
    keys = sign * drift + torch.randn((1, HEADS, TOKENS, DIM), generator=generator)
    sample = _sample(keys, seed=3)
    chosen = choose(sample, "keys", 3, "mse", 0, CENTERED)
    assert chosen.labels == ("raw",) * HEADS
    assert (chosen.errors < _error_of(sample, CENTERED)).all()


def test_allocate_spends_the_budget_where_the_error_falls_most():
    curves = {
        "steep": {2: 100.0, 3: 10.0, 4: 1.0},
        "flat": {2: 2.0, 3: 1.5, 4: 1.2},
    }
    sizes = {"steep": 64, "flat": 64}
    assert allocate(curves, sizes, 3.0) == {"steep": 4, "flat": 2}
    assert allocate(curves, sizes, 2.0) == {"steep": 2, "flat": 2}
    assert allocate(curves, sizes, 4.0) == {"steep": 4, "flat": 4}
    with pytest.raises(ValueError, match="below the smallest widths"):
        allocate(curves, sizes, 1.5)


def test_auto_options_are_checked_at_construction(tiny):
    with pytest.raises(ValueError, match="bits takes 'auto'"):
        KVConfig(bits="3")
    with pytest.raises(ValueError, match="budget"):
        KVConfig(bits="auto", budget=1.5)
    with pytest.raises(ValueError, match="boundary"):
        KVConfig(bits="auto", boundary_layers=1)
    with pytest.raises(ValueError, match="needs config"):
        TurboQuantCache(bits="auto")


def test_auto_widths_stay_within_the_budget_and_attention_matches_decoding(tiny):
    """bits="auto" on a small Llama: every layer gets widths from the plan once its first
    tokens go cold, the mean width is within the budget, the cache holds what it says, and
    the compressed attention still equals decode-then-SDPA on those codecs."""
    model = copy.deepcopy(tiny)
    enable(model)
    cache = TurboQuantCache(
        bits="auto", budget=3.0, residual_length=4, attention="compressed", config=tiny.config
    )
    ids = torch.randint(0, 100, (1, 60), generator=torch.Generator().manual_seed(6))
    with torch.no_grad():
        model(ids[:, :40], cache=cache, use_cache=True)  # the queries calibrate
        for start in range(40, 60, 5):
            twin = _decoded_twin(cache)
            a = tiny(ids[:, start : start + 5], cache=twin, use_cache=True).logits
            b = model(ids[:, start : start + 5], cache=cache, use_cache=True).logits
            torch.testing.assert_close(b, a, rtol=1e-4, atol=1e-5)
    widths = [bits for pair in cache.allocation for bits in pair]
    assert sum(widths) / len(widths) <= 3.0 + 1e-9
    assert all(layer.cold["keys"].length for layer in cache.layers)
    assert all(c is not None and len(c["keys"].labels) == 2 for c in cache.calibration)
    assert cache.nbytes <= cache.fp16_nbytes
