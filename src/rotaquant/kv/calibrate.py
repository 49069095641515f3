"""Calibration from the model's own queries: per (layer, KV head), how keys and values are
coded, chosen by the error of what attention computes.

When a layer's first tokens are about to go cold, the cache lets one more attention call run
on them exactly and hands that call a hook: the compressed attention passes it the layer's
queries (the decoded path has none, and uses the layer's newest keys in their place). For the
tokens that go cold (not the sinks, not the hot window) and the newest ``QUERY_ROWS`` query
rows, each candidate coding is scored by the squared error it causes in the attention output,
per query row and head — one unit for keys and values:

    keys    e_K = mean ‖softmax(q K̂ᵀ) V − softmax(q Kᵀ) V‖²
    values  e_V = mean ‖softmax(q Kᵀ) (V̂ − V)‖²

(softmax over those tokens, causally masked). Candidates are the statistics ``fit_heads``
takes: keys raw, centered, or centered and divided by channel RMS^p for p in
``KEY_SCALE_POWERS``; values raw or centered; for fractional widths, outlier channels at the
higher width or not (one choice per layer: the split is the layer's). Each head takes its
best candidate; heads are coded independently, so the layer's error is the sum of the heads'
best. The cost is a few small encodes and matmuls per layer, once.

``bits="auto"``: the same errors at each width of ``AUTO_WIDTHS``, relative to the power of
the layer's exact attention output, give every (layer, keys or values) an error curve;
``allocate`` spends a budget of bits per value where it lowers the summed relative error most
(greedy on the error decrease per bit; boundary layers are just layers). Absolute errors gave
the first layers 2 bits (their outputs are small), which cost perplexity in development
probes; docs/kv.md's devset table measures this relative form.
"""

from __future__ import annotations

from . import _requires  # noqa: F401  (first: a missing torch names the [kv] extra)

# isort: split
from dataclasses import dataclass
from functools import cached_property

import torch

from .codec import HeadCodec, HeadFit, fit_heads
from .config import FitOptions, head_config

MARGIN = 0.1  # another candidate replaces the default only if its error is this much lower
QUERY_ROWS = 64  # newest query positions (per query head) the errors are measured on
MAX_TOKENS = 1024  # tokens going cold the errors are measured on (the newest of them)
KEY_SCALE_POWERS = (0.25, 0.5, 0.75)
AUTO_WIDTHS = (2, 2.5, 3, 3.5, 4, 5, 6, 8)


@dataclass(frozen=True)
class Choice:
    """One coding of one layer's keys or values: the fitted statistics (per head, each its
    best candidate), the per-head error of that choice, and each head's candidate label."""

    bits: float
    fit: HeadFit
    errors: torch.Tensor  # (heads,) float32
    labels: tuple[str, ...]

    @property
    def error(self) -> float:
        return float(self.errors.sum())


def label(options: FitOptions) -> str:
    if not options.center:
        return "raw"
    return "centered" if not options.scale_power else f"scaled^{options.scale_power:g}"


def candidates(kind: str, default: FitOptions) -> list[FitOptions]:
    """The statistics tried for ``kind`` ("keys" or "values"), the configured ``default``
    first. Values keep the configured statistics: centering them lowered the measured output
    error of most Gemma-3 heads yet raised its perplexity in a development probe, so the
    measure is not trusted there."""
    if kind == "values":
        return [default]
    scaled = [FitOptions(True, p) for p in KEY_SCALE_POWERS]
    tried = [FitOptions(False, 0.0), FitOptions(True, 0.0), *scaled]
    return [default] + [option for option in tried if option != default]


