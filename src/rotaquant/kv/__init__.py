"""KV caches for Hugging Face transformers (needs the ``[kv]`` extra: torch, transformers)."""

from .attention import compressed_attention, enable
from .cache import TurboQuantCache, TurboQuantLayer
from .codec import HeadCodec

__all__ = ["HeadCodec", "TurboQuantCache", "TurboQuantLayer", "compressed_attention", "enable"]
