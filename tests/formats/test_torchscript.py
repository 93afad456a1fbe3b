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
from fixtures.torchscript_models import (
    CUSTOM_OP_NAMESPACE,
    HOSTILE,
    ConvBnRelu,
    CopiesState,
    CustomOpOnLoad,
    CustomOpOnUse,
    FileOpsOnUse,
    LstmNet,
    MarkerOnLoad,
    ReadsOnLoad,
    UsesProfilerClass,
    is_main_code,
    quantized_dynamic,
    rename_class_namespace,
    replace_in_code,
    rewrite_member,
    save_scripted,
    scripted,
    traced,
)
from modelward.findings import Finding, Severity


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


# --- Code judged by the operators it calls, and by when it runs -------------------------


def _hits(path: Path, rule_id: str) -> list[Finding]:
    report = modelward.scan(path)
    assert report.results[0].format == "torchscript", (report.findings, report.errors)
    return [f for f in report.findings if f.rule_id == rule_id]


def _worst(path: Path) -> Severity:
    return max((f.severity for f in modelward.scan(path).findings), default=Severity.INFO)


def test_torch_jit_load_runs_setstate_which_writes_a_file(tmp_path: Path) -> None:
    # The harmless twin: loading writes a marker tensor where the pickled state says.
    marker = tmp_path / "marker.pt"
    path = save_scripted(MarkerOnLoad(str(marker)), tmp_path / "marker_model.pt")
    marker.unlink(missing_ok=True)  # scripting does not run __setstate__, but be sure
    hits = _hits(path, "MW-TORCHSCRIPT-FILESYSTEM")
    assert not marker.exists()  # scanning runs nothing
    assert [h.severity for h in hits] == [Severity.HIGH]
    assert hits[0].evidence is not None and "torch.save" in hits[0].evidence
    assert "__setstate__" in hits[0].message and "torch.jit.load" in hits[0].message
    torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert torch.equal(torch.load(marker), torch.zeros(1))


def test_setstate_reading_a_file_with_from_file_is_high(tmp_path: Path) -> None:
    secret = tmp_path / "secret.bin"
    secret.write_bytes(b"\x01\x02\x03\x04")
    path = save_scripted(ReadsOnLoad(str(secret)), tmp_path / "reads.pt")
    hits = _hits(path, "MW-TORCHSCRIPT-FILESYSTEM")
    assert [h.severity for h in hits] == [Severity.HIGH]
    assert "torch.from_file" in (hits[0].evidence or "")
    # The twin: the loaded module holds the file's bytes, read inside torch.jit.load.
    loaded = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert loaded.weight.tolist() == [1, 2, 3, 4]


def test_open_in_setstate_written_by_hand_is_high(tmp_path: Path) -> None:
    with pytest.raises(Exception, match="open"):
        torch.jit.script(FileOpsWithOpen())  # TorchScript refuses `open`: code by hand
    base = save_scripted(MarkerOnLoad(str(tmp_path / "m")), tmp_path / "base.pt")
    target = rewrite_member(
        base,
        tmp_path / "open.pt",
        is_main_code,
        replace_in_code("torch.save(torch.zeros([1]), path)", '_9 = open(path, "w")'),
    )
    hits = _hits(target, "MW-TORCHSCRIPT-FILESYSTEM")
    assert [h.severity for h in hits] == [Severity.HIGH]
    assert "open" in (hits[0].evidence or "")


def test_process_call_in_setstate_is_critical(tmp_path: Path) -> None:
    base = save_scripted(MarkerOnLoad(str(tmp_path / "m")), tmp_path / "base.pt")
    target = rewrite_member(
        base,
        tmp_path / "system.pt",
        is_main_code,
        replace_in_code("torch.save(torch.zeros([1]), path)", '_9 = os.system("true")'),
    )
    hits = _hits(target, "MW-TORCHSCRIPT-PROCESS")
    assert [h.severity for h in hits] == [Severity.CRITICAL]
    assert "__torch__.fixtures.torchscript_models.MarkerOnLoad.__setstate__ ->" in hits[0].message


def test_file_operators_outside_load_are_one_step_lower(tmp_path: Path) -> None:
    path = save_scripted(FileOpsOnUse(str(tmp_path / "x.bin")), tmp_path / "on_use.pt")
    hits = _hits(path, "MW-TORCHSCRIPT-FILESYSTEM")
    assert sorted((h.evidence or "").split(": ")[1] for h in hits) == [
        "torch.from_file",
        "torch.save",
    ]
    assert {h.severity for h in hits} == {Severity.MEDIUM}
    assert all("runs when the loaded model calls it" in h.message for h in hits)


