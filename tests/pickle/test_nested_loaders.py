"""Data a pickle hands to a deserialiser while it loads (`torch.storage._load_from_bytes`,
which `torch.load`s its bytes) is scanned as that deserialiser reads it, at the severity of
code that runs on load; carried data that nothing loads stays MEDIUM (`MW-PICKLE-EMBEDDED`)."""

from __future__ import annotations

import io
import os
import pickle

import torch
import torch.storage

from fixtures.pickles import Reduces, global_, proto, scan_bytes
from modelward.findings import Finding, Severity

MARKER = "modelward-marker"


def _legacy_save(obj: object) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=False)
    return buffer.getvalue()


def _loaded_by_torch(payload: bytes) -> bytes:
    return pickle.dumps(Reduces(torch.storage._load_from_bytes, (payload,)), protocol=4)


def _alarms(data: bytes) -> list[Finding]:
    return [f for f in scan_bytes(data)[1] if f.severity >= Severity.MEDIUM]


def test_pickled_tensors_scan_clean() -> None:
    """`pickle.dumps(tensor)` (torchmetrics states, plain pickles of tensors) goes this way."""
    data = pickle.dumps({"weight": torch.arange(6.0).reshape(2, 3), "step": 3}, protocol=2)
    assert b"_load_from_bytes" in data
    assert _alarms(data) == []


def test_payload_in_bytes_torch_loads_is_critical() -> None:
    twin = _loaded_by_torch(_legacy_save({"marker": MARKER}))
    assert pickle.loads(twin) == {"marker": MARKER}  # torch.load really reads those bytes
    assert _alarms(twin) == []
    evil = _loaded_by_torch(_legacy_save(Reduces(os.system, ("true",))))
    findings = scan_bytes(evil)[1]
    assert any(
        f.rule_id == "MW-PICKLE-EMBEDDED"
        and f.severity is Severity.CRITICAL
        and "torch.storage._load_from_bytes" in f.message
        for f in findings
    ), [(f.rule_id, f.severity, f.evidence) for f in findings]


def test_carried_payload_nothing_loads_stays_medium() -> None:
    data = pickle.dumps({"blob": _legacy_save(Reduces(os.system, ("true",)))}, protocol=4)
    findings = [f for f in scan_bytes(data)[1] if f.severity >= Severity.MEDIUM]
    assert findings and {(f.rule_id, f.severity) for f in findings} == {
        ("MW-PICKLE-EMBEDDED", Severity.MEDIUM)
    }


def test_bytes_it_cannot_follow_are_high() -> None:
    zipped = io.BytesIO()
    torch.save({"marker": MARKER}, zipped)  # a zip checkpoint: not read as a pickle here
    data = _loaded_by_torch(zipped.getvalue())
    assert pickle.loads(data) == {"marker": MARKER}
    findings = _alarms(data)
    assert [(f.rule_id, f.severity) for f in findings] == [("MW-PICKLE-EMBEDDED", Severity.HIGH)]


def test_computed_data_is_a_hidden_call() -> None:
    data = (
        proto(2)
        + global_("torch.storage", "_load_from_bytes")
        + global_("builtins", "bytes")
        + b")R"  # bytes() computed by the stream
        + b"\x85R."
    )
    hidden = [f for f in scan_bytes(data)[1] if f.rule_id == "MW-PICKLE-HIDDEN-CALL"]
    assert [f.severity for f in hidden] == [Severity.HIGH]
