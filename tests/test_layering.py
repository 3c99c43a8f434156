"""The two layers stay apart (nothing under polyp/ imports optuna), polyp/ has no import cycle, and no module
imports from a `__main__` module."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "polyp"
SOURCES = sorted(PACKAGE.rglob("*.py"))
BOTH_LAYERS = SOURCES + sorted((ROOT / "search").rglob("*.py"))


def module_name(path: Path) -> str:
    """The dotted name of a source file under ROOT (a package's __init__.py is the package)."""
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def full_imports(path: Path) -> set[str]:
    """Dotted names `path` imports anywhere (inside functions too), including importlib.import_module("...") calls.

    `from a.b import c` yields both "a.b" and "a.b.c", since c may be a module; relative imports are resolved.
    """
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module_name(path).split(".")[: -1 if path.name != "__init__.py" else None]
                base = ".".join([*package[: len(package) - node.level + 1], *([base] if base else [])])
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        elif (isinstance(node, ast.Call) and getattr(node.func, "attr", getattr(node.func, "id", None))
              in ("import_module", "__import__") and node.args and isinstance(node.args[0], ast.Constant)):
            names.add(str(node.args[0].value))
    return names


def imported_modules(path: Path) -> set[str]:
    """Top-level names of every module `path` imports."""
    return {name.split(".")[0] for name in full_imports(path)}


def polyp_import_graph() -> dict[str, set[str]]:
    """Module -> the polyp modules importing it runs: the module itself and its packages' __init__ (except the
    importer's own packages, which are already running when it is imported)."""
    modules = {module_name(path): path for path in SOURCES}
    graph = {}
    for name, path in modules.items():
        own = {".".join(name.split(".")[:i]) for i in range(1, name.count(".") + 2)}
        targets = set()
        for imported in full_imports(path):
            parts = imported.split(".")
            targets.update(".".join(parts[:i]) for i in range(1, len(parts) + 1))
        graph[name] = {target for target in targets if target in modules and target not in own}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of `graph` as [a, b, ..., a], or None."""
    state: dict[str, str] = {}  # "open" while on the current path, "done" once fully explored
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == "open":
                return path[path.index(target):] + [target]
            if target not in state and (cycle := visit(target)):
                return cycle
        state[node] = "done"
        path.pop()
        return None

    for node in sorted(graph):
        if node not in state and (cycle := visit(node)):
            return cycle
    return None


def test_the_package_has_sources():
    assert PACKAGE / "train" / "loop.py" in SOURCES


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: str(path.relative_to(PACKAGE)))
def test_no_polyp_module_imports_optuna(path):
    modules = imported_modules(path)

    assert "optuna" not in modules, f"{path} imports optuna; polyp/ must stay free of the search layer"
    assert "search" not in modules, f"{path} imports search/; the dependency goes the other way"


def test_polyp_has_no_import_cycle():
    graph = polyp_import_graph()
    assert "polyp.images" in graph["polyp.predict"] and "polyp.images" in graph["polyp.gradcam"]

    assert find_cycle(graph) is None, f"import cycle: {' -> '.join(find_cycle(graph))}"


def test_the_cycle_finder_finds_a_cycle_through_a_function_level_import(tmp_path):
    graph = {"polyp.a": {"polyp.b"}, "polyp.b": {"polyp.c"}, "polyp.c": {"polyp.a"}, "polyp.d": set()}
    source = tmp_path / "late.py"
    source.write_text("def helper():\n    from polyp.predict import Predictor\n")

    assert find_cycle(graph) == ["polyp.a", "polyp.b", "polyp.c", "polyp.a"]
    assert "polyp.predict" in full_imports(source)


@pytest.mark.parametrize("path", BOTH_LAYERS, ids=lambda path: str(path.relative_to(ROOT)))
def test_no_module_imports_from_a_main_module(path):
    mains = sorted(name for name in full_imports(path) if "__main__" in name.split("."))

    assert not mains, f"{path} imports {mains}; move what it needs out of the __main__ module"


def test_importing_the_trainer_does_not_load_optuna():
    code = ("import sys, polyp.train, polyp.train.__main__, polyp.predict, polyp.checkpoint; "
            "print(sorted(name for name in sys.modules if name.split('.')[0] in ('optuna', 'search')))")

    done = subprocess.run([sys.executable, "-c", code], cwd=PACKAGE.parent, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(PACKAGE.parent), "PATH": "/usr/bin:/bin"})

    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
