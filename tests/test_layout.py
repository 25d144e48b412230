"""The package's layout rules (docs/design.md): no import cycle between modules at import time, no module imports
another module's private name, and no module above 600 lines without a ``Length:`` paragraph in its docstring that
says why. Read from the source with :mod:`ast`, independently of the package's own code."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "attnfaith"
MAX_LINES = 600


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _top_level_imports(name: str) -> list[tuple[str, str | None, int]]:
    """``(module, imported name or None, line)`` for every import that runs when ``name`` is imported (not inside
    a function, not under ``if TYPE_CHECKING``); relative imports resolved."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    package = name if _is_package(name) else name.rpartition(".")[0]
    found: list[tuple[str, str | None, int]] = []

    def visit(nodes):
        for node in nodes:
            if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
                visit(node.orelse)
                continue
            if isinstance(node, (ast.If, ast.Try, ast.With)):
                visit(getattr(node, "body", []))
                visit(getattr(node, "orelse", []))
                for h in getattr(node, "handlers", []):
                    visit(h.body)
                visit(getattr(node, "finalbody", []))
            elif isinstance(node, ast.Import):
                found.extend((a.name, None, node.lineno) for a in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(anchor + ([node.module] if node.module else []))
                found.extend((base, a.name, node.lineno) for a in node.names)

    visit(tree.body)
    return found


def _all_imports(name: str) -> list[tuple[str, str | None, int]]:
    """Every ``from X import y`` anywhere in the module (functions included)."""
    tree = ast.parse(MODULES[name].read_text(encoding="utf-8"))
    return [(n.module or "", a.name, n.lineno) for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module
            for a in n.names]


def test_no_private_name_is_imported_from_another_module():
    bad = []
    for name in MODULES:
        for module, imported, line in _all_imports(name):
            if not module.startswith("attnfaith") or imported is None:
                continue
            target = f"{module}.{imported}"
            if imported.startswith("_") and not imported.startswith("__") and target not in MODULES and module != name:
                bad.append(f"{MODULES[name].relative_to(PACKAGE.parent)}:{line}: from {module} import {imported}")
    assert not bad, "\n".join(bad)


def _edges(name: str) -> set[str]:
    """The attnfaith modules whose import ``name``'s import triggers directly (a package's ``__init__`` is not
    counted as a dependency of its own submodules: Python imports it first anyway)."""
    out = set()
    for module, imported, _ in _top_level_imports(name):
        if not module.startswith("attnfaith"):
            continue
        target = f"{module}.{imported}" if imported and f"{module}.{imported}" in MODULES else module
        if target in MODULES and target != name and not name.startswith(target + "."):
            out.add(target)
    return out


def test_no_import_cycle():
    graph = {name: _edges(name) for name in MODULES}
    state: dict[str, int] = {}
    stack: list[str] = []
    cycles = []

    def dfs(u: str) -> None:
        state[u] = 1
        stack.append(u)
        for v in sorted(graph[u]):
            if state.get(v) == 1:
                cycles.append(" -> ".join(stack[stack.index(v):] + [v]))
            elif v not in state:
                dfs(v)
        stack.pop()
        state[u] = 2

    for name in sorted(graph):
        if name not in state:
            dfs(name)
    # a package's __init__ re-exporting its submodules, imported by a sibling through the package, is not a cycle
    # Python trips on only when the submodule is imported first; report every one
    assert not cycles, "\n".join(cycles)


@pytest.mark.parametrize("name", sorted(MODULES))
def test_long_modules_say_why(name):
    lines = MODULES[name].read_text(encoding="utf-8").count("\n")
    if lines <= MAX_LINES:
        return
    doc = ast.get_docstring(ast.parse(MODULES[name].read_text(encoding="utf-8"))) or ""
    assert "Length:" in doc, f"{name} has {lines} lines and no 'Length:' paragraph in its docstring saying why"
