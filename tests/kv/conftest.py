"""Models shared by the KV tests."""

import pytest
import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig


@pytest.fixture(scope="session")
def tiny_gemma():
    """Tiny random Gemma-3: two sliding-window layers (window 8) and a full one."""
    torch.manual_seed(0)
    config = Gemma3TextConfig(
        vocab_size=100,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=3,
        num_attention_heads=4,
        num_key_value_heads=1,
        head_dim=32,
        sliding_window=8,
        layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    return Gemma3ForCausalLM(config).eval()
