"""`--format table` (the default): findings for people, styled on a terminal, plain in a pipe.

Everything shown comes from the scanned files (names, evidence), so it is made
printable first: hostile bytes must not inject terminal escape sequences or
rich markup into the user's terminal.
"""

from __future__ import annotations

import shutil
from collections import Counter
from io import StringIO
from typing import TYPE_CHECKING, NamedTuple

from modelward.findings import Finding, ScanReport, ScanResult, Severity

if TYPE_CHECKING:
    from rich.table import Table
    from rich.text import Text

#: Width of plain-text output (pipes, files); a terminal uses its own width.
PLAIN_WIDTH = 120

#: Longest evidence shown in the table; the JSON and SARIF reports carry it whole.
MAX_EVIDENCE = 120

SEVERITY_STYLES = {
    Severity.CRITICAL: "bold white on red",
    Severity.HIGH: "bold red",
    Severity.MEDIUM: "yellow",
    Severity.LOW: "cyan",
    Severity.INFO: "dim",
}


class Line(NamedTuple):
    """One output line as (text, rich style) segments over a base style.

    A clean scan in a pipe is joined as plain text without importing `rich` (start-up is
    most of a small scan); a terminal or a findings table renders it with `rich`.
    """

    segments: list[tuple[str, str]]
    style: str = ""

    @property
    def plain(self) -> str:
        return "".join(text for text, _ in self.segments)

    def text(self) -> Text:
        from rich.text import Text

        return Text.assemble(*self.segments, style=self.style)


def render_table(report: ScanReport, *, terminal: bool = False) -> str:
    """Render `report` as text; `terminal` styles it and fits the terminal's width."""
    flagged = [r for r in report.results if _is_flagged(r)]
    # One line per file and per compact finding, never wrapped: grep and diff friendly.
    lines: list[Line] = []
    for result in report.results:
        lines.append(_file_line(result))
        if not _is_flagged(result):
            lines.extend(_compact_finding(finding) for finding in result.findings)
    lines.append(verdict_line(report))
    if not terminal:
        table = [*_plain_findings_table(flagged, PLAIN_WIDTH), ""] if flagged else []
        return "".join(row.rstrip() + "\n" for row in table + [line.plain for line in lines])
    from rich.console import Console

    width = shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns
    buffer = StringIO()
    console = Console(
        file=buffer,
        width=width,
        force_terminal=True,
        highlight=False,
        emoji=False,
        legacy_windows=False,
    )
    if flagged:
        console.print(_findings_table(flagged))
        console.print()
    for line in lines:
        console.print(line.text(), soft_wrap=True)
    # rich pads table cells to the width; trailing blanks only get in the way of diffs and grep.
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def verdict_line(report: ScanReport) -> Line:
    """`N files scanned in T s, M findings: 2 critical, 1 medium` (or `no findings`)."""
    files = _plural(len(report.results), "file")
    findings = report.findings
    segments = [(f"{files} scanned in {report.seconds:.2f} s, ", "")]
    if not findings:
        segments.append(("no findings", "bold green"))
    else:
        counts = Counter(f.severity for f in findings)
        segments.append((f"{_plural(len(findings), 'finding')}: ", ""))
        for i, severity in enumerate(sorted(counts, reverse=True)):
            if i:
                segments.append((", ", ""))
            segments.append((f"{counts[severity]} {severity.label}", SEVERITY_STYLES[severity]))
    if report.errors:
        segments.append((f"; {_plural(len(report.errors), 'error')}", "bold red"))
    return Line(segments, "bold")


def _is_flagged(result: ScanResult) -> bool:
    """Files with a finding above INFO get table rows; the rest are listed compactly."""
    top = result.max_severity
    return top is not None and top > Severity.INFO


def _findings_table(results: list[ScanResult]) -> Table:
    """Severity, rule over its ATLAS technique, location, message over its evidence."""
    from rich import box
    from rich.table import Table
    from rich.text import Text

    table = Table(box=box.SIMPLE_HEAD, show_edge=False, pad_edge=False)
    table.add_column("severity", no_wrap=True)
    table.add_column("rule / ATLAS", no_wrap=True)
    table.add_column("location", overflow="fold", ratio=2)
    table.add_column("message / evidence", overflow="fold", ratio=3)
    for result in results:
        for finding in _by_severity(result.findings):
            detail = Text(printable(finding.message))
            if finding.evidence:
                detail.append("\n")
                detail.append(_short_evidence(finding.evidence), style="dim")
            table.add_row(
                Text(finding.severity.label, style=SEVERITY_STYLES[finding.severity]),
                Text(f"{finding.rule_id}\n{finding.technique}"),
                Text(printable(str(finding.location))),
                detail,
            )
    return table


