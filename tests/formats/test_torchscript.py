"""The TorchScript scanner: real archives are clean, each hostile rewrite is caught."""

from __future__ import annotations

import tempfile
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.torchscript_models import HOSTILE, rewrite_member, scripted, traced
from modelward.findings import Severity


@pytest.fixture(scope="module")
def script_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return scripted(tmp_path_factory.mktemp("ts") / "scripted.pt")


@pytest.mark.parametrize("factory", [scripted, traced])
def test_archives_written_by_torch_jit_are_clean(
    tmp_path: Path, factory: Callable[[Path], Path]
) -> None:
    report = modelward.scan(factory(tmp_path / "model.pt"))
    assert report.results[0].format == "torchscript"
    assert [f for f in report.findings if f.severity > Severity.INFO] == []


class ListAttrNet(torch.nn.Module):
    """List and dict attributes (types inferred): `data.pkl` gets `torch.jit._pickle` builders."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes = [1, 2, 3]
        self.scales = {"a": 1.0}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * len(self.sizes)


def test_list_builders_are_allowed_by_the_ordinary_allow_list(tmp_path: Path) -> None:
    path = tmp_path / "lists.pt"
    torch.jit.save(torch.jit.script(ListAttrNet()), str(path))  # type: ignore[no-untyped-call]
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    assert b"torch.jit._pickle\nbuild_intlist" in data
    assert b"torch.jit._pickle\nrestore_type_tag" in data
    report = modelward.scan(path)
    assert report.results[0].format == "torchscript", (report.findings, report.errors)
    assert [f for f in report.findings if f.severity > Severity.INFO] == []


def test_other_names_in_the_list_builder_module_are_dangerous(
    tmp_path: Path, script_archive: Path
) -> None:
    # constants.pkl swapped for a pickle that calls torch.jit._pickle.loads.
    payload = b"\x80\x02ctorch.jit._pickle\nloads\nC\x00\x85R."
    target = rewrite_member(
        script_archive,
        tmp_path / "loads.pt",
        lambda n: n.endswith("/constants.pkl"),
        lambda _: payload,
    )
    report = modelward.scan(target)
    hits = [f for f in report.findings if f.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL"]
    assert [h.severity for h in hits] == [Severity.CRITICAL]
    assert (hits[0].evidence or "").startswith("torch.jit._pickle.loads called")


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_rewrite_is_reported(tmp_path: Path, script_archive: Path, name: str) -> None:
    rewrite, rule_id, severity = HOSTILE[name]
    report = modelward.scan(rewrite(script_archive, tmp_path / f"{name}.pt"))
    assert report.results[0].format == "torchscript"
    hits = [f for f in report.findings if f.rule_id == rule_id]
    assert hits, [f.rule_id for f in report.findings]
    assert all(f.severity >= Severity.parse(severity) for f in hits)
    assert all(f.location.members for f in hits)


def test_evidence_names_the_line_and_the_call(tmp_path: Path, script_archive: Path) -> None:
    rewrite = HOSTILE["custom-op-namespace"][0]
    report = modelward.scan(rewrite(script_archive, tmp_path / "op.pt"))
    [hit] = [f for f in report.findings if f.rule_id == "MW-TORCHSCRIPT-CUSTOM-OP"]
    assert hit.evidence is not None
    assert "torch.ops.evil_ns.run" in hit.evidence
    assert hit.evidence.startswith("line ")
    assert hit.location.members[-1].endswith("/torchscript_models.py")


def test_torch_class_not_defined_by_the_archive_is_still_reported(
    tmp_path: Path, script_archive: Path
) -> None:
    # data.pkl names a __torch__ class that no code file in the archive defines.
    def swap(data: bytes) -> bytes:
        assert b"\nSmallNet\n" in data
        return data.replace(b"\nSmallNet\n", b"\nGhostNet\n", 1)

    target = rewrite_member(
        script_archive, tmp_path / "ghost.pt", lambda n: n.endswith("/data.pkl"), swap
    )
    report = modelward.scan(target)
    ghost = [f for f in report.findings if "GhostNet" in (f.evidence or "")]
    assert ghost
    assert max(f.severity for f in ghost) >= Severity.MEDIUM


@given(source=st.text(max_size=200))
def test_any_code_member_is_analysed_or_reported_never_crashes(source: str) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        base = scripted(Path(tmp) / "base.pt")
        target = rewrite_member(
            base, Path(tmp) / "fuzz.pt", lambda n: n.endswith(".py"), lambda _: source.encode()
        )
        report = modelward.scan(target)
    assert report.results[0].format == "torchscript"
    assert all(f.rule_id != "MW-SCAN-ERROR" for f in report.findings)