@dataclass(frozen=True)
class Sample:
    """What the errors are measured on: scaled queries (batch, heads, rows, head_dim), every
    exact key and value the attention sees (batch, heads, length, dim), the tokens
    ``[first, last)`` of them that go cold, and the causal mask (rows, length) bool (True:
    the query sees the token). The other tokens (sinks, hot) stay exact: they enter the
    softmax unchanged, so a cold token's error counts by the weight it really gets."""

    queries: torch.Tensor
    keys: torch.Tensor
    values: torch.Tensor
    first: int
    last: int
    visible: torch.Tensor

    @classmethod
    def from_attention(
        cls,
        queries: torch.Tensor,
        q_len: int,
        keys: torch.Tensor,
        values: torch.Tensor,
        first: int,
        last: int,
    ) -> Sample:
        """``queries`` (batch, kv heads, groups · q_len, head_dim), scaled, as the compressed
        attention holds them: the newest ``q_len`` positions of the exact ``keys``/``values``
        (batch, kv heads, length, dim), whose tokens ``[first, last)`` go cold."""
        batch, heads, rows, dim = queries.shape
        groups, length = rows // q_len, keys.shape[-2]
        take = min(QUERY_ROWS, q_len)
        q = queries.reshape(batch, heads, groups, q_len, dim)[..., -take:, :]
        start = max(0, last - MAX_TOKENS)  # the newest tokens only, for long prompts
        positions = torch.arange(length - take, length).repeat(groups)  # each row's position
        visible = positions[:, None] >= torch.arange(start, length)[None, :]
        return cls(
            q.reshape(batch, heads, groups * take, dim).float(),
            keys[..., start:, :].float(),
            values[..., start:, :].float(),
            max(first, start) - start,
            last - start,
            visible.to(queries.device),
        )

    @classmethod
    def from_keys(cls, keys: torch.Tensor, values: torch.Tensor, first: int, last: int) -> Sample:
        """No queries (the decoded path): the newest keys stand in for them."""
        length, dim = keys.shape[-2], keys.shape[-1]
        take = min(QUERY_ROWS, length)
        queries = keys[..., length - take :, :].float() * dim**-0.5
        return cls.from_attention(queries, take, keys, values, first, last)

    def cold(self, kind: str) -> torch.Tensor:
        """The exact keys or values that go cold: (batch, heads, tokens, dim)."""
        states = self.keys if kind == "keys" else self.values
        return states[..., self.first : self.last, :]

    def held(self, kind: str) -> torch.Tensor:
        """Every non-sink token held (cold and hot): what the chosen statistics are fitted
        to (the newest tokens are the nearest to the positions that follow)."""
        states = self.keys if kind == "keys" else self.values
        return states[..., self.first :, :]

    @property
    def middle(self) -> int:
        return (self.first + self.last) // 2

    def fitted_on(self, kind: str) -> torch.Tensor:
        """The older half of the cold tokens: what candidates fit their statistics to."""
        states = self.keys if kind == "keys" else self.values
        return states[..., self.first : self.middle, :]

    def tested_on(self, kind: str) -> torch.Tensor:
        """Every newer token (the rest of the cold ones and the hot ones, coded later with the
        same statistics): what the candidates are scored on, as statistics fitted once are
        used on the tokens that follow."""
        states = self.keys if kind == "keys" else self.values
        return states[..., self.middle :, :]

    def _weights(self, logits: torch.Tensor) -> torch.Tensor:
        return torch.softmax(logits.masked_fill(~self.visible, float("-inf")), dim=-1)

    @cached_property
    def logits(self) -> torch.Tensor:
        return self.queries @ self.keys.transpose(-1, -2)

    @cached_property
    def weights(self) -> torch.Tensor:
        return self._weights(self.logits)

    def error(self, kind: str, decoded: torch.Tensor) -> torch.Tensor:
        """(heads,) attention output error of the tested tokens ``decoded`` (see module)."""
        tested = slice(self.middle, None)
        if kind == "keys":
            logits = self.logits.clone()
            logits[..., tested] = self.queries @ decoded.transpose(-1, -2)
            diff = (self._weights(logits) - self.weights) @ self.values
        else:
            diff = self.weights[..., tested] @ (decoded - self.values[..., tested, :])
        return diff.square().sum(dim=-1).mean(dim=(0, 2))

    @cached_property
    def output_power(self) -> torch.Tensor:
        """(heads,) mean squared norm of the exact attention output (for relative errors)."""
        return (self.weights @ self.values).square().sum(dim=-1).mean(dim=(0, 2))


def _combine(fits: list[HeadFit], best: torch.Tensor, heads: int, dim: int) -> HeadFit:
    """One HeadFit taking head h's statistics from ``fits[best[h]]`` (zeros / ones where the
    chosen candidate has none)."""
    offset = torch.zeros(heads, dim)
    scale = torch.ones(heads, dim)
    any_offset = any_scale = False
    for h in range(heads):
        fit = fits[int(best[h])]
        if fit.offset is not None:
            offset[h], any_offset = fit.offset[h], True
        if fit.channel_scale is not None:
            scale[h], any_scale = fit.channel_scale[h], True
    return HeadFit(
        offset if any_offset else None, scale if any_scale else None, fits[int(best[0])].outliers
    )


