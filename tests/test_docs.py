"""Every Python block in README.md and docs/*.md runs as written and on its own, as a reader
pastes it: each block in a namespace of its own (one fresh interpreter per page, inside a
temporary directory, so files a block writes are there for the next)."""

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
BLOCK = re.compile(r"^```python\n(.*?)^```$", re.S | re.M)
RUNNER = """
import sys
blocks = {blocks!r}
for number, (line, code) in enumerate(blocks, 1):
    namespace = {{"__name__": "__main__"}}  # nothing carried over from the blocks above
    try:
        exec(compile(code, f"{page}:{{line}}", "exec"), namespace)
    except BaseException as error:
        print(f"block {{number}} (line {{line}}) failed: {{error!r}}")
        raise
"""


def _blocks(page: Path) -> list[tuple[int, str]]:
    text = page.read_text()
    return [(text[: m.start()].count("\n") + 2, m.group(1)) for m in BLOCK.finditer(text)]


WITH_BLOCKS = [page for page in PAGES if _blocks(page)]


def test_the_pages_have_blocks_to_check():
    assert ROOT / "README.md" in WITH_BLOCKS and len(WITH_BLOCKS) >= 2


@pytest.mark.parametrize("page", WITH_BLOCKS, ids=lambda p: p.name)
def test_python_blocks_run_as_written(page, tmp_path):
    script = RUNNER.format(blocks=_blocks(page), page=page.name)
    run = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert run.returncode == 0, run.stdout[-2000:] + run.stderr[-4000:]
