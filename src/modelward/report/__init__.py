"""Renderers: turn a `ScanReport` into text for people or machines. They never decide verdicts.

`RENDERERS` maps a `--format` name to a function `(report) -> str`.
"""

from __future__ import annotations

from collections.abc import Callable

from modelward.findings import ScanReport
from modelward.report.json import render_json

Renderer = Callable[[ScanReport], str]

RENDERERS: dict[str, Renderer] = {
    "json": render_json,
}
