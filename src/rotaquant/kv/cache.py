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

from dataclasses import dataclass, field

import torch
from transformers.cache_utils import Cache, DynamicLayer

from .codec import HeadCodec

_MAX_BITS = 8
BLOCK_TOKENS = 512  # cold tokens per stored block (smaller blocks are merged into the last)


@dataclass
class ColdView:
    """The cold tier as it stood before an update, for the compressed attention."""

    key_codec: HeadCodec
    value_codec: HeadCodec
    key_blocks: list
    value_blocks: list
    length: int
    consumed: bool = field(default=False)


class TurboQuantLayer(DynamicLayer):
    """One layer's cache: hot tokens in the model dtype, cold tokens compressed."""

    is_croppable = False

    def __init__(
        self,
        key_bits: float,
        value_bits: float,
        residual_length: int,
        seed: int,
        attention: str = "decoded",
    ):
        super().__init__()
        self.key_bits, self.value_bits = key_bits, value_bits
        self.residual_length = residual_length
        self.seed = seed
        self.attention = attention
        self._last_view: ColdView | None = None
        self.cold_length = 0
        self._cold: dict[str, list] = {"keys": [], "values": []}  # [(streams, scales)] blocks
        self._codecs: dict[str, HeadCodec] = {}

    def lazy_initialization(self, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
        super().lazy_initialization(key_states, value_states)
        head_dim = key_states.shape[-1]
        self._codecs = {
            "keys": HeadCodec(head_dim, self.key_bits, self.seed),
            "values": HeadCodec(value_states.shape[-1], self.value_bits, self.seed + 1),
        }

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, *args, **kwargs
    ) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        prefill = self.get_seq_length() == 0
        hot_keys = torch.cat([self.keys, key_states], dim=-2)
        hot_values = torch.cat([self.values, value_states], dim=-2)
        if self.attention == "compressed":
            view = self._last_view
            if view is not None and view.length and not view.consumed:
                raise RuntimeError(
                    "TurboQuantCache(attention='compressed') needs the compressed attention: "
                    "call rotaquant.kv.enable(model) before running the model"
                )
            view = ColdView(
                self._codecs["keys"],
                self._codecs["values"],
                self._cold["keys"],
                self._cold["values"],
                self.cold_length,
            )
            hot_keys._rotaquant_cold = view
            self._last_view = view
            returned = (hot_keys, hot_values)
        elif prefill:
            returned = (hot_keys, hot_values)
        else:
            returned = (
                torch.cat([self._decoded("keys", key_states.dtype), hot_keys], dim=-2),
                torch.cat([self._decoded("values", value_states.dtype), hot_values], dim=-2),
            )
        overflow = hot_keys.shape[-2] - self.residual_length
        if overflow > 0:
            self._migrate("keys", hot_keys[..., :overflow, :])
            self._migrate("values", hot_values[..., :overflow, :])
            self.cold_length += overflow
            hot_keys = hot_keys[..., overflow:, :].clone()
            hot_values = hot_values[..., overflow:, :].clone()
        self.keys, self.values = hot_keys, hot_values
        return returned

    def _migrate(self, kind: str, states: torch.Tensor) -> None:
        """Encode tokens into the cold tier. Tokens arriving one per decode step join the last
        block until it holds BLOCK_TOKENS, so attention walks a few large blocks rather than
        one block per generated token (the list is replaced, never mutated: views taken
        earlier stay valid)."""
        streams, scales = self._codecs[kind].encode(states)
        blocks = self._cold[kind]
        if blocks and blocks[-1][1].shape[-1] < BLOCK_TOKENS:
            last_streams, last_scales = blocks[-1]
            streams = [torch.cat(pair, dim=-2) for pair in zip(last_streams, streams, strict=True)]
            scales = torch.cat([last_scales, scales], dim=-1)
            blocks = blocks[:-1]
        self._cold[kind] = [*blocks, (streams, scales)]

    def _decoded(self, kind: str, dtype: torch.dtype) -> torch.Tensor:
        codec = self._codecs[kind]
        blocks = [codec.decode(streams, scales) for streams, scales in self._cold[kind]]
        if not blocks:
            shape = (*self.keys.shape[:-2], 0, self.keys.shape[-1])
            return torch.zeros(shape, dtype=dtype, device=self.keys.device)
        return torch.cat(blocks, dim=-2).to(dtype)

    def get_seq_length(self) -> int:
        hot = 0 if not self.is_initialized or self.keys.numel() == 0 else self.keys.shape[-2]
        return self.cold_length + hot

    def get_mask_sizes(self, query_length: int) -> tuple[int, int]:
        return self.get_seq_length() + query_length, 0

    @property
    def nbytes(self) -> int:
        """Bytes held: cold codes and scales, and the hot tensors."""
        cold = sum(
            sum(s.nbytes for s in streams) + scales.nbytes
            for blocks in self._cold.values()
            for streams, scales in blocks
        )
        hot = 0 if not self.is_initialized else self.keys.nbytes + self.values.nbytes
        return int(cold + hot)

    @property
    def fp16_nbytes(self) -> int:
        """What float16 keys and values would take for the same tokens."""
        if not self.is_initialized or self.get_seq_length() == 0:
            return 0
        batch, heads, _, head_dim = self.keys.shape
        value_dim = self.values.shape[-1]
        return int(2 * batch * heads * self.get_seq_length() * (head_dim + value_dim))

    def reset(self) -> None:
        super().reset()
        self.cold_length = 0
        self._cold = {"keys": [], "values": []}


