"""The package's layers: the library core never loads ``syncguide.cli``, ``syncguide.app`` or ``syncguide.demo``,
and no module of ``src/syncguide`` takes part in an import cycle, counting every import statement (function-level
ones too)."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import syncguide

PACKAGE = Path(syncguide.__file__).parent
OUTER_LAYERS = ("syncguide.cli", "syncguide.demo", "syncguide.app")  # front ends: the core never loads them


def _module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {_module_name(path): path for path in sorted(PACKAGE.rglob("*.py"))}


def _is_outer(name: str) -> bool:
    return any(name == layer or name.startswith(layer + ".") for layer in OUTER_LAYERS)


def _imported(node: ast.Import | ast.ImportFrom, module: str, path: Path, known: set[str]) -> set[str]:
    """The syncguide modules one import statement names (``from pkg import sub`` names ``pkg.sub``)."""
    if isinstance(node, ast.Import):
        names = {alias.name for alias in node.names}
    else:
        base = node.module or ""
        if node.level:  # relative: resolve against this module's package
            package = module if path.name == "__init__.py" else module.rpartition(".")[0]
            for _ in range(node.level - 1):
                package = package.rpartition(".")[0]
            base = f"{package}.{base}".rstrip(".")
        names = {f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names}
    return {name for name in names if name in known}


def import_graph() -> dict[str, set[str]]:
    """Module -> the syncguide modules it imports anywhere in its source (module level, functions, TYPE_CHECKING)."""
    modules = _modules()
    known = set(modules)
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        edges: set[str] = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                edges |= _imported(node, module, path, known)
        graph[module] = edges - {module}
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle of ``graph`` as a list of modules (the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (cycle := visit(target)):
                return cycle
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (cycle := visit(start)):
            return cycle
    return None


def test_the_import_graph_is_read_with_function_level_imports() -> None:
    graph = import_graph()
    assert "syncguide.cli.panorama" in graph["syncguide.cli.main"]
    assert "syncguide.cli.batch" in graph["syncguide.cli.reproduce"]  # imported inside run()
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycles_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle or ())


def test_no_core_module_imports_the_cli_or_the_demo_world() -> None:
    offending = {
        module: sorted(target for target in targets if _is_outer(target))
        for module, targets in import_graph().items()
        if not _is_outer(module)
    }
    assert {module: targets for module, targets in offending.items() if targets} == {}


def test_importing_the_core_loads_no_cli_or_demo_module() -> None:
    """Every core module imported in a fresh interpreter (found by pkgutil without importing the outer layers,
    which ``pkgutil.walk_packages`` would do to walk them)."""
    script = f"""
import importlib, os, pkgutil, sys
import syncguide
OUTER = {OUTER_LAYERS!r}
outer = lambda name: any(name == layer or name.startswith(layer + ".") for layer in OUTER)
def walk(directory, prefix):
    for module in pkgutil.iter_modules([directory], prefix):
        if not outer(module.name):
            yield module.name
            if module.ispkg:
                yield from walk(os.path.join(directory, module.name.rpartition(".")[2]), module.name + ".")
names = list(walk(syncguide.__path__[0], "syncguide."))
for name in names:
    importlib.import_module(name)
print(len(names))
print(" ".join(sorted(name for name in sys.modules if outer(name))))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    count, loaded = [*result.stdout.splitlines(), "", ""][:2]
    assert int(count) >= 30  # the walk found the core
    assert loaded == ""
