"""TorchScript archives (`torch.jit.save`): a zip of pickles plus the model's code as Python.

`<top>/code/__torch__/...py` holds the TorchScript source that is compiled when the
archive is loaded; `constants.pkl`, `data.pkl` and the `.debug_pkl` files are pickles.
The source is parsed with `ast` (never run) and each method is judged by the operators it
calls and by when it runs:

- `__setstate__` runs inside `torch.jit.load` (the unpickler calls it on every object of a
  class that defines it), and so does every method or function of the archive it calls;
  code outside any method is counted with them.
- every other method (`forward`, `__getstate__`, exported methods) runs later, when it is
  called, and its findings are one step lower.

Files (`torch.save`, `torch.from_file`, `open`...) are high at load; processes, the network,
code loading, unpickling and native code from outside PyTorch (custom op namespaces
`ops.<ns>` / `torch.ops.<ns>`, custom classes `torch.classes.<ns>`) are critical at load.
Objects of a custom class in a pickle run that class's native `__setstate__` at load.
The pickles go through the pickle scanner; their `__torch__.*` classes are accepted exactly
when the archive's own code defines them (TorchScript resolves those names against that
code, not Python imports), and `__torch__.torch.classes.<ns>.*` when `<ns>` is PyTorch's.
"""

from __future__ import annotations

import ast
import dataclasses
from bisect import bisect_right
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from functools import cache

from modelward._datafile import load_table, name_set
from modelward.analysis import pycode
from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.pickle import scan_pickle_stream
from modelward.formats.zip import (
    ZipArchive,
    ZipMember,
    read_zip,
    scan_members,
    zip_member_names,
)

_CODE_DIR = "code/"
_TORCH_NAMESPACE = "__torch__"
_PICKLE_SUFFIXES = (".pkl", ".debug_pkl")
#: Folders of raw tensor storages: bytes with no format, never read.
_STORAGE_DIRS = frozenset({"data", "traced_inputs"})
#: Pickle findings about a `__torch__` class that the archive's code defines are expected.
_TORCH_CLASS_RULES = frozenset(
    {"MW-PICKLE-DUNDER", "MW-PICKLE-UNKNOWN-GLOBAL", "MW-PICKLE-ALLOWED-BY-CONFIG"}
)
#: How custom classes are spelled: in code and pickles, and in hand-written code.
_CLASS_PREFIXES = (("__torch__", "torch", "classes"), ("torch", "classes"))
#: How op namespaces are spelled: by TorchScript's printer, and in hand-written code.
_OP_PREFIXES = (("ops",), ("torch", "ops"))
#: Attributes of `torch.ops`/`torch.classes` that are not namespaces.
_NOT_NAMESPACES = frozenset({"load_library", "loaded_libraries", "import_module"})
_CUSTOM_OP = "custom-op"
_CUSTOM_CLASS = "custom-class"
#: Severity of each category when the code runs inside `torch.jit.load`.
_AT_LOAD = {
    "code": Severity.CRITICAL,
    "process": Severity.CRITICAL,
    "network": Severity.CRITICAL,
    "deserialise": Severity.CRITICAL,
    _CUSTOM_OP: Severity.CRITICAL,
    _CUSTOM_CLASS: Severity.CRITICAL,
    "filesystem": Severity.HIGH,
    "reflection": Severity.HIGH,
    "import": Severity.HIGH,
}
_MEANING = {
    **{category: meaning for category, (_, _, meaning) in pycode.CATEGORY_RULES.items()},
    _CUSTOM_OP: "calls a custom op namespace: native code from a library loaded outside"
    " the archive, able to reach the OS",
    _CUSTOM_CLASS: "uses a custom class namespace: native code from a library loaded"
    " outside the archive, able to reach the OS",
}
_RULE = {
    **{
        category: rule_id.replace("MW-PYCODE-", "MW-TORCHSCRIPT-")
        for category, (rule_id, _, _) in pycode.CATEGORY_RULES.items()
    },
    _CUSTOM_OP: "MW-TORCHSCRIPT-CUSTOM-OP",
    _CUSTOM_CLASS: "MW-TORCHSCRIPT-CUSTOM-CLASS",
}
_SETSTATE = "__setstate__"
_MODULE_LEVEL = "<module>"


