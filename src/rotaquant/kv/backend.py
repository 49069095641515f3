"""The one place that decides which kernels the KV cache runs, by device.

- ``"native"``: the C++ core (``rotaquant._core``) on CPU tensors;
- ``"triton"``: the Triton kernels (``triton_kernels``) on CUDA tensors when ``triton`` is
  installed (CUDA builds of torch ship it; the ``[gpu]`` extra names it);
- ``"torch"``: the reference in plain torch (any device; also whenever autograd records,
  since the kernels write plain buffers).

``$ROTAQUANT_KV_BACKEND`` forces one (``"triton"`` on CPU tensors needs
``TRITON_INTERPRET=1``: how the tests check the Triton kernels without a GPU).
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import os

import torch

from .. import _gpu

BACKENDS = ("native", "triton", "torch")
ENV = "ROTAQUANT_KV_BACKEND"


def available(device: torch.device) -> list[str]:
    """Backends that can run on tensors of ``device``, in order of preference."""
    found = ["native"] if device.type == "cpu" else []
    if _gpu.triton_runs_on(device.type):  # on CPU (the interpreter): for tests, never default
        found.append("triton")
    return [*found, "torch"]


def choose(device: torch.device, recording: bool = False) -> str:
    """The backend for tensors on ``device`` (``recording``: autograd records the call)."""
    if recording:
        return "torch"
    forced = os.environ.get(ENV)
    if forced:
        if forced not in BACKENDS:
            raise ValueError(f"{ENV} must be one of {BACKENDS}, got {forced!r}")
        if forced not in available(device):
            raise RuntimeError(
                f"{ENV}={forced} cannot run on {device.type} tensors here "
                f"(available: {', '.join(available(device))})"
            )
        return forced
    return available(device)[0]
