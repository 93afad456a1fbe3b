"""The one small interface every format scanner implements, and what it is given.

A scanner receives a `Blob` (a file, or a member of a container, or a
decompressed stream) and a `ScanContext` (limits, policy, where findings go,
and a way to hand nested members back to the dispatcher). It reads only the
bytes it needs through `Blob.open()` and reports through `ctx.report()`.
"""

from __future__ import annotations

import io
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO, Protocol

from modelward.findings import Finding, Location, ScanResult, Severity

if TYPE_CHECKING:
    from modelward.config import ScanConfig

#: Bytes given to `FormatScanner.detect`; enough for every magic number and header we sniff.
HEAD_SIZE = 4096
#: Decompressed content or tar members up to this size are held in memory; larger ones re-read.
IN_MEMORY_BYTES = 8 * 1024**2
#: The finding for a file whose nested streams together decompress past the per-file budget.
DECOMPRESSION_BUDGET_RULE = "MW-LIMIT-DECOMPRESSED"


class ScanAborted(Exception):
    """Raised inside a scanner when a limit is hit; the dispatcher turns it into a finding."""

    def __init__(self, rule_id: str, message: str) -> None:
        super().__init__(message)
        self.rule_id = rule_id
        self.message = message


@dataclass
class Blob:
    """Bytes to scan: a file on disk or something inside one.

    `fs_path` is the real file when the blob is one (scanners that look at
    neighbouring files, like ONNX external data, need it); `None` for members.
    """

    location: Location
    size: int
    opener: Callable[[], BinaryIO]
    fs_path: Path | None = None
    #: What detectors worked out about this blob (a zip's member names), so that several
    #: detectors asking the same question parse the bytes once.
    sniffed: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_file(cls, path: Path, display: str | None = None) -> Blob:
        return cls(
            location=Location(display if display is not None else str(path)),
            size=path.stat().st_size,
            opener=lambda: path.open("rb"),
            fs_path=path,
        )

    @classmethod
    def from_bytes(cls, location: Location, data: bytes) -> Blob:
        return cls(location=location, size=len(data), opener=lambda: io.BytesIO(data))

    @property
    def name(self) -> str:
        return self.location.members[-1] if self.location.members else self.location.path

    def open(self) -> BinaryIO:
        return self.opener()

    def head(self, n: int = HEAD_SIZE) -> bytes:
        with self.open() as stream:
            return stream.read(n)


class FormatScanner(Protocol):
    """One file format: recognise it by its bytes, then scan it."""

    #: Short stable name, reported as `ScanResult.format` (`pickle`, `pytorch-zip`, ...).
    name: str

    def detect(self, blob: Blob, head: bytes) -> bool:
        """True when `head` (the first `HEAD_SIZE` bytes) says the blob is this format."""
        ...

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        """Report findings for `blob` through `ctx`; raise `ScanAborted` on a limit."""
        ...


@dataclass
class DecompressionBudget:
    """Decompressed bytes one scanned file has produced so far, shared by all its nested scans.

    Each stream is capped on its own (`max_decompressed_bytes`); this total is what stops
    many capped streams nested in one another (42.zip) before the time limit does.
    """

    used: int = 0
    #: Whether `DECOMPRESSION_BUDGET_RULE` is already reported for this file (it is, once).
    reported: bool = False


@dataclass
class ScanContext:
    """What a scanner may use: config and limits, a sink for findings, and nested dispatch."""

    config: ScanConfig
    result: ScanResult
    dispatch: Callable[[Blob, ScanContext], str]
    depth: int = 0
    deadline: float = field(default_factory=lambda: float("inf"))
    read_counter: list[int] = field(default_factory=lambda: [0])
    budget: DecompressionBudget = field(default_factory=DecompressionBudget)

    def report(
        self,
        rule_id: str,
        severity: Severity,
        location: Location,
        message: str,
        evidence: str | None = None,
        technique: str | None = None,
    ) -> None:
        if rule_id == DECOMPRESSION_BUDGET_RULE:
            # Every decoder still open raises it again once the budget is spent: one finding.
            if self.budget.reported:
                return
            self.budget.reported = True
        kwargs = {} if technique is None else {"technique": technique}
        self.result.findings.append(
            Finding(rule_id, severity, location, message, evidence, **kwargs)
        )

    def check_deadline(self) -> None:
        """Scanners call this in loops over hostile input so a file cannot hang the run."""
        if time.monotonic() > self.deadline:
            raise ScanAborted(
                "MW-LIMIT-TIME",
                f"scan exceeded the {self.config.limits.max_seconds_per_file:g} s per-file limit",
            )

    def charge_decompressed(self, count: int) -> None:
        """Count `count` bytes a decoder produced (or must produce to seek) for this file.

        Past `max_total_decompressed_bytes` every further charge raises, so each decoder of
        the file stops at its next read and nothing more is decompressed.
        """
        self.budget.used += count
        if self._budget_spent():
            raise ScanAborted(DECOMPRESSION_BUDGET_RULE, self._budget_message())

    def _budget_spent(self) -> bool:
        return self.budget.used > self.config.limits.max_total_decompressed_bytes

    def _budget_message(self) -> str:
        return (
            "nested streams decompressed past the per-file total of"
            f" {self.config.limits.max_total_decompressed_bytes} bytes"
            " (max_total_decompressed_bytes; a nested decompression bomb?); the rest of the"
            " file is not scanned"
        )

    def counted(self, stream: BinaryIO, limit: int | None = None) -> BinaryIO:
        """Wrap `stream` so its reads count toward `bytes_read` and stop at `limit`."""
        from modelward.formats._streams import CountingReader  # the streams raise ScanAborted

        reader = CountingReader(stream, self.read_counter, limit)
        return io.BufferedReader(reader, buffer_size=64 * 1024)

    @contextmanager
    def open(self, blob: Blob, limit: int | None = None) -> Iterator[BinaryIO]:
        """Open a blob for reading, counted (and capped at `limit` bytes when given)."""
        with self.counted(blob.open(), limit) as stream:
            yield stream

    def scan_member(self, blob: Blob) -> str:
        """Scan a member of a container with whichever scanner recognises it.

        Returns the format name. Nesting deeper than the configured limit is a finding.
        """
        if self.depth + 1 > self.config.limits.max_nesting_depth:
            self.report(
                "MW-LIMIT-DEPTH",
                Severity.MEDIUM,
                blob.location,
                f"containers nested deeper than {self.config.limits.max_nesting_depth} levels;"
                " inner content not scanned",
            )
            return "nested-too-deep"
        found = "aborted"
        if not self._budget_spent():  # once it is spent, descend no further
            child = ScanContext(
                config=self.config,
                result=self.result,
                dispatch=self.dispatch,
                depth=self.depth + 1,
                deadline=self.deadline,
                read_counter=self.read_counter,
                budget=self.budget,
            )
            found = self.dispatch(blob, child)
        if self._budget_spent():
            # Reported once per file (`report`), also when a detector swallowed the abort.
            self.report(
                DECOMPRESSION_BUDGET_RULE, Severity.MEDIUM, blob.location, self._budget_message()
            )
        return found
