"""The HTML report: what it shows, that it is self-contained, and that hostile text stays text."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path

from fixtures.html_pages import (
    HOSTILE_ARGUMENT,
    HOSTILE_NAME,
    assert_no_injected_markup,
    hostile_pickle,
    parse_page,
)
from fixtures.reports import HOSTILE_TEXT, clean_report, every_severity_report
from modelward.cli.main import EXIT_FINDINGS, main
from modelward.config import ScanConfig
from modelward.findings import ScanReport, ScanResult
from modelward.report import RENDERERS
from modelward.report.html import LONG_EVIDENCE, render_html
from modelward.scanner import scan_file


def test_summary_files_findings_and_errors_are_all_shown() -> None:
    report = every_severity_report()
    page = parse_page(render_html(report))
    text = page.text
    assert "4 files scanned in 0.30 s, 5 findings: 1 critical, 1 high" in text
    for finding in report.findings:
        assert finding.rule_id in text
        assert finding.technique in text
    assert "models/evil.pt!archive/data.pkl@42" in text
    assert "pickle imports os.system, which runs a shell command on load" in text
    assert "GLOBAL 'os system'" in text
    for result in report.results:
        assert result.path in text
        assert result.format in text
    assert "5.0 MiB" in text
    assert "locked.bin: cannot read: denied" in text
    severities = [attrs["class"] for attrs in page.tags("span")]
    assert "sev sev-error" in severities  # the unreadable file is marked, not "none"


def test_findings_are_worst_first_in_one_table() -> None:
    html = render_html(every_severity_report())
    rows = [html.index(f"MW-TEST-{level}") for level in ("CRITICAL", "HIGH", "MEDIUM", "LOW")]
    assert rows == sorted(rows)
    assert html.count('<table class="findings">') == 1


def test_control_characters_are_shown_escaped_and_long_evidence_folded() -> None:
    page = parse_page(render_html(every_severity_report()))
    assert "\x1b" not in page.text
    assert r"\x1b[31mred\x1b[0m [bold]markup[/bold]\nnext line" in page.text
    assert HOSTILE_TEXT not in page.text
    [folded] = page.tags("details")
    assert folded == {}
    assert "x" * 500 in page.text  # whole when opened
    assert "x" * LONG_EVIDENCE + "…" in page.text


def test_a_clean_report_says_so() -> None:
    text = parse_page(render_html(clean_report())).text
    assert "1 file scanned in 0.01 s, no findings" in text
    assert "No findings." in text
    assert "Errors" not in text


def test_self_contained_and_locked_down_by_its_own_csp() -> None:
    html = render_html(every_severity_report())
    page = parse_page(html)
    assert not page.tags("script")
    assert not page.tags("link")
    assert all("src" not in attrs and "href" not in attrs for _, attrs in page.elements)
    [csp] = [a["content"] for a in page.tags("meta") if a.get("http-equiv")]
    assert csp is not None
    assert csp.startswith("default-src 'none'; style-src 'sha256-")
    [style] = page.styles
    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert f"'sha256-{digest}'" in csp


def test_hostile_file_name_and_pickle_evidence_stay_text(tmp_path: Path) -> None:
    model = tmp_path / HOSTILE_NAME
    model.write_bytes(hostile_pickle())
    shown = "<script>alert(1)</script>.pkl"
    result = scan_file(model, ScanConfig(), display=shown)
    named = scan_file(model, ScanConfig())
    html = render_html(ScanReport([result, named], seconds=0.1))
    page = parse_page(html)
    assert_no_injected_markup(page)
    assert not page.tags("script")
    assert shown in page.text
    assert HOSTILE_NAME in page.text
    assert HOSTILE_ARGUMENT in page.text
    assert "MW-PICKLE-DANGEROUS-GLOBAL" in page.text


def test_scan_format_html_writes_the_report(tmp_path: Path) -> None:
    model = tmp_path / HOSTILE_NAME
    model.write_bytes(hostile_pickle())
    out = tmp_path / "report.html"
    assert RENDERERS["html"](ScanReport()).startswith("<!doctype html>")
    assert main(["scan", str(model), "--format", "html", "--output", str(out)]) == EXIT_FINDINGS
    page = parse_page(out.read_text(encoding="utf-8"))
    assert_no_injected_markup(page)
    assert "critical" in page.text
    assert HOSTILE_ARGUMENT in page.text


def test_bidirectional_overrides_in_names_are_shown_escaped() -> None:
    name = "invoice\u202egpj.pkl"  # shows as "invoicelkp.jpg" if rendered raw
    page = parse_page(render_html(ScanReport([ScanResult(path=name, format="pickle")])))
    assert "\u202e" not in page.text
    assert r"invoice\u202egpj.pkl" in page.text
