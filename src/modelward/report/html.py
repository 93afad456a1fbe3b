"""`--format html`: the report as one self-contained HTML file (inline CSS, no script, no fetches).

Paths, messages and evidence come from the scanned files, so every template is
autoescaped and the page carries a Content-Security-Policy that allows nothing but
its own stylesheet: a slip in escaping still could not run a script. The service's
pages (`modelward.service.web`) render from the same templates and findings table.
"""

from __future__ import annotations

import base64
import hashlib
from collections import Counter
from datetime import UTC, datetime
from functools import cache
from importlib import resources

import jinja2

from modelward.findings import Finding, ScanReport, Severity
from modelward.report.table import human_bytes, printable, verdict_line

#: Evidence longer than this is folded into a `<details>` element (shown whole when opened).
LONG_EVIDENCE = 160


def render_html(report: ScanReport, *, terminal: bool = False) -> str:
    """The same page on a terminal as in a file: HTML is never styled for a terminal."""
    counts = Counter(f.severity for f in report.findings)
    page = environment().get_template("report.html.j2")
    return page.render(
        report=report,
        verdict=verdict_line(report).plain,
        counts=[(level, counts[level]) for level in sorted(Severity, reverse=True)],
        csp=f"default-src 'none'; style-src {style_source()}; base-uri 'none'; form-action 'none'",
        generated=utc(datetime.now(UTC)),
    )


@cache
def environment() -> jinja2.Environment:
    """The templates, autoescaped everywhere, with the filters the pages share."""
    from modelward import __version__

    env = jinja2.Environment(
        loader=jinja2.PackageLoader("modelward.report", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["printable"] = printable
    env.filters["human_bytes"] = human_bytes
    env.filters["worst_first"] = worst_first
    env.filters["utc"] = utc
    env.globals.update(css=stylesheet(), version=__version__, long_evidence=LONG_EVIDENCE)
    return env


def worst_first(findings: list[Finding]) -> list[Finding]:
    """Worst first across all files; equal severities keep the scanner's order."""
    return sorted(findings, key=lambda f: -f.severity)


def utc(moment: datetime) -> str:
    """`2026-11-23 13:20:05 UTC`: stored times are tz-aware; shown in UTC, seconds precision."""
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


@cache
def stylesheet() -> str:
    return resources.files("modelward.report").joinpath("templates", "style.css").read_text("utf-8")


@cache
def style_source() -> str:
    """The CSP source (`'sha256-…'`) that allows exactly the inline stylesheet and nothing else."""
    digest = hashlib.sha256(stylesheet().encode("utf-8")).digest()
    return f"'sha256-{base64.b64encode(digest).decode('ascii')}'"