class TurboQuantCache(Cache):
    """A transformers cache storing keys and values with TurboQuant.

    Args:
        key_bits, value_bits: bits per value (1..8, fractional such as 3.5 allowed).
        residual_length: most recent tokens per layer kept uncompressed (≥ 0).
        seed: rotation seed (each layer and K/V get their own rotation).
        attention: ``"decoded"`` (any attention implementation) or ``"compressed"`` (attention
            on the packed cold tier; needs ``rotaquant.kv.enable(model)``).
    """

    def __init__(
        self,
        key_bits: float = 4,
        value_bits: float = 3,
        residual_length: int = 128,
        seed: int = 0,
        attention: str = "decoded",
    ):
        for name, bits in (("key_bits", key_bits), ("value_bits", value_bits)):
            if (
                isinstance(bits, bool)
                or not isinstance(bits, (int, float))
                or not (1 <= bits <= _MAX_BITS)
            ):
                raise ValueError(f"{name} must be a number in [1, {_MAX_BITS}], got {bits!r}")
        if (
            isinstance(residual_length, bool)
            or not isinstance(residual_length, int)
            or (residual_length < 0)
        ):
            raise ValueError(f"residual_length must be an integer >= 0, got {residual_length!r}")
        if attention not in ("decoded", "compressed"):
            raise ValueError(f"attention must be 'decoded' or 'compressed', got {attention!r}")
        self.key_bits, self.value_bits = key_bits, value_bits
        self.residual_length = residual_length
        self.attention = attention
        self._layer_count = 0
        self._seed = seed
        super().__init__(layer_class_to_replicate=self._new_layer)

    def _new_layer(self) -> TurboQuantLayer:
        seed = self._seed + 2 * self._layer_count
        self._layer_count += 1
        return TurboQuantLayer(
            self.key_bits, self.value_bits, self.residual_length, seed, self.attention
        )

    @property
    def nbytes(self) -> int:
        """Real bytes held by every layer: packed codes, scales and the hot window."""
        return sum(layer.nbytes for layer in self.layers)

    @property
    def fp16_nbytes(self) -> int:
        """What float16 keys and values would take for the same tokens."""
        return sum(layer.fp16_nbytes for layer in self.layers)
