"""The dispatcher's fail-closed behaviour, independent of any one format."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import modelward
from modelward.cli.main import main
from modelward.config import ConfigError, ScanConfig
from modelward.findings import Severity


def test_unknown_binary_is_reported_not_passed(tmp_path: Path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(b"\x00\x01\x02\xffGARBAGE" * 10)
    report = modelward.scan(blob)
    [finding] = report.findings
    assert finding.rule_id == "MW-FORMAT-UNKNOWN"
    assert finding.severity == Severity.MEDIUM
    assert report.results[0].format == "unknown"


def test_text_and_empty_files_are_not_findings(tmp_path: Path) -> None:
    (tmp_path / "README.md").write_text("# a model card\n", encoding="utf-8")
    (tmp_path / "empty").write_bytes(b"")
    report = modelward.scan(tmp_path)
    assert report.findings == []
    assert sorted(r.format for r in report.results) == ["empty", "text"]


def test_missing_path_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        modelward.scan(tmp_path / "nope")
    assert main(["scan", str(tmp_path / "nope"), "--format", "json"]) == 2


def test_config_rejects_unknown_keys_and_wildcards(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown key"):
        ScanConfig.from_mapping({"scan": {"allow_global": ["a.b"]}})
    with pytest.raises(ConfigError, match="exact"):
        ScanConfig.from_mapping({"scan": {"allow_globals": ["os.*"]}})
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text(
        '[tool.modelward.scan]\nallow_globals = ["mypkg.Block"]\n'
        "[tool.modelward.scan.limits]\nmax_nesting_depth = 3\n",
        encoding="utf-8",
    )
    config = ScanConfig.from_file(pyproject)
    assert config.allow_globals == frozenset({"mypkg.Block"})
    assert config.limits.max_nesting_depth == 3


def test_dangling_symlink_is_a_finding_and_does_not_hide_other_files(tmp_path: Path) -> None:
    (tmp_path / "payload.pkl").write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    (tmp_path / "broken.bin").symlink_to(tmp_path / "missing-target")
    report = modelward.scan(tmp_path)
    by_path = {Path(r.path).name: r for r in report.results}
    assert by_path["broken.bin"].format == "broken-symlink"
    assert [f.rule_id for f in by_path["broken.bin"].findings] == ["MW-FILE-BROKEN-LINK"]
    assert by_path["payload.pkl"].max_severity == Severity.CRITICAL
    assert main(["scan", str(tmp_path), "--format", "json"]) == 1


def test_fifo_is_a_finding_and_never_read(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "weights.bin")  # opening it for reading would block forever
    (tmp_path / "link.bin").symlink_to(tmp_path / "weights.bin")
    for stored in ([], ["--no-store"]):
        assert main(["scan", str(tmp_path), "--format", "json", *stored]) == 1
    report = modelward.scan(tmp_path)
    assert {r.format for r in report.results} == {"special"}
    assert {f.rule_id for f in report.findings} == {"MW-FILE-SPECIAL"}


def test_onnx_external_data_in_a_folder_is_not_an_unknown_binary(tmp_path: Path) -> None:
    from fixtures.onnx_models import benign_external_data

    model = benign_external_data(tmp_path / "model.onnx")
    stray = tmp_path / "stray.bin"
    stray.write_bytes(b"\x00\x01\xfe\xff" * 64)
    report = modelward.scan(tmp_path)
    formats = {Path(r.path).name: r.format for r in report.results}
    data_files = [r for r in report.results if r.format == "external-data"]
    assert len(data_files) == 1 and data_files[0].path != str(model)
    assert all(f.severity == Severity.INFO for f in data_files[0].findings)
    assert formats["stray.bin"] == "unknown"  # only what a model names is claimed
