"""Static analysis of Python source shipped with models (TorchScript code, remote-code modules).

The source is parsed with `ast` under a size bound and never executed. Calls are
resolved through the module's imports, its simple assignments and computed names
(`import subprocess as sp; sp.run()` is `subprocess.run`; so are
`getattr(os, 'sys' + 'tem')`, `getattr(__import__('os'), 'system')`,
`sys.modules['os'].system` and `importlib.import_module('o' + 's').system`) and
matched against the patterns in `data/python_code.toml`. String expressions made of
literals are folded (concatenation, `join`, `%`, `format`, f-strings, slices, `chr`,
`bytes.fromhex`, base64...), so a computed name is graded as its direct spelling, and
a folded string handed to `exec`/`eval`/`compile` is analysed as code in turn.
"""

from __future__ import annotations

import ast
import base64
import binascii
import builtins
import codecs
import re
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from fnmatch import fnmatchcase
from functools import cache

from modelward._datafile import load_table
from modelward.findings import Location, Severity
from modelward.formats.interface import ScanContext

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

#: Folded strings longer than this are given up (a payload name is short; bounds memory).
_MAX_FOLDED = 100_000
#: Items of a folded list or comprehension.
_MAX_ITEMS = 10_000
#: Nesting of folding/resolution (names bound to names...), and of exec'd strings.
_MAX_DEPTH = 32
_MAX_EXEC_DEPTH = 3
#: Candidate objects one expression may name (a name assigned in several places).
_MAX_CANDIDATES = 16
#: A format width or precision this long would build a huge string.
_HUGE_FORMAT = re.compile(r"\d{4,}")
_IMPORT_FUNCTIONS = frozenset({"__import__", "importlib.__import__", "importlib.import_module"})
_BUILTIN_PREFIXES = ("builtins.", "__builtins__.", "__builtin__.")
_BUILTIN_NAMES = frozenset(dir(builtins))
#: Codecs a folded `.encode()`/`.decode()`/`codecs.decode()` may use (no compression bombs).
_SAFE_CODECS = frozenset(
    {"utf-8", "utf8", "utf_8", "ascii", "latin-1", "latin1", "iso-8859-1", "utf-16", "rot13"}
    | {
        "rot_13",
        "hex",
        "hex_codec",
        "base64",
        "base64_codec",
        "unicode_escape",
        "raw_unicode_escape",
    }
)
_STR_METHODS = frozenset(
    {"join", "format", "replace", "lower", "upper", "strip", "lstrip", "rstrip", "title"}
    | {"capitalize", "swapcase", "casefold", "removeprefix", "removesuffix", "decode", "encode"}
    | {"split", "rsplit", "zfill"}
)
_DECODERS: dict[str, Callable[[bytes], bytes]] = {
    "base64.b64decode": base64.b64decode,
    "base64.standard_b64decode": base64.standard_b64decode,
    "base64.urlsafe_b64decode": base64.urlsafe_b64decode,
    "base64.b32decode": base64.b32decode,
    "base64.b16decode": base64.b16decode,
    "base64.a85decode": base64.a85decode,
    "base64.b85decode": base64.b85decode,
    "base64.decodebytes": base64.decodebytes,
    "binascii.unhexlify": binascii.unhexlify,
    "binascii.a2b_hex": binascii.a2b_hex,
    "binascii.a2b_base64": binascii.a2b_base64,
    "bytes.fromhex": lambda data: bytes.fromhex(data.decode("ascii")),
    "bytearray.fromhex": lambda data: bytes.fromhex(data.decode("ascii")),
    "zlib.decompress": lambda data: zlib.decompressobj().decompress(data, _MAX_FOLDED),
}
#: Calls whose result names a file that writes go to: argument index of the target.
_WRITE_TARGETS = {
    "shutil.copy": 1, "shutil.copy2": 1, "shutil.copyfile": 1, "shutil.copytree": 1,
    "shutil.move": 1, "os.rename": 1, "os.replace": 1, "os.symlink": 1, "os.link": 1,
    "torch.save": 1, "numpy.save": 0, "os.open": 0,
}  # fmt: skip
_WRITE_METHODS = frozenset({"write_text", "write_bytes", "symlink_to", "hardlink_to", "touch"})
_OPEN_FUNCTIONS = frozenset({"open", "io.open", "codecs.open", "os.fdopen"})
#: Calls whose result is a path where a written file runs at the next interpreter start.
_STARTUP_LOCATORS = (
    "site.*", "sysconfig.get_path*", "distutils.sysconfig.get_python_lib", "sys.prefix",
    "sys.base_prefix", "sys.exec_prefix",
)  # fmt: skip
_STARTUP_MARKERS = ("site-packages", "dist-packages", "sitecustomize", "usercustomize")
#: Folded path text that points outside the folders a model is given.
_OUTSIDE_MARKERS = (".ssh", ".bashrc", ".bash_profile", ".profile", ".zshrc", "authorized_keys")
_OUTSIDE_MARKERS_2 = ("crontab", "/etc/", ".config/autostart", "LaunchAgents")
_HOME_LOCATORS = frozenset({"os.path.expanduser", "pathlib.Path.home", "os.getenv", "os.getcwd"})


@dataclass(frozen=True)
class CodeUse:
    """One place where the code reaches something dangerous.

    `severity`, when set, overrides the category's grade in ordinary Python source (a
    worker pool is `process` but medium; a write into site-packages is `code`).
    """

    category: str
    name: str
    line: int
    severity: Severity | None = None

    @property
    def grade(self) -> Severity:
        """The severity of this use in ordinary Python source."""
        return self.severity if self.severity is not None else CATEGORY_RULES[self.category][1]


def _tables() -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    table = load_table("python_code.toml")
    return table["calls"], table.get("functions", {})


