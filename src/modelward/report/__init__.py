"""Renderers: turn a `ScanReport` into text for people or machines. They never decide verdicts.

`RENDERERS` maps a `--format` name to a `Renderer`. Each is imported only when
called, so that `modelward scan` does not pay for `rich` when it writes JSON.
Adding a format is adding one module and one line here.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Protocol

from modelward.findings import ScanReport


class Renderer(Protocol):
    """`(report) -> text`; `terminal=True` when the text goes to an interactive terminal."""

    def __call__(self, report: ScanReport, *, terminal: bool = False) -> str: ...


@dataclass(frozen=True)
class LazyRenderer:
    """A renderer named `module:function`, imported on first use."""

    target: str

    def __call__(self, report: ScanReport, *, terminal: bool = False) -> str:
        module, _, name = self.target.partition(":")
        render: Renderer = getattr(importlib.import_module(module), name)
        return render(report, terminal=terminal)


RENDERERS: dict[str, Renderer] = {
    "table": LazyRenderer("modelward.report.table:render_table"),
    "json": LazyRenderer("modelward.report.json:render_json"),
    "sarif": LazyRenderer("modelward.report.sarif:render_sarif"),
    "html": LazyRenderer("modelward.report.html:render_html"),
}
