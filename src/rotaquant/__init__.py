"""rotaquant: TurboQuant vector quantization (random rotation + Lloyd–Max + QJL).

One codec (``rotaquant.codec``), two products: a compressed vector index
(``rotaquant.index``) and a KV cache for transformers (``rotaquant.kv``, the ``[kv]`` extra).

>>> import numpy as np, rotaquant as rq
>>> q = rq.TurboQuantizer(dim=128, bits=4)
>>> codes = q.encode(np.random.default_rng(0).standard_normal((10, 128), dtype=np.float32))
>>> codes.nbytes  # 10 vectors x (128 values x 4 bits + a float16 norm)
660
"""

import importlib.metadata

from ._native import show_config
from .codec import Codebook, CodecConfig, Codes, TurboQuantizer, lloyd_max
from .index import FileChangedError, IndexConfig, SearchResult, VectorIndex

__all__ = [
    "Codebook",
    "CodecConfig",
    "Codes",
    "FileChangedError",
    "IndexConfig",
    "SearchResult",
    "TurboQuantizer",
    "VectorIndex",
    "lloyd_max",
    "show_config",
]
__version__ = importlib.metadata.version("rotaquant")


def __getattr__(name: str):
    if name == "data":  # 0.1 exported its demo data here
        import importlib

        return importlib.import_module(".data", __name__)  # warns: moved to rotaquant.contrib
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
