"""`--format json`: one document that round-trips to `ScanReport.to_dict()`."""

from __future__ import annotations

import json
from pathlib import Path

import modelward
from fixtures.reports import HOSTILE_TEXT, every_severity_report, write_model_folder
from modelward.findings import Severity
from modelward.report import RENDERERS
from modelward.report.json import render_json


def test_round_trip_of_every_severity() -> None:
    report = every_severity_report()
    document = json.loads(render_json(report))
    assert document == report.to_dict()
    assert document["summary"]["findings"] == {s.label: 1 for s in Severity}
    evidence = [f["evidence"] for r in document["results"] for f in r["findings"]]
    assert HOSTILE_TEXT in evidence


def test_real_scan_round_trips_and_ignores_the_terminal(tmp_path: Path) -> None:
    report = modelward.scan(write_model_folder(tmp_path / "model"))
    text = RENDERERS["json"](report)
    assert RENDERERS["json"](report, terminal=True) == text
    document = json.loads(text)
    assert document == report.to_dict()
    assert document["summary"]["files"] == 3
    assert [f["rule_id"] for r in document["results"] for f in r["findings"]] == [
        "MW-FORMAT-UNKNOWN"
    ] * 2
