"""`--format sarif`: SARIF 2.1.0 for GitHub code scanning and other SARIF viewers.

Choices made for GitHub, which ignores binary regions: every location has
`startLine: 1` so that the alert anchors on the model file; the byte offset is
kept as `region.byteOffset` when it is an offset into that file, and a finding
inside a container member (`model.pt!archive/data.pkl@12`) carries the member
chain as a logical location, since a region can only address the file itself.
GitHub reads `security-severity` from the rule, so a rule takes the worst
severity it was reported with in this run; each result keeps its own `level`.
A rule's title, help, default level and ATLAS technique come from the rule
registry (`modelward.rules`, also behind docs/rules.md); a rule with no fixed
severity there (and an id the registry lacks) defaults to the worst level seen.
"""

from __future__ import annotations

import json
import os
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import quote

from modelward import __version__
from modelward.findings import Finding, Location, ScanReport, Severity
from modelward.rules import RULES

SCHEMA_URI = (
    "https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/sarif-schema-2.1.0.json"
)
INFORMATION_URI = "https://github.com/modelward/modelward"
RULES_HELP_URI = f"{INFORMATION_URI}/blob/main/docs/rules.md"

LEVELS = {
    Severity.CRITICAL: "error",
    Severity.HIGH: "error",
    Severity.MEDIUM: "warning",
    Severity.LOW: "note",
    Severity.INFO: "note",
}

#: GitHub's bands: critical > 9.0, high 7.0-8.9, medium 4.0-6.9, low 0.1-3.9.
SECURITY_SEVERITY = {
    Severity.CRITICAL: "9.5",
    Severity.HIGH: "8.0",
    Severity.MEDIUM: "5.5",
    Severity.LOW: "3.0",
    Severity.INFO: "0.0",
}


def render_sarif(report: ScanReport, *, terminal: bool = False) -> str:
    """One run with one rule descriptor per rule id seen; machine formats are never styled."""
    return json.dumps(sarif_log(report), indent=2) + "\n"


def sarif_log(report: ScanReport) -> dict[str, Any]:
    findings = report.findings
    rule_ids = sorted({f.rule_id for f in findings})
    index = {rule_id: i for i, rule_id in enumerate(rule_ids)}
    rules = [_rule(rule_id, [f for f in findings if f.rule_id == rule_id]) for rule_id in rule_ids]
    run: dict[str, Any] = {
        "tool": {
            "driver": {
                "name": "modelward",
                "version": __version__,
                "semanticVersion": __version__,
                "informationUri": INFORMATION_URI,
                "rules": rules,
            }
        },
        "results": [_result(f, index[f.rule_id]) for f in findings],
        "invocations": [
            {
                "executionSuccessful": not report.errors,
                "toolExecutionNotifications": [
                    {"level": "error", "message": {"text": error}} for error in report.errors
                ],
            }
        ],
        "originalUriBaseIds": {"%SRCROOT%": {"uri": Path.cwd().as_uri().rstrip("/") + "/"}},
    }
    return {"$schema": SCHEMA_URI, "version": "2.1.0", "runs": [run]}


def _rule(rule_id: str, findings: list[Finding]) -> dict[str, Any]:
    """A rule descriptor from the registry (`modelward.rules`); an id it lacks (a test's, a
    plugin's) is described by its words."""
    worst = max(f.severity for f in findings)
    known = RULES.get(rule_id)
    techniques = {f.technique for f in findings}
    if known is not None and known.technique is not None:
        techniques.add(known.technique)
    words = rule_id.removeprefix("MW-").split("-")
    descriptor: dict[str, Any] = {
        "id": rule_id,
        "name": "".join(w.capitalize() for w in words),
        "shortDescription": {"text": " ".join(words).capitalize()},
        "helpUri": RULES_HELP_URI,
        "help": {"text": f"See {rule_id} in the modelward rules reference: {RULES_HELP_URI}"},
        "defaultConfiguration": {"level": LEVELS[worst]},
        "properties": {
            "tags": ["security", "ml-supply-chain", *sorted(techniques)],
            "security-severity": SECURITY_SEVERITY[worst],
        },
    }
    if known is not None:
        see = f"See {rule_id} in the modelward rules reference"
        descriptor["shortDescription"] = {"text": known.title}
        descriptor["fullDescription"] = {"text": known.help}
        descriptor["help"] = {
            "text": f"{known.help} {see}: {RULES_HELP_URI}",
            "markdown": f"{known.help}\n\n{see}: [{RULES_HELP_URI}]({RULES_HELP_URI})",
        }
        if known.severity is not None:
            descriptor["defaultConfiguration"] = {"level": LEVELS[known.severity]}
        descriptor["properties"]["severities"] = [s.label for s in known.severities]
        if known.technique is not None:
            descriptor["properties"]["technique"] = known.technique
    return descriptor


def _result(finding: Finding, rule_index: int) -> dict[str, Any]:
    text = f"{finding.message} ({finding.location})"
    if finding.evidence:
        text += f"; evidence: {finding.evidence}"
    return {
        "ruleId": finding.rule_id,
        "ruleIndex": rule_index,
        "level": LEVELS[finding.severity],
        "message": {"text": text},
        "locations": [_location(finding.location)],
        "properties": {
            "severity": finding.severity.label,
            "security-severity": SECURITY_SEVERITY[finding.severity],
            "technique": finding.technique,
            "evidence": finding.evidence,
        },
    }


def _location(location: Location) -> dict[str, Any]:
    region: dict[str, Any] = {"startLine": 1}
    if location.offset is not None and not location.members:
        region["byteOffset"] = location.offset
    result: dict[str, Any] = {
        "physicalLocation": {"artifactLocation": artifact_location(location.path), "region": region}
    }
    if location.members:
        result["logicalLocations"] = [
            {
                "name": location.members[-1],
                "fullyQualifiedName": str(location),
                "kind": "member",
            }
        ]
        result["properties"] = {"members": list(location.members), "offset": location.offset}
    return result


def artifact_location(path: str) -> dict[str, Any]:
    """A relative URI against the source root when `path` is under the working directory."""
    absolute = Path(os.path.abspath(path))
    try:
        relative = absolute.relative_to(Path.cwd())
    except ValueError:
        return {"uri": absolute.as_uri()}
    return {"uri": quote(PurePosixPath(*relative.parts).as_posix()), "uriBaseId": "%SRCROOT%"}
