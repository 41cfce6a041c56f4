"""The package's shape: no import cycles (function-level imports included), small modules, one home for
domain facts and presets."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "torchwm"
MAX_MODULE_LINES = 400


def module_name(path: Path, root: Path) -> str:
    """``root/torchwm/envs/dmc.py`` → ``torchwm.envs.dmc``; a package's ``__init__.py`` → the package."""
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _lazy_targets(tree: ast.Module) -> list[str]:
    """Module paths named as string values of a module-level ``_EXPORTS = {...}`` (lazy exports)."""
    targets = []
    for node in tree.body:
        if (isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == "_EXPORTS" for t in node.targets)
                and isinstance(node.value, ast.Dict)):
            targets += [v.value for v in node.value.values if isinstance(v, ast.Constant) and isinstance(v.value, str)]
    return targets


def import_graph(root: Path) -> dict[str, set[str]]:
    """``{module: modules of the package it imports}`` from every import statement anywhere in its source
    (module level, in functions, under ``if TYPE_CHECKING``) and from lazy-export tables.

    ``from a.b import c`` counts as importing ``a.b.c`` when that is a module of the package, else ``a.b``.
    """
    files = {module_name(p, root): p for p in sorted(root.rglob("*.py"))}
    top = root.name
    graph: dict[str, set[str]] = {}
    for name, path in files.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        found: list[str] = _lazy_targets(tree)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                found += [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:  # relative import
                    anchor = package.split(".")[: len(package.split(".")) - (node.level - 1)]
                    base = ".".join(anchor + ([base] if base else []))
                for alias in node.names:
                    candidate = f"{base}.{alias.name}"
                    found.append(candidate if candidate in files else base)
        graph[name] = {m for m in found if (m == top or m.startswith(top + ".")) and m in files and m != name}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as ``[a, b, ..., a]``, or None (iterative depth-first search)."""
    state: dict[str, int] = {}  # 1 = on the current path, 2 = done
    for start in sorted(graph):
        if state.get(start):
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        state[start] = 1
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                stack.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif not state.get(nxt):
                state[nxt] = 1
                path.append(nxt)
                stack.append(iter(sorted(graph.get(nxt, ()))))
    return None


def test_the_package_has_no_import_cycle():
    cycle = find_cycle(import_graph(PACKAGE))
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def _write(root: Path, files: dict[str, str]) -> None:
    for rel, text in files.items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.mark.parametrize("files,expected", [
    # a function-level import closing the loop
    ({"__init__.py": "", "a.py": "from pkg.b import f\n", "b.py": "def f():\n    from pkg import a\n"},
     ["pkg.a", "pkg.b", "pkg.a"]),
    # relative imports, through a sub-package's __init__
    ({"__init__.py": "", "sub/__init__.py": "from .x import y\n", "sub/x.py": "from ..c import z\n",
      "c.py": "import pkg.sub\n"}, ["pkg.c", "pkg.sub", "pkg.sub.x", "pkg.c"]),
    # a lazy-export table pointing back at its importer
    ({"__init__.py": "_EXPORTS = {'A': 'pkg.a'}\n", "a.py": "import pkg\n"}, ["pkg", "pkg.a", "pkg"]),
    # a TYPE_CHECKING import is still an edge
    ({"__init__.py": "", "a.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from pkg.b import B\n",
      "b.py": "from pkg.a import A\n"}, ["pkg.a", "pkg.b", "pkg.a"]),
])
def test_the_cycle_check_finds_cycles(tmp_path, files, expected):
    _write(tmp_path / "pkg", files)
    assert find_cycle(import_graph(tmp_path / "pkg")) == expected


def test_the_cycle_check_passes_a_layered_package(tmp_path):
    _write(tmp_path / "pkg", {"__init__.py": "_EXPORTS = {'A': 'pkg.a'}\n", "a.py": "from pkg.b import f\nimport os\n",
                              "b.py": "from pkg import c\n", "c.py": "def g():\n    import json\n"})
    graph = import_graph(tmp_path / "pkg")
    assert graph == {"pkg": {"pkg.a"}, "pkg.a": {"pkg.b"}, "pkg.b": {"pkg.c"}, "pkg.c": set()}
    assert find_cycle(graph) is None


def test_no_module_is_over_the_size_limit():
    long = {str(p.relative_to(PACKAGE.parent)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert not long, f"modules over {MAX_MODULE_LINES} lines (split them by job): {long}"