def choose(
    sample: Sample, kind: str, bits: float, mode: str, seed: int, default: FitOptions
) -> Choice:
    """The best coding of ``kind`` at ``bits`` per head among ``candidates``: the configured
    ``default`` unless another is ``MARGIN`` better (the errors are estimates on a few
    hundred tokens; a choice within their noise is no choice)."""
    states, tested = sample.fitted_on(kind), sample.tested_on(kind)
    heads, dim = states.shape[1], states.shape[-1]
    tried = [
        FitOptions(o.center, o.scale_power, default.outliers) for o in candidates(kind, default)
    ]
    errors = []
    for option in tried:  # fitted on the older half, scored on what follows
        fit = fit_heads(states, bits, mode, option)
        codec = HeadCodec(dim, bits, seed, mode, fit.outliers, fit.offset, fit.channel_scale)
        errors.append(sample.error(kind, codec.decode(*codec.encode(tested))))
    table = torch.stack(errors)  # (candidates, heads)
    handicap = torch.full((len(tried), 1), 1 / (1 - MARGIN))
    handicap[0] = 1.0  # the default first: the others must beat it by MARGIN
    index = (table * handicap).argmin(dim=0)
    fits = [fit_heads(sample.held(kind), bits, mode, option) for option in tried]
    return Choice(
        bits,
        _combine(fits, index, heads, dim),
        table.gather(0, index[None]).squeeze(0),
        tuple(label(tried[int(i)]) for i in index),
    )


def widths_for(dim: int, mode: str) -> list[float]:
    """``AUTO_WIDTHS`` realisable at ``dim`` (and ≥ 2 for keys in prod mode)."""
    usable = []
    for bits in AUTO_WIDTHS:
        try:
            head_config(dim, bits, mode=mode)
        except ValueError:
            continue
        usable.append(bits)
    return usable


def allocate(curves: dict, sizes: dict, budget: float) -> dict:
    """Widths per unit within ``budget`` bits per value: ``curves[unit]`` maps each width to
    the unit's error, ``sizes[unit]`` is its values per token. Greedy: start every unit at its
    smallest width and take, while the budget allows, the upgrade with the largest error
    decrease per added bit; ValueError if even the smallest widths exceed it."""
    chosen = {unit: min(curve) for unit, curve in curves.items()}
    total = sum(sizes.values())
    spent = sum(chosen[u] * sizes[u] for u in chosen)
    if spent > budget * total + 1e-9:
        raise ValueError(
            f"budget={budget} bits per value is below the smallest widths "
            f"({spent / total:.3g} bits per value)"
        )
    while True:
        best, best_gain = None, 0.0
        for unit, curve in curves.items():
            current = chosen[unit]
            for bits in sorted(b for b in curve if b > current):
                cost = (bits - current) * sizes[unit]
                if spent + cost > budget * total + 1e-9:
                    break
                gain = (curve[current] - curve[bits]) / cost
                if gain > best_gain:
                    best, best_gain = (unit, bits, cost), gain
        if best is None:
            return chosen
        unit, bits, cost = best
        chosen[unit], spent = bits, spent + cost


class WidthPlan:
    """``bits="auto"`` for one cache: the layers report their error curves as they are
    measured; the first layer that needs its widths solves the allocation over every layer
    reported so far (in one forward pass, all of them). A layer that reports later takes the
    widest realisable widths within the budget on its own."""

    def __init__(self, budget: float):
        self.budget = budget
        self.curves: dict[tuple[int, str], dict[float, float]] = {}
        self.sizes: dict[tuple[int, str], int] = {}
        self.allocation: dict[int, tuple[float, float]] = {}

    def report(self, layer: int, kind: str, curve: dict[float, float], size: int) -> None:
        self.curves[(layer, kind)] = curve
        self.sizes[(layer, kind)] = size

    def widths(self, layer: int) -> tuple[float, float]:
        """(key bits, value bits) of ``layer``."""
        if layer not in self.allocation:
            pending = {u: c for u, c in self.curves.items() if u[0] not in self.allocation}
            if not self.allocation:
                chosen = allocate(pending, {u: self.sizes[u] for u in pending}, self.budget)
            else:  # late: on its own, the widest within the budget
                chosen = {
                    u: max((b for b in c if b <= self.budget), default=min(c))
                    for u, c in pending.items()
                }
            for (index, kind), bits in chosen.items():
                pair = self.allocation.get(index, (None, None))
                self.allocation[index] = (bits, pair[1]) if kind == "keys" else (pair[0], bits)
        return self.allocation[layer]
