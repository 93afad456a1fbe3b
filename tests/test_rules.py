"""The rule registry (`modelward.rules`) is the one list of rules: the code reports only its
ids, uses every one of them, and `docs/rules.md` shows exactly what it holds."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import zipfile
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest

import modelward
from fixtures.pickles import call_system_p4
from modelward.findings import Severity
from modelward.rules import RULES, Rule, registry_json, rule

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src"
PACKAGE = SRC / "modelward"
SCRIPT = ROOT / "scripts" / "render_rules_doc.py"
RULE_ID = re.compile(r"MW-[A-Z0-9]+(?:-[A-Z0-9]+)*")
#: String methods whose `MW-` argument is a prefix of ids, not an id.
PREFIX_METHODS = frozenset({"startswith", "endswith", "removeprefix", "replace"})


def _modules() -> Iterator[tuple[Path, ast.Module]]:
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != PACKAGE / "rules.py":
            yield path, ast.parse(path.read_text(encoding="utf-8"), str(path))


def _is_mw(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith("MW-")
        and re.fullmatch(r"MW-[A-Z0-9-]*", node.value) is not None
    )


@cache
def _uses() -> tuple[dict[str, list[str]], dict[str, list[str]], list[Path]]:
    """(rule id -> where, prefix -> where, files that build ids at run time)."""
    ids: dict[str, list[str]] = {}
    prefixes: dict[str, list[str]] = {}
    builders: list[Path] = []
    for path, tree in _modules():
        where = str(path.relative_to(SRC))
        as_prefix: set[int] = set()
        builds = False
        for node in ast.walk(tree):
            if (
                isinstance(node, ast.Call)
                and isinstance(node.func, ast.Attribute)
                and node.func.attr in PREFIX_METHODS
            ):
                mw = [a for a in node.args if _is_mw(a)]
                as_prefix.update(id(a) for a in mw)
                builds |= node.func.attr == "replace" and len(mw) == 2
            elif isinstance(node, ast.JoinedStr) and any(_is_mw(v) for v in node.values):
                builds = True
                as_prefix.update(id(v) for v in node.values if _is_mw(v))
            elif isinstance(node, ast.BinOp) and (_is_mw(node.left) or _is_mw(node.right)):
                builds = True
                as_prefix.update(id(v) for v in (node.left, node.right) if _is_mw(v))
        for node in ast.walk(tree):
            if _is_mw(node):
                assert isinstance(node, ast.Constant)
                table = prefixes if id(node) in as_prefix else ids
                table.setdefault(node.value, []).append(f"{where}:{node.lineno}")
        if builds:
            builders.append(path)
    return ids, prefixes, builders


def _module_of(path: Path) -> ModuleType:
    name = ".".join(path.relative_to(SRC).with_suffix("").parts)
    return importlib.import_module(name.removesuffix(".__init__"))


def _strings(value: object, depth: int = 0) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif depth < 3 and isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(k, depth + 1)
            yield from _strings(v, depth + 1)
    elif depth < 3 and isinstance(value, (list, tuple, set, frozenset)):
        for v in value:
            yield from _strings(v, depth + 1)


@cache
def _built_ids() -> dict[str, str]:
    """Ids built at run time (`rule_id.replace("MW-PYCODE-", "MW-TORCHSCRIPT-")`): every
    id-shaped string in the module-level tables of the modules that build them."""
    found: dict[str, str] = {}
    for path in _uses()[2]:
        module = _module_of(path)
        for value in vars(module).values():
            for text in _strings(value):
                if RULE_ID.fullmatch(text):
                    found.setdefault(text, module.__name__)
    return found


def test_every_rule_id_in_the_code_is_registered() -> None:
    ids, _, _ = _uses()
    assert len(ids) > 100  # the walk found the literals
    unknown = {i: where for i, where in ids.items() if i not in RULES}
    assert unknown == {}, "add these to src/modelward/rules.py"


def test_every_id_built_at_run_time_is_registered() -> None:
    built = _built_ids()
    assert "MW-TORCHSCRIPT-EXEC" in built  # the one builder today: torchscript's table
    unknown = {i: where for i, where in built.items() if i not in RULES}
    assert unknown == {}, "add these to src/modelward/rules.py"


def test_every_prefix_in_the_code_names_registered_rules() -> None:
    _, prefixes, _ = _uses()
    assert prefixes
    unmatched = {p: w for p, w in prefixes.items() if not any(i.startswith(p) for i in RULES)}
    assert unmatched == {}


def test_every_registered_rule_is_reported_somewhere() -> None:
    used = set(_uses()[0]) | set(_built_ids())
    unused = sorted(set(RULES) - used)
    assert unused == [], "rules no code reports: remove them from src/modelward/rules.py"


def test_registry_entries_are_well_formed() -> None:
    for rule_id, r in RULES.items():
        assert r.id == rule_id and RULE_ID.fullmatch(rule_id), rule_id
        assert r.title and r.title[0].isupper() and not r.title.endswith("."), rule_id
        assert r.help.endswith((".", ")")), rule_id
        assert r.technique is None or re.fullmatch(r"AML\.T\d{4}(\.\d{3})?", r.technique)
        assert r.severity is None or r.severities == (r.severity,)
        assert r.severity is not None or len(r.severities) != 1, rule_id
        assert "\n" not in r.help and "\n" not in r.title
    assert json.loads(registry_json())[0]["id"] == next(iter(RULES))


def test_rule_lookup_names_a_missing_id() -> None:
    assert rule("MW-PICKLE-DANGEROUS-GLOBAL").severity is Severity.CRITICAL
    with pytest.raises(KeyError, match="MW-NO-SUCH-RULE"):
        rule("MW-NO-SUCH-RULE")


def test_severities_must_agree() -> None:
    with pytest.raises(ValueError, match="MW-X"):
        Rule("MW-X", Severity.LOW, "X", None, "x.", (Severity.HIGH,))


def _render_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("render_rules_doc", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_docs_rules_table_is_what_the_registry_renders() -> None:
    doc = ROOT / "docs" / "rules.md"
    current = doc.read_text(encoding="utf-8")
    assert _render_script().render(current) == current, (
        "docs/rules.md disagrees with src/modelward/rules.py:"
        " run `python scripts/render_rules_doc.py` (edit the registry, not the table)"
    )


def test_docs_rules_table_lists_every_rule_with_its_severity() -> None:
    rows = {}
    for line in (ROOT / "docs" / "rules.md").read_text(encoding="utf-8").splitlines():
        if line.startswith("| MW-"):
            cells = [c.strip() for c in re.split(r"(?<!\\)\|", line)[1:-1]]
            rows[cells[0]] = cells
    assert list(rows) == list(RULES)
    for rule_id, cells in rows.items():
        r = RULES[rule_id]
        assert cells[1] == r.severity_text
        assert cells[3].replace("\\|", "|") == f"**{r.title}.** {r.help}"


def test_scanned_fixtures_report_only_registered_rules(tmp_path: Path) -> None:
    (tmp_path / "payload.pkl").write_bytes(call_system_p4())
    (tmp_path / "blob.bin").write_bytes(b"\x7fXYZ" + bytes(range(256)) * 4)
    (tmp_path / "short.safetensors").write_bytes((2**62).to_bytes(8, "little") + b"{}")
    np.save(tmp_path / "objects.npy", np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with zipfile.ZipFile(tmp_path / "escape.zip", "w") as archive:
        archive.writestr("../outside.pkl", call_system_p4())
    repo = tmp_path / "repo"
    repo.mkdir()
    auto_map = {"AutoModel": "modeling.Model"}
    (repo / "config.json").write_text(json.dumps({"auto_map": auto_map}), encoding="utf-8")
    (repo / "modeling.py").write_text("import os\nos.system('true')\n", encoding="utf-8")

    report = modelward.scan(tmp_path)
    seen = {f.rule_id for f in report.findings}
    assert {"MW-PICKLE-DANGEROUS-GLOBAL", "MW-ZIP-PATH-TRAVERSAL", "MW-NUMPY-OBJECT"} <= seen
    assert seen <= set(RULES), sorted(seen - set(RULES))
    for finding in report.findings:
        technique = RULES[finding.rule_id].technique
        assert technique is None or finding.technique == technique, finding
