"""TurboQuantCache: a transformers ``Cache`` whose older tokens live TurboQuant-compressed.

Per layer, the most recent ``residual_length`` tokens stay in the model's dtype (the *hot*
tier); older tokens migrate to the *cold* tier, stored as packed codes + a float16 scale per
(token, head) — for keys and values separately, at their own widths.

``attention="decoded"`` (default): ``update`` returns the cold tier decoded next to the hot one
(any attention implementation works). ``attention="compressed"``: ``update`` returns only the
hot states, carrying a view of the cold tier that the "rotaquant" attention function
(``rotaquant.kv.enable(model)``) scores without decoding it to full precision.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import torch
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs

from ..codec.codebook import MAX_BITS
from .attention import NAME as ATTENTION_NAME
from .codec import FitOptions, HeadCodec, fit_heads, head_config
from .cold import ColdSnapshot, ColdTier

DEFAULT_FIT = FitOptions()
SINK_TOKENS = 4  # default: the first tokens kept exact
MIGRATE_TOKENS = 16  # decode steps move hot tokens to the cold tier this many at a time


@dataclass
class ColdView:
    """Both cold tiers as they stood before an update, for the compressed attention."""

    keys: ColdSnapshot
    values: ColdSnapshot
    leading: int = 0  # hot states handed out before the cold tokens' positions (the sinks)
    consumed: bool = False

    @property
    def length(self) -> int:
        return self.keys.length


class TurboQuantLayer(DynamicLayer):
    """One layer's cache, in position order: the first ``sink_tokens`` tokens kept exact
    (attention sinks: they take much of the attention mass, and their small keys and values
    suffer most from coding), cold tokens compressed, the newest tokens hot.

    Tokens go cold ``MIGRATE_TOKENS`` or more at a time, once that many are beyond the
    ``residual_length`` hot ones (one encode per 16 decode steps; after a prefill up to 15
    extra tokens stay hot). The codecs are fitted (means, channel scales, outlier channels)
    to the non-sink tokens held when the first ones go cold. Exact tokens are float16 for
    float32 models (``hot_float16``), else the model dtype.

    ``limit`` caps the tokens kept between forward passes (``max_tokens``, or
    ``sliding_window − 1`` for a sliding-window layer, which keeps no sinks); the oldest
    tokens after the sinks go first.
    """

    def __init__(
        self,
        key_bits: float,
        value_bits: float,
        residual_length: int,
        seed: int,
        attention: str = "decoded",
        key_mode: str = "mse",
        limit: int | None = None,
        sink_tokens: int = 0,
        sliding_window: int | None = None,
        key_fit: FitOptions = DEFAULT_FIT,
        value_fit: FitOptions = DEFAULT_FIT,
        hot_float16: bool = True,
    ):
        super().__init__()
        self.key_fit, self.value_fit = key_fit, value_fit
        self.hot_float16 = hot_float16
        self.key_bits, self.value_bits = key_bits, value_bits
        self.residual_length = residual_length
        self.seed = seed
        self.attention = attention
        self.key_mode = key_mode
        self.is_sliding = sliding_window is not None
        self.sliding_window = sliding_window
        self.limit = sliding_window - 1 if sliding_window is not None else limit
        self.sink_tokens = 0 if sliding_window is not None else sink_tokens
        self.cumulative_length = 0
        self._last_view: ColdView | None = None
        self.cold: dict[str, ColdTier] = {}
        self.sink_keys = self.sink_values = None  # (batch, heads, ≤ sink_tokens, dim)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        head_config(key_states.shape[-1], self.key_bits, mode=self.key_mode)  # refuse at once
        head_config(value_states.shape[-1], self.value_bits)
        super().lazy_initialization(key_states, value_states)
        if self.hot_float16 and key_states.dtype == torch.float32:  # hot tokens as float16
            self.keys, self.values = self.keys.half(), self.values.half()
        shape = (*key_states.shape[:2], 0)
        self.sink_keys = self.keys.new_empty((*shape, key_states.shape[-1]))
        self.sink_values = self.values.new_empty((*shape, value_states.shape[-1]))

    def _fit(self, keys: torch.Tensor, values: torch.Tensor) -> None:
        """The cold tiers' codecs, fitted to the tokens seen when the first ones go cold."""
        codecs = {}
        for kind, states, bits, mode, fit, seed in (
            ("keys", keys, self.key_bits, self.key_mode, self.key_fit, self.seed),
            ("values", values, self.value_bits, "mse", self.value_fit, self.seed + 1),
        ):
            stats = fit_heads(states, bits, mode, fit)
            codecs[kind] = HeadCodec(
                states.shape[-1],
                bits,
                seed,
                mode,
                stats.outliers,
                stats.offset,
                stats.channel_scale,
            )
        self.cold = {kind: ColdTier(codec) for kind, codec in codecs.items()}

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        elif key_states.shape[:2] != self.keys.shape[:2]:
            raise ValueError(
                f"this cache holds (batch, kv heads) {tuple(self.keys.shape[:2])}, the new states "
                f"are {tuple(key_states.shape[:2])}: use a new cache for another batch (or "
                "batch_select_indices / reorder_cache)"
            )
        # attention sees the exact tokens (sinks, then hot) in the model dtype, the new ones
        # exactly as given; the sinks are the first tokens ever seen (hot holds none before
        # they are complete), so one concatenation serves both
        exact_keys = torch.cat([self.sink_keys.to(key_states.dtype), self.keys, key_states], -2)
        exact_values = torch.cat(
            [self.sink_values.to(value_states.dtype), self.values, value_states], -2
        )
        sinks = min(self.sink_tokens, exact_keys.shape[-2])
        if sinks > self.sink_keys.shape[-2]:
            self.sink_keys = exact_keys[..., :sinks, :].to(self.sink_keys.dtype, copy=True)
            self.sink_values = exact_values[..., :sinks, :].to(self.sink_values.dtype, copy=True)
        hot_keys, hot_values = exact_keys[..., sinks:, :], exact_values[..., sinks:, :]
        if self.cold:
            keys, values = self.cold["keys"].snapshot(), self.cold["values"].snapshot()
        else:
            keys = values = None
        if self.attention == "compressed":
            self.check_consumed()
            self._last_view = None
            if keys is not None:
                self._last_view = ColdView(keys, values, sinks)
                exact_keys._rotaquant_cold = self._last_view
            returned = (exact_keys, exact_values)
        elif keys is None or keys.length == 0:
            returned = (exact_keys, exact_values)
        else:
            returned = (
                torch.cat(
                    [exact_keys[..., :sinks, :], keys.decode().to(key_states.dtype), hot_keys], -2
                ),
                torch.cat(
                    [
                        exact_values[..., :sinks, :],
                        values.decode().to(value_states.dtype),
                        hot_values,
                    ],
                    -2,
                ),
            )
        self.cumulative_length += key_states.shape[-2]
        overflow = hot_keys.shape[-2] - self.residual_length
        if overflow >= MIGRATE_TOKENS:
            hot_keys, hot_values = self._migrate(hot_keys, hot_values, overflow)
        hot = self.keys.dtype
        self.keys, self.values = hot_keys.to(hot, copy=True), hot_values.to(hot, copy=True)
        self._evict()
        return returned

    def _migrate(self, keys: torch.Tensor, values: torch.Tensor, count: int):
        """Encode the oldest ``count`` hot ``keys``/``values`` into the cold tiers (fitting
        the codecs the first time); returns what stays hot."""
        if not self.cold:
            self._fit(keys, values)
        self.cold["keys"].append(keys[..., :count, :])
        self.cold["values"].append(values[..., :count, :])
        return keys[..., count:, :], values[..., count:, :]

    def check_consumed(self) -> None:
        """Raise if the attention ignored the cold tier handed out by the last update."""
        view = self._last_view
        if view is not None and view.length and not view.consumed:
            raise RuntimeError(
                "TurboQuantCache(attention='compressed') needs the compressed attention: "
                "call rotaquant.kv.enable(model) before running the model"
            )

    def _evict(self) -> None:
        """Drop the oldest non-sink tokens beyond ``limit`` (cold ones first)."""
        excess = 0 if self.limit is None else self.held_length - self.limit
        if excess <= 0:
            return
        cold = self.cold["keys"].length if self.cold else 0
        from_cold = min(excess, cold)
        for tier in self.cold.values():
            tier.evict(0, from_cold)
        rest = excess - from_cold
        if rest:
            self.keys = self.keys[..., rest:, :].clone()
            self.values = self.values[..., rest:, :].clone()

    @property
    def held_length(self) -> int:
        """Tokens held (cold + hot); below ``get_seq_length()`` once tokens were evicted."""
        if not self.is_initialized:
            return 0
        exact = self.keys.shape[-2] + self.sink_keys.shape[-2]
        return (self.cold["keys"].length if self.cold else 0) + exact

    def get_seq_length(self) -> int:
        return self.cumulative_length

    def get_max_length(self) -> int:
        return -1 if self.limit is None else self.limit

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        held = self.held_length
        return held + query_length, self.cumulative_length - held

    @property
    def nbytes(self) -> int:
        """Bytes held: cold codes and scales (spare rows included), the fitted statistics
        (float16 means and channel scales, int16 outlier indices), and the hot tensors."""
        cold = sum(tier.nbytes + tier.codec.stats_nbytes for tier in self.cold.values())
        if not self.is_initialized:
            return int(cold)
        exact = (self.keys, self.values, self.sink_keys, self.sink_values)
        return int(cold + sum(t.nbytes for t in exact))

    @property
    def fp16_nbytes(self) -> int:
        """What float16 keys and values would take for the tokens held."""
        if not self.is_initialized:
            return 0
        batch, heads, _, head_dim = self.keys.shape
        value_dim = self.values.shape[-1]
        return int(2 * batch * heads * self.held_length * (head_dim + value_dim))

    def reset(self) -> None:
        super().reset()
        self.cumulative_length = 0
        self._last_view = None
        self.cold = {}
        self.sink_keys = self.sink_values = None

    def _map_batch(self, fn) -> None:
        if self.is_initialized:
            self.keys, self.values = fn(self.keys), fn(self.values)
            self.sink_keys, self.sink_values = fn(self.sink_keys), fn(self.sink_values)
            for tier in self.cold.values():
                tier.map_batch(fn)

    def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
        self._map_batch(lambda t: t.index_select(0, beam_idx.to(t.device)))

    def batch_repeat_interleave(self, repeats: int) -> None:
        self._map_batch(lambda t: t.repeat_interleave(repeats, dim=0))

    def batch_select_indices(self, indices: torch.Tensor) -> None:
        self._map_batch(lambda t: t[indices, ...])

    @property
    def is_croppable(self) -> bool:
        """The newest (hot) tokens can be removed (assisted decoding) — not on layers that
        evict (sliding windows, ``max_tokens``): tokens dropped for the drafts would not come
        back."""
        return self.limit is None

    def crop(self, tokens_to_remove: int) -> None:
        """Remove the newest ``-tokens_to_remove`` tokens (transformers' convention: a negative
        count), as assisted decoding does with rejected draft tokens. They must still be exact:
        hot ones, or sinks while nothing is compressed; compressed tokens cannot be removed
        (ValueError: a longer ``residual_length`` keeps more of them hot)."""
        if tokens_to_remove > 0:
            raise ValueError(
                f"crop takes a negative number of tokens to remove, got {tokens_to_remove}"
            )
        count = -tokens_to_remove
        if count == 0 or not self.is_initialized:
            return
        if not self.is_croppable:
            raise ValueError("a layer that evicts tokens (sliding window, max_tokens) cannot crop")
        hot = self.keys.shape[-2]
        cold = self.cold["keys"].length if self.cold else 0
        removable = hot + (self.sink_keys.shape[-2] if cold == 0 else 0)
        if count > removable:
            raise ValueError(
                f"cannot remove the newest {count} tokens: only {removable} are still exact "
                f"(hot); the rest is compressed (use a larger residual_length)"
            )
        from_hot = min(count, hot)
        self.keys, self.values = (
            self.keys[..., : hot - from_hot, :],
            self.values[..., : hot - from_hot, :],
        )
        rest = count - from_hot
        if rest:
            keep = self.sink_keys.shape[-2] - rest
            self.sink_keys, self.sink_values = (
                self.sink_keys[..., :keep, :],
                self.sink_values[..., :keep, :],
            )
        self.cumulative_length -= count
        self._last_view = None


