"""``enable(model)``: switch a transformers model to attention on the compressed cache.

The top of ``rotaquant.kv``: it ties the attention function (``attention``), transformers'
registries and ``generate``'s cache switch (``generation``) together, so none of those modules
needs another.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
from transformers import AttentionInterface
from transformers.masking_utils import AttentionMaskInterface, eager_mask

from . import generation
from .attention import compressed_attention
from .interface import ATTENTION


def enable(model) -> None:
    """Register the compressed attention (and its mask: without one transformers silently drops
    the causal mask), switch ``model`` to it, and let its ``generate`` take
    ``cache_implementation="rotaquant"`` (``kv.generation``)."""
    AttentionInterface.register(ATTENTION, compressed_attention)
    AttentionMaskInterface.register(ATTENTION, eager_mask)
    model.set_attn_implementation(ATTENTION)
    generation.install(model)
