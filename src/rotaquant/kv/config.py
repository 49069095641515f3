"""``KVConfig``: everything a TurboQuantCache is told, frozen and checked at construction
(torch-free, so that the command line and configuration files can check options before torch
loads).

One object serves ``TurboQuantCache(...)``, ``TurboQuantCache.from_dict`` (the ``cache_config``
of ``generate``), ``rotaquant eval-kv`` and every layer of the cache: the accepted options are
the dataclass's fields, and ``to_dict``/``from_dict`` are derived from them, so nothing can
accept an option another path refuses.

>>> from rotaquant.kv import KVConfig
>>> c = KVConfig(key_bits=3.5, value_bits=2.5, residual_length=64)
>>> KVConfig.from_dict(c.to_dict()) == c
True
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from .._arrays import non_negative_int
from ..codec.codebook import MAX_BITS
from ..codec.codes import CodecConfig, exact_width

HEAD_DIMS = range(8, 513, 8)  # head dims a width must be realisable at for some model
MODES = ("mse", "prod")
ATTENTION_PATHS = ("decoded", "compressed")


def head_config(head_dim: int, bits: float, seed: int = 0, mode: str = "mse") -> CodecConfig:
    """The codec configuration of one KV head; ValueError unless every channel group holds
    whole bytes of codes per token (a multiple of 8 channels)."""
    try:
        config = CodecConfig(head_dim, bits, seed=seed, mode=mode)
        odd = [group.channels for group in config.groups if group.channels % 8]
    except ValueError:
        odd = [None]
    if odd:
        step = 8 / head_dim  # a width moves by 8 channels at a time
        low = math.floor(bits / step + 1e-9) * step
        near = ", ".join(
            exact_width(width)
            for width in (low, low + step)
            if 1 <= width <= MAX_BITS and (mode == "mse" or width >= 2)
        )
        raise ValueError(
            f"bits={exact_width(bits)} cannot be realised at head_dim={head_dim}: a KV head "
            f"stores whole bytes per token, so each width's channels must be a multiple of 8 "
            f"(widths in steps of 8/{head_dim}; nearest: {near})"
        )
    return config


@dataclass(frozen=True)
class FitOptions:
    """Which statistics ``fit_heads`` takes: the mean (``center``), channel scales
    rms_c^``scale_power`` (0: none), outlier channels for fractional widths (``outliers``)."""

    center: bool = True
    scale_power: float = 0.0
    outliers: bool = True


def _option(default: Any, text: str) -> Any:
    """A KVConfig field with its one-line description (``--help`` of ``eval-kv`` shows it)."""
    return dataclasses.field(default=default, metadata={"help": text})


@dataclass(frozen=True)
class KVConfig:
    """Options of a :class:`~rotaquant.kv.TurboQuantCache` (its docstring says more of each);
    every field's ``metadata["help"]`` is its one-line description."""

    key_bits: float = _option(4, "bits per key value (1..8; fractional: channel split)")
    value_bits: float = _option(3, "bits per value value (1..8; fractional: channel split)")
    residual_length: int = _option(128, "newest tokens per layer kept uncompressed")
    seed: int = _option(0, "rotation seed (each layer, keys and values get their own)")
    attention: str | None = _option(
        None, "'decoded', 'compressed' (needs enable(model)), or None: from the model"
    )
    key_mode: str = _option("mse", "'mse', or 'prod' (one key bit to a QJL residual sketch)")
    max_tokens: int | None = _option(None, "keep at most this many tokens per layer")
    sink_tokens: int = _option(4, "first tokens kept exact, never evicted")
    boundary_layers: int = _option(0, "first and last layers coded at boundary_bits")
    boundary_bits: tuple[float, float] = _option(
        (8, 8), "(key, value) bits of the boundary layers (one number: both)"
    )
    outliers: bool = _option(True, "fractional widths: higher width to high-RMS channels")
    center_keys: bool = _option(True, "code keys minus each head's fitted mean")
    center_values: bool = _option(False, "code values minus each head's fitted mean")
    key_scale: float = _option(0.5, "key channels divided by rms**key_scale (0: off)")
    hot_float16: bool = _option(True, "float32 models keep the hot window in float16")
    calibrate: bool = _option(
        True, "choose each head's key/value coding by the attention error on its own queries"
    )
    bits: str | None = _option(
        None, "'auto': each layer's key and value widths chosen within `budget` (needs config)"
    )
    budget: float = _option(3.5, "bits per value that bits='auto' spends (2..8)")

    def __post_init__(self) -> None:
        pair = _bits_pair(self.boundary_bits)
        for name, bits in (
            ("key_bits", self.key_bits),
            ("value_bits", self.value_bits),
            ("boundary_bits", pair[0]),
            ("boundary_bits", pair[1]),
        ):
            _check_bits(name, bits)
        if self.key_mode not in MODES:
            raise ValueError(f"key_mode must be one of {MODES}, got {self.key_mode!r}")
        if self.key_mode == "prod" and min(self.key_bits, pair[0]) < 2:
            raise ValueError("key_mode='prod' needs key bits >= 2 (one bit goes to QJL)")
        for name in ("residual_length", "sink_tokens", "boundary_layers", "seed"):
            object.__setattr__(self, name, non_negative_int(getattr(self, name), name))
        if self.max_tokens is not None:
            object.__setattr__(self, "max_tokens", non_negative_int(self.max_tokens, "max_tokens"))
            if self.max_tokens <= self.sink_tokens:
                raise ValueError(
                    f"max_tokens ({self.max_tokens}) must exceed sink_tokens ({self.sink_tokens})"
                )
        if self.attention is not None and self.attention not in ATTENTION_PATHS:
            raise ValueError(
                f"attention must be one of {ATTENTION_PATHS} (or None), got {self.attention!r}"
            )
        key_scale = self.key_scale
        if isinstance(key_scale, bool) or not isinstance(key_scale, (int, float)):
            raise ValueError(
                f"key_scale must be a number (a power of channel RMS), got {key_scale!r}"
            )
        if not 0 <= key_scale <= 1:
            raise ValueError(f"key_scale must be in [0, 1], got {key_scale!r}")
        if self.bits not in (None, "auto"):
            raise ValueError(
                f"bits takes 'auto' (widths from a budget), got {self.bits!r}; for fixed "
                "widths use key_bits= and value_bits="
            )
        budget = self.budget
        if isinstance(budget, bool) or not isinstance(budget, (int, float)) or not 2 <= budget <= 8:
            raise ValueError(f"budget must be a number of bits per value in [2, 8], got {budget!r}")
        if self.bits == "auto" and self.boundary_layers:
            raise ValueError(
                "bits='auto' chooses the boundary layers' widths too: drop boundary_layers"
            )
        for name in ("outliers", "center_keys", "center_values", "hot_float16", "calibrate"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"{name} must be True or False, got {getattr(self, name)!r}")
        # plain, comparable values: the pair as a tuple, whole widths as int
        object.__setattr__(self, "boundary_bits", tuple(_plain(b) for b in pair))
        for name in ("key_bits", "value_bits"):
            object.__setattr__(self, name, _plain(getattr(self, name)))
        object.__setattr__(self, "key_scale", float(key_scale))
        for widths in self._width_pairs():
            _realisable_somewhere(widths, self.key_mode)

    # ------------------------------------------------------------------ dict form
    @classmethod
    def field_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in dataclasses.fields(cls))

    def to_dict(self) -> dict[str, Any]:
        """The options as plain JSON values (``boundary_bits`` as a list)."""
        out = {name: getattr(self, name) for name in self.field_names()}
        out["boundary_bits"] = list(self.boundary_bits)
        return out

    @classmethod
    def from_dict(cls, options: dict[str, Any] | None) -> KVConfig:
        """A config from a dict of its fields (missing ones take their defaults); an unknown
        key is a ValueError naming the accepted ones."""
        options = dict(options or {})
        unknown = sorted(set(options) - set(cls.field_names()))
        if unknown:
            raise ValueError(
                f"unknown TurboQuantCache option(s) {unknown}; accepted: "
                f"{', '.join(cls.field_names())}"
            )
        return cls(**options)

    def replace(self, **changes: Any) -> KVConfig:
        """A copy with ``changes`` (checked like a new config)."""
        return dataclasses.replace(self, **changes)

    # ------------------------------------------------------------------ per layer
    def widths(self, layer: int, layer_count: int | None) -> tuple[float, float]:
        """(key bits, value bits) of layer ``layer`` of ``layer_count`` (None: unknown, so no
        boundary layers)."""
        edge = layer_count is not None and (
            layer < self.boundary_layers or layer >= layer_count - self.boundary_layers
        )
        return self.boundary_bits if edge else (self.key_bits, self.value_bits)

    def check_head_dim(
        self,
        head_dim: int,
        value_dim: int | None = None,
        widths: tuple[float, float] | None = None,
    ) -> None:
        """ValueError naming the option unless every width (or just ``widths``, one layer's
        (key bits, value bits)) is realisable at this head_dim."""
        for key_bits, value_bits in [widths] if widths else self._width_pairs():
            _head_config("key", head_dim, key_bits, self.key_mode)
            _head_config("value", value_dim or head_dim, value_bits, "mse")

    @property
    def key_fit(self) -> FitOptions:
        """What the key codecs are fitted to (mean, channel scales, outliers)."""
        return FitOptions(self.center_keys, self.key_scale, self.outliers)

    @property
    def value_fit(self) -> FitOptions:
        return FitOptions(self.center_values, 0.0, self.outliers)

    def _width_pairs(self) -> list[tuple[float, float]]:
        pairs = [(self.key_bits, self.value_bits)]
        if self.boundary_layers:
            pairs.append(self.boundary_bits)
        return pairs


