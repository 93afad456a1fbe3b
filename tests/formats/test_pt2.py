"""`torch.export` `.pt2` archives: real ones scan clean; pickled members are scanned as pickles."""

from __future__ import annotations

import io
import json
import os
import pickle
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from torch import nn

import modelward
from fixtures.torch_models import Payload, payload_pickle
from modelward.findings import Severity


class _WithConstants(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(4, 3)
        self.norm = nn.BatchNorm1d(3)
        self.register_buffer("offset", torch.ones(3))
        self.scale = torch.tensor([2.0, 3.0, 4.0])  # a lifted tensor constant

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.linear(x)) * self.scale + self.offset


def _models() -> dict[str, tuple[nn.Module, tuple[torch.Tensor, ...]]]:
    torch.manual_seed(0)
    return {
        "constants": (_WithConstants().eval(), (torch.randn(2, 4),)),
        "mlp": (nn.Sequential(nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 2)), (torch.randn(1, 8),)),
        "cnn": (
            nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten()).eval(),
            (torch.randn(1, 3, 8, 8),),
        ),
    }


def _export(path: Path, name: str = "mlp") -> Path:
    model, args = _models()[name]
    torch.export.save(torch.export.export(model, args), path)
    return path


def _rewrite(
    data: bytes, change: Callable[[str, bytes], bytes | None], add: dict[str, bytes]
) -> bytes:
    """A copy of a zip with members changed (None drops one) and `add` appended."""
    out = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as src, zipfile.ZipFile(out, "w") as dst:
        top = src.namelist()[0].split("/", 1)[0]
        for info in src.infolist():
            content = change(info.filename.split("/", 1)[1], src.read(info))
            if content is not None:
                dst.writestr(info.filename, content)
        for name, content in add.items():
            dst.writestr(f"{top}/{name}", content)
    return out.getvalue()


def _with_config_entry(
    folder: str, path_name: str, use_pickle: bool
) -> Callable[[str, bytes], bytes]:
    def change(name: str, content: bytes) -> bytes:
        if name == f"data/{folder}/model_{folder}_config.json":
            config = json.loads(content)
            config["config"]["evil"] = {
                "path_name": path_name,
                "is_param": False,
                "use_pickle": use_pickle,
                "tensor_meta": None,
            }
            return json.dumps(config).encode()
        return content

    return change


def _serious(report: modelward.ScanReport) -> list[tuple[str, Severity, tuple[str, ...]]]:
    return [
        (f.rule_id, f.severity, f.location.members)
        for f in report.findings
        if f.severity >= Severity.MEDIUM
    ]


@pytest.mark.parametrize("name", ["constants", "mlp", "cnn"])
def test_real_exported_programs_scan_clean(tmp_path: Path, name: str) -> None:
    path = _export(tmp_path / f"{name}.pt2", name)
    report = modelward.scan(path)
    assert report.results[0].format == "pt2"
    assert _serious(report) == []


def test_recognised_by_content_not_by_name(tmp_path: Path) -> None:
    path = _export(tmp_path / "weights.bin")
    report = modelward.scan(path)
    assert report.results[0].format == "pt2"
    assert _serious(report) == []


def test_opaque_constant_pickle_is_scanned_as_a_pickle(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    evil = _rewrite(
        data,
        _with_config_entry("constants", "opaque_obj_0", True),
        {"data/constants/opaque_obj_0": pickle.dumps(Payload(), protocol=4)},
    )
    path = tmp_path / "evil.pt2"
    path.write_bytes(evil)
    critical = [f for f in modelward.scan(path).findings if f.severity == Severity.CRITICAL]
    assert critical
    assert all(f.location.members[-1].endswith("opaque_obj_0") for f in critical)


def test_sample_inputs_checkpoint_with_payload_is_caught(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    payload = io.BytesIO()
    torch.save({"args": (torch.ones(1, 8),), "hook": Payload()}, payload)
    evil = _rewrite(
        data,
        lambda name, content: (
            payload.getvalue() if name.startswith("data/sample_inputs/") else content
        ),
        {},
    )
    path = tmp_path / "evil.pt2"
    path.write_bytes(evil)
    report = modelward.scan(path)
    assert report.results[0].max_severity == Severity.CRITICAL
    assert any("data/sample_inputs" in "/".join(f.location.members) for f in report.findings)


def test_pickled_tensor_weight_is_scanned(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    evil = _rewrite(
        data,
        _with_config_entry("weights", "weight_9", True),
        {"data/weights/weight_9": payload_pickle()},
    )
    path = tmp_path / "evil.pt2"
    path.write_bytes(evil)
    assert modelward.scan(path).results[0].max_severity == Severity.CRITICAL


def test_raw_weight_bytes_are_never_read_as_pickle(tmp_path: Path) -> None:
    """A raw weight the loader maps as storage is not a pickle, whatever its bytes look like."""
    data = _export(tmp_path / "a.pt2").read_bytes()
    looks_evil = _rewrite(
        data,
        lambda name, content: payload_pickle() if name == "data/weights/weight_0" else content,
        {},
    )
    path = tmp_path / "raw.pt2"
    path.write_bytes(looks_evil)
    assert _serious(modelward.scan(path)) == []


def test_unexpected_members_are_low_but_their_payload_is_not(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    extra = _rewrite(data, lambda name, content: content, {"notes/readme.txt": b"hello"})
    path = tmp_path / "extra.pt2"
    path.write_bytes(extra)
    found = {(f.rule_id, f.severity) for f in modelward.scan(path).findings}
    assert found == {("MW-PT2-UNEXPECTED-MEMBER", Severity.LOW)}
    evil = _rewrite(data, lambda name, content: content, {"hidden/x.bin": payload_pickle()})
    path.write_bytes(evil)
    assert modelward.scan(path).results[0].max_severity == Severity.CRITICAL


def test_graph_json_replaced_by_a_pickle(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    evil = _rewrite(
        data, lambda name, content: payload_pickle() if name == "models/model.json" else content, {}
    )
    path = tmp_path / "evil.pt2"
    path.write_bytes(evil)
    found = {(f.rule_id, f.severity) for f in modelward.scan(path).findings}
    assert ("MW-PT2-MALFORMED", Severity.LOW) in found
    assert modelward.scan(path).results[0].max_severity == Severity.CRITICAL


def test_data_pkl_next_to_a_pt2_is_what_torch_load_runs(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    evil = _rewrite(data, lambda name, content: content, {"data.pkl": payload_pickle()})
    path = tmp_path / "evil.pt2"
    path.write_bytes(evil)
    report = modelward.scan(path)
    assert report.results[0].format == "pytorch-zip"
    assert report.results[0].max_severity == Severity.CRITICAL


def test_broken_config_is_a_finding_not_a_crash(tmp_path: Path) -> None:
    data = _export(tmp_path / "a.pt2").read_bytes()
    broken = _rewrite(
        data,
        lambda name, content: b"{not json" if name.endswith("_weights_config.json") else content,
        {},
    )
    path = tmp_path / "broken.pt2"
    path.write_bytes(broken)
    rules = {f.rule_id for f in modelward.scan(path).findings}
    assert "MW-PT2-MALFORMED" in rules
    assert "MW-SCAN-ERROR" not in rules
    assert os.path.exists(path)
