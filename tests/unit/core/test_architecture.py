"""The house rules of the source tree, checked on every test run.

- The floors run one way: ``lint-imports`` (the contract in ``pyproject.toml``) keeps every
  contract, with no ignored imports.
- No package imports another package's private module (``lmforge.X._name`` from outside ``X``).
- A cross-package import sits at module top, where a cycle cannot hide; only the CLI, the top
  floor, imports each verb's library inside the verb, to keep ``lmforge --help`` light.
- Modules stay small enough to read (400 lines); a function over 80 lines says why in its
  docstring (a line starting with ``Long because``).
"""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from tests.conftest import REPO

SRC = REPO / "src" / "lmforge"
MAX_MODULE_LINES = 400
MAX_FUNCTION_LINES = 80


def _modules() -> Iterator[tuple[str, Path]]:
    for path in sorted(SRC.rglob("*.py")):
        parts = path.relative_to(SRC.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        yield name, path


def _imports(name: str, path: Path) -> Iterator[tuple[ast.AST, str, bool]]:
    """(node, imported module, inside a function) for every ``lmforge`` import of a module."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    in_function: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            in_function.update(id(child) for child in ast.walk(node) if child is not node)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            targets = [target] + [f"{target}.{a.name}" for a in node.names]
        elif isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        else:
            continue
        for t in targets:
            if t == "lmforge" or t.startswith("lmforge."):
                yield node, t, id(node) in in_function


def _package(module: str) -> str:
    """``lmforge.serve._app`` -> ``lmforge.serve``; ``lmforge.rundir`` -> ``lmforge.rundir``."""
    return ".".join(module.split(".")[:2])


def test_the_import_contract_holds() -> None:
    lint = shutil.which("lint-imports", path=str(Path(sys.executable).parent))
    assert lint is not None, "lint-imports is not installed: run `make setup` (the dev extra has import-linter)"
    proc = subprocess.run([lint, "--no-cache"], cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "0 broken" in proc.stdout, proc.stdout
    assert "ignore_imports" not in (REPO / "pyproject.toml").read_text(encoding="utf-8")


def test_no_package_imports_another_packages_private_module() -> None:
    bad = []
    for name, path in _modules():
        for node, target, _lazy in _imports(name, path):
            if _package(target) == _package(name):
                continue
            private = [part for part in target.split(".")[2:] if part.startswith("_") and part != "__init__"]
            if private:
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {target}")
    assert bad == []


def test_cross_package_imports_sit_at_module_top() -> None:
    bad = []
    for name, path in _modules():
        if name.startswith("lmforge.cli"):
            continue  # the top floor: each verb imports its library when it runs
        for node, target, lazy in _imports(name, path):
            if lazy and _package(target) != _package(name):
                bad.append(f"{path.relative_to(REPO)}:{node.lineno} imports {target} inside a function")
    assert bad == []


def test_modules_are_small_enough_to_read() -> None:
    big = {str(p.relative_to(REPO)): n for _, p in _modules()
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_MODULE_LINES}
    assert big == {}


def test_long_functions_say_why() -> None:
    long = []
    for _, path in _modules():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            length = (node.end_lineno or node.lineno) - node.lineno + 1
            doc = ast.get_docstring(node) or ""
            if length > MAX_FUNCTION_LINES and not any(line.startswith("Long because") for line in doc.splitlines()):
                long.append(f"{path.relative_to(REPO)}:{node.lineno} {node.name} ({length} lines)")
    assert long == []


@pytest.mark.parametrize("source", [
    "from lmforge.serve._app import create_app\n",
    "def f():\n    from lmforge.compress._stage import compress\n",
])
def test_the_private_import_check_catches_a_violation(tmp_path: Path, source: str) -> None:
    path = tmp_path / "x.py"
    path.write_text(source, encoding="utf-8")
    found = [(t, lazy) for _, t, lazy in _imports("lmforge.monitor._x", path)]
    assert any(t.startswith(("lmforge.serve._app", "lmforge.compress._stage")) for t, _ in found)
    assert any(lazy for _, lazy in found) == source.startswith("def")
