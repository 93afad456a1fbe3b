"""SARIF output: valid against the official 2.1.0 schema, and shaped for GitHub code scanning."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.reports import every_severity_report, write_model_folder
from modelward.findings import Finding, Location, ScanReport, ScanResult, Severity
from modelward.report import RENDERERS
from modelward.report.sarif import render_sarif

SCHEMA = Path(__file__).parent.parent / "data" / "sarif-schema-2.1.0.json"


@cache
def validator() -> Any:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    cls = jsonschema.validators.validator_for(schema)
    cls.check_schema(schema)
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def valid_sarif(report: ScanReport) -> dict[str, Any]:
    log: dict[str, Any] = json.loads(render_sarif(report))
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator().iter_errors(log)]
    assert errors == []
    return log


def test_the_vendored_schema_is_the_official_one() -> None:
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema["id"].startswith("https://docs.oasis-open.org/sarif/sarif/v2.1.0/")
    assert schema["$schema"] == "http://json-schema.org/draft-04/schema#"
    assert "result" in schema["definitions"]


def test_every_severity_report_is_valid_and_mapped() -> None:
    report = every_severity_report()
    log = valid_sarif(report)
    [run] = log["runs"]
    driver = run["tool"]["driver"]
    assert driver["name"] == "modelward"
    assert driver["version"] == modelward.__version__
    assert driver["informationUri"].startswith("https://")
    levels = {r["ruleId"]: r["level"] for r in run["results"]}
    assert levels == {
        "MW-TEST-CRITICAL": "error",
        "MW-TEST-HIGH": "error",
        "MW-TEST-MEDIUM": "warning",
        "MW-TEST-LOW": "note",
        "MW-TEST-INFO": "note",
    }
    assert len(run["results"]) == len(report.findings)


def test_rules_carry_help_level_tags_and_security_severity() -> None:
    log = valid_sarif(every_severity_report())
    [run] = log["runs"]
    rules = run["tool"]["driver"]["rules"]
    for result in run["results"]:
        rule = rules[result["ruleIndex"]]
        assert rule["id"] == result["ruleId"]
        assert rule["shortDescription"]["text"]
        assert rule["helpUri"].startswith("https://")
        assert rule["defaultConfiguration"]["level"] == result["level"]
        assert "security" in rule["properties"]["tags"]
        assert result["properties"]["technique"] in rule["properties"]["tags"]
        assert rule["properties"]["security-severity"] == result["properties"]["security-severity"]
    scores = {r["id"]: float(r["properties"]["security-severity"]) for r in rules}
    assert scores["MW-TEST-CRITICAL"] > 9.0
    assert 7.0 <= scores["MW-TEST-HIGH"] < 9.0
    assert 4.0 <= scores["MW-TEST-MEDIUM"] < 7.0
    assert scores["MW-TEST-LOW"] < 4.0
    assert (
        "AML.T0018.001"
        in rules[[r["id"] for r in rules].index("MW-TEST-HIGH")]["properties"]["tags"]
    )


def test_a_rule_takes_the_worst_severity_it_was_reported_with() -> None:
    location = Location("m.pkl")
    report = ScanReport(
        results=[
            ScanResult(
                path="m.pkl",
                findings=[
                    Finding("MW-X", Severity.LOW, location, "minor"),
                    Finding("MW-X", Severity.CRITICAL, location.at(3), "major"),
                ],
            )
        ]
    )
    [run] = valid_sarif(report)["runs"]
    [rule] = run["tool"]["driver"]["rules"]
    assert rule["defaultConfiguration"]["level"] == "error"
    assert [r["level"] for r in run["results"]] == ["note", "error"]


def locations_of(report: ScanReport) -> dict[str, dict[str, Any]]:
    [run] = valid_sarif(report)["runs"]
    return {r["ruleId"]: r["locations"][0] for r in run["results"]}


def test_offsets_and_member_chains(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.chdir(tmp_path)
    locations = locations_of(every_severity_report())
    in_file = locations["MW-TEST-HIGH"]
    assert in_file["physicalLocation"]["region"] == {"startLine": 1, "byteOffset": 7}
    assert "logicalLocations" not in in_file
    in_member = locations["MW-TEST-CRITICAL"]
    assert in_member["physicalLocation"]["artifactLocation"] == {
        "uri": "models/evil.pt",
        "uriBaseId": "%SRCROOT%",
    }
    assert "byteOffset" not in in_member["physicalLocation"]["region"]
    [logical] = in_member["logicalLocations"]
    assert logical["fullyQualifiedName"] == "models/evil.pt!archive/data.pkl@42"
    assert in_member["properties"] == {"members": ["archive/data.pkl"], "offset": 42}


def test_uris_are_relative_under_the_working_directory_and_escaped(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    inside = str(tmp_path / "my models" / "a#1.pt")
    outside = str(tmp_path.parent / "elsewhere.pt")
    report = ScanReport(
        results=[
            ScanResult(path=p, findings=[Finding(f"MW-{i}", Severity.HIGH, Location(p), "m")])
            for i, p in enumerate((inside, outside))
        ]
    )
    locations = locations_of(report)
    near = locations["MW-0"]["physicalLocation"]["artifactLocation"]
    assert near == {"uri": "my%20models/a%231.pt", "uriBaseId": "%SRCROOT%"}
    far = locations["MW-1"]["physicalLocation"]["artifactLocation"]
    assert far == {"uri": Path(outside).as_uri()}


def test_read_errors_become_tool_notifications() -> None:
    [run] = valid_sarif(every_severity_report())["runs"]
    [invocation] = run["invocations"]
    assert invocation["executionSuccessful"] is False
    [note] = invocation["toolExecutionNotifications"]
    assert "locked.bin" in note["message"]["text"]


def test_real_scan_is_valid(tmp_path: Path) -> None:
    report = modelward.scan(write_model_folder(tmp_path / "model"))
    [run] = json.loads(RENDERERS["sarif"](report, terminal=True))["runs"]
    assert {r["ruleId"] for r in run["results"]} == {"MW-FORMAT-UNKNOWN"}
    assert valid_sarif(report)["runs"][0]["results"] == run["results"]


def test_clean_report_is_valid_with_no_results() -> None:
    report = ScanReport(results=[ScanResult(path="a.txt", format="text")])
    [run] = valid_sarif(report)["runs"]
    assert run["results"] == []
    assert run["tool"]["driver"]["rules"] == []


names = st.text(st.characters(blacklist_categories=["Cs"]), min_size=1, max_size=20)


@given(
    st.lists(
        st.tuples(
            names,
            st.lists(names, max_size=3),
            st.none() | st.integers(0, 2**40),
            st.sampled_from(list(Severity)),
            st.none() | st.text(max_size=40),
        ),
        max_size=6,
    )
)
def test_any_findings_give_valid_sarif(
    rows: list[tuple[str, list[str], int | None, Severity, str | None]],
) -> None:
    results = [
        ScanResult(
            path=path,
            findings=[
                Finding(
                    f"MW-FUZZ-{severity.name}",
                    severity,
                    Location(path, tuple(members), offset),
                    "message",
                    evidence,
                )
            ],
        )
        for path, members, offset, severity, evidence in rows
    ]
    log = valid_sarif(ScanReport(results=results))
    assert len(log["runs"][0]["results"]) == len(rows)


def test_registered_rules_are_described_by_the_registry() -> None:
    from modelward.rules import RULES

    location = Location("m.pkl")
    report = ScanReport(
        results=[
            ScanResult(
                path="m.pkl",
                findings=[
                    Finding("MW-PICKLE-DANGEROUS-GLOBAL", Severity.CRITICAL, location, "os.system"),
                    Finding("MW-PICKLE-UNKNOWN-GLOBAL", Severity.LOW, location, "x.Y"),
                    Finding("MW-PYCODE-EXEC", Severity.MEDIUM, location, "trust_remote_code"),
                ],
            )
        ]
    )
    [run] = valid_sarif(report)["runs"]
    rules = {r["id"]: r for r in run["tool"]["driver"]["rules"]}
    dangerous = rules["MW-PICKLE-DANGEROUS-GLOBAL"]
    registered = RULES["MW-PICKLE-DANGEROUS-GLOBAL"]
    assert dangerous["shortDescription"]["text"] == registered.title
    assert dangerous["fullDescription"]["text"] == registered.help
    assert dangerous["help"]["text"].startswith(registered.help)
    assert dangerous["properties"]["technique"] == registered.technique
    assert registered.technique in dangerous["properties"]["tags"]
    # No fixed severity in the registry: the worst seen; a fixed one: the registry's default,
    # while GitHub's security-severity stays the worst seen in the run.
    assert rules["MW-PICKLE-UNKNOWN-GLOBAL"]["defaultConfiguration"]["level"] == "note"
    assert rules["MW-PYCODE-EXEC"]["defaultConfiguration"]["level"] == "error"
    assert rules["MW-PYCODE-EXEC"]["properties"]["security-severity"] == "5.5"
