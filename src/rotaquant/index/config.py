"""``IndexConfig``: what a VectorIndex is built from, frozen and checked at construction.

The codec's options (``CodecConfig``: width, mode, rotation, seed, norm storage; the index
always stores norm-corrected scales) plus what the index adds: the metric, whether a float16
copy of every vector is kept for re-ranking, and ``nlist`` (inverted lists, or None: flat).
``VectorIndex``, ``ShardedIndex`` and the framework stores all take their options through it,
so an option one accepts is accepted by all.

``dim`` may be None while it is unknown (a document store learns it from its first vectors):
everything else is checked then, and whether ``bits`` is realisable once ``dim`` is given.

>>> from rotaquant.index import IndexConfig
>>> c = IndexConfig(dim=768, bits=4, metric="cosine")
>>> IndexConfig.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..codec.codes import CodecConfig, plain_bits

METRICS = ("ip", "cosine", "l2")
MAX_NLIST = 1 << 20  # lists of an IVF index, at most


@dataclass(frozen=True)
class IndexConfig:
    """Options of a :class:`~rotaquant.VectorIndex` (see its docstring)."""

    dim: int | None
    bits: float = 4
    metric: str = "ip"
    mode: str = "mse"
    rotation: str = "hadamard"
    seed: int = 0
    norm_dtype: str = "float16"
    keep_vectors: bool = False
    nlist: int | None = None

    def __post_init__(self) -> None:
        if self.metric not in METRICS:
            raise ValueError(f"metric must be one of {METRICS}, got {self.metric!r}")
        if not isinstance(self.keep_vectors, bool):
            raise ValueError(f"keep_vectors must be True or False, got {self.keep_vectors!r}")
        if self.nlist is not None:
            if isinstance(self.nlist, bool) or not isinstance(self.nlist, (int, np.integer)):
                raise ValueError(f"nlist must be a positive integer or None, got {self.nlist!r}")
            if not 1 <= self.nlist <= MAX_NLIST:
                raise ValueError(f"nlist must lie in [1, {MAX_NLIST}], got {self.nlist}")
            object.__setattr__(self, "nlist", int(self.nlist))
        if self.dim is None:
            CodecConfig.check_options(
                self.bits, self.mode, self.rotation, self.seed, self.norm_dtype
            )
            object.__setattr__(self, "bits", plain_bits(self.bits))
            object.__setattr__(self, "seed", int(self.seed))
            return
        codec = self.codec  # checks everything, the width at this dim included
        for name in ("dim", "bits", "seed"):
            object.__setattr__(self, name, getattr(codec, name))

    @property
    def codec(self) -> CodecConfig:
        """The codec configuration of the stored vectors (norm-corrected scales: decoded
        vectors keep the input's length). Needs ``dim``."""
        if self.dim is None:
            raise ValueError("this IndexConfig has no dim yet (IndexConfig.with_dim)")
        return CodecConfig(
            dim=self.dim,
            bits=self.bits,
            mode=self.mode,
            rotation=self.rotation,
            seed=self.seed,
            norm_dtype=self.norm_dtype,
            norm_correction=True,
        )

    @classmethod
    def from_codec(
        cls, codec: CodecConfig, metric: str, keep_vectors: bool, nlist: int | None = None
    ) -> IndexConfig:
        """The config of an index whose vectors ``codec`` encodes (a saved file's header)."""
        if not codec.norm_correction:
            raise ValueError("an index stores norm-corrected codes (norm_correction=True)")
        return cls(
            dim=codec.dim,
            bits=codec.bits,
            metric=metric,
            mode=codec.mode,
            rotation=codec.rotation,
            seed=codec.seed,
            norm_dtype=codec.norm_dtype,
            keep_vectors=keep_vectors,
            nlist=nlist,
        )

    def with_dim(self, dim: int) -> IndexConfig:
        """This config at dimension ``dim`` (checked there)."""
        return dataclasses.replace(self, dim=dim)

    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.field_names()}

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> IndexConfig:
        """A config from a dict of its fields; an unknown key is a ValueError naming the
        accepted ones."""
        options = dict(options)
        unknown = sorted(set(options) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown index option(s) {unknown}; accepted: {', '.join(cls.field_names())}"
            )
        options.setdefault("dim", None)
        return cls(**options)

    def options(self) -> dict[str, Any]:
        """The fields after ``(dim, bits)``: what ``VectorIndex(dim, bits, **options)`` takes."""
        return {name: getattr(self, name) for name in self.field_names()[2:]}
