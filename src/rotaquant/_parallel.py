"""Threads for numpy work: the codec's chunked encode and decode.

The kernels of the index scan and the KV readers run on the native core's own pool
(``csrc/pool.cpp``); this one serves the numpy code that splits a batch into chunks (numpy
releases the GIL). Both are sized by ``ROTAQUANT_NUM_THREADS`` (default: the cores). Tasks
never wait on other tasks of the pool, so callers from many threads at once cannot deadlock
it.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

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
def _blas() -> ThreadpoolController:
    return ThreadpoolController()


_blas_lock = threading.Lock()
_blas_holders = 0
_blas_limit: Any = None


@contextlib.contextmanager
def single_threaded_blas() -> Iterator[None]:
    """BLAS held to one thread inside: while rotaquant's own threads fill the cores, BLAS
    threads would only compete with them (and OpenBLAS's keep spinning after each product:
    they cost the native scan 12% of a 2-core machine). Counted across threads: the first
    caller in lowers the limit and the last one out restores it, so concurrent callers
    never leave BLAS at one thread. (OpenBLAS ignores a limit set from a worker thread once
    the main thread has set one: there the limit is a no-op, not an error.)"""
    global _blas_holders, _blas_limit
    with _blas_lock:
        if _blas_holders == 0:
            _blas_limit = _blas().limit(limits=1, user_api="blas")
        _blas_holders += 1
    try:
        yield
    finally:
        with _blas_lock:
            _blas_holders -= 1
            if _blas_holders == 0:
                _blas_limit.restore_original_limits()
                _blas_limit = None