@cache
def call_patterns() -> dict[str, tuple[str, ...]]:
    """Category -> fnmatch patterns of dotted call names, from `data/python_code.toml`."""
    calls, functions = _tables()
    return {
        category: tuple(calls.get(category, [])) + tuple(functions.get(category, []))
        for category in dict.fromkeys([*calls, *functions])
    }


@cache
def _module_patterns() -> dict[str, tuple[str, ...]]:
    """The `[calls]` table only: patterns whose first component is a dangerous module."""
    return {category: tuple(patterns) for category, patterns in _tables()[0].items()}


@cache
def _quiet() -> tuple[str, ...]:
    return tuple(load_table("python_code.toml").get("quiet", {}).get("calls", []))


@cache
def _grade_overrides() -> tuple[tuple[str, Severity], ...]:
    grades = load_table("python_code.toml").get("grades", {})
    return tuple(
        (pattern, Severity[level.upper()])
        for level, patterns in grades.items()
        for pattern in patterns
    )


@cache
def _pickle_deny() -> dict[str, list[str]]:
    """The pickle deny-list (`data/pickle_globals.toml` [deny]): one shared notion of danger."""
    deny = load_table("pickle_globals.toml").get("deny", {})
    return {key: list(deny.get(key, [])) for key in ("modules", "globals")}


@cache
def dangerous_modules() -> frozenset[str]:
    """Modules whose mere use means code, process, network or deserialisation access.

    The first component of every non-filesystem `[calls]` pattern, plus the pickle
    deny-list's modules, so pickle and code scanners agree on what is dangerous.
    """
    roots = {
        pattern.split(".")[0]
        for category, patterns in _module_patterns().items()
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
        for category, patterns in _module_patterns().items()
        if category != "filesystem"
        for pattern in patterns
        if pattern.endswith(".*")
    )


@cache
def _reflection_targets() -> frozenset[str]:
    """Modules where a computed attribute name can reach a dangerous function.

    Those with a wildcard pattern (`os.exec*`, `subprocess.*`), not those with one
    dangerous function among many ordinary ones (`torch.load`, `numpy.load`).
    """
    return frozenset(
        pattern.split(".")[0]
        for category, patterns in _module_patterns().items()
        if category != "filesystem"
        for pattern in patterns
        if "*" in pattern and "." in pattern
    ) | {"builtins", "__builtins__", "__builtin__"}


@cache
def dangerous_leaves() -> frozenset[str]:
    """Function names (last components) of the dangerous patterns: `system`, `popen`..."""
    return frozenset(
        pattern.rsplit(".", 1)[-1]
        for category, patterns in _module_patterns().items()
        if category != "filesystem"
        for pattern in patterns
        if "*" not in pattern.rsplit(".", 1)[-1]
    )


@cache
def classify(dotted: str) -> str | None:
    """The category of a call to `dotted`, or None when it is not known to be dangerous."""
    if any(fnmatchcase(dotted, p) for p in _quiet()):
        return None
    for category, patterns in call_patterns().items():
        if any(fnmatchcase(dotted, p) for p in patterns):
            return category
    return None


@cache
def _override(dotted: str) -> Severity | None:
    for pattern, severity in _grade_overrides():
        if fnmatchcase(dotted, pattern):
            return severity
    return None


def canonical(dotted: str) -> str:
    """`builtins.exec` and `__builtins__.open` are `exec` and `open`."""
    for prefix in _BUILTIN_PREFIXES:
        rest = dotted[len(prefix) :]
        if dotted.startswith(prefix) and rest in _BUILTIN_NAMES:
            return rest
    return dotted


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


class _Unknown:
    """A value that could not be folded."""


_UNKNOWN = _Unknown()


def _chain(node: ast.expr) -> str | None:
    """`self.runner` for an attribute chain on a plain name, else None."""
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not parts:
        return None
    return ".".join([node.id, *reversed(parts)])


