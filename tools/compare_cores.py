"""Before/after: the scan of two builds of the native core, in one process, on the same data.

    git worktree add /tmp/base <commit> && cmake -S /tmp/base -B /tmp/base/build \\
        -DPython_EXECUTABLE=$PWD/.venv/bin/python && cmake --build /tmp/base/build
    .venv/bin/python tools/compare_cores.py /tmp/base/build/_core*.so \\
        [--data mpnet|gaussian] [--n N]

The installed core (``rotaquant._core``) builds the index; the other build is loaded beside it
(as ``baseline._core``) and both scan the same segments with the same rotated queries through
the stateless ``_core.scan`` (which both versions have), interleaved, best of 3: batched
(1,000 queries, k=10) and single queries (p50 of 200). Both run their best variant, or the one
``ROTAQUANT_SIMD`` names; preload tools/hide_avx512.c (bench/_common.py) for the AVX2 picture.
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
from rotaquant import _core  # noqa: E402


def load_core(path: str):
    spec = importlib.util.spec_from_file_location("baseline._core", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def data(kind: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    if kind == "mpnet":
        from bench.speed import mpnet

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
    args = parser.parse_args()
    old = load_core(args.baseline)
    db, queries = data(args.data, args.n)
    print(f"new core: {_core.config()['active']}, baseline: {old.config()['active']}")
    print(
        f"{'bits':>4} {'batch q/s new':>14} {'baseline':>9} {'ratio':>6} "
        f"{'p50 ms new':>11} {'baseline':>9} {'ratio':>6}"
    )
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
        line = f"{bits:>4} {qn:>14,.0f} {qo:>9,.0f} {qn / qo:>6.2f} "
        print(line + f"{pn:>11.3f} {po:>9.3f} {po / pn:>6.2f}")


if __name__ == "__main__":
    main()