#: Column titles of the findings table, and the share of the free width the last two get.
_HEADERS = ("severity", "rule / ATLAS", "location", "message / evidence")
_LOCATION_SHARE = 2 / 5
_GAP = "   "


def _plain_findings_table(results: list[ScanResult], width: int) -> list[str]:
    """The findings table as plain lines, laid out as the styled one (no `rich`: a pipe or
    file gets thousands of rows in milliseconds, where `rich` measures every cell)."""
    rows: list[tuple[list[str], list[str], str, str]] = []
    for result in results:
        for finding in _by_severity(result.findings):
            detail = [printable(finding.message)]
            if finding.evidence:
                detail.append(_short_evidence(finding.evidence))
            rows.append(
                (
                    [finding.severity.label],
                    [finding.rule_id, finding.technique],
                    printable(str(finding.location)),
                    "\n".join(detail),
                )
            )
    first = max([len(_HEADERS[0])] + [len(r[0][0]) for r in rows])
    second = max([len(_HEADERS[1])] + [len(line) for r in rows for line in r[1]])
    free = max(width - first - second - 3 * len(_GAP), 20)
    third = max(int(free * _LOCATION_SHARE), 10)
    fourth = max(free - third, 10)
    widths = (first, second, third, fourth)
    out = [_GAP.join(h.ljust(w) for h, w in zip(_HEADERS, widths, strict=True))]
    out.append("─" * min(width, sum(widths) + 3 * len(_GAP)))
    for severity, rule, location, message in rows:
        cells = (severity, rule, _fold(location, third), _fold(message, fourth))
        for i in range(max(len(c) for c in cells)):
            out.append(
                _GAP.join(
                    (c[i] if i < len(c) else "").ljust(w)
                    for c, w in zip(cells, widths, strict=True)
                )
            )
    return out


def _fold(text: str, width: int) -> list[str]:
    """`text` wrapped at spaces into lines of at most `width`, longer words cut."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        line = ""
        for word in paragraph.split(" "):
            while len(word) > width:
                if line:
                    lines.append(line)
                    line = ""
                lines.append(word[:width])
                word = word[width:]
            if not line:
                line = word
            elif len(line) + 1 + len(word) <= width:
                line += " " + word
            else:
                lines.append(line)
                line = word
        lines.append(line)
    return lines


def _file_line(result: ScanResult) -> Line:
    """`path  format  read 1.2 KiB of 3.0 MiB  0.01 s`, with errors and a mark for the worst."""
    top = result.max_severity
    if result.errors:
        mark = ("!", "bold red")
    elif top is None or top == Severity.INFO:
        mark = ("✓" if top is None else "·", "green")
    else:
        mark = _severity_segment(top)
    flagged = _is_flagged(result)
    segments = [
        mark,
        (" ", ""),
        (printable(result.path), "bold" if flagged else ""),
        (
            f"  {result.format}  read {human_bytes(result.bytes_read)} of"
            f" {human_bytes(result.size)}  {result.seconds:.2f} s",
            "",
        ),
    ]
    segments += [(f"  error: {printable(error)}", "red") for error in result.errors]
    return Line(segments, "" if flagged or result.errors else "dim")


def _compact_finding(finding: Finding) -> Line:
    detail = f" {finding.rule_id} {printable(str(finding.location))}: {printable(finding.message)}"
    if finding.evidence:
        detail += f" ({_short_evidence(finding.evidence)})"
    return Line([("    ", ""), _severity_segment(finding.severity), (detail, "")], "dim")


def _by_severity(findings: list[Finding]) -> list[Finding]:
    """Worst first; equal severities keep the order the scanner found them in."""
    return sorted(findings, key=lambda f: -f.severity)


def _severity_segment(severity: Severity) -> tuple[str, str]:
    return severity.label, SEVERITY_STYLES[severity]


def _short_evidence(evidence: str | None) -> str:
    if not evidence:
        return ""
    text = printable(evidence)
    return text if len(text) <= MAX_EVIDENCE else text[: MAX_EVIDENCE - 1] + "…"


def printable(text: str) -> str:
    """`text` with every non-printable character escaped (`\\x1b`, `\\n`), as `repr` would."""
    if text.isprintable():
        return text
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def human_bytes(count: int) -> str:
    """`512 B`, `1.5 KiB`, `3.2 GiB`."""
    if count < 1024:
        return f"{count} B"
    value = float(count)
    for unit in ("KiB", "MiB", "GiB"):
        value /= 1024
        if value < 1024:
            return f"{value:.1f} {unit}"
    return f"{value / 1024:.1f} TiB"


def _plural(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"