class ModuleNames:
    """What the names of one module can stand for, flow-insensitively.

    Imports give module paths; simple assignments (`f = os.system`, `n = 'sys' + 'tem'`,
    `self.run = getattr(os, n)`) are followed; names bound any other way (parameters, loop
    variables, `with ... as`) stand for unknown values, so a local variable called `code`
    is not the `code` module. A name bound nowhere is a global or builtin (`exec`, or
    `torch` in TorchScript code, which has no imports).
    """

    def __init__(self, tree: ast.Module) -> None:
        self.aliases = import_aliases(tree)
        #: (scope, name) -> values assigned; None for a binding of unknown value.
        self.scoped: dict[tuple[int, str], list[ast.expr | None]] = {}
        #: `self.runner`-style attribute chains -> values assigned (any scope).
        self.chains: dict[str, list[ast.expr | None]] = {}
        self.functions: set[str] = set()
        self._parent: dict[int, int] = {}
        self._scope_of: dict[int, int] = {}
        self._globals: dict[int, set[str]] = {}
        self._nonlocals: dict[int, set[str]] = {}
        self._scope: dict[str, object] = {}
        self._module = id(tree)
        self._folded: dict[int, object] = {}
        self._resolved: dict[int, frozenset[str]] = {}
        self._synthesised: list[ast.expr] = []
        self._walk(tree)
        self._move_globals()

    def _walk(self, tree: ast.Module) -> None:
        """Record, per function scope, the names bound there and the scope of each name use."""
        module = id(tree)
        stack: list[tuple[ast.AST, int]] = [(tree, module)]
        while stack:
            node, scope = stack.pop()
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef):
                inner = id(node)
                self._parent[inner] = scope
                if not isinstance(node, ast.Lambda):
                    self.functions.add(node.name)
                    self._bind_name(node.name, None, scope)
                outer: list[ast.AST] = []
                body: list[ast.AST] = []
                if isinstance(node, ast.ClassDef):
                    outer = [*node.decorator_list, *node.bases, *node.keywords]
                    body = list(node.body)
                else:
                    arguments = node.args
                    outer = [*arguments.defaults, *(d for d in arguments.kw_defaults if d)]
                    if not isinstance(node, ast.Lambda):
                        outer += node.decorator_list
                    every = [*arguments.posonlyargs, *arguments.args, *arguments.kwonlyargs]
                    every += [a for a in (arguments.vararg, arguments.kwarg) if a is not None]
                    for argument in every:
                        self._bind_name(argument.arg, None, inner)
                    body = list(node.body) if isinstance(node.body, list) else [node.body]
                stack.extend((child, scope) for child in outer)
                stack.extend((child, inner) for child in body)
                continue
            if isinstance(node, ast.Name):
                self._scope_of[id(node)] = scope
            elif isinstance(node, ast.Global):
                self._globals.setdefault(scope, set()).update(node.names)
            elif isinstance(node, ast.Nonlocal):
                self._nonlocals.setdefault(scope, set()).update(node.names)
            else:
                self._collect(node, scope)
            stack.extend((child, scope) for child in ast.iter_child_nodes(node))

    def _collect(self, node: ast.AST, scope: int) -> None:
        if isinstance(node, ast.Assign):
            for target in node.targets:
                self._bind(target, node.value, scope)
        elif isinstance(node, ast.AnnAssign | ast.NamedExpr) and node.value is not None:
            self._bind(node.target, node.value, scope)
        elif isinstance(node, ast.AugAssign | ast.For | ast.AsyncFor | ast.comprehension):
            self._bind(node.target, None, scope)
        elif isinstance(node, ast.withitem) and node.optional_vars is not None:
            self._bind(node.optional_vars, None, scope)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            self._bind_name(node.name, None, scope)

    def _bind_name(self, name: str, value: ast.expr | None, scope: int) -> None:
        self.scoped.setdefault((scope, name), []).append(value)

    def _move_globals(self) -> None:
        """A name declared `global`/`nonlocal` is bound in the enclosing scope, not locally."""
        moves = [(s, n, self._module) for s, names in self._globals.items() for n in names]
        moves += [
            (s, n, self._parent.get(s, self._module))
            for s, names in self._nonlocals.items()
            for n in names
        ]
        for scope, name, outer in moves:
            values = self.scoped.pop((scope, name), None)
            if values is not None and outer != scope:
                self.scoped.setdefault((outer, name), []).extend(values)

    def _bind(self, target: ast.expr, value: ast.expr | None, scope: int) -> None:
        if isinstance(target, ast.Name):
            self._bind_name(target.id, value, scope)
        elif isinstance(target, ast.Attribute):
            key = _chain(target)
            if key is not None:
                self.chains.setdefault(key, []).append(value)
        elif isinstance(target, ast.Tuple | ast.List):
            pairs = (
                isinstance(value, ast.Tuple | ast.List)
                and len(value.elts) == len(target.elts)
                and not any(isinstance(e, ast.Starred) for e in target.elts)
            )
            for i, element in enumerate(target.elts):
                inner = value.elts[i] if pairs and isinstance(value, ast.Tuple | ast.List) else None
                self._bind(
                    element.value if isinstance(element, ast.Starred) else element, inner, scope
                )

    def values_of(self, node: ast.Name) -> list[ast.expr | None] | None:
        """What a name use can be bound to in its scope or an enclosing one; None if unbound."""
        scope: int | None = self._scope_of.get(id(node))
        if scope is None:  # a synthesised name (`globals()['os']`): the module's
            scope = self._module
        while scope is not None:
            values = self.scoped.get((scope, node.id))
            if values is not None:
                return values
            if node.id in self._globals.get(scope, ()):
                scope = self._module
                continue
            scope = self._parent.get(scope)
        return None

    # -- folding ---------------------------------------------------------------------------

    def fold(self, node: ast.expr | None, depth: int = 0) -> object:
        """The value of an expression made of literals, or `_UNKNOWN`."""
        if node is None or depth > _MAX_DEPTH:
            return _UNKNOWN
        memo = not self._scope  # inside a comprehension, names take the item's value
        key = id(node)
        if memo and key in self._folded:
            return self._folded[key]
        if memo:
            self._folded[key] = _UNKNOWN  # a name bound to itself (`x = x + 'a'`) stays unknown
        try:
            value = self._checked(self._fold(node, depth + 1))
        except (ValueError, TypeError, KeyError, IndexError, OverflowError, LookupError):
            value = _UNKNOWN
        except (binascii.Error, zlib.error, UnicodeError, MemoryError, RecursionError):
            value = _UNKNOWN
        if memo:
            self._folded[key] = value
        return value

    @staticmethod
    def _checked(value: object) -> object:
        if isinstance(value, str | bytes) and len(value) > _MAX_FOLDED:
            return _UNKNOWN
        if isinstance(value, list | tuple) and len(value) > _MAX_ITEMS:
            return _UNKNOWN
        if isinstance(value, int) and value.bit_length() > 1024:
            return _UNKNOWN
        return value

    def fold_str(self, node: ast.expr | None) -> str | None:
        value = self.fold(node)
        if isinstance(value, bytes):
            try:
                return value.decode("utf-8")
            except UnicodeDecodeError:
                return None
        return value if isinstance(value, str) else None

    def _fold(self, node: ast.expr, depth: int) -> object:
        if isinstance(node, ast.Constant):
            value = node.value
            return value if isinstance(value, str | bytes | int | float | None) else _UNKNOWN
        if isinstance(node, ast.Name):
            if node.id in self._scope:
                return self._scope[node.id]
            values = self.values_of(node)
            if not values or len(values) != 1:
                return _UNKNOWN
            return self.fold(values[0], depth)
        if isinstance(node, ast.Attribute):
            key = _chain(node)
            values = self.chains.get(key) if key else None
            if values and len(values) == 1:
                return self.fold(values[0], depth)
            return _UNKNOWN
        if isinstance(node, ast.JoinedStr):
            return self._fold_fstring(node, depth)
        if isinstance(node, ast.BinOp):
            return _binop(node.op, self.fold(node.left, depth), self.fold(node.right, depth))
        if isinstance(node, ast.UnaryOp):
            operand = self.fold(node.operand, depth)
            if isinstance(operand, int) and isinstance(node.op, ast.USub):
                return -operand
            if isinstance(operand, int) and isinstance(node.op, ast.Invert):
                return ~operand
            return _UNKNOWN
        if isinstance(node, ast.List | ast.Tuple):
            if len(node.elts) > _MAX_ITEMS:
                return _UNKNOWN
            items = [self.fold(e, depth) for e in node.elts]
            if any(i is _UNKNOWN for i in items):
                return _UNKNOWN
            return items if isinstance(node, ast.List) else tuple(items)
        if isinstance(node, ast.Subscript):
            return self._fold_subscript(node, depth)
        if isinstance(node, ast.ListComp | ast.GeneratorExp):
            return self._fold_comprehension(node, depth)
        if isinstance(node, ast.IfExp):
            test = self.fold(node.test, depth)
            if test is _UNKNOWN:
                return _UNKNOWN
            return self.fold(node.body if test else node.orelse, depth)
        if isinstance(node, ast.Call):
            return self._fold_call(node, depth)
        return _UNKNOWN

    def _fold_fstring(self, node: ast.JoinedStr, depth: int) -> object:
        parts: list[str] = []
        for value in node.values:
            if isinstance(value, ast.Constant) and isinstance(value.value, str):
                parts.append(value.value)
                continue
            if not isinstance(value, ast.FormattedValue):
                return _UNKNOWN
            item = self.fold(value.value, depth)
            if item is _UNKNOWN:
                return _UNKNOWN
            if value.conversion == ord("r"):
                item = repr(item)
            elif value.conversion == ord("s"):
                item = str(item)
            elif value.conversion == ord("a"):
                item = ascii(item)
            spec = "" if value.format_spec is None else self.fold(value.format_spec, depth)
            if not isinstance(spec, str) or _HUGE_FORMAT.search(spec):
                return _UNKNOWN
            parts.append(format(item, spec))
        return "".join(parts)

    def _fold_subscript(self, node: ast.Subscript, depth: int) -> object:
        value = self.fold(node.value, depth)
        if not isinstance(value, str | bytes | list | tuple):
            return _UNKNOWN
        if isinstance(node.slice, ast.Slice):
            bounds = [
                None if part is None else self.fold(part, depth)
                for part in (node.slice.lower, node.slice.upper, node.slice.step)
            ]
            lower, upper, step = bounds
            if not all(b is None or isinstance(b, int) for b in bounds):
                return _UNKNOWN
            return value[slice(lower, upper, step)]  # type: ignore[arg-type]
        index = self.fold(node.slice, depth)
        return value[index] if isinstance(index, int) else _UNKNOWN

    def _fold_comprehension(self, node: ast.ListComp | ast.GeneratorExp, depth: int) -> object:
        if len(node.generators) != 1:
            return _UNKNOWN
        [generator] = node.generators
        items = self.fold(generator.iter, depth)
        if not isinstance(generator.target, ast.Name) or not isinstance(items, str | list | tuple):
            return _UNKNOWN
        name = generator.target.id
        saved = self._scope.get(name, _UNKNOWN)
        results: list[object] = []
        try:
            for item in items:
                self._scope[name] = item
                if any(not self.fold(cond, depth) for cond in generator.ifs):
                    continue
                result = self.fold(node.elt, depth)
                if result is _UNKNOWN:
                    return _UNKNOWN
                results.append(result)
        finally:
            if saved is _UNKNOWN:
                self._scope.pop(name, None)
            else:
                self._scope[name] = saved
        return results

    def _fold_call(self, node: ast.Call, depth: int) -> object:
        func = node.func
        if len(node.args) == 2 and {canonical(n) for n in self.resolve(func, depth)} == {"map"}:
            # map(chr, [111, 115])
            [function] = {canonical(n) for n in self.resolve(node.args[0], depth)} or {""}
            items = self.fold(node.args[1], depth)
            if function in ("chr", "ord", "str") and isinstance(items, list | tuple | str):
                mapped = [_fold_builtin(function, [item]) for item in items]
                return _UNKNOWN if _UNKNOWN in mapped else mapped
        args = [self.fold(a, depth) for a in node.args]
        is_format = isinstance(func, ast.Attribute) and func.attr == "format"
        if (any(isinstance(a, ast.Starred) for a in node.args) or node.keywords) and not is_format:
            return _UNKNOWN
        if isinstance(func, ast.Attribute):
            receiver = self.fold(func.value, depth)
            if isinstance(receiver, str | bytes) and func.attr in _STR_METHODS:
                return self._fold_method(receiver, func.attr, node, args, depth)
        names = self.resolve(func, depth)
        if len(names) != 1 or any(a is _UNKNOWN for a in args):
            return _UNKNOWN
        [name] = names
        name = canonical(name)
        if name in _DECODERS and args and isinstance(args[0], str | bytes):
            data = args[0].encode("ascii") if isinstance(args[0], str) else args[0]
            return _DECODERS[name](data)
        if name == "codecs.decode" and args and len(args) <= 2:
            encoding = args[1] if len(args) == 2 else "utf-8"
            text = args[0]
            if isinstance(encoding, str) and encoding.lower() in _SAFE_CODECS:
                if isinstance(text, str) and encoding.lower() in ("rot13", "rot_13"):
                    return codecs.decode(text, "rot13")
                if isinstance(text, bytes):
                    return codecs.decode(text, encoding)
            return _UNKNOWN
        return _fold_builtin(name, args)

    def _fold_method(
        self, receiver: str | bytes, method: str, node: ast.Call, args: list[object], depth: int
    ) -> object:
        if any(a is _UNKNOWN for a in args):
            return _UNKNOWN
        if method == "format":
            if not isinstance(receiver, str) or _HUGE_FORMAT.search(receiver):
                return _UNKNOWN
            kwargs = {k.arg: self.fold(k.value, depth) for k in node.keywords if k.arg}
            if len(kwargs) != len(node.keywords) or _UNKNOWN in kwargs.values():
                return _UNKNOWN
            return receiver.format(*args, **kwargs)
        if method in ("encode", "decode"):
            encoding = args[0] if args else "utf-8"
            if not isinstance(encoding, str) or encoding.lower() not in _SAFE_CODECS:
                return _UNKNOWN
            if isinstance(receiver, bytes) and method == "decode":
                return receiver.decode(encoding, "replace")
            if isinstance(receiver, str) and method == "encode":
                return receiver.encode(encoding)
            return _UNKNOWN
        if method == "join":
            [items] = args
            if not isinstance(items, list | tuple | str):
                return _UNKNOWN
            return receiver.join(items)  # type: ignore[arg-type]
        if method == "zfill" and args and isinstance(args[0], int) and args[0] > _MAX_FOLDED:
            return _UNKNOWN
        result: object = getattr(receiver, method)(*args)
        return result

    def _bound(self, values: list[ast.expr | None] | None, depth: int) -> frozenset[str] | None:
        """Objects bound values stand for; None when there are no bindings."""
        if values is None:
            return None
        found: set[str] = set()
        for value in values:
            if value is not None:
                found |= self.resolve(value, depth)
        return frozenset(found)

    # -- resolution ------------------------------------------------------------------------

    def resolve(self, node: ast.expr, depth: int = 0) -> frozenset[str]:
        """Dotted names of the objects `node` can evaluate to (modules, functions)."""
        if depth > _MAX_DEPTH:
            return frozenset()
        key = id(node)
        if key in self._resolved:
            return self._resolved[key]
        self._resolved[key] = frozenset()  # a name bound to an expression of itself
        try:
            found = frozenset(sorted(self._resolve(node, depth + 1))[:_MAX_CANDIDATES])
        except RecursionError:
            found = frozenset()
        self._resolved[key] = found
        return found

    def _resolve(self, node: ast.expr, depth: int) -> frozenset[str]:
        if isinstance(node, ast.Name):
            if node.id in self._scope:
                return frozenset()
            bound = self._bound(self.values_of(node), depth)
            if bound is not None:
                return bound
            return frozenset({self.aliases.get(node.id, node.id)})
        if isinstance(node, ast.Attribute):
            key = _chain(node)
            bound = self._bound(self.chains.get(key), depth) if key else None
            bases = self.resolve(node.value, depth)
            found = {f"{base}.{node.attr}" for base in bases}
            return frozenset(found | (bound or set()))
        if isinstance(node, ast.Call):
            return self._resolve_call(node, depth)
        if isinstance(node, ast.Subscript):
            return self._resolve_subscript(node, depth)
        if isinstance(node, ast.IfExp):
            return self.resolve(node.body, depth) | self.resolve(node.orelse, depth)
        if isinstance(node, ast.BoolOp):
            return frozenset().union(*(self.resolve(v, depth) for v in node.values))
        if isinstance(node, ast.NamedExpr):
            return self.resolve(node.value, depth)
        return frozenset()

    def _resolve_call(self, node: ast.Call, depth: int) -> frozenset[str]:
        if isinstance(node.func, ast.Call) and node.args:
            # operator.attrgetter('system')(os)
            getter = {canonical(n) for n in self.resolve(node.func.func, depth)}
            if "operator.attrgetter" in getter and node.func.args:
                attr = self.fold_str(node.func.args[0])
                if attr is not None:
                    return frozenset(f"{b}.{attr}" for b in self.resolve(node.args[0], depth))
        found: set[str] = set()
        for name in map(canonical, self.resolve(node.func, depth)):
            if name == "getattr" and len(node.args) >= 2:
                attr = self.fold_str(node.args[1])
                bases = self.resolve(node.args[0], depth)
                found |= {f"{b}.{attr}" for b in bases} if attr is not None else set()
            elif name in _IMPORT_FUNCTIONS and node.args:
                module = self.imported_module(node, name)
                found.add(module if module is not None else "<dynamic import>")
            elif name in ("sys.modules.get", "sys.modules.__getitem__", "sys.modules.pop"):
                key = self.fold_str(node.args[0]) if node.args else None
                if key is not None:
                    found.add(key)
        return frozenset(found)

    def _resolve_subscript(self, node: ast.Subscript, depth: int) -> frozenset[str]:
        key = self.fold_str(node.slice)
        if key is None:
            return frozenset()
        value = node.value
        if isinstance(value, ast.Call):
            called = {canonical(n) for n in self.resolve(value.func, depth)}
            if called & {"globals", "locals"} and not value.args:
                name = ast.Name(id=key, ctx=ast.Load())
                self._synthesised.append(name)  # kept alive: memos are keyed by id()
                return self.resolve(name, depth)
            if "vars" in called and len(value.args) == 1:
                return frozenset(f"{b}.{key}" for b in self.resolve(value.args[0], depth))
        found: set[str] = set()
        for base in self.resolve(value, depth):
            if base == "sys.modules":
                found.add(key)
            elif base.endswith(".__dict__"):
                found.add(f"{base[: -len('.__dict__')]}.{key}")
            elif base in ("__builtins__", "builtins", "__builtin__"):
                found.add(f"builtins.{key}")
        return frozenset(found)

    def imported_module(self, node: ast.Call, name: str) -> str | None:
        """The module `__import__(...)`/`import_module(...)` returns, when it can be folded."""
        module = self.fold_str(node.args[0])
        if module is None:
            return None
        if name == "importlib.import_module":
            if module.startswith("."):
                package = self.fold_str(node.args[1]) if len(node.args) > 1 else None
                keyword = next((k.value for k in node.keywords if k.arg == "package"), None)
                package = package or (self.fold_str(keyword) if keyword is not None else None)
                if package is None:
                    return None
                level = len(module) - len(module.lstrip("."))
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - level + 1])
                return f"{base}.{module.lstrip('.')}".rstrip(".")
            return module
        fromlist: object = None
        if len(node.args) >= 4:
            fromlist = self.fold(node.args[3])
        for option in node.keywords:
            if option.arg == "fromlist":
                fromlist = self.fold(option.value)
        return module if fromlist else module.split(".")[0]