class TurboQuantCache(Cache):
    """A transformers cache storing keys and values with TurboQuant.

    Args:
        key_bits, value_bits: bits per value (1..8; fractional such as 3.5 splits channels,
            the highest-RMS channels seen at prefill getting the higher width).
        residual_length: most recent tokens per layer kept uncompressed (≥ 0).
        seed: rotation seed (each layer and K/V get their own rotation).
        attention: ``"decoded"`` (any attention implementation) or ``"compressed"`` (attention
            on the packed cold tier; needs ``rotaquant.kv.enable(model)``). Default: compressed
            when ``config`` belongs to a model ``enable`` switched, else decoded.
        key_mode: ``"mse"`` (all key bits to Lloyd–Max) or ``"prod"`` (one bit to a QJL
            residual sketch: unbiased scores, higher variance).
        max_tokens: keep at most this many tokens per layer between forward passes, dropping
            the oldest after the first ``sink_tokens`` (None: keep all).
        sink_tokens: the first tokens of the sequence, kept exact (never coded, never
            evicted): they take much of the attention mass and their keys and values are
            small, so coding errors there cost the most (Gemma-3 (4, 3): +4.3 % -> +1.0 %).
        boundary_layers, boundary_bits: the first and last ``boundary_layers`` layers use
            ``boundary_bits`` (a width or a (key, value) pair); needs ``config``.
        config: the model's config; sliding-window layers then keep only their window.
        outliers: for fractional widths, give the higher width to each head's highest-RMS
            channels seen at prefill (rotated apart, two scales per vector); False splits the
            rotated coordinates instead (one scale).
        center_keys, center_values: subtract each head's mean key (value), fitted to the
            first tokens that go cold and stored once as float16, and code only the residual;
            attention adds the mean's contribution back exactly. Keys on by default (it
            carries Gemma-3's QK-normed keys), values off (it measured worse on both models).
        key_scale: divide each key channel by rms_c^key_scale (of the centered keys; 0: off)
            before the rotation and multiply the query by it, so high-RMS channels get more
            of the codes' precision (default 0.5; measurements in docs/kv.md).
        hot_float16: for float32 models, keep the hot window in float16 (attention still sees
            each new token exactly as computed); other dtypes keep their own.
    """

    def __init__(
        self,
        key_bits: float = 4,
        value_bits: float = 3,
        residual_length: int = 128,
        seed: int = 0,
        attention: str | None = None,
        key_mode: str = "mse",
        max_tokens: int | None = None,
        sink_tokens: int = SINK_TOKENS,
        boundary_layers: int = 0,
        boundary_bits: float | tuple[float, float] = 8,
        config=None,
        outliers: bool = True,
        center_keys: bool = True,
        center_values: bool = False,
        key_scale: float = 0.5,
        hot_float16: bool = True,
    ):
        pair = _bits_pair(boundary_bits)
        for name, bits in (
            ("key_bits", key_bits),
            ("value_bits", value_bits),
            ("boundary_bits", pair[0]),
            ("boundary_bits", pair[1]),
        ):
            _check_bits(name, bits)
        if key_mode not in ("mse", "prod"):
            raise ValueError(f"key_mode must be 'mse' or 'prod', got {key_mode!r}")
        if key_mode == "prod" and min(key_bits, pair[0]) < 2:
            raise ValueError("key_mode='prod' needs key bits >= 2 (one bit goes to QJL)")
        _check_count("residual_length", residual_length)
        _check_count("sink_tokens", sink_tokens)
        _check_count("boundary_layers", boundary_layers)
        _check_count("seed", seed)
        if max_tokens is not None:
            _check_count("max_tokens", max_tokens)
            if max_tokens <= sink_tokens:
                raise ValueError(
                    f"max_tokens ({max_tokens}) must exceed sink_tokens ({sink_tokens})"
                )
        if attention is None:  # the fast path when the model was switched to it
            enabled = getattr(config, "_attn_implementation", None) == ATTENTION_NAME
            attention = "compressed" if enabled else "decoded"
        if attention not in ("decoded", "compressed"):
            raise ValueError(f"attention must be 'decoded' or 'compressed', got {attention!r}")
        if boundary_layers and config is None:
            raise ValueError("boundary_layers needs config= (the model's) to know the last layers")
        self.key_bits, self.value_bits = key_bits, value_bits
        self.residual_length = residual_length
        self.attention, self.key_mode = attention, key_mode
        self.max_tokens, self.sink_tokens = max_tokens, sink_tokens
        self.boundary_layers, self.boundary_bits = boundary_layers, pair
        if isinstance(key_scale, bool) or not isinstance(key_scale, (int, float)):
            raise ValueError(
                f"key_scale must be a number (a power of channel RMS), got {key_scale!r}"
            )
        if not 0 <= key_scale <= 1:
            raise ValueError(f"key_scale must be in [0, 1], got {key_scale!r}")
        self.key_fit = FitOptions(bool(center_keys), float(key_scale), bool(outliers))
        self.value_fit = FitOptions(bool(center_values), 0.0, bool(outliers))
        self.hot_float16 = bool(hot_float16)
        self._seed = seed
        if config is None:
            self._layer_count = 0
            super().__init__(layer_class_to_replicate=self._next_layer)
            return
        text = config.get_text_config(decoder=True)
        layer_types, per_layer = get_layer_types_and_kwargs(text)
        self._check_model(text, len(layer_types))
        layers = []
        for index, (kind, kwargs) in enumerate(zip(layer_types, per_layer, strict=True)):
            if kind not in ("full_attention", "sliding_attention"):
                raise ValueError(f"unsupported layer type {kind!r} at layer {index}")
            window = kwargs.get("sliding_window") if kind == "sliding_attention" else None
            layers.append(self._layer(index, len(layer_types), window))
        super().__init__(layers=layers)

    @classmethod
    def from_dict(cls, options: dict | None, config=None) -> TurboQuantCache:
        """A cache from a dict of its arguments (a ``cache_config``), e.g. ``{"key_bits": 4,
        "value_bits": 3, "residual_length": 128}``; unknown keys are a ValueError naming the
        accepted ones. ``config``: the model's (also accepted inside ``options``)."""
        options = dict(options or {})
        accepted = [name for name in inspect.signature(cls.__init__).parameters if name != "self"]
        unknown = sorted(set(options) - set(accepted))
        if unknown:
            raise ValueError(
                f"unknown TurboQuantCache option(s) {unknown}; accepted: {', '.join(accepted)}"
            )
        options.setdefault("config", config)
        return cls(**options)

    def _check_model(self, text_config, layer_count: int) -> None:
        """What the model's config already tells: every layer's head_dim works at its widths,
        and the boundary layers fit in the model."""
        if 2 * self.boundary_layers > layer_count:
            raise ValueError(
                f"boundary_layers={self.boundary_layers} at both ends needs at least "
                f"{2 * self.boundary_layers} layers; the model has {layer_count}"
            )
        head_dim = getattr(text_config, "head_dim", None) or (
            text_config.hidden_size // text_config.num_attention_heads
        )
        widths = [(self.key_bits, self.value_bits)]
        if self.boundary_layers:
            widths.append(self.boundary_bits)
        for key_bits, value_bits in widths:
            head_config(head_dim, key_bits, mode=self.key_mode)
            head_config(head_dim, value_bits)

    def _next_layer(self) -> TurboQuantLayer:
        self._layer_count += 1
        return self._layer(self._layer_count - 1, None, None)

    def _layer(self, index: int, count: int | None, window: int | None) -> TurboQuantLayer:
        edge = self.boundary_layers and (
            index < self.boundary_layers or index >= count - self.boundary_layers
        )
        key_bits, value_bits = self.boundary_bits if edge else (self.key_bits, self.value_bits)
        return TurboQuantLayer(
            key_bits,
            value_bits,
            self.residual_length,
            self._seed + 2 * index,
            self.attention,
            self.key_mode,
            self.max_tokens,
            self.sink_tokens,
            window,
            self.key_fit,
            self.value_fit,
            self.hot_float16,
        )

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.attention == "compressed" and 0 < layer_idx <= len(self.layers):
            self.layers[layer_idx - 1].check_consumed()  # within the same forward pass
        return super().update(key_states, value_states, layer_idx, *args, **kwargs)

    @property
    def nbytes(self) -> int:
        """Real bytes held by every layer: packed codes, scales and the hot window."""
        return sum(layer.nbytes for layer in self.layers)

    @property
    def fp16_nbytes(self) -> int:
        """What float16 keys and values would take for the same tokens."""
        return sum(layer.fp16_nbytes for layer in self.layers)


def _bits_pair(boundary_bits) -> tuple[float, float]:
    """``boundary_bits`` as (key bits, value bits): one number for both, or a pair."""
    if isinstance(boundary_bits, (tuple, list)):
        if len(boundary_bits) != 2:
            raise ValueError(
                f"boundary_bits must be a number or a (key bits, value bits) pair, "
                f"got {boundary_bits!r}"
            )
        return tuple(boundary_bits)
    return (boundary_bits, boundary_bits)


def _check_bits(name: str, bits) -> None:
    if isinstance(bits, bool) or not isinstance(bits, (int, float)) or not 1 <= bits <= MAX_BITS:
        raise ValueError(f"{name} must be a number in [1, {MAX_BITS}], got {bits!r}")


def _check_count(name: str, value) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
