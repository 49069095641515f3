"""rotaquant: TurboQuant vector quantization (random rotation + Lloyd–Max + QJL).

>>> import numpy as np, rotaquant as rq
>>> q = rq.TurboQuantizer(dim=128, bits=4)
>>> codes = q.encode(np.random.default_rng(0).standard_normal((10, 128), dtype=np.float32))
>>> codes.nbytes  # 10 vectors x (128 values x 4 bits + a float16 norm)
660
"""

from .codebook import Codebook, lloyd_max
from .codes import CodecConfig, Codes
from .index import VectorIndex
from .quantizer import TurboQuantizer

__all__ = ["Codebook", "CodecConfig", "Codes", "TurboQuantizer", "VectorIndex", "lloyd_max"]
__version__ = "0.1.0"