def _binop(op: ast.operator, left: object, right: object) -> object:
    if left is _UNKNOWN or right is _UNKNOWN:
        return _UNKNOWN
    if (
        isinstance(op, ast.Add)
        and type(left) is type(right)
        and isinstance(left, str | bytes | int | list | tuple)
    ):
        return left + right  # type: ignore[operator]
    if isinstance(op, ast.Mult):
        if isinstance(left, int) and isinstance(right, str | bytes | list | tuple):
            left, right = right, left
        if isinstance(left, str | bytes | list | tuple) and isinstance(right, int):
            return left * right if len(left) * max(right, 0) <= _MAX_FOLDED else _UNKNOWN
    if isinstance(op, ast.Mod) and isinstance(left, str):
        if _HUGE_FORMAT.search(left) or not isinstance(right, str | int | float | tuple):
            return _UNKNOWN
        return left % right
    if isinstance(left, int) and isinstance(right, int):
        return _int_op(op, left, right)
    return _UNKNOWN


def _int_op(op: ast.operator, left: int, right: int) -> object:
    if isinstance(op, ast.Pow):
        return left**right if 0 <= right <= 64 and abs(left) < 2**64 else _UNKNOWN
    if isinstance(op, ast.LShift):
        return left << right if 0 <= right <= 64 else _UNKNOWN
    operations: dict[type[ast.operator], Callable[[int, int], int]] = {
        ast.Add: lambda a, b: a + b,
        ast.Sub: lambda a, b: a - b,
        ast.Mult: lambda a, b: a * b,
        ast.FloorDiv: lambda a, b: a // b,
        ast.Mod: lambda a, b: a % b,
        ast.RShift: lambda a, b: a >> b,
        ast.BitXor: lambda a, b: a ^ b,
        ast.BitOr: lambda a, b: a | b,
        ast.BitAnd: lambda a, b: a & b,
    }
    operation = operations.get(type(op))
    return _UNKNOWN if operation is None else operation(left, right)