@cache
def known_op_namespaces() -> frozenset[str]:
    return name_set("torchscript.toml", "known_op_namespaces")


@cache
def known_class_namespaces() -> frozenset[str]:
    return name_set("torchscript.toml", "known_class_namespaces")


@cache
def operator_patterns() -> dict[str, tuple[str, ...]]:
    """Category -> fnmatch patterns of TorchScript calls (`data/torchscript.toml` [operators])."""
    table = load_table("torchscript.toml")["operators"]
    return {category: tuple(patterns) for category, patterns in table.items()}


def classify_call(dotted: str) -> str | None:
    """The category of a TorchScript call: TorchScript's own operators, then `pycode`'s."""
    for category, patterns in operator_patterns().items():
        if any(fnmatchcase(dotted, p) for p in patterns):
            return category
    return pycode.classify(dotted)


def _namespace(dotted: str, prefixes: tuple[tuple[str, ...], ...]) -> str | None:
    """`torch.ops.evil.run` -> `torch.ops.evil`: the namespace part of a spelling in `prefixes`."""
    parts = dotted.split(".")
    for prefix in prefixes:
        n = len(prefix)
        if tuple(parts[:n]) == prefix and len(parts) > n and parts[n] not in _NOT_NAMESPACES:
            return ".".join(parts[: n + 1])
    return None


def custom_op_namespace(dotted: str) -> str | None:
    """`ops.evil.run` / `torch.ops.evil.run` -> `ops.evil` when `evil` is not PyTorch's."""
    spelled = _namespace(dotted, _OP_PREFIXES)
    if spelled is None or spelled.rsplit(".", 1)[1] in known_op_namespaces():
        return None
    return spelled


def custom_class_namespace(dotted: str) -> str | None:
    """`__torch__.torch.classes.evil.C` -> `__torch__.torch.classes.evil` when not PyTorch's."""
    spelled = _namespace(dotted, _CLASS_PREFIXES)
    if spelled is None or spelled.rsplit(".", 1)[1] in known_class_namespaces():
        return None
    return spelled


def _relative(name: str) -> str | None:
    """The path inside the archive's top folder (`code/__torch__/m.py`), or None."""
    top, sep, rest = name.partition("/")
    return rest if sep and top else None


def is_torchscript(names: list[str]) -> bool:
    rel = [r for r in map(_relative, names) if r is not None]
    return any(r.startswith(_CODE_DIR + _TORCH_NAMESPACE) for r in rel) and any(
        r == "constants.pkl" for r in rel
    )


def module_of_code(rel: str) -> str:
    """`code/__torch__/torch/nn/linear.py` -> `__torch__.torch.nn.linear`."""
    return rel[len(_CODE_DIR) : -len(".py")].replace("/", ".")


@dataclass(frozen=True)
class OperatorUse:
    """One operator a unit of code calls or names, with what it reaches."""

    category: str
    name: str
    line: int


@dataclass
class CodeUnit:
    """A method, a function, or what a code file holds outside them."""

    qualname: str
    name: str
    owner: str | None
    location: Location
    uses: list[OperatorUse] = field(default_factory=list)
    #: Qualified names of archive code this unit calls (functions, constructors).
    calls: set[str] = field(default_factory=set)
    #: Method names called on `self`, and on other objects (any archive class may be meant).
    self_calls: set[str] = field(default_factory=set)
    method_calls: set[str] = field(default_factory=set)

    _seen: set[OperatorUse] = field(default_factory=set)

    def use(self, category: str, name: str, line: int) -> None:
        found = OperatorUse(category, name, line)
        if found not in self._seen:
            self._seen.add(found)
            self.uses.append(found)


