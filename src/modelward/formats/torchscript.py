"""TorchScript archives (`torch.jit.save`): a zip of pickles plus the model's code as Python.

`<top>/code/__torch__/...py` holds the TorchScript source that is compiled when the
archive is loaded; `constants.pkl`, `data.pkl` and the `.debug_pkl` files are pickles.
The source is parsed with `ast` (never run) and checked for calls into custom op
namespaces (`torch.ops.evil.run`: native code) and for anything that reaches the OS
or runs code, which TorchScript itself never needs. The pickles go through the pickle
scanner; their `__torch__.*` classes are accepted exactly when the archive's own code
defines them (TorchScript resolves those names against that code, not Python imports).
"""

from __future__ import annotations

import ast
import dataclasses
from functools import cache

from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.formats import pycode
from modelward.formats._datafile import name_set
from modelward.formats.base import Blob, ScanContext
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
#: Severity of each `pycode` category inside TorchScript code, which needs none of them.
_CATEGORY_SEVERITY = {
    "code": Severity.CRITICAL,
    "process": Severity.CRITICAL,
    "network": Severity.CRITICAL,
    "deserialise": Severity.CRITICAL,
    "filesystem": Severity.HIGH,
    "reflection": Severity.HIGH,
    "import": Severity.HIGH,
}


@cache
def known_op_namespaces() -> frozenset[str]:
    return name_set("torchscript.toml", "known_op_namespaces")


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


def check_torchscript_code(
    source: str, module: str, location: Location, ctx: ScanContext
) -> set[str]:
    """Report custom op namespaces and OS/exec access; return the classes the code defines."""
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
        return set()
    namespaces = known_op_namespaces()
    for name, line in pycode.called_names(tree, ctx):
        parts = name.split(".")
        if parts[:2] == ["torch", "ops"] and len(parts) > 2 and parts[2] not in namespaces:
            ctx.report(
                "MW-TORCHSCRIPT-CUSTOM-OP",
                Severity.HIGH,
                location,
                f"TorchScript calls custom op namespace torch.ops.{parts[2]}: native code from"
                " a library loaded outside the archive, able to reach the OS",
                evidence=f"line {line}: {name}",
            )
    for use in pycode.find_code_uses(tree, ctx):
        rule_id, _, meaning = pycode.CATEGORY_RULES[use.category]
        ctx.report(
            rule_id.replace("MW-PYCODE-", "MW-TORCHSCRIPT-"),
            _CATEGORY_SEVERITY[use.category],
            location,
            f"TorchScript code {meaning} ({use.name}); TorchScript models never need this",
            evidence=f"line {use.line}: {use.name}",
        )
    return {f"{module}.{node.name}" for node in ast.walk(tree) if isinstance(node, ast.ClassDef)}


def scan_torchscript_pickle(blob: Blob, ctx: ScanContext, classes: frozenset[str]) -> None:
    """Scan one pickle member, accepting exactly the `__torch__` classes the code defines."""
    config = dataclasses.replace(ctx.config, allow_globals=ctx.config.allow_globals | classes)
    scratch = ScanResult(path=ctx.result.path)
    child = dataclasses.replace(ctx, config=config, result=scratch)
    with ctx.open(blob) as stream:
        scan_pickle_stream(stream, blob.location, child)
    ctx.result.findings.extend(f for f in scratch.findings if not _expected(f, classes))


def _expected(finding: Finding, classes: frozenset[str]) -> bool:
    """A finding on a `__torch__` class the archive's code defines (resolved there, not imported).

    The list builders the TorchScript unpickler implements natively
    (`torch.jit._pickle.build_intlist`...) need no exception: they are on the ordinary
    pickle allow-list.
    """
    if finding.rule_id not in _TORCH_CLASS_RULES or not finding.evidence:
        return False
    return finding.evidence.split(" ", 1)[0] in classes


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
        code: list[tuple[ZipMember, str]] = []
        pickles: list[ZipMember] = []
        others: list[ZipMember] = []
        for member in archive.members:
            rel = _relative(member.name)
            if member.is_dir or rel is None:
                others.append(member)
            elif rel.startswith(_CODE_DIR) and rel.endswith(".py"):
                code.append((member, rel))
            elif rel.endswith(_PICKLE_SUFFIXES):
                pickles.append(member)
            elif rel.split("/", 1)[0] not in _STORAGE_DIRS or "/" not in rel:
                others.append(member)
        classes: set[str] = set()
        for member, rel in code:
            ctx.check_deadline()
            source = _read_text(archive, member, ctx)
            if source is not None:
                location = archive.blob.location.member(member.name)
                classes |= check_torchscript_code(source, module_of_code(rel), location, ctx)
        for member in pickles:
            ctx.check_deadline()
            if not member.is_encrypted and not member.is_symlink:
                scan_torchscript_pickle(archive.member_blob(member), ctx, frozenset(classes))
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
