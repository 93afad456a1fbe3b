"""The GGUF scanner: real files are clean, each planted defect is reported, nothing raises."""

from __future__ import annotations

import tempfile
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import gguf
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.chat_templates import BENIGN
from fixtures.fuzzing import assert_never_crashes, mutated, scan_bytes
from fixtures.gguf_files import HOSTILE, absurd_tensor_count, truncated_string, write_gguf
from modelward.findings import Severity
from modelward.formats.gguf import GGML_BLOCKS


@pytest.mark.parametrize("name", sorted(BENIGN))
def test_files_written_by_gguf_are_clean(tmp_path: Path, name: str) -> None:
    report = modelward.scan(write_gguf(tmp_path / "model.gguf", chat_template=BENIGN[name]))
    assert report.results[0].format == "gguf"
    assert report.findings == []


def test_custom_alignment_and_named_templates_are_clean(tmp_path: Path) -> None:
    path = write_gguf(
        tmp_path / "model.gguf", alignment=64, extra_templates={"tool_use": BENIGN["qwen_tools"]}
    )
    assert modelward.scan(path).findings == []


def test_big_endian_files_are_read(tmp_path: Path) -> None:
    path = tmp_path / "be.gguf"
    writer = gguf.GGUFWriter(str(path), "llama", endianess=gguf.GGUFEndian.BIG)
    writer.add_chat_template(BENIGN["chatml"])
    writer.add_tensor("t", np.arange(8, dtype=np.float32).byteswap())
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    assert modelward.scan(path).findings == []
    with path.open("ab") as f:  # and hidden data is still found in them
        f.write(b"\xff" * 100)
    assert [f.rule_id for f in modelward.scan(path).findings] == ["MW-GGUF-HIDDEN-DATA"]


@pytest.mark.parametrize("name", sorted(HOSTILE))
def test_each_hostile_variant_is_reported(tmp_path: Path, name: str) -> None:
    factory, rule_id = HOSTILE[name]
    result = modelward.scan(factory(tmp_path / "model.gguf")).results[0]
    assert result.format == "gguf"
    rules = {f.rule_id for f in result.findings}
    assert rule_id in rules
    assert "MW-SCAN-ERROR" not in rules
    assert result.max_severity is not None and result.max_severity >= Severity.MEDIUM


def test_template_injection_is_high_and_quotes_the_template(tmp_path: Path) -> None:
    factory, _ = HOSTILE["ssti_cycler_globals"]
    findings = modelward.scan(factory(tmp_path / "model.gguf")).findings
    assert {f.severity for f in findings} == {Severity.HIGH}
    assert all(f.message.startswith("tokenizer.chat_template line 1") for f in findings)
    assert any(f.evidence and "cycler.__init__" in f.evidence for f in findings)
    assert all(f.location.offset is not None for f in findings)


def test_type_sizes_match_the_gguf_library() -> None:
    known = {int(t): size for t, size in gguf.GGML_QUANT_SIZES.items()}
    assert all(known[t] == size for t, size in GGML_BLOCKS.items())


def test_tensor_data_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.gguf"
    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_tensor("big", np.zeros((1024, 1024), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    report = modelward.scan(path)
    assert report.findings == []
    assert report.results[0].bytes_read < 256 * 1024 < path.stat().st_size


@pytest.mark.parametrize("factory", [absurd_tensor_count, truncated_string])
def test_absurd_sizes_stay_in_bounded_memory(
    tmp_path: Path, factory: Callable[[Path], Path]
) -> None:
    path = factory(tmp_path / "model.gguf")
    tracemalloc.start()
    try:
        report = modelward.scan(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert report.findings
    assert peak < 200 * 1024**2


with tempfile.TemporaryDirectory() as _folder:
    _VALID = write_gguf(Path(_folder) / "seed.gguf").read_bytes()
_HEADER_END = _VALID.index(b"blk.0.b") + 64


@given(st.binary(max_size=1024))
def test_fuzz_random_headers_never_crash(tail: bytes) -> None:
    assert_never_crashes(scan_bytes(b"GGUF\x03\x00\x00\x00" + tail, ".gguf"))


@given(
    st.lists(st.tuples(st.integers(0, _HEADER_END), st.integers(0, 255)), max_size=8),
    st.integers(4, len(_VALID)),
)
def test_fuzz_mutated_files_never_crash(edits: list[tuple[int, int]], keep: int) -> None:
    assert_never_crashes(scan_bytes(mutated(_VALID, edits, keep), ".gguf"))