@dataclass
class ArchiveCode:
    """Every unit of every code file of one archive, and the classes they define."""

    units: dict[str, CodeUnit] = field(default_factory=dict)
    classes: set[str] = field(default_factory=set)

    _methods: dict[str, list[CodeUnit]] | None = None

    def by_method_name(self, name: str) -> list[CodeUnit]:
        if self._methods is None:
            self._methods = {}
            for unit in self.units.values():
                if unit.owner is not None:
                    self._methods.setdefault(unit.name, []).append(unit)
        return self._methods.get(name, [])

    def callees(self, unit: CodeUnit) -> Iterator[CodeUnit]:
        for qualname in sorted(unit.calls):
            if qualname in self.units:
                yield self.units[qualname]
            elif qualname in self.classes:  # a constructor call runs `__init__`
                init = self.units.get(f"{qualname}.__init__")
                if init is not None:
                    yield init
        for name in sorted(unit.self_calls):
            own = self.units.get(f"{unit.owner}.{name}") if unit.owner else None
            yield from [own] if own is not None else self.by_method_name(name)
        for name in sorted(unit.method_calls):
            yield from self.by_method_name(name)

    def at_load(self) -> dict[str, list[str]]:
        """Qualified name -> call path from a root, for each unit `torch.jit.load` runs."""
        paths: dict[str, list[str]] = {}
        queue: deque[CodeUnit] = deque()
        for unit in self.units.values():
            if unit.name in (_SETSTATE, _MODULE_LEVEL):
                paths[unit.qualname] = [unit.qualname]
                queue.append(unit)
        while queue:
            unit = queue.popleft()
            for callee in self.callees(unit):
                if callee.qualname not in paths:
                    paths[callee.qualname] = [*paths[unit.qualname], callee.qualname]
                    queue.append(callee)
        return paths


def parse_code(
    source: str, module: str, location: Location, ctx: ScanContext, code: ArchiveCode
) -> None:
    """Add one code file's units and classes to `code`; an unparseable file is a finding.

    The file is analysed once (`pycode` resolves names through its imports); each use is
    then given to the method or function whose lines hold it, or to the file's
    module-level unit.
    """
    try:
        tree = pycode.parse_python(source)
    except (SyntaxError, ValueError) as exc:
        ctx.report(
            "MW-TORCHSCRIPT-CODE-UNPARSEABLE",
            Severity.MEDIUM,
            location,
            "TorchScript code could not be parsed, so it was not analysed",
            evidence=f"{type(exc).__name__}: {exc}"[:300],
        )
        return
    module_unit = CodeUnit(f"{module}.{_MODULE_LEVEL}", _MODULE_LEVEL, None, location)
    spans: list[tuple[int, int, CodeUnit, ast.AST]] = []
    rest: list[ast.stmt] = []
    local_functions: set[str] = set()
    for node in tree.body:
        ctx.check_deadline()
        if isinstance(node, ast.ClassDef):
            owner = f"{module}.{node.name}"
            code.classes.add(owner)
            for item in node.body:
                if isinstance(item, ast.FunctionDef | ast.AsyncFunctionDef):
                    unit = CodeUnit(f"{owner}.{item.name}", item.name, owner, location)
                    spans.append((item.lineno, item.end_lineno or item.lineno, unit, item))
                else:
                    rest.append(item)
            # Classes nested in classes are not TorchScript; their code still counts.
            code.classes.update(
                f"{owner}.{inner.name}"
                for inner in ast.walk(node)
                if isinstance(inner, ast.ClassDef) and inner is not node
            )
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            local_functions.add(node.name)
            unit = CodeUnit(f"{module}.{node.name}", node.name, None, location)
            spans.append((node.lineno, node.end_lineno or node.lineno, unit, node))
        else:
            rest.append(node)
    spans.sort(key=lambda span: span[0])
    starts = [span[0] for span in spans]

    def unit_at(line: int) -> CodeUnit:
        i = bisect_right(starts, line) - 1
        return spans[i][2] if i >= 0 and line <= spans[i][1] else module_unit

    for name, line in pycode.called_names(tree, ctx):
        category = classify_call(name)
        if category is not None:
            unit_at(line).use(category, name, line)
    for found in pycode.find_code_uses(tree, ctx):
        unit_at(found.line).use(found.category, found.name, found.line)
    aliases = pycode.import_aliases(tree)
    held = [(module_unit, ast.Module(rest, []))] + [(u, n) for _, _, u, n in spans]
    for unit, unit_node in held:
        _analyse_unit(unit, unit_node, aliases, module, local_functions, ctx)
        code.units[unit.qualname] = unit


