"""What the KV cache, the attention paths and the kernels agree on, below all of them: the names
rotaquant registers in transformers, and the attention-mask convention.

Naming rule (docs/architecture.md): a name rotaquant puts into another library's registry is the
package's, ``"rotaquant"`` (the attention function, its mask and the cache implementation), so
that it cannot collide with another TurboQuant implementation registering the method's name;
classes implementing the method are named after it (``TurboQuantCache``).
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import torch

ATTENTION = "rotaquant"  # AttentionInterface / AttentionMaskInterface / set_attn_implementation
CACHE_IMPLEMENTATION = "rotaquant"  # generate(cache_implementation=...)
OLD_CACHE_IMPLEMENTATION = "turboquant"  # the 0.1 spelling: accepted with a DeprecationWarning


def additive_mask(mask: torch.Tensor) -> torch.Tensor:
    """An attention mask as float32 to add to logits: boolean masks (True: attend) become
    0 / −inf; additive masks are used as they are."""
    if mask.dtype == torch.bool:
        return torch.zeros(mask.shape, device=mask.device).masked_fill_(~mask, -torch.inf)
    return mask.float()
