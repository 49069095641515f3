"""What GPU support this machine has: whether ``triton`` is installed, whether torch sees a
CUDA device, whether Triton's interpreter is on. No import of torch or triton until asked."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
from functools import cache


@cache  # asked on every attention call; an install does not change within a process
def triton_version() -> str | None:
    """The installed triton's version, or None."""
    if importlib.util.find_spec("triton") is None:
        return None
    try:
        return importlib.metadata.version("triton")
    except importlib.metadata.PackageNotFoundError:  # a source checkout on the path
        return "unknown version"


def interpreting() -> bool:
    """``TRITON_INTERPRET=1``: Triton kernels run on CPU tensors through the interpreter."""
    return os.environ.get("TRITON_INTERPRET") == "1"


@cache
def cuda_devices() -> tuple[str, ...]:
    """Names of the CUDA devices torch sees (empty without torch or a GPU)."""
    if importlib.util.find_spec("torch") is None:
        return ()
    import torch

    if not torch.cuda.is_available():
        return ()
    return tuple(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))


def triton_runs_on(device_type: str) -> bool:
    """Whether the Triton kernels can run on tensors of this device type here."""
    if triton_version() is None:
        return False
    if device_type == "cuda":
        return bool(cuda_devices())
    return device_type == "cpu" and interpreting()


def describe() -> list[str]:
    """Lines for ``show_config``: the KV cache's kernels by device, and how to force one."""
    version = triton_version()
    gpus = cuda_devices()
    if version is None:
        cuda = "torch reference (install the [gpu] extra, triton, for the Triton kernels)"
    elif gpus:
        cuda = f"Triton kernels (triton {version}; {', '.join(gpus)})"
    else:
        cuda = f"Triton kernels (triton {version}; no CUDA device visible here)"
    lines = [
        "  KV cache on CPU tensors: native kernels; on CUDA tensors: " + cuda,
        "  ROTAQUANT_KV_BACKEND=native|triton|torch forces one"
        + ("; TRITON_INTERPRET=1: Triton kernels on CPU tensors (interpreter)" if version else ""),
        "  vector index: CPU scan (no GPU scan yet)",
    ]
    return lines