def _analyse_unit(
    unit: CodeUnit,
    node: ast.AST,
    aliases: dict[str, str],
    module: str,
    local_functions: set[str],
    ctx: ScanContext,
) -> None:
    """Add the custom namespaces `node` names and the archive code it calls to `unit`."""
    nodes = list(ast.walk(node))
    inner = {id(n.value) for n in nodes if isinstance(n, ast.Attribute)}
    for i, sub in enumerate(nodes):
        if i % 1024 == 0:
            ctx.check_deadline()
        if isinstance(sub, ast.Attribute) and id(sub) not in inner:
            dotted = pycode.dotted_name(sub, aliases)
            if dotted is None:
                continue
            for category, spelled in (
                (_CUSTOM_OP, custom_op_namespace(dotted)),
                (_CUSTOM_CLASS, custom_class_namespace(dotted)),
            ):
                if spelled is not None:
                    unit.use(category, dotted, sub.lineno)
        elif isinstance(sub, ast.Call):
            _record_call(unit, sub.func, aliases, module, local_functions)


def _record_call(
    unit: CodeUnit,
    func: ast.expr,
    aliases: dict[str, str],
    module: str,
    local_functions: set[str],
) -> None:
    if isinstance(func, ast.Name):
        if func.id in local_functions:
            unit.calls.add(f"{module}.{func.id}")
        return
    if not isinstance(func, ast.Attribute):
        return
    dotted = pycode.dotted_name(func, aliases)
    root = dotted.split(".", 1)[0] if dotted else None
    if dotted is not None and root == _TORCH_NAMESPACE:
        # `__torch__.m.fn(x)`, `__torch__.m.C.__new__(__torch__.m.C)`, `__torch__.m.C.f(obj)`
        unit.calls.add(dotted.removesuffix(".__new__"))
    elif dotted is not None and (root in ("torch", "ops") or root in aliases.values()):
        return
    elif isinstance(func.value, ast.Name) and func.value.id == "self":
        unit.self_calls.add(func.attr)
    else:
        # A method of another object (a submodule, a local): any archive method of that name.
        unit.method_calls.add(func.attr)


def report_code(code: ArchiveCode, ctx: ScanContext) -> None:
    """Report each unit's operators, graded by whether `torch.jit.load` runs the unit."""
    at_load = code.at_load()
    for qualname in sorted(code.units):
        unit = code.units[qualname]
        path = at_load.get(qualname)
        when = _when(unit, path)
        for use in unit.uses:
            severity = _AT_LOAD[use.category]
            if path is None:
                severity = Severity(severity - 1)
            ctx.report(
                _RULE[use.category],
                severity,
                unit.location,
                f"TorchScript {when} {_MEANING[use.category]} ({use.name})",
                evidence=f"line {use.line}: {use.name}",
            )


def _when(unit: CodeUnit, path: list[str] | None) -> str:
    if unit.name == _MODULE_LEVEL:
        return "code outside any method (compiled by torch.jit.load)"
    if path is None:
        return f"method {unit.qualname} (runs when the loaded model calls it)"
    if len(path) == 1:
        return f"{unit.qualname} (runs inside torch.jit.load, on every object it unpickles)"
    return f"{unit.qualname} (runs inside torch.jit.load: {' -> '.join(path)})"


