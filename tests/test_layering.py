"""The two layers stay apart: nothing under polyp/ imports optuna."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "polyp"
SOURCES = sorted(PACKAGE.rglob("*.py"))


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports, including importlib.import_module("...") calls."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return {name.split(".")[0] for name in names}


def test_the_package_has_sources():
    assert PACKAGE / "train" / "loop.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_polyp_module_imports_optuna(path):
    modules = imported_modules(path)

    assert "optuna" not in modules, f"{path} imports optuna; polyp/ must stay free of the search layer"
    assert "search" not in modules, f"{path} imports search/; the dependency goes the other way"


def test_importing_the_trainer_does_not_load_optuna():
    code = ("import sys, polyp.train, polyp.train.__main__, polyp.predict, polyp.checkpoint; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('optuna', 'search')))")

    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
