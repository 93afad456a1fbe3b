"""The findings model shared by every scanner, checker and renderer.

A scanner never prints or decides exit codes: it produces `Finding`s inside a
`ScanResult`; a run gathers results into a `ScanReport`; renderers turn that
into a table, JSON or SARIF.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

#: MITRE ATLAS techniques findings are tagged with.
ATLAS_MODEL_SUPPLY_CHAIN = "AML.T0010.003"
ATLAS_MODIFY_ARCHITECTURE = "AML.T0018.001"

#: Separator between a container and the member inside it, as in `model.pt!archive/data.pkl`.
MEMBER_SEPARATOR = "!"


class Severity(enum.IntEnum):
    """How bad a finding is; ordered so that thresholds compare with `>=`."""

    INFO = 0
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @classmethod
    def parse(cls, text: str) -> Severity:
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(s.label for s in cls)
            raise ValueError(f"unknown severity {text!r}; choose one of: {choices}") from None

    @property
    def label(self) -> str:
        return self.name.lower()


@dataclass(frozen=True)
class Location:
    """Where a finding is: a file, the chain of members inside containers, and a byte offset.

    The offset is relative to the innermost member (or the file when there is none).
    """

    path: str
    members: tuple[str, ...] = ()
    offset: int | None = None

    def member(self, name: str) -> Location:
        """The location of `name` inside this one (a zip member, a decompressed stream...)."""
        return Location(self.path, (*self.members, name))

    def at(self, offset: int | None) -> Location:
        return Location(self.path, self.members, offset)

    @property
    def container_path(self) -> str:
        """`file!member!inner`, without the offset."""
        return MEMBER_SEPARATOR.join((self.path, *self.members))

    def __str__(self) -> str:
        text = self.container_path
        return text if self.offset is None else f"{text}@{self.offset}"

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "members": list(self.members), "offset": self.offset}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Location:
        return cls(str(data["path"]), tuple(data.get("members", ())), data.get("offset"))


@dataclass(frozen=True)
class Finding:
    """One reason to distrust a file."""

    rule_id: str
    severity: Severity
    location: Location
    message: str
    evidence: str | None = None
    technique: str = ATLAS_MODEL_SUPPLY_CHAIN

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule_id": self.rule_id,
            "severity": self.severity.label,
            "location": self.location.to_dict(),
            "where": str(self.location),
            "message": self.message,
            "evidence": self.evidence,
            "technique": self.technique,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Finding:
        return cls(
            rule_id=data["rule_id"],
            severity=Severity.parse(data["severity"]),
            location=Location.from_dict(data["location"]),
            message=data["message"],
            evidence=data.get("evidence"),
            technique=data.get("technique", ATLAS_MODEL_SUPPLY_CHAIN),
        )


@dataclass
class ScanResult:
    """What scanning one file found: its detected format, findings, errors and cost."""

    path: str
    format: str = "unknown"
    findings: list[Finding] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    bytes_read: int = 0
    size: int = 0
    seconds: float = 0.0
    #: Real paths of raw data files this file declares as its own (ONNX external data), so a
    #: folder scan can tell them from unknown binaries.
    data_files: list[str] = field(default_factory=list)

    @property
    def max_severity(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    def to_dict(self) -> dict[str, Any]:
        top = self.max_severity
        return {
            "path": self.path,
            "format": self.format,
            "size": self.size,
            "bytes_read": self.bytes_read,
            "seconds": round(self.seconds, 6),
            "max_severity": top.label if top is not None else None,
            "findings": [f.to_dict() for f in self.findings],
            "errors": list(self.errors),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> ScanResult:
        """The result `to_dict` wrote (as stored by the results store or sent by a Ray task).

        `data_files` is not in `to_dict` (real local paths do not belong in a report); a
        sender that needs it across processes adds it under that key.
        """
        return cls(
            path=data["path"],
            format=data.get("format", "unknown"),
            findings=[Finding.from_dict(f) for f in data.get("findings", ())],
            errors=list(data.get("errors", ())),
            bytes_read=data.get("bytes_read", 0),
            size=data.get("size", 0),
            seconds=data.get("seconds", 0.0),
            data_files=list(data.get("data_files", ())),
        )

    def moved_to(self, path: str) -> ScanResult:
        """This result as if the same bytes had been scanned at `path` (a reused result)."""
        if path == self.path:
            return self
        findings = [
            replace(f, location=replace(f.location, path=path))
            if f.location.path == self.path
            else f
            for f in self.findings
        ]
        return replace(self, path=path, findings=findings)

    def renamed(self, names: Sequence[tuple[str, str]]) -> ScanResult:
        """This result with each `(real, shown)` path replaced wherever it is written.

        Paths, archive members, messages, evidence and errors are rewritten (a reader's
        error names the file it could not read), longest real path first so that neither
        is rewritten inside the other; on a tie, the pair given first wins. The service
        uses it to answer with the names a client used, never the server's own paths.
        """
        order = sorted(names, key=lambda pair: -len(pair[0]))

        def shown(text: str) -> str:
            for real, name in order:
                text = text.replace(real, name)
            return text

        findings = [
            replace(
                f,
                location=Location(
                    shown(f.location.path),
                    tuple(shown(m) for m in f.location.members),
                    f.location.offset,
                ),
                message=shown(f.message),
                evidence=None if f.evidence is None else shown(f.evidence),
            )
            for f in self.findings
        ]
        errors = [shown(e) for e in self.errors]
        return replace(self, path=shown(self.path), findings=findings, errors=errors)


@dataclass
class ScanReport:
    """All results of one run, in the order the files were given."""

    results: list[ScanResult] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def errors(self) -> list[str]:
        return [f"{r.path}: {e}" for r in self.results for e in r.errors]

    def has_findings_at(self, threshold: Severity) -> bool:
        return any(f.severity >= threshold for f in self.findings)

    def renamed(self, names: Sequence[tuple[str, str]]) -> ScanReport:
        """Every result `renamed` (see `ScanResult.renamed`)."""
        return replace(self, results=[r.renamed(names) for r in self.results])

    def to_dict(self) -> dict[str, Any]:
        from modelward import __version__

        counts = {s.label: 0 for s in Severity}
        for f in self.findings:
            counts[f.severity.label] += 1
        return {
            "tool": "modelward",
            "version": __version__,
            "seconds": round(self.seconds, 6),
            "summary": {"files": len(self.results), "findings": counts},
            "results": [r.to_dict() for r in self.results],
        }
