"""TurboQuantCache: a transformers ``Cache`` whose older tokens live TurboQuant-compressed.

Per layer, the most recent ``residual_length`` tokens stay in the model's dtype (the *hot*
tier); older tokens migrate to the *cold* tier, stored as packed codes + a float16 scale per
(token, head) — for keys and values separately, at their own widths.

``attention="decoded"`` (default): ``update`` returns the cold tier decoded next to the hot one
(any attention implementation works). ``attention="compressed"``: ``update`` returns only the
hot states, carrying a view of the cold tier that the "rotaquant" attention function
(``rotaquant.kv.enable(model)``) scores without decoding it to full precision.

The decoded path keeps no decoded copy between updates: each update decodes the layer's whole
cold tier again, as transformers' ``QuantizedCache`` dequantizes its store at every step. A
decoded copy kept per layer would make the cache hold more than float16 keys and values (the
copy in the model dtype plus the codes), which is what the cache exists to avoid; the way to
long contexts without that cost is the compressed attention (vLLM's choice too: attention
reads the quantized cache, nothing is dequantized whole). So the decoded path decodes in
``cold.CHUNK_TOKENS`` chunks straight into the tensors it returns (no extra full-size copies) and
warns once per cache when a layer's cold tier reaches ``DECODED_WARN_TOKENS``.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
import warnings
from dataclasses import dataclass
from typing import Any

import torch
from transformers.cache_utils import Cache, DynamicLayer, get_layer_types_and_kwargs

from .._deprecation import positional_to_keywords
from .calibrate import Choice, Sample, WidthPlan, choose, widths_for
from .codec import HeadCodec, fit_heads
from .cold import ColdSnapshot, ColdTier
from .config import KVConfig
from .interface import ATTENTION

SINK_TOKENS = KVConfig().sink_tokens  # default: the first tokens kept exact
MIGRATE_TOKENS = 16  # decode steps move hot tokens to the cold tier this many at a time
# the decoded path warns (once per cache) when a layer's cold tier it decodes reaches this many
# tokens: at 4k tokens SmolLM2's decode steps ran at 0.41x DynamicCache's speed (docs/kv.md)
DECODED_WARN_TOKENS = 4096
STATE_DTYPES = (torch.float16, torch.bfloat16, torch.float32, torch.float64)


def check_states(key_states: torch.Tensor, value_states: torch.Tensor) -> None:
    """TypeError/ValueError naming the argument unless both are floating-point (batch, kv
    heads, tokens, head_dim) tensors with the same batch, heads and tokens (transformers'
    ``Cache.update`` contract; only head_dim may differ between keys and values)."""
    for name, states in (("key_states", key_states), ("value_states", value_states)):
        if not isinstance(states, torch.Tensor):
            raise TypeError(f"{name} must be a torch.Tensor, got {type(states).__name__}")
        if states.dtype not in STATE_DTYPES:
            raise ValueError(
                f"{name} must be floating point (float16, bfloat16, float32 or float64), "
                f"got {states.dtype}"
            )
        if states.dim() != 4:
            raise ValueError(
                f"{name} must be (batch, kv heads, tokens, head_dim), got shape "
                f"{tuple(states.shape)}"
            )
    if key_states.shape[:3] != value_states.shape[:3]:
        raise ValueError(
            "key_states and value_states must have the same (batch, kv heads, tokens), got "
            f"{tuple(key_states.shape[:3])} and {tuple(value_states.shape[:3])}"
        )


def with_cold(exact: torch.Tensor, cold: ColdSnapshot, sinks: int) -> torch.Tensor:
    """``exact``'s first ``sinks`` tokens, the cold tokens decoded, then the rest of ``exact``:
    one tensor in ``exact``'s dtype, the cold tier decoded ``CHUNK_TOKENS`` at a time into it
    (no full-size float32 intermediate)."""
    out = exact.new_empty((*exact.shape[:2], exact.shape[-2] + cold.length, exact.shape[-1]))
    out[..., :sinks, :] = exact[..., :sinks, :]
    cold.decode_into(out[..., sinks : sinks + cold.length, :])
    out[..., sinks + cold.length :, :] = exact[..., sinks:, :]
    return out


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

    Args:
        kv: the cache's options (default ``KVConfig()``).
        index, layer_count: which layer of how many (its widths, with boundary layers, and
            its rotation seeds); ``layer_count`` None: unknown (no boundary layers).
        sliding_window: the layer's window, if it is a sliding-window layer.
        notices: warnings already given, shared by a cache's layers (so that each is given
            once per cache).
        plan: with ``bits="auto"``, the cache's width allocation (shared by its layers).

    Calibration (``calibrate``, see ``calibrate.py``): when the first tokens are about to go
    cold, the layer keeps them exact for one more attention call, whose queries (the
    compressed attention hands them over; the decoded path uses the newest keys instead)
    choose each head's coding — and, with ``bits="auto"``, report the layer's error curves.
    ``calibration`` then holds the choices: {"keys": Choice, "values": Choice}.
    """

    def __init__(
        self,
        kv: KVConfig | None = None,
        *,
        index: int = 0,
        layer_count: int | None = None,
        sliding_window: int | None = None,
        notices: set[str] | None = None,
        plan: WidthPlan | None = None,
    ):
        super().__init__()
        self.notices = set() if notices is None else notices
        kv = kv or KVConfig()
        if kv.bits == "auto" and plan is None:
            raise ValueError("bits='auto' needs the cache's width plan (TurboQuantCache(config=))")
        self.kv_config, self.index, self.plan = kv, index, plan
        self.calibrate = kv.calibrate or plan is not None
        self.calibration: dict[str, Choice] | None = None
        self._choices: dict[str, dict[float, Choice]] | None = None  # measured, not yet used
        self._asked = False  # the attention was handed the calibration hook once
        self.key_bits, self.value_bits = kv.widths(index, layer_count)
        self.key_fit, self.value_fit = kv.key_fit, kv.value_fit
        self.hot_float16 = kv.hot_float16
        self.residual_length = kv.residual_length
        self.seed = kv.seed + 2 * index  # each layer, keys and values: their own rotation
        self.attention = kv.attention or "decoded"
        self.key_mode = kv.key_mode
        self.is_sliding = sliding_window is not None
        self.sliding_window = sliding_window
        self.limit = sliding_window - 1 if sliding_window is not None else kv.max_tokens
        self.sink_tokens = 0 if sliding_window is not None else kv.sink_tokens
        self.cumulative_length = 0
        self._last_view: ColdView | None = None
        self.cold: dict[str, ColdTier] = {}
        self.sink_keys = self.sink_values = None  # (batch, heads, ≤ sink_tokens, dim)

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        if self.plan is None:  # refused at once, naming the option
            widths = (self.key_bits, self.value_bits)
            self.kv_config.check_head_dim(key_states.shape[-1], value_states.shape[-1], widths)
        super().lazy_initialization(key_states, value_states)
        if self.hot_float16 and key_states.dtype == torch.float32:  # hot tokens as float16
            self.keys, self.values = self.keys.half(), self.values.half()
        shape = (*key_states.shape[:2], 0)
        self.sink_keys = self.keys.new_empty((*shape, key_states.shape[-1]))
        self.sink_values = self.values.new_empty((*shape, value_states.shape[-1]))

    def _widths(self, kind: str, dim: int) -> list[float]:
        """The widths ``kind`` is measured at: the layer's own, or every auto width."""
        mode = self.key_mode if kind == "keys" else "mse"
        if self.plan is not None:
            return widths_for(dim, mode)
        return [self.key_bits if kind == "keys" else self.value_bits]

    def _measure(self, sample: Sample) -> None:
        """Each kind's best coding at each width it may get, from ``sample``; reported to
        the width plan with ``bits="auto"``."""
        self._choices = {}
        for kind in ("keys", "values"):
            states = sample.cold(kind)
            mode = self.key_mode if kind == "keys" else "mse"
            seed = self.seed + (kind == "values")
            fit = self.key_fit if kind == "keys" else self.value_fit
            self._choices[kind] = {
                bits: choose(sample, kind, bits, mode, seed, fit)
                for bits in self._widths(kind, states.shape[-1])
            }
            if self.plan is not None:
                power = float(sample.output_power.sum())  # relative: each layer's own scale
                curve = {bits: c.error / power for bits, c in self._choices[kind].items()}
                self.plan.report(self.index, kind, curve, states.shape[1] * states.shape[-1])

    def _hook(self, first: int, last: int):
        """What the compressed attention calls with its queries (see ``calibrate.Sample``)."""

        def measure(queries, q_len, keys, values) -> None:
            self._measure(Sample.from_attention(queries, q_len, keys, values, first, last))

        return measure

    def _fit(self, exact_keys: torch.Tensor, exact_values: torch.Tensor, first: int) -> None:
        """The cold tiers' codecs, fitted to the tokens held when the first ones go cold:
        calibrated (from the queries measured, else the newest keys standing in for them)
        or, with ``calibrate=False``, by the configured statistics."""
        keys, values = exact_keys[..., first:, :], exact_values[..., first:, :]
        if self.calibrate and self._choices is None:
            last = exact_keys.shape[-2] - self.residual_length
            self._measure(Sample.from_keys(exact_keys, exact_values, first, last))
        if self.plan is not None:
            self.key_bits, self.value_bits = self.plan.widths(self.index)
        codecs, self.calibration = {}, {}
        for kind, states, bits, mode, fit, seed in (
            ("keys", keys, self.key_bits, self.key_mode, self.key_fit, self.seed),
            ("values", values, self.value_bits, "mse", self.value_fit, self.seed + 1),
        ):
            if self.calibrate:
                choice = self._choices[kind][bits]
                stats, self.calibration[kind] = choice.fit, choice
            else:
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
        self._choices = None
        self.cold = {kind: ColdTier(codec) for kind, codec in codecs.items()}

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        check_states(key_states, value_states)
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        elif key_states.shape[:2] != self.keys.shape[:2]:
            raise ValueError(
                f"this cache holds (batch, kv heads) {tuple(self.keys.shape[:2])}, the new states "
                f"are {tuple(key_states.shape[:2])}: use a new cache for another batch (or "
                "batch_select_indices / reorder_cache)"
            )
        else:
            held = (self.keys.shape[-1], self.values.shape[-1])
            given = (key_states.shape[-1], value_states.shape[-1])
            if held != given:
                raise ValueError(
                    f"this layer holds keys and values of head_dim {held}, key_states and "
                    f"value_states have {given}: a used layer's head_dim cannot change (use a "
                    "new cache, or reset() this one)"
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
        else:  # decoded again at every update: see the module docstring
            if keys.length >= DECODED_WARN_TOKENS:
                self._warn_decoded(keys.length)
            returned = (with_cold(exact_keys, keys, sinks), with_cold(exact_values, values, sinks))
        self.cumulative_length += key_states.shape[-2]
        overflow = hot_keys.shape[-2] - self.residual_length
        if overflow >= MIGRATE_TOKENS and not self.cold:
            if self.calibrate and self.attention == "compressed" and not self._asked:
                # one more attention call on exact tokens: its queries calibrate the codecs
                self._asked = True
                returned[0]._rotaquant_calibrate = self._hook(sinks, sinks + overflow)
                overflow = 0
            else:
                self._fit(exact_keys, exact_values, sinks)
        if overflow >= MIGRATE_TOKENS:
            hot_keys, hot_values = self._migrate(hot_keys, hot_values, overflow)
        hot = self.keys.dtype
        self.keys, self.values = hot_keys.to(hot, copy=True), hot_values.to(hot, copy=True)
        self._evict()
        return returned

    def _migrate(self, keys: torch.Tensor, values: torch.Tensor, count: int):
        """Encode the oldest ``count`` hot ``keys``/``values`` into the cold tiers; returns
        what stays hot."""
        self.cold["keys"].append(keys[..., :count, :])
        self.cold["values"].append(values[..., :count, :])
        return keys[..., count:, :], values[..., count:, :]

    def _warn_decoded(self, cold: int) -> None:
        if "decoded" in self.notices:
            return
        self.notices.add("decoded")
        warnings.warn(
            "TurboQuantCache(attention='decoded') hands the model's own attention full key and "
            f"value tensors, so every update decodes a layer's whole cold tier again ({cold} "
            "tokens here): each step's time grows with the context (memory stays compressed). "
            "For long contexts switch the model to the attention on the compressed cache, "
            f"rotaquant.kv.enable(model) (attn_implementation={ATTENTION!r}), and pass "
            "config=model.config (or attention='compressed'). Warned once per cache.",
            stacklevel=3,
        )

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
        (float16 means and channel scales, int16 outlier indices), and the hot tensors. No
        decoded copy is held: the decoded path builds the layer's full key and value tensors
        (model dtype) at each update for the attention that reads them, which drops them."""
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
        self.calibration, self._choices, self._asked = None, None, False

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


# TurboQuantCache's positional order in 0.1 (positional use warns; see _deprecation)
_OLD_ORDER = (
    "key_bits", "value_bits", "residual_length", "seed", "attention", "key_mode", "max_tokens",
    "sink_tokens", "boundary_layers", "boundary_bits", "config", "outliers", "center_keys",
    "center_values", "key_scale", "hot_float16",
)  # fmt: skip


class TurboQuantCache(Cache):
    """A transformers cache storing keys and values with TurboQuant.

    ``TurboQuantCache(key_bits=4, value_bits=3, residual_length=128, config=model.config)``, or
    ``TurboQuantCache(KVConfig(...), config=model.config)`` (keywords given beside a
    ``KVConfig`` replace its fields). The options (:class:`~rotaquant.kv.KVConfig`'s fields,
    held as ``cache.kv_config`` and readable as ``cache.key_bits`` etc.):

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

    ``config``: the model's config (a transformers ``PretrainedConfig``, ``model.config``);
    sliding-window layers then keep only their window, and every layer's head_dim is checked
    against the widths at once.

    ``attention="decoded"`` decodes each layer's whole cold tier at every update (the model's
    own attention needs full tensors) and keeps no decoded copy, so memory stays compressed
    while a step's time grows with the context; it warns once per cache past
    ``DECODED_WARN_TOKENS`` cold tokens. Long contexts want the compressed attention
    (``rotaquant.kv.enable(model)``); the module docstring says why no decoded copy is kept.
    """

    def __init__(self, *args: Any, config: Any = None, **options: Any):
        kv = args[0] if args and isinstance(args[0], KVConfig) else None
        if config is not None:
            options["config"] = config  # so that a positional config counts as given twice
        options = positional_to_keywords(
            "TurboQuantCache", args[kv is not None :], _OLD_ORDER, options
        )
        config = options.pop("config", None)
        if config is not None and not callable(getattr(config, "get_text_config", None)):
            raise TypeError(
                "config must be the model's transformers PretrainedConfig (model.config) or "
                f"None, got {type(config).__name__}"
            )
        kv = KVConfig.from_dict(options) if kv is None else kv.replace(**options)
        if kv.attention is None:  # the fast path when the model was switched to it
            enabled = getattr(config, "_attn_implementation", None) == ATTENTION
            kv = kv.replace(attention="compressed" if enabled else "decoded")
        if kv.boundary_layers and config is None:
            raise ValueError("boundary_layers needs config= (the model's) to know the last layers")
        if kv.bits == "auto" and config is None:
            raise ValueError(
                "bits='auto' needs config= (the model's): widths are spread over its layers"
            )
        self.kv_config = kv
        self._notices: set[str] = set()  # warnings given, once per cache (the layers share it)
        self.plan = WidthPlan(kv.budget) if kv.bits == "auto" else None
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
            layers.append(
                TurboQuantLayer(
                    kv,
                    index=index,
                    layer_count=len(layer_types),
                    sliding_window=window,
                    notices=self._notices,
                    plan=self.plan,
                )
            )
        super().__init__(layers=layers)

    def __getattr__(self, name: str) -> Any:
        """``cache.key_bits``, ``cache.residual_length``, ...: the fields of ``kv_config``."""
        if name in KVConfig.field_names() and "kv_config" in self.__dict__:
            return getattr(self.__dict__["kv_config"], name)
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    @classmethod
    def from_dict(cls, options: dict | None, config: Any = None) -> TurboQuantCache:
        """A cache from a dict of :class:`KVConfig` fields (a ``cache_config``), e.g.
        ``{"key_bits": 4, "value_bits": 3, "residual_length": 128}``; unknown keys are a
        ValueError naming the accepted ones. ``config``: the model's (also accepted inside
        ``options``)."""
        options = dict(options or {})
        config = options.pop("config", config)
        return cls(KVConfig.from_dict(options), config=config)

    def _check_model(self, text_config, layer_count: int) -> None:
        """What the model's config already tells: every layer's head_dim works at its widths,
        and the boundary layers fit in the model."""
        boundary = self.kv_config.boundary_layers
        if 2 * boundary > layer_count:
            raise ValueError(
                f"boundary_layers={boundary} at both ends needs at least "
                f"{2 * boundary} layers; the model has {layer_count}"
            )
        head_dim = getattr(text_config, "head_dim", None) or (
            text_config.hidden_size // text_config.num_attention_heads
        )
        self.kv_config.check_head_dim(head_dim)

    def _next_layer(self) -> TurboQuantLayer:
        self._layer_count += 1
        return TurboQuantLayer(self.kv_config, index=self._layer_count - 1, notices=self._notices)

    @property
    def allocation(self) -> list[tuple[float, float]]:
        """(key bits, value bits) of each layer: chosen by ``bits="auto"`` once its tokens went
        cold, else the configured widths (boundary layers included)."""
        return [(layer.key_bits, layer.value_bits) for layer in self.layers]

    @property
    def calibration(self) -> list[dict[str, Choice] | None]:
        """Each layer's calibrated codings (None before its first tokens go cold, or with
        ``calibrate=False``): per kind a :class:`~rotaquant.kv.calibrate.Choice` naming each
        head's statistics and its measured error."""
        return [layer.calibration for layer in self.layers]

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if self.kv_config.attention == "compressed" and 0 < layer_idx <= len(self.layers):
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
