"""`modelward diff` on Keras configs, and the `diff` sub-command's output and exit codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import modelward
from fixtures.diff_models import (
    keras_pair,
    onnx_classifier,
    torch_fine_tuned,
    torch_spliced_state_dict,
    torch_state_dict,
)
from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main
from modelward.findings import Severity


def test_keras_added_layer(tmp_path: Path) -> None:
    reference, candidate = keras_pair(tmp_path)
    result = modelward.diff(reference, candidate)
    added = result.changes.nodes_added
    assert any(label.startswith("injected_dense (") for label in added)
    assert result.changes.rewired_outputs
    rewired = next(iter(result.changes.rewired_outputs.values()))
    assert any("injected_dense" in label for label in rewired)
    # The layers before the splice are matched even though Keras renamed them.
    assert not any("Conv2D" in label for label in added + result.changes.nodes_removed)
    assert result.verdict == "architecture changed"
    same = modelward.diff(reference, reference)
    assert same.verdict == "identical"


def test_cli_exit_codes_and_formats(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    spliced = torch_spliced_state_dict(tmp_path / "s.pt")
    tuned = torch_fine_tuned(tmp_path / "t.pt")

    assert main(["diff", str(reference), str(spliced)]) == EXIT_FINDINGS
    assert "MW-DIFF-TENSOR-ADDED" in capsys.readouterr().out

    assert main(["diff", str(reference), str(tuned), "--weights", "-f", "json"]) == EXIT_CLEAN
    report = json.loads(capsys.readouterr().out)
    rules = [f["rule_id"] for f in report["results"][0]["findings"]]
    assert rules.count("MW-DIFF-WEIGHT-DRIFT") == 4
    assert "weights only (fine-tune-like)" in report["results"][0]["findings"][-1]["message"]

    assert main(["diff", str(reference), str(tuned), "--weights", "--fail-on", "info"]) == 1
    capsys.readouterr()

    assert main(["diff", str(reference), str(spliced), "--fail-on", "critical"]) == EXIT_CLEAN
    capsys.readouterr()


def test_cli_sarif_names_the_rewired_output(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    reference = onnx_classifier(tmp_path / "r.onnx")
    candidate = onnx_classifier(tmp_path / "c.onnx", trigger=True)
    assert main(["diff", str(reference), str(candidate), "-f", "sarif"]) == EXIT_FINDINGS
    sarif = json.loads(capsys.readouterr().out)
    results = sarif["runs"][0]["results"]
    rewired = [r for r in results if r["ruleId"] == "MW-DIFF-OUTPUT-REWIRED"]
    assert len(rewired) == 1 and "trigger_select" in rewired[0]["message"]["text"]
    assert rewired[0]["level"] == "error"


def test_cli_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    assert main(["diff", str(reference), str(tmp_path / "missing.pt")]) == EXIT_ERROR
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    assert main(["diff", str(reference), str(text)]) == EXIT_ERROR
    err = capsys.readouterr().err
    assert "missing.pt" in err and "not a format diff can read" in err


def test_fail_on_threshold_is_the_findings_severity(tmp_path: Path) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    result = modelward.diff(reference, torch_spliced_state_dict(tmp_path / "s.pt"))
    assert result.to_report().has_findings_at(Severity.HIGH)
    assert not result.to_report().has_findings_at(Severity.CRITICAL)
