"""Threads for numpy work: the codec's chunked encode and decode.

The kernels of the index scan and the KV readers run on the native core's own pool
(``csrc/pool.cpp``); this one serves the numpy code that splits a batch into chunks (numpy
releases the GIL). Both are sized by ``ROTAQUANT_NUM_THREADS`` (default: the cores). Tasks
never wait on other tasks of the pool, so callers from many threads at once cannot deadlock
it.
"""

from __future__ import annotations

import functools
import os
from concurrent.futures import ThreadPoolExecutor

from threadpoolctl import ThreadpoolController


@functools.cache
def workers() -> int:
    """Threads to split work over: ``$ROTAQUANT_NUM_THREADS``, else the cores."""
    configured = os.environ.get("ROTAQUANT_NUM_THREADS", "")
    if configured.isdigit() and int(configured) >= 1:
        return int(configured)
    return max(1, os.cpu_count() or 1)


@functools.cache
def pool() -> ThreadPoolExecutor:
    """The shared pool of ``workers()`` threads (created on first use)."""
    return ThreadPoolExecutor(workers(), "rotaquant")


@functools.cache
def blas() -> ThreadpoolController:
    """Controls BLAS threads (held to one while the pool runs matrix products in parallel)."""
    return ThreadpoolController()