def _bits_pair(boundary_bits: Any) -> tuple[Any, Any]:
    """``boundary_bits`` as (key bits, value bits): one number for both, or a pair."""
    if isinstance(boundary_bits, (tuple, list)):
        if len(boundary_bits) != 2:
            raise ValueError(
                f"boundary_bits must be a number or a (key bits, value bits) pair, "
                f"got {boundary_bits!r}"
            )
        return tuple(boundary_bits)
    return (boundary_bits, boundary_bits)


def _plain(bits: float) -> float:
    return int(bits) if float(bits).is_integer() else float(bits)


def _check_bits(name: str, bits: Any) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be a number in [1, {MAX_BITS}], got {bits!r}")


def _head_config(kind: str, head_dim: int, bits: float, mode: str) -> None:
    try:
        head_config(head_dim, bits, mode=mode)
    except ValueError as error:
        raise ValueError(f"{kind}_bits={exact_width(bits)}: {error}") from None


def _realisable_somewhere(widths: tuple[float, float], key_mode: str) -> None:
    """Refuse a width that no head_dim in [8, 512] (a multiple of 8) realises: such a cache
    would fail at its first forward pass whatever the model."""
    for kind, bits, mode in (("key", widths[0], key_mode), ("value", widths[1], "mse")):
        for head_dim in HEAD_DIMS:
            try:
                head_config(head_dim, bits, mode=mode)
                break
            except ValueError:
                continue
        else:
            step = 1 / 64
            near = math.floor(bits / step) * step, math.ceil(bits / step) * step
            raise ValueError(
                f"{kind}_bits={bits!r} cannot be realised at any head_dim (8..512, multiples "
                f"of 8): the channels at the higher width must be a multiple of 8; at "
                f"head_dim 512 the nearest widths are {exact_width(near[0])} and "
                f"{exact_width(near[1])}"
            )
