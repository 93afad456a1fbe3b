"""Static analysis of Python source shipped with models (TorchScript code, remote-code modules).

The source is parsed with `ast` under a size bound and never executed. Calls are
resolved through the module's imports (`import subprocess as sp; sp.run()` is
`subprocess.run`) and matched against the patterns in `data/python_code.toml`.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from modelward.findings import Location, Severity
from modelward.formats._datafile import load_table
from modelward.formats.base import ScanContext

#: Source bigger than this is not parsed (a finding instead): model code is small.
MAX_SOURCE_BYTES = 4 * 1024 * 1024

#: Dunder attributes used to escape sandboxes or reach code objects.
_ESCAPE_ATTRIBUTES = frozenset(
    {"__globals__", "__subclasses__", "__builtins__", "__code__", "__bases__", "__mro__"}
)
_REFLECTIVE_BUILTINS = frozenset({"getattr", "setattr", "delattr", "globals", "locals", "vars"})

#: Category of a use -> (rule id, severity in ordinary Python source, what it means).
CATEGORY_RULES: dict[str, tuple[str, Severity, str]] = {
    "code": ("MW-PYCODE-EXEC", Severity.CRITICAL, "runs or loads code dynamically"),
    "process": ("MW-PYCODE-PROCESS", Severity.CRITICAL, "starts processes or native code"),
    "network": ("MW-PYCODE-NETWORK", Severity.HIGH, "opens network connections"),
    "deserialise": ("MW-PYCODE-DESERIALISE", Severity.HIGH, "deserialises (unpickles) data"),
    "filesystem": ("MW-PYCODE-FILESYSTEM", Severity.LOW, "reads or changes files"),
    "reflection": ("MW-PYCODE-REFLECTION", Severity.LOW, "looks up attributes by computed name"),
    "import": ("MW-PYCODE-IMPORT", Severity.LOW, "imports a module that reaches the OS"),
}


@dataclass(frozen=True)
class CodeUse:
    """One place where the code reaches something dangerous."""

    category: str
    name: str
    line: int


@cache
def call_patterns() -> dict[str, tuple[str, ...]]:
    """Category -> fnmatch patterns of dotted call names, from `data/python_code.toml`."""
    calls = load_table("python_code.toml")["calls"]
    return {category: tuple(patterns) for category, patterns in calls.items()}


@cache
def _pickle_deny() -> dict[str, list[str]]:
    """The pickle deny-list (`data/pickle_globals.toml` [deny]): one shared notion of danger."""
    deny = load_table("pickle_globals.toml").get("deny", {})
    return {key: list(deny.get(key, [])) for key in ("modules", "globals")}


@cache
def dangerous_modules() -> frozenset[str]:
    """Modules whose mere use means code, process, network or deserialisation access.

    The first component of every non-filesystem call pattern, plus the pickle deny-list's
    modules, so pickle and code scanners agree on what is dangerous.
    """
    roots = {
        pattern.split(".")[0]
        for category, patterns in call_patterns().items()
        if category != "filesystem"
        for pattern in patterns
    }
    return frozenset(roots | set(_pickle_deny()["modules"]))


def is_dangerous_module(module: str) -> bool:
    """`module` is, or is inside, a dangerous module (`os.path`, `subprocess`, `torch.hub`)."""
    parts = module.split(".")
    known = dangerous_modules()
    return any(".".join(parts[: i + 1]) in known for i in range(len(parts)))


def is_denied_global(dotted: str) -> bool:
    """`module.name` is on the pickle deny-list's exact globals (`builtins.getattr`...)."""
    return dotted in _pickle_deny()["globals"]


@cache
def _whole_modules() -> frozenset[str]:
    """Modules matched as a whole (`subprocess.*`): importing one is itself worth a note."""
    return frozenset(
        pattern[:-2]
        for category, patterns in call_patterns().items()
        if category != "filesystem"
        for pattern in patterns
        if pattern.endswith(".*")
    )


@cache
def dangerous_leaves() -> frozenset[str]:
    """Function names (last components) of the dangerous patterns: `system`, `popen`..."""
    return frozenset(
        pattern.rsplit(".", 1)[-1]
        for category, patterns in call_patterns().items()
        if category != "filesystem"
        for pattern in patterns
        if "*" not in pattern.rsplit(".", 1)[-1]
    )


def classify(dotted: str) -> str | None:
    """The category of a call to `dotted`, or None when it is not known to be dangerous."""
    for category, patterns in call_patterns().items():
        if any(fnmatchcase(dotted, p) for p in patterns):
            return category
    return None


