"""TurboQuant for attention heads, in torch: the codec of ``rotaquant`` on (..., head_dim)
tensors, on the tensors' own device.

Each head vector x is stored as bit-packed Lloyd–Max codes of its rotated unit direction plus
one float16 scale ‖x‖/‖ĉ‖ (norm correction: the decoded vector keeps x's length), exactly the
layout ``rotaquant.Codes`` uses for one channel group: 8 values of b bits fill b bytes.
"""

from __future__ import annotations

import numpy as np
import torch

from ..codebook import lloyd_max
from ..codes import CodecConfig
from ..rotation import make_rotation


class HeadCodec:
    """Encode/decode head vectors of dimension ``head_dim`` at ``bits`` (1..8 or fractional).

    ``encode(x)`` takes (..., head_dim) and returns ``(streams, scales)``: one uint8 tensor
    (..., channels·bits/8) per channel group and float16 scales (...). ``decode`` inverts it,
    optionally staying in the rotated domain (for attention that rotates queries instead).
    """

    def __init__(self, head_dim: int, bits: float, seed: int = 0):
        config = CodecConfig(head_dim, bits, seed=seed)
        self.head_dim, self.bits = head_dim, config.bits
        self.groups = config.groups
        for group in self.groups:
            if group.channels % 8:
                raise ValueError(
                    f"head_dim={head_dim} at bits={bits}: channel groups must hold a multiple "
                    f"of 8 channels (got {group.channels})"
                )
        basis = make_rotation("hadamard", head_dim, seed).forward(
            np.eye(head_dim, dtype=np.float32)
        )
        self._rotation = torch.from_numpy(np.ascontiguousarray(basis, np.float32))
        books = [lloyd_max(head_dim, group.bits) for group in self.groups]
        self._centroids = [torch.from_numpy(b.centroids.astype(np.float32)) for b in books]
        self._boundaries = [torch.from_numpy(b.boundaries.astype(np.float32)) for b in books]

    def bytes_per_vector(self) -> int:
        """Packed code bytes plus the float16 scale, per head vector."""
        return sum(g.channels * g.bits // 8 for g in self.groups) + 2

    def _on(self, device: torch.device):
        if self._rotation.device != device:
            self._rotation = self._rotation.to(device)
            self._centroids = [c.to(device) for c in self._centroids]
            self._boundaries = [b.to(device) for b in self._boundaries]

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x @ R in float32: the domain the codes live in."""
        self._on(x.device)
        return x.float() @ self._rotation

    def unrotate(self, y: torch.Tensor) -> torch.Tensor:
        self._on(y.device)
        return y @ self._rotation.T

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
        rotated = self.rotate(x)
        lengths = rotated.norm(dim=-1, keepdim=True)
        unit = rotated / lengths.clamp_min(torch.finfo(torch.float32).tiny)
        streams, decoded_sq = [], torch.zeros_like(lengths)
        for group, centroids, boundaries in zip(
            self.groups, self._centroids, self._boundaries, strict=True
        ):
            part = unit[..., group.start : group.stop].contiguous()
            codes = torch.bucketize(part, boundaries)
            decoded_sq += centroids[codes].square().sum(dim=-1, keepdim=True)
            streams.append(pack(codes, group.bits))
        scales = lengths / decoded_sq.sqrt().clamp_min(torch.finfo(torch.float32).tiny)
        return streams, scales.squeeze(-1).to(torch.float16)

    def decode(
        self, streams: list[torch.Tensor], scales: torch.Tensor, rotated: bool = False
    ) -> torch.Tensor:
        """(..., head_dim) float32."""
        parts = []
        for group, centroids, stream in zip(self.groups, self._centroids, streams, strict=True):
            self._on(stream.device)
            parts.append(centroids[unpack(stream, group.bits, group.channels)])
        y = torch.cat(parts, dim=-1) * scales.float().unsqueeze(-1)
        return y if rotated else self.unrotate(y)


def pack(codes: torch.Tensor, bits: int) -> torch.Tensor:
    """(..., c) integer codes < 2**bits, c a multiple of 8 -> (..., c·bits/8) uint8, the
    little-endian bit stream of ``rotaquant.packing``."""
    *lead, c = codes.shape
    lanes = codes.reshape(*lead, c // 8, 8).to(torch.int64)
    shifts = torch.arange(8, device=codes.device, dtype=torch.int64) * bits
    words = (lanes << shifts).sum(dim=-1, keepdim=True)
    byte_shifts = torch.arange(bits, device=codes.device, dtype=torch.int64) * 8
    return ((words >> byte_shifts) & 0xFF).to(torch.uint8).reshape(*lead, c * bits // 8)


def unpack(packed: torch.Tensor, bits: int, c: int) -> torch.Tensor:
    """Inverse of :func:`pack`: (..., c·bits/8) uint8 -> (..., c) int64 codes."""
    *lead, _ = packed.shape
    chunks = packed.reshape(*lead, c // 8, bits).to(torch.int64)
    byte_shifts = torch.arange(bits, device=packed.device, dtype=torch.int64) * 8
    words = (chunks << byte_shifts).sum(dim=-1, keepdim=True)
    shifts = torch.arange(8, device=packed.device, dtype=torch.int64) * bits
    return ((words >> shifts) & ((1 << bits) - 1)).reshape(*lead, c)
