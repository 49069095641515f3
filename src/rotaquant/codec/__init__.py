"""The TurboQuant codec: rotate, quantize against a Lloyd–Max codebook, pack (+ QJL).

Data flows one way through its modules: ``rotation`` (seeded orthogonal maps) → ``codebook``
(Lloyd–Max for the rotated-coordinate law at the actual dimension) → ``packing`` (the bit
layout shared by every product) → ``codes`` (configuration, channel split, the ``Codes``
container and its blob format) → ``quantizer`` (``TurboQuantizer``, numpy), with ``qjl`` for
the 1-bit residual sketch. The KV cache's torch codec (``rotaquant.kv.codec``) is built from the
same codebooks, rotations, packing layout, channel split and QJL projection.
"""

from .codebook import MAX_BITS, Codebook, lloyd_max
from .codes import ChannelGroup, CodecConfig, Codes
from .quantizer import TurboQuantizer

__all__ = [
    "MAX_BITS",
    "ChannelGroup",
    "Codebook",
    "CodecConfig",
    "Codes",
    "TurboQuantizer",
    "lloyd_max",
]