def _fold_builtin(name: str, args: list[object]) -> object:
    """`chr`, `ord`, `str`, `bytes`, `reversed`, `list` of folded values."""
    if name == "chr" and len(args) == 1 and isinstance(args[0], int):
        return chr(args[0])
    if name == "ord" and len(args) == 1 and isinstance(args[0], str | bytes):
        return ord(args[0])
    if name == "str" and len(args) == 1 and isinstance(args[0], str | int):
        return str(args[0])
    if name in ("bytes", "bytearray") and len(args) == 1 and isinstance(args[0], list | tuple):
        return bytes(args[0]) if all(isinstance(b, int) for b in args[0]) else _UNKNOWN
    if name in ("bytes", "bytearray") and len(args) == 2 and isinstance(args[0], str):
        encoding = args[1]
        if isinstance(encoding, str) and encoding.lower() in _SAFE_CODECS:
            return args[0].encode(encoding)
    if name in ("list", "tuple", "reversed") and len(args) == 1:
        items = args[0]
        if isinstance(items, str | bytes | list | tuple):
            values = list(items)
            return values[::-1] if name == "reversed" else values
    return _UNKNOWN


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
    """(dotted name, line) of every call whose target can be resolved, computed names included.

    A call whose target can stand for several objects yields each of them.
    """
    names = ModuleNames(tree)
    for i, node in enumerate(ast.walk(tree)):
        if ctx is not None and i % 1024 == 0:
            ctx.check_deadline()
        if isinstance(node, ast.Call):
            for name in sorted(names.resolve(node.func)):
                yield canonical(name), node.lineno


