"""`modelward scan` end to end: exit codes, formats, --output, --fail-on, -j, progress, errors."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from fixtures.reports import UNKNOWN_BINARY, write_clean_folder, write_model_folder
from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main


class FakeTerminal(io.StringIO):
    """A stream that says it is a terminal, to see what a user at one would get."""

    def isatty(self) -> bool:
        return True


def scan_json(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, dict[str, Any]]:
    code = main(["scan", "--format", "json", *args])
    return code, json.loads(capsys.readouterr().out)


def rule_ids(document: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [
        (r["path"], f["rule_id"], f["evidence"]) for r in document["results"] for f in r["findings"]
    ]


def test_exit_codes_clean_findings_and_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = write_clean_folder(tmp_path / "clean")
    model = write_model_folder(tmp_path / "model")
    assert main(["scan", str(clean)]) == EXIT_CLEAN
    assert "no findings" in capsys.readouterr().out
    assert main(["scan", str(model)]) == EXIT_FINDINGS
    assert "MW-FORMAT-UNKNOWN" in capsys.readouterr().out
    assert main(["scan", str(clean), str(tmp_path / "typo")]) == EXIT_ERROR
    captured = capsys.readouterr()
    assert captured.out == ""
    assert "no such file or directory" in captured.err


def test_files_from_a_list_and_stdin(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "model")
    clean = write_clean_folder(tmp_path / "clean")
    listing = tmp_path / "inventory.txt"
    listing.write_text(f"{clean}\n\n{model}\r\n", encoding="utf-8")
    code, document = scan_json(capsys, "--files-from", str(listing))
    assert code == EXIT_FINDINGS
    scanned = {r["path"] for r in document["results"]}
    assert any(p.startswith(str(model)) for p in scanned)
    assert any(p.startswith(str(clean)) for p in scanned)

    monkeypatch.setattr(sys, "stdin", io.StringIO(f"{clean}\n"))
    code, document = scan_json(capsys, "--files-from", "-")
    assert code == EXIT_CLEAN and document["results"]

    listing.write_text(f"{clean}\n{tmp_path / 'typo'}\n", encoding="utf-8")
    assert main(["scan", "--files-from", str(listing)]) == EXIT_ERROR
    assert "typo" in capsys.readouterr().err
    listing.write_text("\n", encoding="utf-8")
    assert main(["scan", "--files-from", str(listing)]) == EXIT_ERROR
    assert "nothing to scan" in capsys.readouterr().err
    assert main(["scan"]) == EXIT_ERROR
    assert "nothing to scan" in capsys.readouterr().err


def test_fail_on_threshold(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    model = write_model_folder(tmp_path / "model")
    code, document = scan_json(capsys, "--fail-on", "critical", str(model))
    assert code == EXIT_CLEAN
    assert {f for _, f, _ in rule_ids(document)} == {"MW-FORMAT-UNKNOWN"}
    assert scan_json(capsys, "--fail-on", "low", str(model))[0] == EXIT_FINDINGS
    assert scan_json(capsys, "--fail-on", "MEDIUM", str(model))[0] == EXIT_FINDINGS
    assert scan_json(capsys, "--fail-on", "high", str(model))[0] == EXIT_CLEAN


def test_output_file_gets_the_report_and_stdout_stays_empty(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_model_folder(tmp_path / "model")
    out = tmp_path / "report.sarif"
    assert main(["scan", str(model), "-f", "sarif", "--output", str(out)]) == EXIT_FINDINGS
    assert capsys.readouterr().out == ""
    log = json.loads(out.read_text(encoding="utf-8"))
    assert {r["ruleId"] for r in log["runs"][0]["results"]} == {"MW-FORMAT-UNKNOWN"}
    table = tmp_path / "report.txt"
    assert main(["scan", str(model), "-o", str(table)]) == EXIT_FINDINGS
    assert "\x1b[" not in table.read_text(encoding="utf-8")
    assert "MW-FORMAT-UNKNOWN" in table.read_text(encoding="utf-8")


def test_unwritable_output_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = write_clean_folder(tmp_path / "clean")
    code = main(["scan", str(clean), "-o", str(tmp_path / "no" / "such" / "dir" / "r.json")])
    assert code == EXIT_ERROR
    assert "cannot write" in capsys.readouterr().err


def test_parallel_jobs_give_the_same_findings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model = write_model_folder(tmp_path / "model")
    for i in range(4):
        (model / f"more{i}.bin").write_bytes(bytes([i]) + UNKNOWN_BINARY)
    serial_code, serial = scan_json(capsys, "-j", "1", str(model))
    parallel_code, parallel = scan_json(capsys, "-j", "2", str(model))
    assert serial_code == parallel_code == EXIT_FINDINGS
    assert rule_ids(parallel) == rule_ids(serial)
    assert len(rule_ids(serial)) == 6
    assert [r["path"] for r in parallel["results"]] == [r["path"] for r in serial["results"]]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["-j", "0"], "--jobs/-j: must be a whole number of at least 1"),
        (["--jobs", "two"], "--jobs/-j: must be a whole number of at least 1"),
        (["--fail-on", "severe"], "unknown severity 'severe'"),
        (["--format", "xml"], "invalid choice: 'xml'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_message(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", *args])
    assert exit_info.value.code == EXIT_ERROR
    assert message in capsys.readouterr().err


def test_config_file_errors_and_limits(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    clean = write_clean_folder(tmp_path / "clean")
    bad = tmp_path / "bad.toml"
    bad.write_text("[scan]\nallow_global = ['a.b']\n", encoding="utf-8")
    assert main(["scan", str(clean), "--config", str(bad)]) == EXIT_ERROR
    assert "unknown key(s) allow_global" in capsys.readouterr().err
    assert main(["scan", str(clean), "--config", str(tmp_path / "none.toml")]) == EXIT_ERROR
    assert "cannot read config" in capsys.readouterr().err
    good = tmp_path / "modelward.toml"
    good.write_text("[scan.limits]\nmax_seconds_per_file = 30\n", encoding="utf-8")
    assert main(["scan", str(clean), "--config", str(good)]) == EXIT_CLEAN


POLICY_CONFIGS = {
    "valid": ('[policy]\nfail_on = "high"\nsafetensors_only = true\n', EXIT_CLEAN, ""),
    "bad-severity": ('[policy]\nfail_on = "severe"\n', EXIT_ERROR, "policy.fail_on"),
    "unknown-key": ("[policy]\nsafetensor_only = true\n", EXIT_ERROR, "safetensor_only"),
    "unknown-nested-key": (
        "[policy.signatures]\nrequire = true\n",
        EXIT_ERROR,
        "[policy].signatures: unknown key(s) require",
    ),
}


@pytest.mark.parametrize("name", sorted(POLICY_CONFIGS))
def test_policy_table_is_validated_but_not_enforced(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str
) -> None:
    """One modelward.toml serves scan and gate: scan rejects a policy gate would reject."""
    text, code, message = POLICY_CONFIGS[name]
    clean = write_clean_folder(tmp_path / "clean")
    config = tmp_path / "modelward.toml"
    config.write_text("[scan]\nallow_globals = []\n" + text, encoding="utf-8")
    assert main(["scan", str(clean), "--config", str(config)]) == code
    err = capsys.readouterr().err
    assert message in err
    if code == EXIT_ERROR:
        assert str(config) in err


def test_policy_in_pyproject_is_validated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    clean = write_clean_folder(tmp_path / "clean")
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text("[tool.modelward.policy]\nforbid_pickles = true\n", encoding="utf-8")
    assert main(["scan", str(clean), "--config", str(pyproject)]) == EXIT_ERROR
    assert "forbid_pickles" in capsys.readouterr().err


def test_help_explains_formats_exit_codes_and_config(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        main(["scan", "--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for needle in (
        "table",
        "json",
        "sarif",
        "exit codes:",
        "[scan.limits]",
        "allow_globals",
        "scan does not enforce it",
    ):
        assert needle in text
    assert "max_pickle_streams = 64" in text


def test_progress_bar_on_a_terminal_stderr_only(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "model")
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    code, document = scan_json(capsys, str(model))
    assert code == EXIT_FINDINGS
    assert len(document["results"]) == 3
    progress = stderr.getvalue()
    assert "scanning" in progress
    assert "3/3" in progress


def test_progress_counts_folder_results_too(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "model")
    (model / "config.json").write_text('{"model_type": "bert"}', encoding="utf-8")
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    _, document = scan_json(capsys, str(model))
    total = len(document["results"])
    assert total == len([p for p in model.rglob("*") if p.is_file()]) + 1
    assert f"{total}/{total}" in stderr.getvalue()


def test_no_progress_for_one_file_or_a_pipe(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "model")
    assert scan_json(capsys, str(model))[0] == EXIT_FINDINGS
    assert capsys.readouterr().err == ""
    stderr = FakeTerminal()
    monkeypatch.setattr(sys, "stderr", stderr)
    assert scan_json(capsys, str(model / "weights.bin"))[0] == EXIT_FINDINGS
    assert stderr.getvalue() == ""


def test_table_is_styled_when_stdout_is_a_terminal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = write_model_folder(tmp_path / "model")
    stdout = FakeTerminal()
    monkeypatch.setattr(sys, "stdout", stdout)
    monkeypatch.setattr(sys, "stderr", io.StringIO())
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm-256color")
    assert main(["scan", str(model)]) == EXIT_FINDINGS
    assert "\x1b[" in stdout.getvalue()
    assert "MW-FORMAT-UNKNOWN" in stdout.getvalue()


def run_module(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("FORCE_COLOR", "TTY_COMPATIBLE")}
    return subprocess.run(
        [sys.executable, "-m", "modelward", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=env,
        timeout=120,
        check=False,
    )


def test_python_dash_m_exit_codes_and_clean_pipes(tmp_path: Path) -> None:
    write_clean_folder(tmp_path / "clean")
    write_model_folder(tmp_path / "model")
    clean = run_module("scan", "clean", cwd=tmp_path)
    assert clean.returncode == EXIT_CLEAN, clean.stderr
    assert "no findings" in clean.stdout
    assert "\x1b[" not in clean.stdout + clean.stderr
    found = run_module("scan", "model", "-f", "sarif", cwd=tmp_path)
    assert found.returncode == EXIT_FINDINGS, found.stderr
    log = json.loads(found.stdout)
    uris = {
        r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
        for r in log["runs"][0]["results"]
    }
    assert uris == {"model/weights.bin", "model/sub/extra.dat"}
    assert found.stderr == ""
    missing = run_module("scan", "nope", cwd=tmp_path)
    assert missing.returncode == EXIT_ERROR
    assert "no such file or directory: nope" in missing.stderr
    bad_jobs = run_module("scan", "-j", "0", "clean", cwd=tmp_path)
    assert bad_jobs.returncode == EXIT_ERROR
    assert "--jobs" in bad_jobs.stderr


def test_importing_the_scan_command_stays_light(tmp_path: Path) -> None:
    code = (
        "import sys, modelward.cli.scan, modelward.report; "
        "print(sorted(m for m in ('rich', 'modelward.scanner', 'modelward.formats') "
        "if m in sys.modules))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=tmp_path
    )
    assert done.stdout.strip() == "[]"