def parse_python(source: str) -> ast.Module:
    """Parse source without running it; raise `SyntaxError`/`ValueError` when it cannot be."""
    if len(source) > MAX_SOURCE_BYTES:
        raise ValueError(f"source larger than {MAX_SOURCE_BYTES} bytes not parsed")
    try:
        return ast.parse(source)
    except (RecursionError, MemoryError) as exc:
        raise ValueError(f"source nested too deeply to parse: {type(exc).__name__}") from exc


def import_aliases(tree: ast.Module) -> dict[str, str]:
    """Local name -> dotted module path for every import in the tree (any scope)."""
    aliases: dict[str, str] = {}
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    aliases[alias.asname] = alias.name
                else:
                    root = alias.name.split(".")[0]
                    aliases[root] = root
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            for alias in node.names:
                aliases[alias.asname or alias.name] = f"{node.module}.{alias.name}"
    return aliases


def dotted_name(node: ast.expr, aliases: dict[str, str]) -> str | None:
    """`a.b.c` for an attribute chain on a name (imports followed), else None.

    `getattr(x, "name")` with a constant name counts as the attribute `x.name`.
    """
    parts: list[str] = []
    while True:
        if isinstance(node, ast.Attribute):
            parts.append(node.attr)
            node = node.value
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id == "getattr"
            and len(node.args) >= 2
            and isinstance(node.args[1], ast.Constant)
            and isinstance(node.args[1].value, str)
        ):
            parts.append(node.args[1].value)
            node = node.args[0]
        else:
            break
    if not isinstance(node, ast.Name):
        return None
    return ".".join([aliases.get(node.id, node.id), *reversed(parts)])


def called_names(tree: ast.Module, ctx: ScanContext | None = None) -> Iterator[tuple[str, int]]:
    """(dotted name, line) of every call whose target is a plain name or attribute chain."""
    aliases = import_aliases(tree)
    for i, node in enumerate(ast.walk(tree)):
        if ctx is not None and i % 1024 == 0:
            ctx.check_deadline()
        if isinstance(node, ast.Call):
            name = dotted_name(node.func, aliases)
            if name is not None:
                yield name, node.lineno


def find_code_uses(tree: ast.Module, ctx: ScanContext | None = None) -> list[CodeUse]:
    """Every dangerous call, dunder escape, computed-name lookup and OS-module import."""
    uses: list[CodeUse] = []
    for name, line in called_names(tree, ctx):
        category = classify(name)
        if category is not None:
            uses.append(CodeUse(category, name, line))
    whole = _whole_modules()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr in _ESCAPE_ATTRIBUTES:
            uses.append(CodeUse("code", f"<expr>.{node.attr}", node.lineno))
        elif isinstance(node, ast.Name) and node.id == "__builtins__":
            uses.append(CodeUse("code", node.id, node.lineno))
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Name)
            and node.func.id in _REFLECTIVE_BUILTINS
            and not (
                len(node.args) >= 2
                and isinstance(node.args[1], ast.Constant)
                and isinstance(node.args[1].value, str)
            )
        ):
            uses.append(CodeUse("reflection", f"{node.func.id}(...)", node.lineno))
        elif isinstance(node, ast.Import | ast.ImportFrom):
            modules = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
            )
            for module in modules:
                if module in whole or module.split(".")[0] in whole:
                    uses.append(CodeUse("import", module, node.lineno))
    return sorted(set(uses), key=lambda u: (u.line, u.category, u.name))


def scan_python_source(source: str, location: Location, ctx: ScanContext, *, context: str) -> None:
    """Report what Python source reaches (processes, network, exec...), with line numbers.

    `context` says what the source is, for messages ("TorchScript code",
    "trust_remote_code module"). Unparseable source is a MEDIUM finding.
    """
    try:
        tree = parse_python(source)
    except (SyntaxError, ValueError) as exc:
        ctx.report(
            "MW-PYCODE-UNPARSEABLE",
            Severity.MEDIUM,
            location,
            f"{context}: Python source could not be parsed, so it was not analysed",
            evidence=f"{type(exc).__name__}: {exc}"[:300],
        )
        return
    for use in find_code_uses(tree, ctx):
        rule_id, severity, meaning = CATEGORY_RULES[use.category]
        ctx.report(
            rule_id,
            severity,
            location,
            f"{context} {meaning}: {use.name}",
            evidence=f"line {use.line}: {use.name}",
        )
