"""The findings model: renaming the paths a result names (what the service answers with)."""

from __future__ import annotations

from modelward.findings import Finding, Location, ScanReport, ScanResult, Severity


def test_renamed_rewrites_every_place_a_path_is_written() -> None:
    real, ref = "/srv/spool/upload-1.bin", "/srv/root/base.safetensors"
    result = ScanResult(
        path=real,
        findings=[
            Finding(
                "MW-DIFF-TENSOR-ADDED",
                Severity.HIGH,
                Location(real, ("inner",), 7),
                f"{ref}: tensor added",
                evidence=f"from {real}",
            )
        ],
        errors=[f"{ref}: cannot read its structure"],
    )
    report = ScanReport([result]).renamed(((real, "cand.st"), (ref, "base.st")))
    [shown] = report.results
    assert shown.path == "cand.st"
    [finding] = shown.findings
    assert finding.location == Location("cand.st", ("inner",), 7)
    assert (finding.message, finding.evidence) == ("base.st: tensor added", "from cand.st")
    assert shown.errors == ["base.st: cannot read its structure"]
    assert result.path == real  # the original is left as it was


def test_renamed_rewrites_the_longer_path_first() -> None:
    """Neither path is rewritten inside the other; on a tie the first pair wins."""
    result = ScanResult(path="/r/model", errors=["/r/model.bak and /r/model"])
    shown = result.renamed((("/r/model", "m"), ("/r/model.bak", "ref")))
    assert shown.errors == ["ref and m"]
    same = result.renamed((("/r/model", "first"), ("/r/model", "second")))
    assert same.path == "first"
