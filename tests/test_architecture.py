"""The package's imports point one way (docs/architecture.md): cli → contrib → integrations,
distributed → index, kv → codec → shared helpers and the native core; the products never import
each other, nothing but cli imports contrib, and the *module* graph (imports inside functions
included, type-only imports under ``TYPE_CHECKING`` not) has no cycle."""

import ast
from pathlib import Path

import pytest

import rotaquant

ROOT = Path(rotaquant.__file__).parent
HELPERS = {"_arrays", "_atomic", "_deprecation", "_gpu", "_parallel", "_native", "_progress"}
PRODUCTS = {"index", "kv", "integrations", "distributed"}
# part of the package -> parts it must not import
FORBIDDEN = {
    "codec": {"index", "kv", "cli", "contrib", "integrations", "distributed"},
    "index": {"kv", "cli", "contrib", "integrations", "distributed"},
    "kv": {"index", "cli", "contrib", "integrations", "distributed"},
    "integrations": {"kv", "cli", "contrib", "distributed"},
    "distributed": {"kv", "cli", "contrib", "integrations"},
    "contrib": {"cli"},
    "data": {"codec", "index", "kv", "cli", "integrations", "distributed"},  # 0.1 alias
    **{helper: {"codec", "cli", "contrib", *PRODUCTS} for helper in HELPERS},
}
# deprecated 0.1 spellings that reach their new home lazily (removed in 0.3)
ALIASES = {("integrations/langchain.py", "contrib")}


def _module_name(path: Path) -> str:
    parts = ["rotaquant", *path.relative_to(ROOT).with_suffix("").parts]
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES = sorted(p for p in ROOT.rglob("*.py") if "__pycache__" not in p.parts)
NAMES = {_module_name(p) for p in MODULES} | {"rotaquant._core"}  # and the extension


def _runtime_nodes(tree: ast.AST):
    """Every node of ``tree`` except those under ``if TYPE_CHECKING:`` (never executed)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                stack.extend(child.orelse)
                continue
            stack.append(child)


def imported_modules(path: Path, source: str | None = None) -> set[str]:
    """The rotaquant modules that running ``path`` imports, wherever the import statement is
    (module level or inside a function)."""
    package = _module_name(path).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = set()
    for node in _runtime_nodes(ast.parse(source if source is not None else path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            for alias in node.names:
                child = f"{module}.{alias.name}"
                found.add(child if child in NAMES else module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name in NAMES}


GRAPH = {_module_name(p): imported_modules(p) for p in MODULES}


def _part(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a path (first node repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done

    def visit(node: str, path: list[str]) -> list[str] | None:
        state[node] = 1
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state:
                cycle = visit(target, [*path, target])
                if cycle:
                    return cycle
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state:
            cycle = visit(start, [start])
            if cycle:
                return cycle
    return None


def test_the_module_graph_has_no_cycle():
    assert find_cycle(GRAPH) is None, " -> ".join(find_cycle(GRAPH))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_point_one_way(path):
    module = _module_name(path)
    part = _part(module)
    imported = {_part(target) for target in GRAPH[module]} - {part}
    allowed = {p for file, p in ALIASES if path.relative_to(ROOT).as_posix() == file}
    assert not (imported - allowed) & FORBIDDEN.get(part, set()), f"{part} imports {imported}"
    if part != "__init__":
        assert "cli" not in imported


def test_the_checker_sees_lazy_imports_and_cycles_and_skips_type_only_imports():
    source = (
        "from typing import TYPE_CHECKING\n"
        "from . import backend\n"
        "if TYPE_CHECKING:\n"
        "    from .cache import TurboQuantCache\n"
        "def f():\n"
        "    from .attention import compressed_attention\n"
        "    from .. import _core\n"
    )
    found = imported_modules(ROOT / "kv" / "codec.py", source)
    assert found == {"rotaquant.kv.backend", "rotaquant.kv.attention", "rotaquant._core"}
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None
    assert "rotaquant.codec.quantizer" in GRAPH["rotaquant.index.vector_index"]
    assert "rotaquant.kv.interface" in GRAPH["rotaquant.kv.cache"]
