"""The default table: what it shows, plain in pipes, styled on terminals, injection-proof."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.reports import (
    clean_report,
    every_severity_report,
    write_model_folder,
)
from modelward.findings import Finding, Location, ScanReport, ScanResult, Severity
from modelward.report import RENDERERS
from modelward.report.table import human_bytes, printable, render_table

ANSI = re.compile(r"\x1b\[")


def test_findings_table_shows_every_column_and_the_verdict() -> None:
    report = every_severity_report()
    text = render_table(report)
    for finding in report.results[0].findings:
        assert finding.rule_id in text
        assert finding.technique in text
    assert "models/evil.pt!archive/data.pkl@42" in text
    assert "GLOBAL 'os system'" in text
    last = text.rstrip("\n").splitlines()[-1]
    assert last.startswith("4 files scanned in 0.30 s, 5 findings: ")
    assert last.endswith("1 critical, 1 high, 1 medium, 1 low, 1 info; 1 error")


def test_findings_are_listed_worst_first() -> None:
    text = render_table(every_severity_report())
    rows = [text.index(f"MW-TEST-{s.name}") for s in sorted(Severity, reverse=True)]
    assert rows == sorted(rows)


def test_per_file_lines_give_format_bytes_read_and_time() -> None:
    text = render_table(every_severity_report())
    [evil] = [line for line in text.splitlines() if line.endswith("0.25 s")]
    assert "models/evil.pt  pytorch-zip  read 2.0 KiB of 5.0 MiB" in evil
    assert evil.startswith("critical ")
    assert any(
        line.startswith("✓ config.json  text  read 10 B of 10 B") for line in text.splitlines()
    )
    assert "locked.bin  unreadable" in text
    assert "error: cannot read: denied" in text


def test_info_only_files_are_listed_compactly_not_in_the_table() -> None:
    report = every_severity_report()
    text = render_table(report)
    header = next(i for i, line in enumerate(text.splitlines()) if line.startswith("severity"))
    compact = [line for line in text.splitlines() if "MW-TEST-INFO" in line]
    assert len(compact) == 1
    assert compact[0].startswith("    info MW-TEST-INFO models/notes.bin: a note")
    assert text.splitlines().index(compact[0]) > header
    info_only = ScanReport(results=[report.results[1]])
    assert "severity" not in render_table(info_only).splitlines()[0]


def test_clean_report_says_no_findings() -> None:
    text = render_table(clean_report())
    assert "rule" not in text
    assert text.rstrip().endswith("1 file scanned in 0.01 s, no findings")


def test_plain_in_a_pipe_styled_on_a_terminal() -> None:
    report = every_severity_report()
    assert not ANSI.search(render_table(report))
    styled = render_table(report, terminal=True)
    assert ANSI.search(styled)
    assert "MW-TEST-CRITICAL" in styled


def test_hostile_text_cannot_inject_escapes_or_markup() -> None:
    for terminal in (False, True):
        text = render_table(every_severity_report(), terminal=terminal)
        assert "\x1b[31mred" not in text
        assert "\\x1b[31mred" in text.replace("\n", "")
        assert "[bold]markup[/bold]" in text.replace("\n", "")
    assert "\nnext line" not in render_table(every_severity_report())


def test_long_evidence_is_shortened_in_the_table_only() -> None:
    text = render_table(every_severity_report())
    assert "x" * 500 not in text.replace("\n", "").replace(" ", "")
    assert "…" in text


def test_real_scan_of_an_unknown_binary(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "model")
    report = modelward.scan(folder)
    text = RENDERERS["table"](report)
    unknown = [f for f in report.findings if f.rule_id == "MW-FORMAT-UNKNOWN"]
    assert len(unknown) == 2
    assert text.count("MW-FORMAT-UNKNOWN") == 2
    assert f"{printable(str(folder / 'weights.bin'))}  unknown" in text
    assert text.rstrip().endswith(
        f"3 files scanned in {report.seconds:.2f} s, 2 findings: 2 medium"
    )


def test_human_bytes() -> None:
    assert human_bytes(0) == "0 B"
    assert human_bytes(1023) == "1023 B"
    assert human_bytes(1536) == "1.5 KiB"
    assert human_bytes(3 * 1024**3) == "3.0 GiB"
    assert human_bytes(2 * 1024**4) == "2.0 TiB"


@given(st.text())
def test_printable_escapes_every_control_character(text: str) -> None:
    shown = printable(text)
    assert shown.isprintable()
    if text.isprintable():
        assert shown == text


@given(st.text(max_size=60), st.text(max_size=60), st.sampled_from(list(Severity)))
def test_any_text_renders_without_control_characters(
    path: str, evidence: str, severity: Severity
) -> None:
    location = Location(path, (evidence,), 3)
    report = ScanReport(
        results=[
            ScanResult(
                path=path, findings=[Finding("MW-X", severity, location, evidence, evidence)]
            )
        ]
    )
    text = render_table(report)
    assert all(c.isprintable() or c == "\n" for c in text)
    assert "1 finding: 1 " + severity.label in text


def test_file_lines_are_not_wrapped() -> None:
    long_name = "d" * 150 + ".bin"
    report = ScanReport(results=[ScanResult(path=long_name, format="text", size=3, bytes_read=3)])
    [line] = [line for line in render_table(report).splitlines() if long_name in line]
    assert line.endswith("read 3 B of 3 B  0.00 s")


def test_no_color_keeps_a_terminal_table_colourless(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NO_COLOR", "1")
    styled = render_table(every_severity_report(), terminal=True)
    codes = set(re.findall(r"\x1b\[([0-9;]*)m", styled))
    assert codes
    assert all(int(p) < 30 for code in codes for p in code.split(";") if p)
