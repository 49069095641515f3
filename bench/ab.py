"""Before and after in one run: a benchmark module at an earlier commit and at this tree, in turn.

    python -m bench.ab BASE [--rounds 2] [--out NAME] -- kv --sections speed --contexts 4096

checks BASE out into a temporary git worktree, runs ``python -m bench.<module> <args>`` there
and here alternately ``rounds`` times (base first), and publishes every run's payload and
table under one name (default ``ab_<module>``). The native module is the one this tree
built: BASE must have the same ``csrc/`` and CMakeLists.txt (else the comparison is refused).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import rotaquant._core as core

from ._common import ROOT, _git, metadata, publish

# The editable install's import hook would load this tree's package in the worktree too.
_NO_EDITABLE_HOOK = (
    "import sys\n"
    "sys.meta_path[:] = [f for f in sys.meta_path if 'ScikitBuild' not in type(f).__name__]\n"
)


def _run(tree: Path, module: str, args: list[str], out: Path, env: dict) -> dict:
    subprocess.run(
        [sys.executable, "-m", f"bench.{module}", *args, "--out", str(out)],
        cwd=tree,
        env=env,
        check=True,
    )
    return json.loads(out.read_text())


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("base", help="the earlier commit")
    parser.add_argument("module", help="bench module (kv, index, ...)")
    parser.add_argument("args", nargs=argparse.REMAINDER, help="its arguments (after --)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--out", help="JSON path or name in bench/results (default ab_<module>)")
    args = parser.parse_args(argv)
    bench_args = [a for a in args.args if a != "--"]
    base = _git("rev-parse", args.base)
    if base is None:
        raise SystemExit(f"{args.base}: not a commit of this repository")
    if _git("diff", "--stat", base, "HEAD", "--", "csrc", "CMakeLists.txt"):
        raise SystemExit(f"{args.base} has other native sources: build it separately")
    runs = []
    with tempfile.TemporaryDirectory(prefix="rotaquant-ab-") as tmp:
        work = Path(tmp) / "base"
        if _git("worktree", "add", "--detach", str(work), base) is None:
            raise SystemExit(f"git worktree add {work} {base} failed")
        try:
            shutil.copy(core.__file__, work / "src" / "rotaquant")
            hook = Path(tmp) / "hook"
            hook.mkdir()
            (hook / "sitecustomize.py").write_text(_NO_EDITABLE_HOOK)
            base_env = {**os.environ, "PYTHONPATH": f"{hook}{os.pathsep}{work / 'src'}"}
            for round_ in range(args.rounds):
                for label, tree, env in (("base", work, base_env), ("this tree", ROOT, os.environ)):
                    out = Path(tmp) / f"{label.replace(' ', '_')}-{round_}.json"
                    payload = _run(tree, args.module, bench_args, out, dict(env))
                    text = out.with_suffix(".txt").read_text()
                    runs.append({"tree": label, "round": round_, "payload": payload, "text": text})
        finally:
            _git("worktree", "remove", "--force", str(work))
    report = "\n\n".join(
        f"## {r['tree']} ({base[:12] if r['tree'] == 'base' else 'HEAD'}), round {r['round'] + 1}"
        f"\n{r['text']}"
        for r in runs
    )
    print(report)
    meta = metadata(base=base, module=args.module, bench_args=bench_args)
    publish(args.out or f"ab_{args.module}", {"meta": meta, "runs": runs}, report)


if __name__ == "__main__":
    main()
