"""The Python source analysis shared by TorchScript and remote-code scanning."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.base import ScanContext
from modelward.formats.pycode import find_code_uses, parse_python, scan_python_source
from modelward.scanner import dispatch

SOURCE = """\
import os
import subprocess as sp
from os import system as run_it
import urllib.request
import pickle


def forward(x, name):
    run_it("true")
    sp.run(["true"])
    os.path.join("a", "b")
    eval("1 + 1")
    getattr(os, "popen")("true")
    getattr(x, name)
    urllib.request.urlopen("http://example.invalid")
    ().__class__.__bases__[0].__subclasses__()
    pickle.loads(b"")
    open("weights.txt")
"""


def _scan(source: str) -> ScanResult:
    result = ScanResult("mem")
    ctx = ScanContext(config=ScanConfig(), result=result, dispatch=dispatch)
    scan_python_source(source, Location("model.py"), ctx, context="remote code")
    return result


def test_calls_are_resolved_through_imports() -> None:
    uses = {(u.category, u.name, u.line) for u in find_code_uses(parse_python(SOURCE))}
    assert ("process", "os.system", 9) in uses
    assert ("process", "subprocess.run", 10) in uses
    assert ("code", "eval", 12) in uses
    assert ("process", "os.popen", 13) in uses
    assert ("reflection", "getattr(...)", 14) in uses
    assert ("network", "urllib.request.urlopen", 15) in uses
    assert ("code", "<expr>.__subclasses__", 16) in uses
    assert ("deserialise", "pickle.loads", 17) in uses
    assert ("filesystem", "open", 18) in uses
    assert not any(name.startswith("os.path") for _, name, _ in uses)


def test_findings_carry_line_numbers_and_severities() -> None:
    findings = _scan(SOURCE).findings
    by_rule = {f.rule_id: f for f in findings}
    assert by_rule["MW-PYCODE-PROCESS"].severity == Severity.CRITICAL
    assert by_rule["MW-PYCODE-EXEC"].severity == Severity.CRITICAL
    assert by_rule["MW-PYCODE-NETWORK"].severity == Severity.HIGH
    assert by_rule["MW-PYCODE-FILESYSTEM"].severity == Severity.LOW
    assert all((f.evidence or "").startswith("line ") for f in findings)
    assert all("remote code" in f.message for f in findings)


def test_ordinary_model_code_is_quiet() -> None:
    benign = (
        "import math\nimport torch\nfrom torch import nn\n\n"
        "class Block(nn.Module):\n"
        "    def forward(self, x):\n"
        "        return torch.relu(x) * math.sqrt(2) + getattr(self, 'scale')\n"
    )
    assert _scan(benign).findings == []


def test_unparseable_and_deeply_nested_source_fail_closed() -> None:
    for source in ("def broken(:\n", "x = " + "(" * 5000 + ")" * 5000):
        [finding] = _scan(source).findings
        assert (finding.rule_id, finding.severity) == ("MW-PYCODE-UNPARSEABLE", Severity.MEDIUM)


@given(st.text(max_size=300))
def test_any_text_yields_findings_or_unparseable_never_an_exception(source: str) -> None:
    result = _scan(source)
    assert all(f.rule_id.startswith("MW-PYCODE-") for f in result.findings)
