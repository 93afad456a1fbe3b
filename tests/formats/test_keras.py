"""Keras `.keras` archives and the shared config analysis: real saves, hostile configs."""

from __future__ import annotations

import base64
import json
import marshal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures import keras_models as km
from modelward.analysis._marshal import MarshalError, read_code
from modelward.analysis.keras_config import analyse_keras_config
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.interface import ScanContext
from modelward.scanner import dispatch


@pytest.fixture(scope="module")
def benign_archive(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return km.save(km.benign_model(), tmp_path_factory.mktemp("keras") / "benign.keras")


def _above_info(path: Path) -> list[Any]:
    return [f for f in modelward.scan(path).findings if f.severity > Severity.INFO]


def test_conv_dense_model_saved_by_keras_is_clean(benign_archive: Path) -> None:
    report = modelward.scan(benign_archive)
    assert report.results[0].format == "keras"
    assert _above_info(benign_archive) == []


def test_lambda_referencing_os_system_is_critical(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.lambda_model(), tmp_path / "lambda.keras"))
    [hit] = [f for f in report.findings if f.rule_id == "MW-KERAS-LAMBDA"]
    assert hit.severity == Severity.CRITICAL
    assert hit.evidence is not None
    assert "'os'" in hit.evidence and "'system'" in hit.evidence and "'true'" in hit.evidence
    assert hit.location.members == ("config.json",)


def test_harmless_lambda_is_still_high(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.harmless_lambda_model(), tmp_path / "double.keras"))
    assert [f.severity for f in report.findings if f.rule_id == "MW-KERAS-LAMBDA"] == [
        Severity.HIGH
    ]


def test_custom_objects_and_functions_need_custom_code(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.custom_object_model(), tmp_path / "custom.keras"))
    by_rule = {f.rule_id: f for f in report.findings}
    assert by_rule["MW-KERAS-CUSTOM-OBJECT"].severity == Severity.MEDIUM
    assert "OutsideDense" in (by_rule["MW-KERAS-CUSTOM-OBJECT"].evidence or "")
    assert by_rule["MW-KERAS-FUNCTION"].severity == Severity.HIGH
    assert "custom_activation" in (by_rule["MW-KERAS-FUNCTION"].evidence or "")


@pytest.mark.parametrize(
    ("mutate", "rule_id"),
    [
        (km.os_system_activation, "MW-KERAS-FUNCTION"),
        (km.subprocess_layer, "MW-KERAS-CUSTOM-OBJECT"),
        (km.get_file_activation, "MW-KERAS-FUNCTION"),
    ],
)
def test_config_naming_os_access_is_critical(
    tmp_path: Path, benign_archive: Path, mutate: Any, rule_id: str
) -> None:
    report = modelward.scan(km.rewrite_config(benign_archive, tmp_path / "evil.keras", mutate))
    assert report.results[0].format == "keras"
    assert [f.severity for f in report.findings if f.rule_id == rule_id] == [Severity.CRITICAL]


def test_torch_module_wrapper_pickle_is_scanned(tmp_path: Path) -> None:
    archive = km.save(km.torch_wrapper_model(), tmp_path / "wrapped.keras")
    report = modelward.scan(archive)
    [note] = [f for f in report.findings if f.rule_id == "MW-KERAS-TORCH-MODULE"]
    assert note.severity == Severity.HIGH
    assert not report.has_findings_at(Severity.CRITICAL)
    evil = km.rewrite_config(archive, tmp_path / "evil.keras", km.pickled_torch_module)
    critical = [f for f in modelward.scan(evil).findings if f.severity == Severity.CRITICAL]
    assert [f.rule_id for f in critical] == ["MW-PICKLE-DANGEROUS-GLOBAL"]
    assert critical[0].location.members[-1].endswith(".config.module")


def test_archive_with_only_a_config_is_still_keras(tmp_path: Path, benign_archive: Path) -> None:
    # Keras needs only config.json; dropping metadata must not turn the file into a plain zip.
    import zipfile

    stripped = tmp_path / "stripped.keras"
    with zipfile.ZipFile(benign_archive) as src, zipfile.ZipFile(stripped, "w") as dst:
        config = json.loads(src.read("config.json"))
        km.os_system_activation(config)
        dst.writestr("config.json", json.dumps(config))
    report = modelward.scan(stripped)
    assert report.results[0].format == "keras"
    assert report.has_findings_at(Severity.CRITICAL)


def _analyse(config: Any) -> ScanResult:
    from modelward.config import ScanConfig

    result = ScanResult("mem")
    ctx = ScanContext(config=ScanConfig(), result=result, dispatch=dispatch)
    analyse_keras_config(config, Location("mem"), ctx, source="test")
    return result


def test_legacy_lambda_list_form_is_read() -> None:
    config = json.loads(km.legacy_lambda_config(km.os_lambda_bytecode()))
    [hit] = _analyse(config).findings
    assert (hit.rule_id, hit.severity) == ("MW-KERAS-LAMBDA", Severity.CRITICAL)


