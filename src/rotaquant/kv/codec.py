"""TurboQuant for attention heads, in torch: the codec of ``rotaquant.codec`` on
(..., head_dim) tensors, on the tensors' own device.

Shared with ``rotaquant.codec`` (imported from there, never re-derived): the Lloyd–Max
codebooks (``codebook.lloyd_max``), the randomized Hadamard rotations (``rotation``), the
bit layout (``packing.pack_rows``), the channel split of fractional widths
(``CodecConfig.groups``) and the QJL projection and scale (``qjl.QJLSketch``).

What differs from ``TurboQuantizer`` (numpy), and why:

- torch on the cache's device, no host round trip: the KV cache encodes on every forward pass;
- one row of bytes per (token, head), so channel groups must hold multiples of 8 channels: the
  attention kernels address a token's codes directly and tiers grow and evict by whole rows
  (``TurboQuantizer`` packs a batch as one stream, any dimension, no per-row padding);
- the stored scale is always norm-corrected float16 (attention wants decoded keys and values
  at their original length; the index makes the same choice, plain codes may store ‖x‖);
- fractional widths may give the higher width to per-head *outlier channels* chosen from real
  keys at prefill (rotated apart from the rest, a scale per group): attention heads have
  persistent high-RMS channels, arbitrary vectors do not.

A head vector x is rotated (x @ M), split into channel groups, and each group is stored as
bit-packed Lloyd–Max codes (8 values of b bits fill b bytes, the layout of
``rotaquant.packing``) plus a float16 *scale* that restores the length (norm correction).

- Integer widths: M is one randomized Hadamard matrix, one group, one scale per vector.
- Fractional widths (2.5, 3.5, ...) with ``outliers`` (head, channels) given: M first moves
  each head's outlier channels (the highest pre-rotation RMS, chosen by the cache at prefill)
  to the front, then rotates outliers and the rest by separate Hadamard matrices; each group is
  coded at its own width with its own scale (two scales per vector). Without ``outliers`` the
  split is made in the rotated domain and one scale serves both groups.
- ``mode="prod"`` (TurboQuant_prod): the groups carry ``bits − 1``; one more stream holds the
  signs of S·r for the rotated residual r (S Gaussian, head_dim²) with scale ‖r‖·√(π/2)/d,
  making ⟨q, k̂⟩ an unbiased estimate of ⟨q, k⟩.

Every stream is described by a :class:`StreamLayout`; attention kernels read streams through
those layouts, scoring queries in the stream's domain (``"rotated"``: q @ M, ``"projected"``:
(q @ M) @ Sᵀ).
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
from dataclasses import dataclass

import numpy as np
import torch

from ..codec.codebook import lloyd_max
from ..codec.codes import CodecConfig
from ..codec.packing import pack_rows, unpack_rows
from ..codec.qjl import QJLSketch
from ..codec.rotation import make_rotation
from . import backend
from .config import FitOptions, head_config


@dataclass(frozen=True)
class StreamLayout:
    """Channels ``[start, stop)`` of the query domain ``domain`` at ``bits`` each, decoding to
    ``values[code]`` (float32, 2**bits) times the per-vector scale number ``scale``."""

    start: int
    stop: int
    bits: int
    values: np.ndarray
    domain: str
    scale: int

    @property
    def channels(self) -> int:
        return self.stop - self.start

    @property
    def nbytes(self) -> int:
        """Packed bytes per vector."""
        return self.channels * self.bits // 8


class HeadCodec:
    """Encode/decode head vectors of dimension ``head_dim`` at ``bits`` (1..8 or fractional).

    ``encode(x)`` takes (..., heads, tokens, head_dim) and returns ``(packed, scales)``: one
    uint8 tensor (..., tokens, stream bytes) per entry of ``layouts`` and float16 scales
    (..., tokens), ``scale_count`` of them. ``outliers`` (heads, channels) selects, per head,
    the channels coded at the higher of a fractional width's two widths.
    """

    def __init__(
        self,
        head_dim: int,
        bits: float,
        seed: int = 0,
        mode: str = "mse",
        outliers: torch.Tensor | None = None,
        offset: torch.Tensor | None = None,
        channel_scale: torch.Tensor | None = None,
    ):
        if mode not in ("mse", "prod"):
            raise ValueError(f"mode must be 'mse' or 'prod', got {mode!r}")
        config = head_config(head_dim, bits, seed, mode)
        self.head_dim, self.bits, self.mode = head_dim, config.bits, mode
        groups = config.groups
        split = outliers is not None and len(groups) > 1
        books = [lloyd_max(g.channels if split else head_dim, g.bits) for g in groups]
        layouts = []
        for index, (group, book) in enumerate(zip(groups, books, strict=True)):
            layouts.append(
                StreamLayout(
                    group.start,
                    group.stop,
                    group.bits,
                    book.centroids.astype(np.float32),
                    "rotated",
                    index if split else 0,
                )
            )
        self.scale_count = len(groups) if split else 1
        self.projection = None  # S (head_dim, head_dim) of the QJL sketch (prod mode)
        if mode == "prod":
            qjl = QJLSketch(head_dim, seed)  # the codec's projection S and estimator scale
            self.projection = torch.from_numpy(qjl.projection)
            self.qjl_scale = float(qjl.scale)
            layouts.append(
                StreamLayout(
                    0, head_dim, 1, np.array([-1.0, 1.0], np.float32), "projected", self.scale_count
                )
            )
            self.scale_count += 1
        self.layouts = tuple(layouts)
        self._slots = [(g.start, g.stop) for g in groups] if split else [(0, head_dim)]
        rotation = self._rotation_matrix(groups, seed, outliers if split else None)
        # x ↦ (x − μ) @ F is coded (F: forward_matrix); queries score in q @ G (G: query_matrix);
        # y @ Gᵀ (+ μ) decodes. F = G = M (orthogonal) unless channels are scaled:
        # F = diag(1/s) M, G = diag(s) M
        self._outlier_count = outliers.numel() if split else 0
        self.offset = None if offset is None else offset.float()
        self.channel_scale = None if channel_scale is None else channel_scale.float()
        if channel_scale is None:
            self.forward_matrix = self.query_matrix = rotation
        else:
            per_channel = self.channel_scale[..., None]  # (heads, head_dim, 1)
            self.forward_matrix, self.query_matrix = rotation / per_channel, rotation * per_channel
        # per stream, what the kernels read: its centroids (2**bits,) float32; per Lloyd–Max
        # stream (the first len(groups) layouts) its decision boundaries (2**bits − 1,)
        self.centroids = [torch.from_numpy(layout.values) for layout in layouts]
        self.boundaries = [torch.from_numpy(book.boundaries).float() for book in books]

    def _rotation_matrix(self, groups, seed: int, outliers: torch.Tensor | None) -> torch.Tensor:
        """(head_dim, head_dim), or (heads, head_dim, head_dim) with per-head outliers."""

        def hadamard(n: int, stream: int) -> np.ndarray:  # M with x @ M = forward(x)
            return make_rotation("hadamard", n, seed + 1000 * stream).matrix.T

        d = self.head_dim
        if outliers is None:
            return torch.from_numpy(np.ascontiguousarray(hadamard(d, 0), np.float32))
        block = np.zeros((d, d), np.float32)
        for index, group in enumerate(groups):
            block[group.start : group.stop, group.start : group.stop] = hadamard(
                group.channels, index
            )
        outliers = outliers.cpu().long()
        heads, count = outliers.shape
        if count != groups[0].channels:
            raise ValueError(f"expected {groups[0].channels} outlier channels, got {count}")
        matrices = np.zeros((heads, d, d), np.float32)
        for head in range(heads):
            chosen = outliers[head].tolist()
            rest = [c for c in range(d) if c not in set(chosen)]
            order = np.array(chosen + rest)
            matrices[head, order] = block  # row `channel` of M is row `position` of the block
        return torch.from_numpy(matrices)

    def from_domain(self, domain: str, y: np.ndarray) -> np.ndarray:
        """Map (..., head_dim) rows of a stream's decoded contribution to the rotated domain."""
        return y if domain == "rotated" else y @ self.projection.cpu().numpy()

    def bytes_per_vector(self) -> int:
        """Packed code bytes plus the float16 scales, per head vector."""
        return sum(layout.nbytes for layout in self.layouts) + 2 * self.scale_count

    def to_device(self, device: torch.device) -> None:
        """Move the codec's matrices, centroids, boundaries and offset to ``device`` (once;
        every method that takes tensors calls it)."""
        if self.query_matrix.device != device:
            self.query_matrix = self.query_matrix.to(device)
            self.forward_matrix = self.forward_matrix.to(device)
            if self.offset is not None:
                self.offset = self.offset.to(device)
            self.centroids = [v.to(device) for v in self.centroids]
            self.boundaries = [b.to(device) for b in self.boundaries]
            if self.projection is not None:
                self.projection = self.projection.to(device)

    def _matrix(self, x: torch.Tensor) -> torch.Tensor:
        """M: (head_dim, head_dim), or (heads, head_dim, head_dim), which broadcasts against
        (..., heads, tokens, head_dim) head by head."""
        self.to_device(x.device)
        return self.query_matrix

    def rotate(self, x: torch.Tensor) -> torch.Tensor:
        """x @ G in float32: (..., heads, tokens, head_dim), the domain queries score codes in
        (G = M, the rotation, unless channels are scaled)."""
        return torch.matmul(x.float(), self._matrix(x))

    def unrotate(self, y: torch.Tensor) -> torch.Tensor:
        """y @ Gᵀ: a rotated-domain (sum of) decoded vector(s) back in the model's domain,
        without the offset μ (``offset_terms`` adds it)."""
        return torch.matmul(y, self._matrix(y).transpose(-1, -2))

    def offset_scores(self, q: torch.Tensor) -> torch.Tensor | None:
        """⟨q, μ⟩ per query: (..., heads, queries) for q (..., heads, queries, head_dim), or
        None without an offset. Cold logits are ⟨q G, ŷ⟩ + ⟨q, μ⟩."""
        if self.offset is None:
            return None
        self.to_device(q.device)
        return (q.float() * self.offset[:, None, :]).sum(dim=-1)

    def add_offset(self, x: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """x + μ·weight (weight (..., heads, rows, 1): the softmax mass of cold tokens; 1 for
        decoded vectors)."""
        if self.offset is None:
            return x
        self.to_device(x.device)
        offset = self.offset[:, None, :]
        return x + (offset if weight is None else weight * offset)

    @property
    def stats_nbytes(self) -> int:
        """Bytes of the fitted statistics this codec holds (offset, channel scales)."""
        held = (self.offset, self.channel_scale)
        floats = sum(t.numel() for t in held if t is not None)
        return 2 * floats + 2 * self._outlier_count  # float16 values, int16 channel indices

    def query_domains(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """Queries in every domain a stream is scored in: {"rotated": q @ M[, "projected": ...]}."""
        rotated = self.rotate(x)
        domains = {"rotated": rotated}
        if self.projection is not None:
            domains["projected"] = rotated @ self.projection.T
        return domains

    def encode(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """(..., heads, tokens, head_dim) -> (packed, scales) as in the class docstring; in
        one Triton kernel where ``backend.choose`` says so, else in torch."""
        if x.dim() == 4 and backend.choose(x.device) == "triton":
            from . import triton_encode

            return triton_encode.encode(self, x)
        return self.encode_reference(x)

    def encode_reference(self, x: torch.Tensor) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """The torch implementation of :meth:`encode` (any device)."""
        x = x.float()
        if self.offset is not None:
            self.to_device(x.device)
            x = x - self.offset[:, None, :]
        self._matrix(x)
        rotated = torch.matmul(x, self.forward_matrix)
        tiny = torch.finfo(torch.float32).tiny
        packed, scales = [], []
        decoded = torch.empty_like(rotated)
        for start, stop in self._slots:
            part = rotated[..., start:stop]
            length = part.norm(dim=-1, keepdim=True)
            unit = part / length.clamp_min(tiny)
            squares = torch.zeros_like(length)
            count = len(self.boundaries)  # Lloyd–Max streams (the QJL sketch comes after)
            mse_streams = zip(
                self.layouts[:count], self.centroids[:count], self.boundaries, strict=True
            )
            for layout, values, boundaries in mse_streams:
                if not start <= layout.start < stop:
                    continue
                part_unit = unit[..., layout.start - start : layout.stop - start]
                codes = torch.bucketize(part_unit.contiguous(), boundaries)
                centroids = values[codes]
                squares += centroids.square().sum(dim=-1, keepdim=True)
                decoded[..., layout.start : layout.stop] = centroids
                packed.append(pack_rows(codes, layout.bits))
            scale = length / squares.sqrt().clamp_min(tiny)
            decoded[..., start:stop] *= scale
            scales.append(scale.squeeze(-1).to(torch.float16))
        if self.projection is not None:
            residual = rotated - decoded
            packed.append(pack_rows(residual @ self.projection.T >= 0, 1))
            scales.append((residual.norm(dim=-1) * self.qjl_scale).to(torch.float16))
        return packed, scales

    def decode(
        self, packed: list[torch.Tensor], scales: list[torch.Tensor], rotated: bool = False
    ) -> torch.Tensor:
        """(..., tokens, head_dim) float32; ``rotated=True`` stays in the rotated domain."""
        first = packed[0]
        self.to_device(first.device)
        y = torch.zeros((*first.shape[:-1], self.head_dim), device=first.device)
        for layout, values, stream in zip(self.layouts, self.centroids, packed, strict=True):
            part = values[unpack_rows(stream, layout.bits, layout.channels)]
            part = part * scales[layout.scale].float().unsqueeze(-1)
            if layout.domain == "projected":
                y += part @ self.projection
            else:
                y[..., layout.start : layout.stop] = part
        return y if rotated else self.add_offset(self.unrotate(y))


@dataclass(frozen=True)
class HeadFit:
    """What a codec is fitted to from the first tokens a layer compresses (keys or values):
    ``offset`` μ (heads, head_dim) subtracted before coding, ``channel_scale`` s (heads,
    head_dim) the centered channels are divided by, ``outliers`` (heads, count) channels for the
    higher width of a fractional split. All float16-exact (they are stored as float16)."""

    offset: torch.Tensor | None
    channel_scale: torch.Tensor | None
    outliers: torch.Tensor | None


def fit_heads(states: torch.Tensor, bits: float, mode: str, options: FitOptions) -> HeadFit:
    """Per-head statistics of ``states`` (batch, heads, tokens, head_dim): the mean vector,
    channel scales of the centered states (normalized to geometric mean 1), and the outlier
    channels (see ``outlier_channels``, by the states' raw RMS)."""
    x = states.detach().float()
    center, scale_power = options.center, options.scale_power
    offset = None
    if center:
        offset = x.mean(dim=(0, 2)).to(torch.float16).float()  # (heads, head_dim)
        x = x - offset[:, None, :]
    channel_scale = None
    if scale_power:
        rms = x.square().mean(dim=(0, 2)).sqrt().clamp_min(1e-6)
        scale = rms**scale_power
        scale = scale / scale.log().mean(dim=-1, keepdim=True).exp()
        channel_scale = scale.clamp(1e-3, 1e3).to(torch.float16).float()  # dead channels too
    # outlier channels by the raw RMS: chosen after centering they measured worse (SmolLM2
    # (3.5, 3.5) on WordNet: +1.28 % against +0.03 %): a RoPE'd channel's mean drifts with
    # position, so the tokens that go cold later still need its width
    chosen = outlier_channels(states, bits, mode) if options.outliers else None
    return HeadFit(offset, channel_scale, chosen)


def outlier_channels(states: torch.Tensor, bits: float, mode: str = "mse") -> torch.Tensor | None:
    """For a fractional width, each head's channels of highest RMS over the tokens of
    ``states`` (batch, heads, tokens, head_dim): (heads, count) sorted indices, ``count``
    being the channels the codec's split codes at the higher width. None for integer widths."""
    high = CodecConfig(states.shape[-1], bits, mode=mode).groups
    if len(high) < 2:
        return None
    rms = states.float().square().mean(dim=(0, 2))  # (heads, head_dim)
    return rms.topk(high[0].channels, dim=-1).indices.sort(dim=-1).values
