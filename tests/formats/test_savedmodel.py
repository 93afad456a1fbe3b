"""TensorFlow SavedModel and keras_metadata.pb, parsed without TensorFlow."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures import savedmodels as sm
from fixtures.keras_models import os_lambda_bytecode
from modelward.analysis import _protowire as pw
from modelward.findings import Severity


def test_realistic_savedmodel_is_clean(tmp_path: Path) -> None:
    report = modelward.scan(sm.write(tmp_path / "m" / "saved_model.pb", sm.benign_saved_model()))
    assert report.results[0].format == "tf-savedmodel"
    assert report.findings == []


def test_whole_savedmodel_folder_is_clean(tmp_path: Path) -> None:
    report = modelward.scan(sm.saved_model_dir(tmp_path / "export"))
    formats = {Path(r.path).name: r.format for r in report.results}
    assert formats == {
        "saved_model.pb": "tf-savedmodel",
        "fingerprint.pb": "tf-fingerprint",
        "keras_metadata.pb": "keras-metadata",
        "variables.index": "tf-checkpoint",
        "variables.data-00000-of-00001": "tf-checkpoint",
        "vocab.txt": "text",
    }
    assert report.findings == []


def test_text_format_savedmodel_fails_closed(tmp_path: Path) -> None:
    text = b'meta_graphs {\n  graph_def {\n    node { name: "r" op: "ReadFile" }\n  }\n}\n'
    report = modelward.scan(sm.write(tmp_path / "saved_model.pbtxt", text))
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("MW-TF-UNSUPPORTED", Severity.MEDIUM)
    ]


def test_pickle_named_like_a_checkpoint_shard_is_still_a_pickle(tmp_path: Path) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self) -> tuple[object, ...]:
            return (os.system, ("true",))

    root = sm.saved_model_dir(tmp_path / "export")
    shard = root / "variables" / "variables.data-00000-of-00001"
    shard.write_bytes(pickle.dumps(Payload()))
    report = modelward.scan(shard)
    assert report.results[0].format == "pickle"
    assert report.has_findings_at(Severity.CRITICAL)


def test_savedmodel_is_recognised_by_content_not_name(tmp_path: Path) -> None:
    report = modelward.scan(
        sm.write(tmp_path / "renamed.bin", sm.hostile_saved_models()["readfile-in-function"][0])
    )
    assert report.results[0].format == "tf-savedmodel"
    assert report.has_findings_at(Severity.HIGH)


@pytest.mark.parametrize("name", sorted(sm.hostile_saved_models()))
def test_each_hostile_graph_is_reported(tmp_path: Path, name: str) -> None:
    data, rule_id, severity = sm.hostile_saved_models()[name]
    report = modelward.scan(sm.write(tmp_path / name / "saved_model.pb", data))
    hits = [f for f in report.findings if f.rule_id == rule_id]
    assert [f.severity for f in hits] == [Severity.parse(severity)]
    assert report.findings == hits


def test_function_library_location_is_in_the_evidence(tmp_path: Path) -> None:
    data = sm.hostile_saved_models()["pyfunc-in-function"][0]
    [hit] = modelward.scan(sm.write(tmp_path / "saved_model.pb", data)).findings
    assert hit.evidence is not None
    assert f"{sm.SERVING}/PyFunc" in hit.evidence


def test_truncated_savedmodel_is_malformed(tmp_path: Path) -> None:
    data = sm.benign_saved_model()
    report = modelward.scan(sm.write(tmp_path / "saved_model.pb", data[: len(data) // 2]))
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("MW-TF-MALFORMED", Severity.MEDIUM)
    ]


def test_keras_metadata_benign_and_lambda(tmp_path: Path) -> None:
    clean = modelward.scan(
        sm.write(tmp_path / "a" / "keras_metadata.pb", sm.benign_keras_metadata())
    )
    assert clean.results[0].format == "keras-metadata"
    assert clean.findings == []
    evil = sm.lambda_keras_metadata(os_lambda_bytecode())
    report = modelward.scan(sm.write(tmp_path / "b" / "keras_metadata.pb", evil))
    [hit] = report.findings
    assert (hit.rule_id, hit.severity) == ("MW-KERAS-LAMBDA", Severity.CRITICAL)
    assert "root.layer-1" in (hit.evidence or "")


def test_keras_metadata_in_the_object_graph_is_analysed(tmp_path: Path) -> None:
    data = sm.saved_model_with_user_metadata(os_lambda_bytecode())
    report = modelward.scan(sm.write(tmp_path / "saved_model.pb", data))
    [hit] = report.findings
    assert (hit.rule_id, hit.severity) == ("MW-KERAS-LAMBDA", Severity.CRITICAL)
    assert "_tf_keras_layer" in (hit.evidence or "")


def test_protowire_reads_what_the_writer_wrote() -> None:
    message = sm.length_delimited(3, "abc") + sm.varint_field(1, 300) + sm.varint_field(2, 2**63)
    fields = list(pw.iter_fields(message))
    assert [(f.number, f.wire_type) for f in fields] == [(3, 2), (1, 0), (2, 0)]
    assert fields[0].text() == "abc"
    assert fields[1].value == 300 and fields[2].value == 2**63


def test_protowire_rejects_lengths_past_the_end() -> None:
    with pytest.raises(pw.ProtoError):
        list(pw.iter_fields(sm.tag(1, 2) + sm.varint(2**40) + b"x"))


@given(st.binary(max_size=1024))
def test_protowire_never_raises_anything_else(data: bytes) -> None:
    offsets: list[int] = []
    try:
        for field in pw.iter_fields(data):
            offsets.append(field.offset)
            if field.wire_type == pw.LEN:
                assert len(field.data) <= len(data)
    except pw.ProtoError as exc:
        assert str(exc)
    assert offsets == sorted(set(offsets))
    assert all(0 <= o < len(data) for o in offsets)


@given(st.data())
def test_savedmodel_scan_survives_mutations(data: st.DataObject) -> None:
    raw = bytearray(sm.benign_saved_model())
    for _ in range(data.draw(st.integers(1, 6))):
        raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    with_cut = bytes(raw[: data.draw(st.integers(1, len(raw)))])
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        report = modelward.scan(sm.write(Path(tmp) / "saved_model.pb", with_cut))
    assert all(f.rule_id != "MW-SCAN-ERROR" for f in report.findings)
