"""The package's import graph, read from the source: no circles, and lower layers stay below.

Every module of `src/modelward` is parsed (never imported) and its imports resolved to
modules of the package. Importing `a.b.c` runs `a` and `a.b` first, so an import reaches
the packages above the imported module too, except the importer's own packages, which
are already being imported when it runs.

- Circles: only imports that run at import time count (module and class bodies, not
  function bodies, not `if TYPE_CHECKING:`); `test_imports.py` checks the same by
  importing modules first in fresh interpreters.
- Layers: every import counts, deferred ones included: `formats`, `analysis`, `pickle`,
  `findings` and `config` never reach `cli`, `service`, `distributed`, `runner` or
  `store`, directly or through another module.
"""

from __future__ import annotations

import ast
from collections import deque
from collections.abc import Iterator
from functools import cache
from pathlib import Path

import modelward

PACKAGE = Path(modelward.__file__).resolve().parent
LOWER = ("formats", "analysis", "pickle", "findings", "config")
UPPER = ("cli", "service", "distributed", "runner", "store")

Graph = dict[str, set[str]]


@cache
def _modules() -> dict[str, Path]:
    found: dict[str, Path] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ["modelward", *path.relative_to(PACKAGE).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = path
    return found


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _run_at_import(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """The statements of a body that run when the module is imported."""
    for statement in body:
        if isinstance(statement, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        if isinstance(statement, ast.If) and _is_type_checking(statement.test):
            yield from _run_at_import(statement.orelse)
            continue
        yield statement
        for name in ("body", "orelse", "finalbody"):
            inner = getattr(statement, name, None)
            if isinstance(inner, list):
                yield from _run_at_import(inner)
        for handler in getattr(statement, "handlers", []):
            yield from _run_at_import(handler.body)
        for case in getattr(statement, "cases", []):
            yield from _run_at_import(case.body)


def _imported(module: str, statement: ast.stmt) -> Iterator[str]:
    """Dotted names a statement imports (a `from` import of a submodule names it)."""
    modules = _modules()
    if isinstance(statement, ast.Import):
        for alias in statement.names:
            yield alias.name
    elif isinstance(statement, ast.ImportFrom):
        if statement.level:
            here = module.split(".")
            if modules[module].name != "__init__.py":
                here.pop()
            base = here[: len(here) - (statement.level - 1)]
            source = ".".join([*base, *([statement.module] if statement.module else [])])
        else:
            source = statement.module or ""
        for alias in statement.names:
            submodule = f"{source}.{alias.name}"
            yield submodule if submodule in modules else source


def _graph(*, deferred: bool) -> Graph:
    modules = _modules()
    graph: Graph = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        statements = ast.walk(tree) if deferred else _run_at_import(tree.body)
        edges: set[str] = set()
        for statement in statements:
            if not isinstance(statement, (ast.Import, ast.ImportFrom)):
                continue
            for name in _imported(module, statement):
                parts = name.split(".")
                for end in range(1, len(parts) + 1):
                    target = ".".join(parts[:end])
                    if target in modules and not (module + ".").startswith(target + "."):
                        edges.add(target)
        graph[module] = edges
    return graph


def _cycle(graph: Graph) -> list[str] | None:
    """One circle of the graph (its modules, the first repeated at the end), or None."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        path.append(node)
        for target in sorted(graph[node]):
            if state.get(target) == 1:
                return [*path[path.index(target) :], target]
            if target not in state and (found := visit(target)) is not None:
                return found
        path.pop()
        state[node] = 2
        return None

    for start in sorted(graph):
        if start not in state and (found := visit(start)) is not None:
            return found
    return None


def _in(module: str, layers: tuple[str, ...]) -> bool:
    return any(module == f"modelward.{x}" or module.startswith(f"modelward.{x}.") for x in layers)


def _path_to_upper(graph: Graph, start: str) -> list[str] | None:
    """The shortest import chain from `start` to a module of an upper layer, or None."""
    before: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if _in(node, UPPER):
            chain = [node]
            while (previous := before[chain[-1]]) is not None:
                chain.append(previous)
            return chain[::-1]
        for target in sorted(graph[node]):
            if target not in before:
                before[target] = node
                queue.append(target)
    return None


def test_the_graph_is_read() -> None:
    graph = _graph(deferred=False)
    assert "modelward.formats.interface" in graph["modelward.formats.zip"]
    assert "modelward.analysis.pycode" in graph["modelward.formats.torchscript"]
    assert "modelward.formats" in graph["modelward.scanner"]


def test_no_import_circle_at_import_time() -> None:
    cycle = _cycle(_graph(deferred=False))
    assert cycle is None, "import circle: " + " -> ".join(cycle or [])


def test_the_cycle_finder_finds_one() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_lower_layers_never_import_upper_ones() -> None:
    graph = _graph(deferred=True)
    lower = [m for m in graph if _in(m, LOWER)]
    assert len(lower) > 40
    crossings = [" -> ".join(c) for m in lower if (c := _path_to_upper(graph, m)) is not None]
    assert crossings == []


def test_no_format_imports_the_registry() -> None:
    """Scanners and analysers import each other by module path, never the registry's names."""
    graph = _graph(deferred=True)
    importers = sorted(
        m
        for m, targets in graph.items()
        if _in(m, ("formats", "analysis")) and m != "modelward.formats"
        for statement in ast.walk(ast.parse(_modules()[m].read_text(encoding="utf-8")))
        if isinstance(statement, ast.ImportFrom)
        and statement.module == "modelward.formats"
        and any(f"modelward.formats.{a.name}" not in graph for a in statement.names)
    )
    assert importers == []