def find_code_uses(tree: ast.Module, ctx: ScanContext | None = None) -> list[CodeUse]:
    """Every dangerous call, dunder escape, computed-name lookup and OS-module import."""
    return _Finder(tree, ctx).run()


class _Finder:
    """Walks one module once and collects its `CodeUse`s."""

    def __init__(self, tree: ast.Module, ctx: ScanContext | None, exec_depth: int = 0) -> None:
        self.tree = tree
        self.ctx = ctx
        self.names = ModuleNames(tree)
        self.exec_depth = exec_depth
        self.uses: list[CodeUse] = []

    def add(self, category: str, name: str, line: int, severity: Severity | None = None) -> None:
        self.uses.append(CodeUse(category, name, line, severity))

    def run(self) -> list[CodeUse]:
        whole = _whole_modules()
        for i, node in enumerate(ast.walk(self.tree)):
            if self.ctx is not None and i % 1024 == 0:
                self.ctx.check_deadline()
            if isinstance(node, ast.Call):
                self._call(node)
            elif isinstance(node, ast.Attribute) and node.attr in _ESCAPE_ATTRIBUTES:
                self.add("code", f"<expr>.{node.attr}", node.lineno)
            elif isinstance(node, ast.Name) and node.id == "__builtins__":
                self.add("code", node.id, node.lineno)
            elif isinstance(node, ast.Import | ast.ImportFrom):
                modules = (
                    [a.name for a in node.names]
                    if isinstance(node, ast.Import)
                    else [node.module or ""]
                )
                for module in modules:
                    if module in whole or module.split(".")[0] in whole:
                        self.add("import", module, node.lineno)
        return sorted(set(self.uses), key=lambda u: (u.line, u.category, u.name))

    def _call(self, node: ast.Call) -> None:
        names = {canonical(n) for n in self.names.resolve(node.func)}
        for name in sorted(names):
            self._called(name, node)
        if not names:
            self._unresolved_call(node)
        for keyword in node.keywords:
            if keyword.arg == "trust_remote_code" and self.names.fold(keyword.value) is True:
                target = next(iter(sorted(names)), "a loader")
                self.add(
                    "code",
                    f"{target}(trust_remote_code=...): runs a model repository's own code",
                    node.lineno,
                    Severity.MEDIUM,
                )
        for argument in (*node.args, *(k.value for k in node.keywords)):
            self._callback(argument, node.lineno)
        self._write(node, names)

    def _called(self, name: str, node: ast.Call) -> None:
        line = node.lineno
        if name in _IMPORT_FUNCTIONS:
            self._dynamic_import(name, node)
            return
        if name in _REFLECTIVE_BUILTINS:
            self._reflection(name, node)
            return
        if name.startswith("<dynamic import>."):
            leaf = name.rsplit(".", 1)[-1]
            for module in sorted(_reflection_targets()):
                category = classify(canonical(f"{module}.{leaf}"))
                if category in ("code", "process", "network", "deserialise"):
                    self.add(category, f"{name} (as {module}.{leaf}?)", line, Severity.HIGH)
                    return
            return
        category = classify(name)
        if category is None:
            return
        severity = _override(name)
        safe_load = (name == "torch.load" and self._keyword_is(node, "weights_only", True)) or (
            name == "numpy.load" and not self._keyword_is(node, "allow_pickle", True)
        )
        if safe_load:
            category, severity = "filesystem", None
        elif name.startswith("timeit.") and self._times_own_code(node):
            return
        elif name == "logging.config.dictConfig" and _has_factory_key(node):
            severity = Severity.CRITICAL
        self.add(category, name, line, severity)
        if name in ("exec", "eval", "compile", "execfile", "timeit.timeit", "timeit.Timer"):
            self._exec_string(name, node)

    def _keyword_is(self, node: ast.Call, keyword: str, value: object) -> bool:
        found = [k.value for k in node.keywords if k.arg == keyword]
        return bool(found) and self.names.fold(found[0]) == value

    def _times_own_code(self, node: ast.Call) -> bool:
        """`timeit.timeit(lambda: ...)`/`timeit(fn)`: timing a callable, not running a string."""
        stmt = (
            node.args[0]
            if node.args
            else next((k.value for k in node.keywords if k.arg == "stmt"), None)
        )
        setup = next((k.value for k in node.keywords if k.arg == "setup"), None)
        if len(node.args) > 1:
            setup = node.args[1]
        return (
            all(
                part is None
                or isinstance(part, ast.Lambda)
                or (isinstance(part, ast.Name) and part.id in self.names.functions)
                for part in (stmt, setup)
            )
            and stmt is not None
        )

    def _dynamic_import(self, name: str, node: ast.Call) -> None:
        module = self.names.imported_module(node, name) if node.args else None
        if module is not None:
            # Graded as the direct `import module` would be.
            if module in _whole_modules() or module.split(".")[0] in _whole_modules():
                self.add("import", f"{name}({module!r})", node.lineno)
            return
        first = node.args[0] if node.args else None
        if isinstance(first, ast.JoinedStr) and name == "importlib.import_module":
            head = first.values[0] if first.values else None
            package = node.args[1] if len(node.args) > 1 else None
            if (
                isinstance(head, ast.Constant)
                and str(head.value).startswith(".")
                and self.names.fold_str(package) is not None
            ):
                return  # a submodule of a named package (`f".{name}", "transformers.models"`)
        self.add(
            "reflection",
            f"{name}(<computed>): imports a module chosen at run time",
            node.lineno,
            Severity.MEDIUM,
        )

    def _reflection(self, name: str, node: ast.Call) -> None:
        if name in ("getattr", "setattr", "delattr"):
            if len(node.args) < 2 or self.names.fold_str(node.args[1]) is not None:
                return  # a constant name is the attribute itself (resolved as such)
            bases = {canonical(b) for b in self.names.resolve(node.args[0])}
            risky = sorted(b for b in bases if b.split(".")[0] in _reflection_targets())
            if risky:
                self.add(
                    "reflection",
                    f"{name}({risky[0]}, <computed>): any function of the module",
                    node.lineno,
                    Severity.HIGH,
                )
                return
        self.add("reflection", f"{name}(...)", node.lineno)

    def _unresolved_call(self, node: ast.Call) -> None:
        """`getattr(self, name)` and `globals()`-style lookups that resolve to nothing."""
        func = node.func
        if isinstance(func, ast.Name) and func.id in _REFLECTIVE_BUILTINS:
            self._reflection(func.id, node)

    def _callback(self, argument: ast.expr, line: int) -> None:
        """`Thread(target=os.system)`, `atexit.register(eval, s)`: a dangerous function passed."""
        if not isinstance(argument, ast.Name | ast.Attribute | ast.Subscript | ast.Call):
            return
        if isinstance(argument, ast.Call):
            return  # its own call is judged where it is
        for name in sorted(canonical(n) for n in self.names.resolve(argument)):
            leaf = name.rsplit(".", 1)[-1]
            category = classify(name)
            if category in ("code", "process") and not leaf.isupper() and name != "__builtins__":
                self.add(category, f"{name} (passed as a function)", line, _override(name))

    def _exec_string(self, name: str, node: ast.Call) -> None:
        """A folded string given to exec/eval/compile is analysed as the code it is."""
        if not node.args or self.exec_depth >= _MAX_EXEC_DEPTH:
            return
        source = self.names.fold_str(node.args[0])
        if source is None:
            return
        try:
            tree = parse_python(source)
        except (SyntaxError, ValueError):
            return
        inner = _Finder(tree, self.ctx, self.exec_depth + 1).run()
        for use in inner:
            self.add(use.category, f"{name}(<{use.name}>)", node.lineno, use.severity)

    def _write(self, node: ast.Call, names: set[str]) -> None:
        """Writes into site-packages, startup files or the home folder: graded by target."""
        target: ast.expr | None = None
        func = node.func
        if names & _OPEN_FUNCTIONS or (isinstance(func, ast.Attribute) and func.attr == "open"):
            mode = node.args[1] if len(node.args) > 1 else None
            mode = next((k.value for k in node.keywords if k.arg == "mode"), mode)
            if isinstance(func, ast.Attribute) and func.attr == "open" and not names:
                mode = node.args[0] if node.args else mode  # Path(...).open("w")
                target = func.value
            text = self.names.fold_str(mode) if mode is not None else "r"
            if text is None or set(text) & set("wax+"):
                target = target if target is not None else (node.args[0] if node.args else None)
            else:
                target = None
        elif isinstance(func, ast.Attribute) and func.attr in _WRITE_METHODS:
            target = func.value
        else:
            for name in names:
                index = _WRITE_TARGETS.get(name)
                if index is not None and len(node.args) > index:
                    target = node.args[index]
        if target is None:
            return
        where = self._sensitive(target, 0, set())
        if where is None:
            return
        kind, marker = where
        if kind == "startup":
            self.add(
                "code",
                f"writes where Python runs files at start-up ({marker}): a .pth or"
                " sitecustomize file there runs at every Python start",
                node.lineno,
            )
        else:
            self.add(
                "filesystem",
                f"writes outside the folders it is given ({marker})",
                node.lineno,
                Severity.HIGH,
            )

    def _sensitive(self, node: ast.expr, depth: int, seen: set[int]) -> tuple[str, str] | None:
        """('startup'|'outside', what) when a path expression points somewhere it should not."""
        if depth > 4 or id(node) in seen or len(seen) > 64:
            return None
        seen.add(id(node))
        found: tuple[str, str] | None = None
        leading = _leftmost(node)
        for i, sub in enumerate(ast.walk(node)):
            if i > 512:
                break
            if isinstance(sub, ast.Constant | ast.JoinedStr | ast.BinOp):
                text = self.names.fold_str(sub)
                if text:
                    found = found or _path_marker(text, leading=sub in (node, leading))
            elif isinstance(sub, ast.Call | ast.Attribute):
                for name in self.names.resolve(sub.func if isinstance(sub, ast.Call) else sub):
                    if any(fnmatchcase(name, p) for p in _STARTUP_LOCATORS):
                        return ("startup", name)
                    if name in _HOME_LOCATORS and name != "os.getcwd":
                        found = found or ("outside", name)
            elif isinstance(sub, ast.Name):
                if sub.id == "__file__":
                    found = found or ("outside", "beside its own module, __file__")
                for value in self.names.values_of(sub) or []:
                    if value is not None and value is not node:
                        inner = self._sensitive(value, depth + 1, seen)
                        if inner is not None and (found is None or inner[0] == "startup"):
                            found = inner
            if found is not None and found[0] == "startup":
                return found
        return found


