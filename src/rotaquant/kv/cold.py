"""The compressed (cold) tier of one layer's keys or values.

Per codec stream a (batch, heads, capacity, stream bytes) uint8 buffer and per scale a
(batch, heads, capacity) float16 buffer; tokens are appended in place and the live rows are a
list of row ranges (evicting tokens cuts a range; the buffer is compacted into a new one once
more than half of it is dead). Capacity grows to ``needed + needed // GROWTH`` rows, so spare
rows are at most a sixteenth of the live ones (counted by ``nbytes``); each row is copied
about 16 times on average as the tier grows.

A :class:`ColdSnapshot` is the tier as it stood at one moment. It stays valid while the tier
changes: appends write past its rows, eviction replaces the range list, growth and compaction
allocate new buffers.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch

from .. import _core
from . import backend
from .codec import HeadCodec

CHUNK_TOKENS = 512  # cold tokens decoded at a time (prefill attention, the decoded path)
GROWTH = 16  # capacity = needed + needed / GROWTH: spare rows cost at most 1/16 more
# Threads of the native readers: the calling thread only. Attention runs between torch's own
# multi-threaded operations, whose threads still spin when a reader starts; splitting a reader
# over the pool measured slower than one thread (python -m bench.kv --sections profile).
READER_THREADS = 1


@dataclass(frozen=True)
class ColdSnapshot:
    """Packed streams and scales (see module docstring) and the live row ``ranges``."""

    codec: HeadCodec
    packed: tuple[torch.Tensor, ...]
    scales: tuple[torch.Tensor, ...]
    ranges: tuple[tuple[int, int], ...]

    @property
    def length(self) -> int:
        return sum(stop - start for start, stop in self.ranges)

    @property
    def capacity(self) -> int:
        """Rows of the buffers (live, dead and spare)."""
        return self.packed[0].shape[-2]

    @cached_property
    def live_rows(self) -> torch.Tensor:
        """(length,) int32 buffer row of each live token, on the buffers' device (the
        Triton kernels read rows through it, so evicted rows are skipped)."""
        device = self.packed[0].device
        parts = [torch.arange(a, b, dtype=torch.int32, device=device) for a, b in self.ranges]
        return torch.cat(parts) if parts else torch.zeros(0, dtype=torch.int32, device=device)

    def chunks(self, tokens: int):
        """Row ranges of consecutive live tokens, at most ``tokens`` per chunk."""
        for start, stop in self.ranges:
            for first in range(start, stop, tokens):
                yield first, min(stop, first + tokens)

    def decoded(self, tokens: int, rotated: bool = True):
        """Live tokens decoded a chunk at a time: (batch, heads, ≤ tokens, head_dim) float32."""
        native = backend.choose(self.packed[0].device) == "native"
        for first, last in self.chunks(tokens):
            if native:
                y = self._decode_rows(((first, last),))
                yield y if rotated else self.codec.add_offset(self.codec.unrotate(y))
            else:
                packed = [p[..., first:last, :] for p in self.packed]
                scales = [s[..., first:last] for s in self.scales]
                yield self.codec.decode(packed, scales, rotated)

    def decode(self, rotated: bool = False) -> torch.Tensor:
        """All live tokens decoded: (batch, heads, length, head_dim) float32."""
        return torch.cat(list(self.decoded(1 << 30, rotated)), dim=-2)

    def decode_into(self, out: torch.Tensor) -> None:
        """Write all live tokens decoded (model domain) into ``out`` (batch, heads, length,
        head_dim), any dtype or view: ``CHUNK_TOKENS`` at a time, so the only float32 scratch
        is one chunk."""
        row = 0
        for part in self.decoded(CHUNK_TOKENS, rotated=False):
            out[..., row : row + part.shape[-2], :] = part
            row += part.shape[-2]

    # Native readers (CPU): rotaquant._core.kv_* over every head's live rows.

    def _native_inputs(self, ranges):
        """(heads, packed (heads, capacity, row bytes) uint8 per stream, float16 scale bits
        (heads, capacity) per scale, ranges (R, 2) int64) — what every native reader takes."""
        heads = self.scales[0][..., 0].numel()
        packed = [p.reshape(heads, *p.shape[-2:]).numpy() for p in self.packed]
        scales = [s.reshape(heads, -1).numpy().view(np.uint16) for s in self.scales]
        return heads, packed, scales, np.asarray(ranges, np.int64).reshape(-1, 2)

    def _decode_rows(self, ranges) -> torch.Tensor:
        """Rotated-domain decode of ``ranges``: (batch, heads, tokens, head_dim) float32."""
        codec = self.codec
        tokens = sum(b - a for a, b in ranges)
        heads, packed, scales, spans = self._native_inputs(ranges)
        out = np.zeros((heads, tokens, codec.head_dim), np.float32)
        for layout, stream in zip(codec.layouts, packed, strict=True):
            part = np.empty((heads, tokens, layout.channels), np.float32)
            args = (stream, layout.bits, layout.values, scales[layout.scale], spans)
            _core.kv_decode(*args, part, READER_THREADS)
            if layout.domain == "rotated":
                out[:, :, layout.start : layout.stop] = part
            else:
                out += codec.from_domain(layout.domain, part)
        return torch.from_numpy(out).reshape(*self.scales[0].shape[:-1], tokens, -1)

    def scores(
        self, domains: dict[str, torch.Tensor], out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """⟨q, k̂⟩ of queries (batch, heads, queries, head_dim), given in every stream domain,
        against all live tokens: (batch, heads, queries, length) float32. With ``out``
        (batch, heads, queries, ≥ length) float32 contiguous, the scores are added into its
        first ``length`` columns instead (the attention's logits, cold tokens first)."""
        codec = self.codec
        heads, packed, scales, spans = self._native_inputs(self.ranges)
        first = domains["rotated"]
        queries = first.shape[-2]
        if out is None:
            out = torch.zeros((*first.shape[:-1], self.length), dtype=torch.float32)
        target = out.reshape(heads, queries, out.shape[-1]).numpy()
        for layout, stream in zip(codec.layouts, packed, strict=True):
            part = domains[layout.domain][..., layout.start : layout.stop]
            part = part.reshape(heads, queries, layout.channels).contiguous().numpy()
            args = (stream, layout.bits, layout.values, scales[layout.scale], spans)
            _core.kv_scores(*args, part, target, READER_THREADS)
        return out

    def weighted_sum(self, weights: torch.Tensor) -> torch.Tensor:
        """Σ_t weights[..., t] · v̂_t in the rotated domain: weights (batch, heads, queries,
        ≥ length) float32, the live tokens in the first ``length`` columns -> (batch, heads,
        queries, head_dim) float32."""
        codec = self.codec
        heads, packed, scales, spans = self._native_inputs(self.ranges)
        queries = weights.shape[-2]
        w = weights.float().reshape(heads, queries, weights.shape[-1]).contiguous().numpy()
        out = np.zeros((heads, queries, codec.head_dim), np.float32)
        for layout, stream in zip(codec.layouts, packed, strict=True):
            part = np.zeros((heads, queries, layout.channels), np.float32)
            args = (stream, layout.bits, layout.values, scales[layout.scale], spans)
            _core.kv_weighted_sum(*args, w, part, READER_THREADS)
            if layout.domain == "rotated":
                out[:, :, layout.start : layout.stop] += part
            else:
                out += codec.from_domain(layout.domain, part)
        return torch.from_numpy(out).reshape(*weights.shape[:-2], queries, -1)


class ColdTier:
    """Compressed tokens of one kind (keys or values) of one layer."""

    def __init__(self, codec: HeadCodec):
        self.codec = codec
        self._packed: list[torch.Tensor] = []
        self._scales: list[torch.Tensor] = []
        self._ranges: tuple[tuple[int, int], ...] = ()
        self._rows = 0  # rows of the buffers in use (live or dead)

    @property
    def length(self) -> int:
        return sum(stop - start for start, stop in self._ranges)

    def snapshot(self) -> ColdSnapshot:
        return ColdSnapshot(self.codec, tuple(self._packed), tuple(self._scales), self._ranges)

    def append(self, states: torch.Tensor) -> None:
        """Encode (batch, heads, tokens, head_dim) and store them after the live tokens. The
        codes carry no autograd history (rounding has no gradient)."""
        packed, scales = self.codec.encode(states.detach())
        tokens = states.shape[-2]
        if not self._packed:
            self._packed = [p.new_empty((*p.shape[:-2], 0, p.shape[-1])) for p in packed]
            self._scales = [s.new_empty((*s.shape[:-1], 0)) for s in scales]
        if self._rows + tokens > self._packed[0].shape[-2]:
            self._reallocate(self._rows + tokens)
        end = self._rows + tokens
        for buffer, part in zip(self._packed, packed, strict=True):
            buffer[..., self._rows : end, :] = part
        for buffer, part in zip(self._scales, scales, strict=True):
            buffer[..., self._rows : end] = part
        if self._ranges and self._ranges[-1][1] == self._rows:
            self._ranges = (*self._ranges[:-1], (self._ranges[-1][0], end))
        else:
            self._ranges = (*self._ranges, (self._rows, end))
        self._rows = end

    def evict(self, keep: int, count: int) -> None:
        """Drop ``count`` live tokens that follow the first ``keep`` live tokens."""
        if count <= 0:
            return
        kept, dropped, skip, remove = [], 0, keep, count
        for start, stop in self._ranges:
            first = start + min(skip, stop - start)
            skip -= first - start
            if first > start:
                kept.append((start, first))
            cut = min(remove, stop - first)
            remove -= cut
            dropped += cut
            if stop > first + cut:
                kept.append((first + cut, stop))
        if dropped != count:
            raise ValueError(f"cannot evict {count} tokens after {keep}: only {self.length} held")
        self._ranges = tuple(kept)
        if self._rows > 2 * self.length + 64:
            self._reallocate(self.length)

    def _reallocate(self, needed: int) -> None:
        """New buffers of capacity ≥ ``needed`` holding the live rows back to back."""
        capacity = needed + needed // GROWTH
        moved, self._rows = list(self._ranges), 0
        self._ranges = ()
        for kind in ("_packed", "_scales"):
            fresh = []
            for buffer in getattr(self, kind):
                shape = list(buffer.shape)
                axis = buffer.dim() - (2 if kind == "_packed" else 1)
                shape[axis] = capacity
                new = buffer.new_empty(shape)
                row = 0
                for start, stop in moved:
                    new.narrow(axis, row, stop - start).copy_(
                        buffer.narrow(axis, start, stop - start)
                    )
                    row += stop - start
                fresh.append(new)
            setattr(self, kind, fresh)
        self._rows = sum(stop - start for start, stop in moved)
        self._ranges = ((0, self._rows),) if self._rows else ()

    def map_batch(self, fn) -> None:
        """Apply ``fn`` (a batch-dimension selection) to every buffer."""
        self._packed = [fn(p) for p in self._packed]
        self._scales = [fn(s) for s in self._scales]

    @property
    def nbytes(self) -> int:
        """Bytes of the buffers, spare capacity included."""
        return int(sum(t.nbytes for t in (*self._packed, *self._scales)))
