"""The native core (C++ in ``csrc/``, compiled as ``rotaquant._core``): which kernel variant
runs, how many threads it uses, and ``show_config``.

Variants: ``scalar`` (portable reference), ``avx2`` (AVX2 + FMA + BMI2 + F16C), ``avx512``
(F/BW/VL/DQ/VBMI/VNNI) on x86-64; ``neon`` (every aarch64 CPU) and ``neon_dotprod`` (+ the dot
product extension: Apple M1 and later, Graviton 2 and later) on aarch64; chosen at run time: the
best this CPU runs, or ``$ROTAQUANT_SIMD``.
Threads: ``$ROTAQUANT_NUM_THREADS`` (default: the cores), one pool for every kernel.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from . import _core, _gpu


def variants() -> list[str]:
    """Kernel variants this build holds and this CPU runs, best first."""
    return list(_core.config()["variants"])


def active_variant() -> str:
    return str(_core.config()["active"])


def select_variant(name: str) -> None:
    """Make ``name`` the kernel variant every native call uses (ValueError if unavailable)."""
    _core.select(name)


@contextmanager
def using_variant(name: str) -> Iterator[None]:
    """Run a block with another kernel variant (tests compare variants this way)."""
    previous = active_variant()
    select_variant(name)
    try:
        yield
    finally:
        select_variant(previous)


def threads() -> int:
    return int(_core.config()["threads"])


def show_config(file: TextIO | None = None) -> None:
    """Print which kernels rotaquant uses here: native variants, threads, optional parts."""
    out = file or sys.stdout
    config = _core.config()
    features = [name for name in ("avx2", "avx512", "neon", "dotprod") if config.get(name)]
    print(f"rotaquant {importlib.metadata.version('rotaquant')}", file=out)
    print(f"  CPU features used: {', '.join(features) or 'none (portable code)'}", file=out)
    print(
        f"  index scan / KV row kernels: {config['active']} "
        f"(available: {', '.join(config['variants'])}; ROTAQUANT_SIMD forces one)",
        file=out,
    )
    print(f"  threads: {config['threads']} (ROTAQUANT_NUM_THREADS)", file=out)
    if importlib.util.find_spec("torch") is None:
        print("  KV cache: needs the [kv] extra (torch)", file=out)
    else:
        for line in _gpu.describe():
            print(line, file=out)