def _leftmost(node: ast.expr) -> ast.expr:
    """The part of a path expression its start comes from: `'/etc' + x`, `join('/etc', x)`."""
    for _ in range(16):
        if isinstance(node, ast.BinOp):
            node = node.left
        elif isinstance(node, ast.JoinedStr) and node.values:
            node = node.values[0]
        elif isinstance(node, ast.Call) and node.args:
            node = node.args[0]
        else:
            break
    return node


def _path_marker(text: str, *, leading: bool) -> tuple[str, str] | None:
    """What a piece of a path points at; `leading` pieces are where the path starts."""
    lowered = text.lower()
    for marker in _STARTUP_MARKERS:
        if marker in lowered:
            return ("startup", marker)
    for marker in (*_OUTSIDE_MARKERS, *_OUTSIDE_MARKERS_2):
        if marker.lower() in lowered:
            return ("outside", marker)
    if not leading:
        return None
    if text.startswith("~"):
        return ("outside", "the home folder")
    if text.startswith("/") and not text.startswith(("/tmp", "/dev/null", "/dev/shm")):
        return ("outside", f"absolute path {text[:60]}")
    return None


def _has_factory_key(node: ast.Call) -> bool:
    """A `"()"` key in a literal logging config: dictConfig calls the factory it names."""
    for sub in ast.walk(node):
        if isinstance(sub, ast.Dict):
            for key in sub.keys:
                if isinstance(key, ast.Constant) and key.value == "()":
                    return True
    return not (node.args and isinstance(node.args[0], ast.Dict))


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
        rule_id, _, meaning = CATEGORY_RULES[use.category]
        ctx.report(
            rule_id,
            use.grade,
            location,
            f"{context} {meaning}: {use.name}",
            evidence=f"line {use.line}: {use.name}",
        )
