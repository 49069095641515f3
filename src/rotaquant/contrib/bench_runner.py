"""``rotaquant bench <name> [args]``: run ``bench/<name>.py`` from a source checkout (the
benchmarks are not installed with the package)."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("name")
    parser.add_argument("rest", nargs=argparse.REMAINDER)


def run(args: argparse.Namespace) -> None:
    sys.path.insert(0, str(Path.cwd()))
    try:
        sys.argv = [f"bench.{args.name}", *args.rest]
        runpy.run_module(f"bench.{args.name}", run_name="__main__")
    except ImportError as exc:
        raise SystemExit(
            f"error: benchmark {args.name!r} not found ({exc}); run from a rotaquant checkout"
        ) from exc
