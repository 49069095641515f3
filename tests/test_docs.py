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


INTERNAL = re.compile(r"\bissues?[ -]\d+|device tool|\bcarry \[", re.I)


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_pages_speak_to_users_not_to_the_tracker(page):
    """No references a reader cannot follow: the project's issue numbers, its device tool."""
    found = [
        f"line {text[: m.start()].count(chr(10)) + 1}: {m.group(0)}"
        for text in [page.read_text()]
        for m in INTERNAL.finditer(text)
    ]
    assert not found, found


def test_kv_docs_say_what_crop_does():
    text = (ROOT / "docs" / "kv.md").read_text()
    assert "`crop` is refused" not in text and "`crop` (what assisted decoding" in text


def test_the_readme_says_which_instruction_set_its_speeds_come_from():
    measured = (ROOT / "README.md").read_text().split("## Measured", 1)[1]
    opening = measured.split("\n\n", 2)[1]  # the paragraph before the first table
    assert "AVX-512" in opening and "AVX2" in opening
