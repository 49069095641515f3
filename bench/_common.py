"""Helpers shared by the benchmarks: data, timing, table printing, JSON results."""

from __future__ import annotations

import datetime
import json
import os
import platform
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

RESULTS = Path(__file__).parent / "results"

T = TypeVar("T")

# A table column: (row key, header, format spec); missing / None values print blank.
Column = tuple[str, str, str]


def unit_gaussian(n: int, d: int, seed: int = 0) -> np.ndarray:
    """(n, d) float32 Gaussian vectors scaled to unit norm (uniform on the sphere)."""
    x = np.random.default_rng(seed).standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def best_of(fn: Callable[[], T], repeat: int = 3, warmup: Callable[[], Any] | None = None):
    """(best wall time in seconds over ``repeat`` calls, the last call's result)."""
    if warmup is not None:
        warmup()
    best, result = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return best, result


def call_ms(fn: Callable[[Any], Any], items: Sequence[Any]) -> np.ndarray:
    """Milliseconds of ``fn(item)`` for each item, one call at a time (latency percentiles)."""
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append(time.perf_counter() - start)
    return 1e3 * np.array(times)


def format_table(rows: Sequence[dict[str, Any]], columns: Sequence[Column]) -> str:
    """Fixed-width text table: numbers right-aligned, text left-aligned."""

    def cell(row: dict[str, Any], key: str, spec: str) -> str:
        value = row.get(key)
        return "" if value is None else format(value, spec)

    body = [[cell(row, key, spec) for key, _, spec in columns] for row in rows]
    headers = [header for _, header, _ in columns]
    widths = [max(len(h), *(len(line[i]) for line in body)) for i, h in enumerate(headers)]
    numeric = [not any(isinstance(row.get(key), str) for row in rows) for key, *_ in columns]

    def line(cells: Sequence[str]) -> str:
        padded = (
            c.rjust(w) if num else c.ljust(w)
            for c, w, num in zip(cells, widths, numeric, strict=True)
        )
        return "  ".join(padded).rstrip()

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), rule, *(line(cells) for cells in body)])


def metadata(**extra: Any) -> dict[str, Any]:
    """Run context stored next to the results."""
    return {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "numpy": np.__version__,
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        **extra,
    }


def write_json(name_or_path: str | Path, payload: dict[str, Any]) -> Path:
    """Write ``payload`` to ``bench/results/<name>.json`` (or to an explicit ``*.json`` path)."""
    path = Path(name_or_path)
    if path.suffix != ".json":
        path = RESULTS / f"{name_or_path}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path
