"""`.py` files are analysed as Python; other text stays plain text."""

from __future__ import annotations

import gzip
from pathlib import Path

import modelward
from modelward.findings import Severity


def formats(report: modelward.ScanReport) -> dict[str, str]:
    return {Path(r.path).name: r.format for r in report.results}


def test_only_py_files_are_python_source(tmp_path: Path) -> None:
    code = "import subprocess\n\ndef go():\n    subprocess.run(['true'])\n"
    (tmp_path / "train.py").write_text(code, encoding="utf-8")
    (tmp_path / "README.md").write_text("```python\n" + code + "```\n", encoding="utf-8")
    (tmp_path / "notes.json").write_text('{"code": "import os; os.system(1)"}', encoding="utf-8")
    report = modelward.scan(tmp_path)
    assert formats(report) == {
        "train.py": "python-source",
        "README.md": "text",
        "notes.json": "text",
    }
    [finding] = [f for f in report.findings if f.severity > Severity.LOW]
    assert finding.rule_id == "MW-PYCODE-PROCESS"
    assert finding.location.path == str(tmp_path / "train.py")


def test_benign_module_has_no_finding_above_low(tmp_path: Path) -> None:
    path = tmp_path / "modeling_tiny.py"
    path.write_text(
        "import math\n\nclass Block:\n    def forward(self, x):\n        return math.tanh(x)\n",
        encoding="utf-8",
    )
    report = modelward.scan(path)
    assert report.results[0].format == "python-source"
    assert all(f.severity <= Severity.LOW for f in report.findings)


def test_coding_cookie_is_honoured_and_bad_encoding_fails_closed(tmp_path: Path) -> None:
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# -*- coding: latin-1 -*-\nNAME = '\xe9'\nimport os\nos.system('true')\n")
    assert {f.rule_id for f in modelward.scan(latin).findings} >= {"MW-PYCODE-PROCESS"}
    broken = tmp_path / "broken.py"
    broken.write_bytes(b"NAME = '\xff\xfe'\n")
    [finding] = modelward.scan(broken).findings
    assert (finding.rule_id, finding.severity) == ("MW-PYCODE-UNPARSEABLE", Severity.MEDIUM)


def test_content_wins_over_the_py_name(tmp_path: Path) -> None:
    path = tmp_path / "disguised.py"
    path.write_bytes(gzip.compress(b"print('hi')\n"))
    assert modelward.scan(path).results[0].format == "gzip"
