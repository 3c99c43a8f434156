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


SEARCH = ROOT / "search"
LAYERS = ("search.study", "search.engine", "search.results", "search.planning")  # each may import only the layers before it
COMMANDS = sorted(module_name(path) for path in SEARCH.glob("*.py")
                  if path.name not in ("__init__.py", "cli.py", "testing.py"))
LAYER_SOURCES = sorted(path for layer in LAYERS for path in (ROOT / layer.replace(".", "/")).rglob("*.py"))


def search_imports(path: Path) -> set[str]:
    """The search modules or packages `path` imports (dotted, as written)."""
    return {name for name in full_imports(path) if name.split(".")[0] == "search"}


def test_every_command_is_a_module_with_a_main():
    assert {"search.run", "search.replay", "search.refit", "search.export", "search.analyze", "search.bench",
            "search.dashboard", "search.demo", "search.auto"} == set(COMMANDS)
    for name in COMMANDS:
        assert "def main(" in (ROOT / f"{name.replace('.', '/')}.py").read_text()


@pytest.mark.parametrize("command", COMMANDS)
def test_commands_import_the_layers_and_cli_never_each_other(command):
    path = ROOT / f"{command.replace('.', '/')}.py"
    others = sorted(name for name in search_imports(path)
                    if any(name == other or name.startswith(other + ".") for other in COMMANDS if other != command))

    assert not others, f"{command} imports the command(s) {others}; move what it needs into a layer"


@pytest.mark.parametrize("path", LAYER_SOURCES, ids=lambda path: str(path.relative_to(ROOT)))
def test_layers_never_import_commands_cli_or_a_later_layer(path):
    own = next(layer for layer in LAYERS if module_name(path).startswith(layer))
    allowed = LAYERS[: LAYERS.index(own) + 1]
    bad = sorted(name for name in search_imports(path)
                 if name != "search" and not any(name == layer or name.startswith(layer + ".") for layer in allowed))

    assert not bad, f"{path.relative_to(ROOT)} ({own}) imports {bad}; it may import only {', '.join(allowed)}"


def test_cli_imports_only_the_layers():
    bad = sorted(name for name in search_imports(SEARCH / "cli.py")
                 if not any(name.startswith(layer) for layer in LAYERS))

    assert not bad, f"search/cli.py imports {bad}"


def test_the_layer_rule_finds_a_layer_importing_a_command(tmp_path):
    source = tmp_path / "late.py"
    source.write_text("def helper():\n    from search.run import main\n    import search.results.summary\n")

    assert search_imports(source) == {"search.run", "search.run.main", "search.results.summary"}
