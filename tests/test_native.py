"""rotaquant._native: variant choice (ROTAQUANT_SIMD), threads (ROTAQUANT_NUM_THREADS),
show_config."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest

import rotaquant as rq
from rotaquant import _native


def _in_child(code: str, **env: str) -> str:
    full = {**os.environ, **env}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=full, check=False
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def test_scalar_is_always_available_and_last():
    names = _native.variants()
    assert names[-1] == "scalar"
    assert _native.active_variant() in names


def test_using_variant_switches_and_restores():
    before = _native.active_variant()
    with _native.using_variant("scalar"):
        assert _native.active_variant() == "scalar"
    assert _native.active_variant() == before


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="neon|unknown|available"):
        _native.select_variant("no-such-isa")
    assert _native.active_variant() in _native.variants()


def test_rotaquant_simd_forces_a_variant():
    code = "from rotaquant import _native; print(_native.active_variant())"
    for name in _native.variants():
        assert _in_child(code, ROTAQUANT_SIMD=name) == name


def test_rotaquant_num_threads_sizes_the_pool():
    code = "from rotaquant import _native, _parallel; print(_native.threads(), _parallel.workers())"
    assert _in_child(code, ROTAQUANT_NUM_THREADS="3") == "3 3"


def test_show_config_names_the_active_kernels():
    out = io.StringIO()
    rq.show_config(out)
    text = out.getvalue()
    assert f"kernels: {_native.active_variant()}" in text
    assert f"threads: {_native.threads()}" in text
    for name in _native.variants():
        assert name in text
