"""Checks on how a format's tensors tile its data section.

Safetensors and GGUF both describe tensors as byte ranges of one data section.
Ranges that overlap let one tensor alias another; bytes no tensor claims are
hidden data (a smuggled payload, a polyglot file). Both are findings.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class Extent:
    """A named byte range `[begin, end)` of a data section."""

    name: str
    begin: int
    end: int


@dataclass(frozen=True)
class LayoutProblem:
    """Two extents overlapping, or bytes between/after extents that nothing claims."""

    kind: Literal["overlap", "gap"]
    begin: int
    end: int
    #: The extent that overlaps an earlier one, or that follows the gap ("" after the last).
    name: str


def layout_problems(
    extents: Iterable[Extent], total: int, slack: int = 0
) -> Iterator[LayoutProblem]:
    """Overlaps and unclaimed gaps in `[0, total)`; gaps of at most `slack` bytes are padding."""
    covered = 0
    for extent in sorted(extents, key=lambda e: (e.begin, e.end)):
        if extent.begin < covered:
            yield LayoutProblem("overlap", extent.begin, min(covered, extent.end), extent.name)
        elif extent.begin - covered > slack:
            yield LayoutProblem("gap", covered, extent.begin, extent.name)
        covered = max(covered, extent.end)
    if total - covered > slack:
        yield LayoutProblem("gap", covered, total, "")
