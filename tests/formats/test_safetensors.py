"""The safetensors scanner: real files are clean, each planted defect is found, nothing raises."""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.fuzzing import assert_never_crashes, mutated, scan_bytes
from fixtures.safetensors_files import HOSTILE, benign_numpy, benign_torch, huge_header_length
from modelward.config import Limits, ScanConfig
from modelward.findings import Severity


@pytest.mark.parametrize("factory", [benign_numpy, benign_torch])
def test_files_written_by_safetensors_are_clean(
    tmp_path: Path, factory: Callable[[Path], Path]
) -> None:
    report = modelward.scan(factory(tmp_path / "model.safetensors"))
    assert report.results[0].format == "safetensors"
    assert report.findings == []


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_variant_is_reported(tmp_path: Path, name: str) -> None:
    factory, rule_id = HOSTILE[name]
    report = modelward.scan(factory(tmp_path / "model.safetensors"))
    result = report.results[0]
    assert result.format == "safetensors"
    assert rule_id in {f.rule_id for f in result.findings}
    assert result.max_severity is not None and result.max_severity >= Severity.MEDIUM
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}


def test_hidden_data_evidence_points_at_the_gap(tmp_path: Path) -> None:
    factory, _ = HOSTILE["gap_with_payload"]
    report = modelward.scan(factory(tmp_path / "model.safetensors"))
    [hidden] = [f for f in report.findings if f.rule_id == "MW-SAFETENSORS-HIDDEN-DATA"]
    assert hidden.evidence is not None and hidden.evidence.startswith("data bytes ")


def test_nothing_past_the_header_is_read(tmp_path: Path) -> None:
    path = benign_numpy(tmp_path / "model.safetensors")
    with path.open("ab") as f:  # a large tensor section the scan must not read
        f.truncate(path.stat().st_size + 50 * 1024**2)
    report = modelward.scan(path)
    assert report.results[0].bytes_read < 256 * 1024
    assert {f.rule_id for f in report.findings} == {"MW-SAFETENSORS-HIDDEN-DATA"}


def test_header_over_the_configured_limit_is_a_finding(tmp_path: Path) -> None:
    path = benign_numpy(tmp_path / "model.safetensors")
    config = ScanConfig(limits=Limits(max_header_bytes=16))
    report = modelward.scan(path, config=config)
    assert [f.rule_id for f in report.findings] == ["MW-SAFETENSORS-HEADER-SIZE"]


def test_repeated_defects_are_capped(tmp_path: Path) -> None:
    from fixtures.safetensors_files import assemble

    header = {f"t{i}": {"dtype": "NOPE", "shape": [0], "data_offsets": [0, 0]} for i in range(500)}
    path = tmp_path / "many.safetensors"
    path.write_bytes(assemble(header, b""))
    findings = modelward.scan(path).findings
    assert 20 < len(findings) < 30
    assert any("more MW-SAFETENSORS-TENSOR findings" in f.message for f in findings)


def test_hostile_header_length_stays_in_bounded_memory(tmp_path: Path) -> None:
    path = huge_header_length(tmp_path / "model.safetensors")
    tracemalloc.start()
    try:
        report = modelward.scan(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.findings[0].rule_id == "MW-SAFETENSORS-HEADER-SIZE"
    assert peak < 200 * 1024**2


with tempfile.TemporaryDirectory() as _folder:
    _VALID = benign_numpy(Path(_folder) / "seed.safetensors").read_bytes()


@given(st.binary(max_size=2048).map(lambda tail: b"\x20\x00\x00\x00\x00\x00\x00\x00{" + tail))
def test_fuzz_random_headers_never_crash(data: bytes) -> None:
    assert_never_crashes(scan_bytes(data, ".safetensors"))


@given(
    st.lists(st.tuples(st.integers(0, len(_VALID) - 1), st.integers(0, 255)), max_size=8),
    st.integers(1, len(_VALID)),
)
def test_fuzz_mutated_files_never_crash(edits: list[tuple[int, int]], keep: int) -> None:
    assert_never_crashes(scan_bytes(mutated(_VALID, edits, keep), ".safetensors"))


# -- code-like strings in __metadata__ -----------------------------------------------------


def _with_metadata(tmp_path: Path, metadata: dict[str, str]) -> Path:
    import numpy as np
    from safetensors.numpy import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": np.zeros((2, 2), dtype=np.float32)}, str(path), metadata=metadata)
    return path


def _metadata_code(path: Path) -> list[tuple[str, Severity]]:
    return [
        (f.rule_id, f.severity)
        for f in modelward.scan(path).findings
        if f.rule_id == "MW-SAFETENSORS-METADATA-CODE"
    ]


def _pickle_payload(protocol: int) -> bytes:
    import os
    import pickle

    class Call:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, ("true",))

    return pickle.dumps(Call(), protocol=protocol)


@pytest.mark.parametrize(
    "value",
    [
        "__import__('os').system('true')",
        "import os; os.system('true')",
        "lambda x: x",
        "eval(payload)",
        "getattr(builtins, 'ex' + 'ec')('1')",
        "base64",
        "hex",
        "protocol-0",
    ],
)
def test_code_like_metadata_is_at_least_low(value: str, tmp_path: Path) -> None:
    import base64

    if value == "base64":
        value = base64.b64encode(_pickle_payload(4)).decode()
    elif value == "hex":
        value = _pickle_payload(2).hex()
    elif value == "protocol-0":
        value = _pickle_payload(0).decode("latin-1")
    assert _metadata_code(_with_metadata(tmp_path, {"note": value})) == [
        ("MW-SAFETENSORS-METADATA-CODE", Severity.LOW)
    ]


def test_ordinary_metadata_is_clean(tmp_path: Path) -> None:
    import json

    ordinary = {
        "format": "pt",
        "total_size": "1234567",
        "base_model": "meta-llama/Llama-2-7b-hf",
        "peft_config": json.dumps(
            {"r": 8, "lora_alpha": 16, "target_modules": ["q_proj", "v_proj"], "bias": "none"}
        ),
        "description": "Fine-tuned (LoRA) on the Alpaca data set.\nSee the model card.",
        "dtype": "torch.float16",
        "sha256": "ab" * 32,
        "version": "4.40.0",
    }
    assert _metadata_code(_with_metadata(tmp_path, ordinary)) == []


def test_transformers_and_torch_saves_are_clean(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    path = tmp_path / "model.safetensors"
    save_file({"w": torch.zeros(2)}, str(path), metadata={"format": "pt"})
    assert modelward.scan(path).findings == []
