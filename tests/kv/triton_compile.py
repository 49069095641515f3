"""Compile the Triton kernels for real GPUs, without one: ``python tests/kv/triton_compile.py``.

Runs the launch wrappers on CPU tensors with the launch replaced by a recorder, then compiles
every recorded (kernel, argument types, constants) for Hopper (sm_90) and Ampere (sm_80) to
machine code with the ptxas that ships in the triton wheel, and checks that the shared memory
each needs fits the chip. The interpreter tests check what the kernels compute; this checks
that the compiler accepts them (the interpreter runs code the compiler would refuse). Must
run without ``TRITON_INTERPRET`` (the kernels are then real JIT functions). Prints one line per
compiled variant; exits non-zero on the first failure.
"""

from __future__ import annotations

import os
import sys

import torch

assert os.environ.get("TRITON_INTERPRET") != "1", "run without TRITON_INTERPRET"

import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from rotaquant.kv import triton_attention, triton_common, triton_encode  # noqa: E402
from rotaquant.kv.cache import ColdView  # noqa: E402
from rotaquant.kv.codec import HeadCodec, fit_heads  # noqa: E402
from rotaquant.kv.cold import ColdTier  # noqa: E402
from rotaquant.kv.config import FitOptions  # noqa: E402

# (arch, shared memory per block in bytes): H100/H200, A100
TARGETS = ((90, 227 * 1024), (80, 163 * 1024))
TYPES = {
    torch.float32: "*fp32",
    torch.float16: "*fp16",
    torch.bfloat16: "*bf16",
    torch.uint8: "*u8",
    torch.int32: "*i32",
}
recorded = []


def record(kernel, grid, *args, **constants):
    if "PRECISION" in constants:  # what a GPU run uses (the interpreter takes "ieee")
        constants["PRECISION"] = "tf32"
    recorded.append((kernel, args, constants))


def signature(kernel, args, constants):
    types = {}
    for name, value in zip(kernel.arg_names, args, strict=False):
        if isinstance(value, torch.Tensor):
            types[name] = TYPES[value.dtype]
        elif isinstance(value, float):
            types[name] = "fp32"
        else:
            types[name] = "i64" if abs(value) >= 2**31 else "i32"
    types.update({name: "constexpr" for name in constants})
    return types


def codec(dim, bits, mode, seed, states):
    fit = fit_heads(states, bits, mode, FitOptions(scale_power=0.5 if seed == 0 else 0.0))
    return HeadCodec(dim, bits, seed, mode, fit.outliers, fit.offset, fit.channel_scale)


def launches(dim, key_bits, value_bits, key_mode, dtype, q_len, groups):
    keys, values = torch.randn(1, 2, 40, dim), torch.randn(1, 2, 40, dim)
    tiers = (
        ColdTier(codec(dim, key_bits, key_mode, 0, keys)),
        ColdTier(codec(dim, value_bits, "mse", 1, values)),
    )
    tiers[0].codec.encode = triton_encode.encode.__get__(tiers[0].codec)  # no dispatch
    tiers[1].codec.encode = triton_encode.encode.__get__(tiers[1].codec)
    for tier, states in zip(tiers, (keys, values), strict=True):
        tier.append(states.to(dtype))
    view = ColdView(tiers[0].snapshot(), tiers[1].snapshot(), 4)
    exact = torch.randn(1, 2, 9, dim, dtype=dtype)
    mask = torch.zeros(1, 1, q_len, 49, dtype=dtype)
    q = torch.randn(1, 2, groups * q_len, dim)
    triton_attention.attend(q, q_len, exact, exact, view, mask, 30.0)


def main() -> int:
    triton_common.launch = record
    cases = [
        (64, 4, 3, "mse", torch.bfloat16, 1, 3),
        (128, 4, 3, "mse", torch.bfloat16, 1, 4),
        (128, 3.5, 2.5, "mse", torch.float16, 1, 4),
        (128, 4, 4, "prod", torch.bfloat16, 2, 8),
        (256, 4, 3, "mse", torch.bfloat16, 1, 4),
        (256, 3.5, 3.5, "prod", torch.float32, 1, 2),
        (128, 8, 8, "mse", torch.float16, 1, 1),
    ]
    for case in cases:
        launches(*case)
    seen = set()
    for kernel, args, constants in recorded:
        types = signature(kernel, args, constants)
        key = (kernel.__name__, tuple(sorted(types.items())), tuple(sorted(constants.items())))
        if key in seen:
            continue
        seen.add(key)
        for arch, shared_limit in TARGETS:
            source = ASTSource(kernel, types, constexprs=constants)
            compiled = triton.compile(source, target=GPUTarget("cuda", arch, 32))
            shared = compiled.metadata.shared
            label = ", ".join(f"{k}={v}" for k, v in constants.items() if k != "PRECISION")
            print(f"sm_{arch} {kernel.__name__}: {shared} B shared ({label})")
            if shared > shared_limit:
                print(f"  needs more shared memory than sm_{arch} has ({shared_limit})")
                return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
