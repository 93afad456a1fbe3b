"""The JSON the API answers with, as pydantic models so that /openapi.json describes it.

`result` and a diff's `report` keep the shapes of `modelward scan --format json` (one entry
of `results`, and a whole report); they are documented there rather than repeated here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

SeverityLabel = Literal["info", "low", "medium", "high", "critical"]


class ScanRequest(BaseModel):
    """Scan a file that is already on the server, under `serve --root`."""

    model_config = ConfigDict(extra="forbid")

    path: str = Field(description="file to scan, relative to the server's --root")
    reference: str | None = Field(
        default=None,
        description="trusted model under --root to diff the file against (modelward diff)",
    )


class ModelLinks(BaseModel):
    model: str = Field(description="GET: every scan and verdict of these bytes")


class ScanLinks(ModelLinks):
    model_config = ConfigDict(populate_by_name=True)

    self_: str = Field(alias="self", description="GET: this scan event")


class ScanEvent(BaseModel):
    """One scan of one file (a POST, or a CLI/Ray scan recorded in the same store)."""

    id: str
    sha256: str
    path: str = Field(description="the name the file was scanned under (upload name, path)")
    scanned_at: str = Field(description="ISO 8601, UTC")
    source: str = Field(description="cli, service or ray")
    cached: bool = Field(description="the result was reused from an earlier scan of these bytes")
    max_severity: SeverityLabel | None
    links: ScanLinks


class Diff(BaseModel):
    verdict: str = Field(
        description="identical, weights only (fine-tune-like), architecture changed,"
        " or not compared (the report's errors say why)"
    )
    reference: str = Field(description="the reference as the client named it")
    report: dict[str, Any] = Field(description="modelward diff's report, JSON format")


class Scan(ScanEvent):
    """A scan event with its whole result (and diff)."""

    ruleset: str = Field(description="modelward version + digest of its rules and scanners")
    result: dict[str, Any] = Field(description="as one entry of `modelward scan -f json` results")
    diff: Diff | None


class VerdictOut(BaseModel):
    kind: str = Field(description="signature, lock or gate")
    passed: bool
    detail: str
    path: str
    recorded_at: str = Field(description="ISO 8601, UTC")


class ModelDetail(BaseModel):
    sha256: str
    latest: Scan | None
    scans: list[ScanEvent] = Field(description="newest first")
    verdicts: list[VerdictOut] = Field(description="newest first")


class ModelSummaryOut(BaseModel):
    sha256: str
    path: str = Field(description="the latest name it was scanned under")
    format: str
    max_severity: SeverityLabel | None
    last_scanned: str = Field(description="ISO 8601, UTC")
    scans: int
    signature: VerdictOut | None
    lock: VerdictOut | None
    links: ModelLinks


class ModelList(BaseModel):
    models: list[ModelSummaryOut] = Field(description="newest first")


class Health(BaseModel):
    status: Literal["ok"]
    version: str
    ruleset: str
