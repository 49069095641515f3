"""The package's imports point one way (docs/architecture.md): cli → integrations → index,
kv → codec → shared helpers and the native core; the products never import each other and
nothing imports cli."""

import ast
from pathlib import Path

import pytest

import rotaquant

ROOT = Path(rotaquant.__file__).parent
HELPERS = {"_arrays", "_atomic", "_gpu", "_parallel", "_native", "data"}  # and the extension _core
# part of the package -> parts it must not import
FORBIDDEN = {
    "codec": {"index", "kv", "cli", "integrations", "distributed"},
    "index": {"kv", "cli", "integrations", "distributed"},
    "kv": {"index", "cli", "integrations", "distributed"},
    "integrations": {"kv", "cli", "distributed"},
    "distributed": {"kv", "cli", "integrations"},
    **{
        helper: {"codec", "index", "kv", "cli", "integrations", "distributed"} for helper in HELPERS
    },
}


def _part(path: Path) -> str:
    return path.relative_to(ROOT).parts[0].removesuffix(".py")


def _imported_parts(path: Path) -> set[str]:
    """Top-level parts of rotaquant that ``path`` imports (absolute or relative)."""
    package = ["rotaquant", *path.relative_to(ROOT).parent.parts]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = [*base, *(node.module.split(".") if node.module else [])]
            if len(module) == 1:  # "from . import x" / "from rotaquant import x"
                targets = [[*module, alias.name] for alias in node.names]
            else:
                targets = [module]
        elif isinstance(node, ast.Import):
            targets = [alias.name.split(".") for alias in node.names]
        else:
            continue
        found.update(t[1] for t in targets if t[0] == "rotaquant" and len(t) > 1)
    return found


MODULES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    part = _part(path)
    imported = _imported_parts(path) - {part}
    assert not imported & FORBIDDEN.get(part, set()), f"{part} imports {imported}"
    if part != "__init__":
        assert "cli" not in imported


def test_the_checker_sees_relative_and_absolute_imports():
    assert _imported_parts(ROOT / "kv" / "cold.py") == {"_core", "kv"}
    assert _imported_parts(ROOT / "kv" / "codec.py") == {"codec", "kv"}  # kv: its backend
    assert {"codec", "index", "data", "_atomic"} <= _imported_parts(ROOT / "cli.py")
    assert {"codec", "index", "data"} <= _imported_parts(ROOT / "__init__.py")
