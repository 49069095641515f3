"""The one thread pool of the package, and how many workers it has.

The codec's chunked encode/decode, the index's lookup scan and the KV cache's compiled readers
all split work over this pool. Their kernels release the GIL (numpy, numba ``nogil``), so plain
threads run them in parallel; tasks never wait on other tasks of the pool, so callers from
many threads at once cannot deadlock it.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController


@functools.cache
def workers() -> int:
    """Threads the package splits work over: the cores, at most 4."""
    return max(1, min(4, os.cpu_count() or 1))


@functools.cache
def pool() -> ThreadPoolExecutor:
    """The shared pool of ``workers()`` threads (created on first use)."""
    return ThreadPoolExecutor(workers(), "rotaquant")


@functools.cache
def blas() -> ThreadpoolController:
    """Controls BLAS threads (held to one while the pool runs matrix products in parallel)."""
    return ThreadpoolController()
