"""KV caches for Hugging Face transformers (the ``[kv]`` extra: torch, transformers).

``TurboQuantCache`` (its options: ``KVConfig``) stores keys and values TurboQuant-compressed;
``enable(model)`` switches a model to attention computed on the compressed cache.

``KVConfig`` needs nothing beyond numpy; the rest loads torch and transformers when first
used, and says which extra to install when they are missing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING

from .config import KVConfig

if TYPE_CHECKING:
    from .attention import compressed_attention
    from .cache import TurboQuantCache, TurboQuantLayer
    from .codec import HeadCodec
    from .switch import enable

_NEEDS_TORCH = {
    "HeadCodec": "codec",
    "TurboQuantCache": "cache",
    "TurboQuantLayer": "cache",
    "compressed_attention": "attention",
    "enable": "switch",
}
__all__ = [
    "HeadCodec",
    "KVConfig",
    "TurboQuantCache",
    "TurboQuantLayer",
    "compressed_attention",
    "enable",
]


def __getattr__(name: str):
    module = _NEEDS_TORCH.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    # a missing torch or transformers: ModuleNotFoundError naming the extra (kv/_requires.py)
    return getattr(importlib.import_module(f"{__name__}.{module}"), name)
