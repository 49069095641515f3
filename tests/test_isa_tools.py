"""tools/hide_avx512.c, which the benchmarks preload for --isa avx2: every library in the
process sees a CPU without AVX-512, and the process otherwise runs as usual."""

import json
import os
import platform
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from bench._common import hide_avx512_library
from rotaquant import _core

ROOT = Path(__file__).resolve().parents[1]


def cpuid_faulting() -> bool:
    try:
        return " cpuid_fault" in Path("/proc/cpuinfo").read_text()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(
    platform.machine() != "x86_64"
    or not _core.config()["avx512"]
    or not cpuid_faulting()
    or shutil.which(os.environ.get("CC", "cc")) is None,
    reason="needs an x86-64 CPU with AVX-512, Linux CPUID faulting and a C compiler",
)

PROBE = """
import faulthandler, json
faulthandler.enable()  # installs its own SIGSEGV handler: CPUID must still be served
import numpy, rotaquant as rq
from rotaquant import _core
config = _core.config()
x = numpy.random.default_rng(0).standard_normal((300, 64)).astype(numpy.float32)
index = rq.VectorIndex(64, 4)
index.add(x)
found = index.search(x[:5], k=1)[1].ravel().tolist()
print(json.dumps({"avx512": config["avx512"], "avx2": config["avx2"],
                  "variants": config["variants"], "found": found}))
"""


def run(preload: Path | None) -> dict:
    env = {**os.environ}
    if preload is not None:
        env["LD_PRELOAD"] = str(preload)
    out = subprocess.run(
        [sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_avx512_is_hidden_from_the_whole_process_and_nothing_else_changes():
    library = hide_avx512_library()
    plain, hidden = run(None), run(library)
    assert plain["avx512"] and "avx512" in plain["variants"]
    assert not hidden["avx512"] and hidden["avx2"]
    assert "avx512" not in hidden["variants"] and hidden["variants"][0] == "avx2"
    assert hidden["found"] == plain["found"] == [0, 1, 2, 3, 4]


def test_a_real_segmentation_fault_still_kills_the_process():
    library = hide_avx512_library()
    crash = "import ctypes; ctypes.string_at(0)"
    result = subprocess.run(
        [sys.executable, "-c", crash],
        env={**os.environ, "LD_PRELOAD": str(library)},
        capture_output=True,
        timeout=60,
    )
    assert result.returncode == -11  # SIGSEGV, not a hang in the handler
