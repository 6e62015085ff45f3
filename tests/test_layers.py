"""The package's import structure: the contracts of pyproject.toml's [tool.importlinter] (layers
point one way, prediction imports no training code, no import cycles), and imports inside
functions only where they defer a heavy optional dependency, with a comment saying so."""

from __future__ import annotations

import ast
import io
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]



def test_layer_contracts():
    """``lint-imports`` on this checkout keeps every contract of pyproject.toml."""
    pytest.importorskip("importlinter", reason="import-linter is in the `test` extra")
    code = ("import sys; from importlinter.cli import lint_imports; "
            "sys.exit(lint_imports(no_cache=True, no_logo=True))")
    # In a subprocess run from the repository root: import-linter reads the package found
    # from there (this checkout), and its output stays apart from pytest's.
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, f"import contracts broken:\n{r.stdout[-6000:]}\n{r.stderr[-2000:]}"


def _comment_lines(source: str) -> set[int]:
    """Line numbers (1-based) that hold a comment."""
    tokens = tokenize.generate_tokens(io.StringIO(source).readline)
    return {tok.start[0] for tok in tokens if tok.type == tokenize.COMMENT}


def _function_import_groups(tree: ast.AST) -> list[list[ast.stmt]]:
    """``import`` statements inside function bodies (at any depth), in groups of consecutive
    imports (one comment above a group says why for all of them)."""
    groups: list[list[ast.stmt]] = []
    for fn in ast.walk(tree):
        if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        for node in ast.walk(fn):
            for field in ("body", "orelse", "finalbody", "handlers"):
                block = getattr(node, field, None)
                if not isinstance(block, list):
                    continue
                run: list[ast.stmt] = []
                for stmt in block + [None]:
                    if isinstance(stmt, (ast.Import, ast.ImportFrom)):
                        run.append(stmt)
                    elif run:
                        groups.append(run)
                        run = []
    # a function nested in another is walked twice: keep each group once
    unique = {tuple(id(n) for n in g): g for g in groups}
    return list(unique.values())


def _commented(group: list[ast.stmt], comments: set[int], lines: list[str]) -> bool:
    """A comment on the group's lines, or in the comment line directly above it."""
    first, last = group[0].lineno, max(n.end_lineno or n.lineno for n in group)
    if any(k in comments for k in range(first, last + 1)):
        return True
    return first > 1 and (first - 1) in comments and lines[first - 2].strip().startswith("#")


def function_imports_without_reason(repo: Path = REPO) -> list[str]:
    """``path:line: import`` of every import inside a function of ``repo/foldlite`` with no
    comment saying why."""
    out = []
    for path in sorted((repo / "foldlite").rglob("*.py")):
        rel = path.relative_to(repo).as_posix()
        source = path.read_text(encoding="utf-8")
        comments, lines = _comment_lines(source), source.splitlines()
        for group in _function_import_groups(ast.parse(source, rel)):
            if not _commented(group, comments, lines):
                out += [f"{rel}:{n.lineno}: {lines[n.lineno - 1].strip()}" for n in group]
    return sorted(set(out))


def test_imports_inside_functions_say_why():
    """An import inside a function defers a heavy optional dependency (matplotlib, py3Dmol,
    JAX behind a light entry point, ...) and says so in a comment; any other import is at the
    top of its module, where the layer contract sees it."""
    bad = function_imports_without_reason()
    assert not bad, ("imports inside functions without a comment saying why (move them to the "
                     "top of the module, or say what they defer):\n" + "\n".join(bad))


def test_the_checker_sees_an_import_without_a_reason(tmp_path):
    pkg = tmp_path / "foldlite"
    pkg.mkdir()
    (pkg / "m.py").write_text("def f():\n    import json\n    return json\n\n\n"
                              "def g():\n    # deferred: heavy\n    import csv\n"
                              "    import io  # deferred: heavy\n    return csv, io\n")
    assert function_imports_without_reason(tmp_path) == ["foldlite/m.py:2: import json"]
