"""The shape of the code, checked: the import contracts hold, no module imports another that
imports it back, imports sit at the top of modules, and modules stay small.

The contracts themselves live in pyproject.toml ([tool.importlinter]); docs/architecture.md
draws them. These tests make a change that breaks the shape fail in `make test-fast` too.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys
from pathlib import Path

import pytest

grimp = pytest.importorskip("grimp")

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "neartext"


def _modules() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def test_the_import_contracts_are_kept() -> None:
    lint = Path(sys.executable).with_name("lint-imports")
    if not lint.exists():
        pytest.skip("import-linter is not installed (make setup installs it)")
    env = {**os.environ, "PYTHONPATH": str(SRC)}
    out = subprocess.run([str(lint), "--no-cache"], cwd=ROOT, env=env, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-2000:]
    assert "layers KEPT" in out.stdout and "0 broken" in out.stdout and "light imports KEPT" in out.stdout


def _cycles(graph: object) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in graph.find_modules_directly_imported_by(v):  # type: ignore[attr-defined]
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    limit = sys.getrecursionlimit()  # restored: other tests depend on the default (JSON depth)
    sys.setrecursionlimit(max(limit, 10_000))
    try:
        for m in sorted(graph.modules):  # type: ignore[attr-defined]
            if m not in index:
                visit(m)
    finally:
        sys.setrecursionlimit(limit)
    return found


def test_no_module_imports_one_that_imports_it_back() -> None:
    sys.path.insert(0, str(SRC))
    try:
        graph = grimp.build_graph("neartext", cache_dir=None)
    finally:
        sys.path.remove(str(SRC))
    assert _cycles(graph) == []


def test_imports_sit_at_the_top_and_deferred_loads_name_their_extra() -> None:
    """No ``import`` inside a function: a package needed by one feature only is loaded through
    :func:`neartext.util.optional.optional`, which names the extra that installs it."""
    inside = []
    for path in _modules():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                inside += [f"{path.relative_to(SRC)}:{sub.lineno}" for sub in ast.walk(node)
                           if isinstance(sub, (ast.Import, ast.ImportFrom))]
    assert inside == []
    # the only other loads by name: neartext's own heavy modules, loaded when first used
    by_name = {str(p.relative_to(PACKAGE)) for p in _modules()
               if "importlib.import_module(" in p.read_text()}
    assert by_name == {"util/optional.py", "encoders/registry.py", "cli/__init__.py",
                       "training/__init__.py", "serve/__init__.py"}


def test_modules_stay_small_and_the_collection_is_a_facade() -> None:
    sizes = {str(p.relative_to(PACKAGE)): len(p.read_text().splitlines()) for p in _modules()}
    assert {m: n for m, n in sizes.items() if n > 600} == {}
    assert sizes["collection.py"] <= 400
