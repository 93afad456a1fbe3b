"""`--format json`: the report as one JSON document (see `ScanReport.to_dict`)."""

from __future__ import annotations

import json

from modelward.findings import ScanReport


def render_json(report: ScanReport, *, terminal: bool = False) -> str:
    """The same document on a terminal as in a pipe: machine formats are never styled."""
    return json.dumps(report.to_dict(), indent=2) + "\n"