def test_unreadable_lambda_bytecode_fails_closed() -> None:
    junk = base64.b64encode(b"\xe3" + b"\xff" * 40).decode()
    lam = {"class_name": "__lambda__", "config": {"code": junk}}
    [hit] = _analyse({"class_name": "Lambda", "config": {"function": lam}}).findings
    assert hit.severity == Severity.HIGH
    assert "could not be read" in hit.message


def test_plain_keras_objects_are_not_findings() -> None:
    config = {
        "module": "keras.layers",
        "class_name": "Dense",
        "config": {
            "activation": {
                "module": "keras.activations",
                "class_name": "function",
                "config": "relu",
                "registered_name": "relu",
            }
        },
        "registered_name": None,
    }
    assert _analyse(config).findings == []


def _deeply_nested_code() -> bytes:
    def outer() -> Any:
        def inner() -> Any:
            return __import__("subprocess")

        return inner

    return marshal.dumps(outer.__code__)


def test_marshal_reader_sees_nested_code_objects() -> None:
    info = read_code(_deeply_nested_code())
    assert "__import__" in info.all_names()
    assert "subprocess" in info.all_strings()


def _read_or_reject(data: bytes) -> None:
    """A code object whose names are strings, or MarshalError: nothing else."""
    try:
        info = read_code(data)
    except MarshalError as exc:
        assert str(exc)
        return
    assert all(isinstance(n, str) for n in info.all_names())


@given(st.binary(max_size=512))
def test_marshal_reader_never_raises_anything_else(data: bytes) -> None:
    _read_or_reject(data)


@given(st.data())
def test_marshal_reader_survives_mutated_code(data: st.DataObject) -> None:
    raw = bytearray(_deeply_nested_code())
    for _ in range(data.draw(st.integers(1, 8))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    _read_or_reject(bytes(raw[:cut]))


# -- Lambda functions in any encoding --------------------------------------------------

_OS_SOURCE = "lambda x: __import__('os').system('true') or x"


def _lambda_source_archive(tmp_path: Path, source: str) -> Path:
    """A real Keras save of `Lambda(lambda x: x * 2)`, its function then written as source."""
    import zipfile

    saved = km.save(km.harmless_lambda_model(), tmp_path / "saved.keras")
    edited = tmp_path / "source.keras"
    with zipfile.ZipFile(saved) as src, zipfile.ZipFile(edited, "w") as dst:
        for item in src.infolist():
            data = src.read(item.filename)
            if item.filename == "config.json":
                config = json.loads(data)
                [layer] = [la for la in config["config"]["layers"] if la["class_name"] == "Lambda"]
                assert layer["config"]["function"]["class_name"] == "__lambda__"
                layer["config"]["function"] = source
                data = json.dumps(config).encode()
            dst.writestr(item, data)
    return edited


def test_keras3_lambda_as_source_string_is_found(tmp_path: Path) -> None:
    report = modelward.scan(_lambda_source_archive(tmp_path, _OS_SOURCE))
    [hit] = [f for f in report.findings if f.rule_id == "MW-KERAS-LAMBDA"]
    assert hit.severity == Severity.CRITICAL
    assert "system" in hit.message


def test_harmless_lambda_source_is_high_like_bytecode(tmp_path: Path) -> None:
    report = modelward.scan(_lambda_source_archive(tmp_path, "lambda x: x * 2.0"))
    assert [f.severity for f in report.findings if f.rule_id == "MW-KERAS-LAMBDA"] == [
        Severity.HIGH
    ]


def test_function_named_by_a_plain_name_is_not_a_lambda() -> None:
    lam = {"class_name": "Lambda", "config": {"name": "l", "function": "relu"}}
    assert _analyse({"class_name": "Sequential", "config": {"layers": [lam]}}).findings == []


@pytest.mark.parametrize("function_type", ["lambda", "raw", None])
def test_legacy_lambda_source_in_h5_model_config(function_type: str | None, tmp_path: Path) -> None:
    config = json.loads(km.legacy_lambda_config(km.os_lambda_bytecode()))
    lam = config["config"]["layers"][1]["config"]
    lam["function"] = [_OS_SOURCE, None, None] if function_type == "lambda" else _OS_SOURCE
    if function_type is None:
        del lam["function_type"]
    else:
        lam["function_type"] = function_type
    path = km.write_h5_with_config(tmp_path / "legacy.h5", json.dumps(config))
    report = modelward.scan(path)
    assert [(f.rule_id, f.severity) for f in report.findings if f.severity > Severity.INFO] == [
        ("MW-KERAS-LAMBDA", Severity.CRITICAL)
    ]


def test_raw_unicode_escape_bytecode_is_read() -> None:
    # keras.utils.func_load falls back to `code.encode("raw_unicode_escape")` when the
    # string is not base64: the bytecode may be spelled that way.
    raw = km.os_lambda_bytecode().decode("latin-1")
    lam = {"class_name": "__lambda__", "config": {"code": raw}}
    [hit] = _analyse({"class_name": "Lambda", "config": {"function": lam}}).findings
    assert hit.severity == Severity.CRITICAL
    assert "could not be read" not in hit.message
