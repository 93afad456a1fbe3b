"""PyTorch checkpoints (zip and legacy) written by real `torch.save`, never loaded."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch

import modelward
from fixtures import numpy_arrays, torch_models
from modelward.findings import ScanResult, Severity


def _scan(path: Path) -> ScanResult:
    return modelward.scan(path).results[0]


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return torch_models.write_benign(tmp_path_factory.mktemp("benign_torch"))


@pytest.fixture(scope="module")
def malicious(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    paths = torch_models.write_malicious(tmp_path_factory.mktemp("malicious_torch"))
    return {p.stem: p for p in paths}


def test_benign_checkpoints_have_no_finding_above_info(benign: list[Path]) -> None:
    assert len(benign) >= 15
    for path in benign:
        result = _scan(path)
        expected = "pytorch-legacy" if "legacy" in path.stem else "pytorch-zip"
        assert result.format == expected, path.name
        assert all(f.severity <= Severity.INFO for f in result.findings), (path.name, result)


def test_every_malicious_checkpoint_is_high_or_critical(malicious: dict[str, Path]) -> None:
    assert len(malicious) >= 6
    for name, path in malicious.items():
        result = _scan(path)
        assert result.max_severity is not None, name
        assert result.max_severity >= Severity.HIGH, (name, result.findings)


def test_payload_is_located_in_the_pickle_of_a_custom_top_folder(
    malicious: dict[str, Path],
) -> None:
    result = _scan(malicious["payload_custom_top"])
    assert result.format == "pytorch-zip"
    worst = [f for f in result.findings if f.severity >= Severity.HIGH]
    assert worst
    assert {f.location.members for f in worst} == {("totally_not_a_model/data.pkl",)}


def test_whole_module_with_payload_attribute(malicious: dict[str, Path]) -> None:
    result = _scan(malicious["payload_in_module"])
    assert result.format == "pytorch-zip"
    assert any("system" in (f.evidence or "") + f.message for f in result.findings)


def test_second_pickle_member_is_reported_and_scanned(malicious: dict[str, Path]) -> None:
    result = _scan(malicious["second_pickle_member"])
    rules = {(f.rule_id, f.location.members) for f in result.findings}
    assert ("MW-TORCH-UNEXPECTED-MEMBER", ("second/extra.pkl",)) in rules
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert critical
    assert all(f.location.members == ("second/extra.pkl",) for f in critical)


def test_pickle_in_front_of_a_checkpoint_is_scanned_as_its_own_file(
    malicious: dict[str, Path],
) -> None:
    result = _scan(malicious["pickle_prefixed_checkpoint"])
    assert "MW-ZIP-PREFIX" in {f.rule_id for f in result.findings}
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert critical
    assert all(f.location.members == ("<zip-prefix>",) for f in critical)


def test_legacy_payload_is_in_the_fourth_pickle(malicious: dict[str, Path]) -> None:
    result = _scan(malicious["payload_legacy"])
    assert result.format == "pytorch-legacy"
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert critical
    assert all(f.location.offset is not None for f in critical)


def test_unexpected_code_member_is_reported(tmp_path: Path) -> None:
    path = torch_models.save(torch_models.architectures()["mlp"].state_dict(), tmp_path / "m.pt")
    path.write_bytes(
        torch_models.add_members(path.read_bytes(), {"m/hook.py": b"import os\nos.system('x')\n"})
    )
    result = _scan(path)
    unexpected = [f for f in result.findings if f.rule_id == "MW-TORCH-UNEXPECTED-MEMBER"]
    assert [f.location.members for f in unexpected] == [("m/hook.py",)]
    assert unexpected[0].severity == Severity.MEDIUM


def test_truncated_legacy_checkpoint_is_malformed(tmp_path: Path) -> None:
    path = torch_models.save({"w": torch.ones(2)}, tmp_path / "l.pt", legacy=True)
    data = path.read_bytes()
    # Keep the magic number and protocol pickles only.
    second_stop = data.index(b".", data.index(b".") + 1)
    path.write_bytes(data[: second_stop + 1])
    result = _scan(path)
    assert result.format == "pytorch-legacy"
    assert "MW-TORCH-MALFORMED" in {f.rule_id for f in result.findings}


def test_torchscript_archive_is_not_claimed(tmp_path: Path) -> None:
    path = tmp_path / "scripted.pt"
    torch.jit.script(torch_models.architectures()["mlp"]).save(str(path))
    assert _scan(path).format != "pytorch-zip"


def test_large_checkpoint_reads_a_small_fraction(tmp_path: Path) -> None:
    path = torch_models.write_large_checkpoint(tmp_path / "large.pt", megabytes=200)
    result = _scan(path)
    assert result.format == "pytorch-zip"
    assert result.size > 200 * 1024**2
    assert result.bytes_read < result.size // 1000
    assert all(f.severity <= Severity.INFO for f in result.findings)


def test_tensor_storages_are_not_read(tmp_path: Path) -> None:
    """A storage member whose bytes are garbage changes nothing: it is listed, not read."""
    path = torch_models.save({"w": torch.arange(4.0)}, tmp_path / "s.pt")
    out = io.BytesIO()
    with zipfile.ZipFile(path) as src, zipfile.ZipFile(out, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            dst.writestr(info.filename, b"\x00\xff" * 8 if "/data/" in info.filename else data)
    path.write_bytes(out.getvalue())
    result = _scan(path)
    assert result.format == "pytorch-zip"
    assert result.findings == []


_WITHOUT_ML_LIBRARIES = """
import importlib.abc, json, sys
class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"torch", "numpy", "joblib", "sklearn", "scipy"}:
            raise ImportError(f"{name} blocked")
        return None
sys.meta_path.insert(0, Block())
import modelward
report = modelward.scan(*sys.argv[1:])
print(json.dumps({r.path: [r.format, r.max_severity.label if r.max_severity else None]
                  for r in report.results}))
"""


def test_scanners_need_no_torch_numpy_or_joblib(
    benign: list[Path], malicious: dict[str, Path], tmp_path: Path
) -> None:
    extra = [*numpy_arrays.write_malicious(tmp_path), tmp_path / "w.joblib"]
    joblib.dump({"w": np.arange(3.0)}, extra[-1], compress="xz")
    paths = [benign[0], benign[1], malicious["payload_state_dict"], *extra]
    run = subprocess.run(
        [sys.executable, "-c", _WITHOUT_ML_LIBRARIES, *map(str, paths)],
        capture_output=True,
        text=True,
        check=True,
    )
    verdicts = json.loads(run.stdout)
    assert verdicts[str(benign[0])] == ["pytorch-zip", None]
    assert verdicts[str(benign[1])] == ["pytorch-legacy", None]
    assert verdicts[str(malicious["payload_state_dict"])] == ["pytorch-zip", "critical"]
    assert [verdicts[str(p)][1] for p in extra] == ["critical", "critical", "critical", None]
