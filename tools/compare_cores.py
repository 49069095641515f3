"""Before/after: the scan of two builds of the native core, in one process, on the same data.

    git worktree add /tmp/base <commit> && cmake -S /tmp/base -B /tmp/base/build \\
        -DPython_EXECUTABLE=$PWD/.venv/bin/python && cmake --build /tmp/base/build
    .venv/bin/python tools/compare_cores.py /tmp/base/build/_core*.so \\
        [--data mpnet|gaussian] [--n N] [--isa native|avx2] [--out NAME]

The installed core (``rotaquant._core``) builds the index; the other build is loaded beside it
(as ``baseline._core``) and both scan the same segments with the same rotated queries through
the stateless ``_core.scan`` (which both versions have), interleaved, best of 3: batched
(1,000 queries, k=10) and single queries (p50 of 200). Both run their best variant, or the one
``ROTAQUANT_SIMD`` names; ``--isa avx2`` hides AVX-512 from the process (tools/hide_avx512.c).
``--out``: the table and JSON into bench/results.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import rotaquant as rq  # noqa: E402
from bench._common import (  # noqa: E402
    add_isa_argument,
    apply_isa,
    format_table,
    publish,
)
from rotaquant import _core  # noqa: E402

COLUMNS = [
    ("bits", "bits", "d"),
    ("qps_new", "batch q/s new", ",.0f"),
    ("qps_old", "baseline", ",.0f"),
    ("qps_ratio", "ratio", ".2f"),
    ("p50_new_ms", "p50 ms new", ".3f"),
    ("p50_old_ms", "baseline", ".3f"),
    ("p50_ratio", "ratio", ".2f"),
]


def load_core(path: str):
    spec = importlib.util.spec_from_file_location("baseline._core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "mpnet":
        from bench._common import mpnet

        return mpnet(n)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((n + 1000, 768), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x[:n], x[n:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("baseline", help="path of the other build's _core*.so")
    parser.add_argument("--data", choices=("mpnet", "gaussian"), default="mpnet")
    parser.add_argument("--n", type=int, default=200_000, help="database rows (<= 200,000)")
    parser.add_argument("--out", help="JSON path or name in bench/results (table beside it)")
    add_isa_argument(parser)
    args = parser.parse_args()
    apply_isa(args.isa)
    old = load_core(args.baseline)
    db, queries = data(args.data, args.n)
    rows = []
    for bits in (2, 3, 4):
        index = rq.VectorIndex(db.shape[1], bits)
        index.add(db)
        searcher = index._searcher
        segments = [s.scan_view(o, None) for s, o, _ in index._rows.segment_rows(None)]
        rotated = np.ascontiguousarray(searcher.quantizer.rotation.forward(queries), np.float32)
        codec = searcher._codec
        batch = {"new": np.inf, "old": np.inf}
        single = {"new": [], "old": []}
        for _ in range(3):
            for name, core in (("new", _core), ("old", old)):
                start = time.perf_counter()
                core.scan(codec, segments, rotated, None, 10)
                batch[name] = min(batch[name], time.perf_counter() - start)
        for i in range(200):
            for name, core in (("new", _core), ("old", old)):
                start = time.perf_counter()
                core.scan(codec, segments, rotated[i : i + 1], None, 10)
                single[name].append(time.perf_counter() - start)
        qn, qo = queries.shape[0] / batch["new"], queries.shape[0] / batch["old"]
        pn, po = (1e3 * float(np.median(single[k])) for k in ("new", "old"))
        rows.append(
            {
                "bits": bits,
                "qps_new": qn,
                "qps_old": qo,
                "qps_ratio": qn / qo,
                "p50_new_ms": pn,
                "p50_old_ms": po,
                "p50_ratio": po / pn,
            }
        )
        print(rows[-1], flush=True)
    text = (
        f"new core: {_core.config()['active']}, baseline ({args.baseline}): "
        f"{old.config()['active']}; {args.data} {db.shape[0]:,} rows, "
        f"{queries.shape[0]} queries\n\n"
        + format_table(rows, COLUMNS)
        + "\n\nBatched: best of 3, k=10; p50: 200 single queries; ratio > 1: new faster."
    )
    print("\n" + text)
    if args.out:
        publish(args.out, {"rows": rows, "baseline": args.baseline}, text)


if __name__ == "__main__":
    main()
