"""The ONNX scanner: real models are clean, custom ops and escaping external data are found."""

from __future__ import annotations

import builtins
import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.fuzzing import assert_never_crashes, mutated, scan_bytes
from fixtures.onnx_models import (
    HOSTILE,
    benign_control_flow,
    benign_external_data,
    benign_local_function,
    benign_mlp,
    custom_op_in_loop,
    over_protobuf_limit,
    vendor_op,
)
from modelward.config import ScanConfig
from modelward.findings import Severity
from modelward.formats.interface import HEAD_SIZE, Blob, ScanContext
from modelward.formats.onnx import OnnxScanner
from modelward.scanner import dispatch


@pytest.mark.parametrize(
    "factory", [benign_mlp, benign_control_flow, benign_external_data, benign_local_function]
)
def test_models_written_by_onnx_are_clean(tmp_path: Path, factory: Callable[[Path], Path]) -> None:
    result = modelward.scan(factory(tmp_path / "model.onnx")).results[0]
    assert result.format == "onnx"
    assert all(f.severity == Severity.INFO for f in result.findings)
    [note] = result.findings
    assert note.rule_id == "MW-ONNX-INFO" and "modelward-tests" in note.message


def test_vendor_ops_are_noted_low(tmp_path: Path) -> None:
    report = modelward.scan(vendor_op(tmp_path / "model.onnx"))
    [vendor] = [f for f in report.findings if f.rule_id == "MW-ONNX-VENDOR-OP"]
    assert vendor.severity == Severity.LOW
    assert report.results[0].max_severity == Severity.LOW


def test_standard_preview_operators_are_not_custom(tmp_path: Path) -> None:
    """`ai.onnx.preview` (FlexAttention, onnx 1.20+) is an operator set of onnx.defs."""
    from onnx import helper

    node = helper.make_node("FlexAttention", ["Q", "K", "V"], ["Y"], domain="ai.onnx.preview")
    graph = helper.make_graph([node], "g", [], [])
    path = tmp_path / "model.onnx"
    path.write_bytes(helper.make_model(graph, producer_name="modelward-tests").SerializeToString())
    assert {f.rule_id for f in modelward.scan(path).findings} == {"MW-ONNX-INFO"}


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_variant_is_reported(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    factory, rule_id = HOSTILE[name]
    result = modelward.scan(factory(folder / "model.onnx")).results[0]
    assert result.format == "onnx"
    rules = {f.rule_id for f in result.findings}
    assert rule_id in rules
    assert "MW-SCAN-ERROR" not in rules
    assert result.max_severity is not None and result.max_severity >= Severity.MEDIUM


def test_custom_op_in_loop_body_names_the_path(tmp_path: Path) -> None:
    factory, _ = HOSTILE["custom_op_in_loop"]
    findings = modelward.scan(factory(tmp_path / "model.onnx")).findings
    [custom] = [f for f in findings if f.rule_id == "MW-ONNX-CUSTOM-OP"]
    assert custom.severity == Severity.HIGH
    assert custom.evidence == "evil.ops:RunShell"
    assert "graph/loop/body" in custom.message


@pytest.mark.parametrize("name", ["external_traversal", "external_absolute", "external_symlink"])
def test_escaping_external_data_is_high(tmp_path: Path, name: str) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    factory, _ = HOSTILE[name]
    findings = modelward.scan(factory(folder / "model.onnx")).findings
    [escape] = [f for f in findings if f.rule_id == "MW-ONNX-EXTERNAL-PATH"]
    assert escape.severity == Severity.HIGH


def test_external_data_inside_a_container_is_noted(tmp_path: Path) -> None:
    data = benign_external_data(tmp_path / "model.onnx").read_bytes()
    blob = Blob.from_bytes(modelward.Location("archive.tar", ("model.onnx",)), data)
    report = modelward.ScanResult(path="archive.tar")
    ctx = ScanContext(config=ScanConfig(), result=report, dispatch=dispatch)
    assert dispatch(blob, ctx) == "onnx"
    [note] = [f for f in report.findings if f.rule_id == "MW-ONNX-EXTERNAL-DATA"]
    assert note.severity == Severity.LOW and note.evidence == "weights.bin"


def test_over_two_gib_is_walked_in_bounded_memory(tmp_path: Path) -> None:
    path = over_protobuf_limit(tmp_path / "huge.onnx")
    tracemalloc.start()
    try:
        result = modelward.scan(path).results[0]
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    rules = {f.rule_id for f in result.findings}
    assert {"MW-ONNX-TOO-LARGE", "MW-ONNX-CUSTOM-OP"} <= rules
    assert "MW-ONNX-MALFORMED" not in rules
    assert peak < 200 * 1024**2
    assert result.bytes_read < 1024**2


def test_scans_without_the_onnx_package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The scanner decodes ONNX itself: without `onnx` (or protobuf) it finds the same."""
    path = custom_op_in_loop(tmp_path / "model.onnx")
    expected = {(f.rule_id, f.severity) for f in modelward.scan(path).findings}
    real_import = builtins.__import__

    def no_onnx(name: str, *args: Any, **kwargs: Any) -> Any:
        if name.split(".")[0] == "onnx" or name.startswith("google.protobuf"):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_onnx)
    found = {(f.rule_id, f.severity) for f in modelward.scan(path).findings}
    assert found == expected
    assert ("MW-ONNX-CUSTOM-OP", Severity.HIGH) in found


def test_detection_is_conservative(tmp_path: Path) -> None:
    scanner = OnnxScanner()
    model = benign_mlp(tmp_path / "model.onnx").read_bytes()
    assert scanner.detect(Blob.from_bytes(modelward.Location("m"), model), model[:HEAD_SIZE])
    # A TensorFlow SavedModel also starts with field 1 = 1, then a large binary field 2.
    saved_model = b"\x08\x01\x12\x90\x03" + bytes(range(256)) * 2
    for data in (saved_model, b"\x08\x07", b"\x08\x08\x12\x03\xff\xfe\xfd", b"\x80\x04K."):
        assert not scanner.detect(Blob.from_bytes(modelward.Location("x"), data), data)


with tempfile.TemporaryDirectory() as _folder:
    _VALID = benign_control_flow(Path(_folder) / "seed.onnx").read_bytes()


@given(st.binary(max_size=1024))
def test_fuzz_random_bytes_after_the_model_prefix_never_crash(tail: bytes) -> None:
    assert_never_crashes(scan_bytes(b"\x08\x08\x12\x04test" + tail, ".onnx"))


@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
    st.integers(1, len(_VALID)),
)
def test_fuzz_mutated_models_never_crash(edits: list[tuple[int, int]], keep: int) -> None:
    assert_never_crashes(scan_bytes(mutated(_VALID, edits, keep), ".onnx"))