def scan_torchscript_pickle(blob: Blob, ctx: ScanContext, classes: frozenset[str]) -> None:
    """Scan one pickle member, accepting exactly the `__torch__` classes the code defines.

    Custom classes (`__torch__.torch.classes.<ns>.<Class>`) are resolved by TorchScript's
    class registry, not imported: PyTorch's namespaces are accepted, any other is native
    code whose `__setstate__` runs at load (critical).
    """
    config = dataclasses.replace(ctx.config, allow_globals=ctx.config.allow_globals | classes)
    scratch = ScanResult(path=ctx.result.path)
    child = dataclasses.replace(ctx, config=config, result=scratch)
    with ctx.open(blob) as stream:
        scan_pickle_stream(stream, blob.location, child)
    reported: set[str] = set()
    for finding in scratch.findings:
        name = _torch_class(finding)
        if name is None:
            ctx.result.findings.append(finding)
            continue
        if name in classes or name in reported:
            continue
        spelled = custom_class_namespace(name)
        if spelled is None and name.startswith(_CUSTOM_CLASS_ROOT):
            continue
        if spelled is None:
            ctx.result.findings.append(finding)
            continue
        reported.add(name)
        ctx.report(
            _RULE[_CUSTOM_CLASS],
            _AT_LOAD[_CUSTOM_CLASS],
            finding.location,
            f"TorchScript pickle holds an object of custom class {name}: torch.jit.load runs"
            " its native __setstate__, from a library loaded outside the archive",
            evidence=f"{name} (namespace {spelled.rsplit('.', 1)[1]})",
        )


_CUSTOM_CLASS_ROOT = "__torch__.torch.classes."


def _torch_class(finding: Finding) -> str | None:
    """The `__torch__` class a pickle finding is about, or None.

    The list builders the TorchScript unpickler implements natively
    (`torch.jit._pickle.build_intlist`...) need no exception: they are on the ordinary
    pickle allow-list.
    """
    if finding.rule_id not in _TORCH_CLASS_RULES or not finding.evidence:
        return None
    name = finding.evidence.split(" ", 1)[0]
    return name if name.startswith(_TORCH_NAMESPACE + ".") else None


class TorchScriptScanner:
    """A `torch.jit.save` zip: code analysed, pickles scanned, storages skipped."""

    name = "torchscript"

    def detect(self, blob: Blob, head: bytes) -> bool:
        names = zip_member_names(blob, head)
        return names is not None and is_torchscript(names)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            self._scan_archive(archive, ctx)

    def _scan_archive(self, archive: ZipArchive, ctx: ScanContext) -> None:
        code_members: list[tuple[ZipMember, str]] = []
        pickles: list[ZipMember] = []
        others: list[ZipMember] = []
        for member in archive.members:
            rel = _relative(member.name)
            if member.is_dir or rel is None:
                others.append(member)
            elif rel.startswith(_CODE_DIR) and rel.endswith(".py"):
                code_members.append((member, rel))
            elif rel.endswith(_PICKLE_SUFFIXES):
                pickles.append(member)
            elif rel.split("/", 1)[0] not in _STORAGE_DIRS or "/" not in rel:
                others.append(member)
        code = ArchiveCode()
        for member, rel in code_members:
            ctx.check_deadline()
            source = _read_text(archive, member, ctx)
            if source is not None:
                location = archive.blob.location.member(member.name)
                parse_code(source, module_of_code(rel), location, ctx, code)
        report_code(code, ctx)
        classes = frozenset(code.classes)
        for member in pickles:
            ctx.check_deadline()
            if not member.is_encrypted and not member.is_symlink:
                scan_torchscript_pickle(archive.member_blob(member), ctx, classes)
        scan_members(archive, ctx, others)


def _read_text(archive: ZipArchive, member: ZipMember, ctx: ScanContext) -> str | None:
    if member.is_encrypted or member.is_symlink:
        return None
    blob = archive.member_blob(member)
    location = blob.location
    if member.uncompressed_size > pycode.MAX_SOURCE_BYTES:
        ctx.report(
            "MW-TORCHSCRIPT-CODE-UNPARSEABLE",
            Severity.MEDIUM,
            location,
            f"TorchScript code member over {pycode.MAX_SOURCE_BYTES} bytes; not analysed",
        )
        return None
    with ctx.open(blob, limit=pycode.MAX_SOURCE_BYTES + 1) as stream:
        raw = stream.read(pycode.MAX_SOURCE_BYTES + 1)
    return raw.decode("utf-8", errors="replace")


TORCHSCRIPT = TorchScriptScanner()