def test_real_custom_op_in_setstate_is_critical_and_in_forward_high(tmp_path: Path) -> None:
    # TorchScript's printer writes custom ops as `ops.<namespace>.<op>`.
    path = save_scripted(CustomOpOnLoad(), tmp_path / "op_load.pt")
    with zipfile.ZipFile(path) as archive:
        code = b"".join(archive.read(n) for n in archive.namelist() if n.endswith(".py"))
    assert f"ops.{CUSTOM_OP_NAMESPACE}.twice".encode() in code
    hits = _hits(path, "MW-TORCHSCRIPT-CUSTOM-OP")
    assert max(h.severity for h in hits) == Severity.CRITICAL
    assert all(f"ops.{CUSTOM_OP_NAMESPACE}.twice" in (h.evidence or "") for h in hits)
    # The twin: loading runs the op from __setstate__ (the weights come back doubled).
    loaded = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert loaded.weight.tolist() == [2.0, 2.0]
    on_use = save_scripted(CustomOpOnUse(), tmp_path / "op_use.pt")
    assert {h.severity for h in _hits(on_use, "MW-TORCHSCRIPT-CUSTOM-OP")} == {Severity.HIGH}


def test_builtin_custom_classes_are_clean(tmp_path: Path) -> None:
    path = quantized_dynamic(tmp_path / "qlstm.pt")
    with zipfile.ZipFile(path) as archive:
        data = archive.read(next(n for n in archive.namelist() if n.endswith("/data.pkl")))
    assert b"__torch__.torch.classes.rnn\nCellParamsBase" in data
    assert b"__torch__.torch.classes.quantized\nLinearPackedParamsBase" in data
    assert _worst(path) < Severity.MEDIUM
    profiler = save_scripted(UsesProfilerClass(), tmp_path / "profiler.pt")
    assert _worst(profiler) < Severity.MEDIUM


def test_unknown_custom_class_namespace_in_pickle_and_code_is_critical(tmp_path: Path) -> None:
    base = quantized_dynamic(tmp_path / "qlstm.pt")
    target = rename_class_namespace(base, tmp_path / "evil.pt", "quantized", "evil_ext")
    hits = _hits(target, "MW-TORCHSCRIPT-CUSTOM-CLASS")
    in_pickle = [h for h in hits if h.location.members[-1].endswith("/data.pkl")]
    in_code = [h for h in hits if h.location.members[-1].endswith(".py")]
    assert [h.severity for h in in_pickle] == [Severity.CRITICAL]
    assert "__torch__.torch.classes.evil_ext.LinearPackedParamsBase" in (
        in_pickle[0].evidence or ""
    )
    # The attribute's declared type is read when the object is loaded.
    assert Severity.CRITICAL in {h.severity for h in in_code}
    # rnn is still PyTorch's: only the renamed namespace is reported.
    assert all("classes.rnn" not in (h.evidence or "") for h in hits)


def test_unknown_custom_class_constructed_in_forward_is_high(tmp_path: Path) -> None:
    base = save_scripted(UsesProfilerClass(), tmp_path / "profiler.pt")
    target = rename_class_namespace(base, tmp_path / "evil.pt", "profiling", "evil_prof")
    hits = _hits(target, "MW-TORCHSCRIPT-CUSTOM-CLASS")
    assert hits
    assert {h.severity for h in hits} == {Severity.HIGH}
    assert all("torch.classes.evil_prof" in (h.evidence or "") for h in hits)


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda p: save_scripted(ConvBnRelu(), p), id="conv-bn-relu-scripted"),
        pytest.param(
            lambda p: _traced(ConvBnRelu().eval(), torch.zeros(1, 3, 8, 8), p),
            id="conv-bn-relu-traced",
        ),
        pytest.param(lambda p: save_scripted(LstmNet(), p), id="lstm-scripted"),
        pytest.param(
            lambda p: _traced(LstmNet().eval(), torch.zeros(1, 5, 4), p), id="lstm-traced"
        ),
        pytest.param(quantized_dynamic, id="quantized-dynamic"),
        pytest.param(lambda p: save_scripted(CopiesState(), p), id="copies-state"),
        pytest.param(lambda p: save_scripted(UsesProfilerClass(), p), id="profiler-class"),
    ],
)
def test_ordinary_models_have_no_medium_finding(
    tmp_path: Path, build: Callable[[Path], Path]
) -> None:
    path = build(tmp_path / "model.pt")
    report = modelward.scan(path)
    assert report.results[0].format == "torchscript"
    assert [f for f in report.findings if f.severity >= Severity.MEDIUM] == []


def test_copy_only_setstate_loads_back(tmp_path: Path) -> None:
    path = save_scripted(CopiesState(), tmp_path / "copies.pt")
    loaded = torch.jit.load(str(path))  # type: ignore[no-untyped-call]
    assert torch.equal(loaded.weight, torch.ones(3))


def _traced(module: torch.nn.Module, example: torch.Tensor, path: Path) -> Path:
    torch.jit.save(torch.jit.trace(module, example), str(path))  # type: ignore[no-untyped-call]
    return path


class FileOpsWithOpen(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        open("/dev/null", "w")  # noqa: SIM115
        return x
