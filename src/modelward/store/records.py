"""What the results store hands back: plain frozen records, free of any database type.

Callers (the CLI, the service, Ray tasks) never see an ORM object, so a record can be
passed between processes and outlives the session that read it.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from modelward.findings import ScanResult, Severity

#: Where a scan event came from.
SOURCES = ("cli", "service", "ray")
#: Kinds of verdict: `verify` (signature), `lock --check` (lock) and `gate` (gate).
VERDICT_KINDS = ("signature", "lock", "gate")


@dataclass(frozen=True)
class ScanEvent:
    """A scan event not yet recorded: what `ResultStore.record_scans` writes for one file.

    `reusable=False` keeps the result out of the cache even when it looks clean (the file
    changed while it was scanned); `cached` says the result came from the store.
    """

    sha256: str
    result: ScanResult
    source: str = "cli"
    config_digest: str = ""
    cached: bool = False
    diff: dict[str, Any] | None = None
    reusable: bool = True


@dataclass(frozen=True)
class StoredScan:
    """One scan event: a file scanned (or its stored result reused) at a time, from a source."""

    id: str
    sha256: str
    path: str
    ruleset: str
    scanned_at: datetime
    cached: bool
    source: str
    result: ScanResult
    diff: dict[str, Any] | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "sha256": self.sha256,
            "path": self.path,
            "ruleset": self.ruleset,
            "scanned_at": self.scanned_at.isoformat(),
            "cached": self.cached,
            "source": self.source,
            "result": self.result.to_dict(),
            "diff": self.diff,
        }


@dataclass(frozen=True)
class CheckVerdict:
    """The outcome of a pass/fail check of a file (signature, lock or gate), by digest."""

    sha256: str
    path: str
    kind: str
    passed: bool
    detail: str
    recorded_at: datetime

    def to_dict(self) -> dict[str, Any]:
        return {
            "sha256": self.sha256,
            "path": self.path,
            "kind": self.kind,
            "passed": self.passed,
            "detail": self.detail,
            "recorded_at": self.recorded_at.isoformat(),
        }


#: Deprecated: the name before `CheckVerdict` (kept for `modelward.store.Verdict` users).
Verdict = CheckVerdict


@dataclass(frozen=True)
class ModelSummary:
    """One file the store knows, as the web index lists it."""

    sha256: str
    path: str
    format: str
    max_severity: Severity | None
    last_scanned: datetime
    scans: int
    signature: CheckVerdict | None
    lock: CheckVerdict | None
