"""7z archives made by py7zr: members scanned by content, bombs, encryption and damage bounded."""

from __future__ import annotations

import io
import pickle
from pathlib import Path

import py7zr
import torch

import modelward
from fixtures.torch_models import Payload, architectures
from modelward.config import Limits, ScanConfig
from modelward.findings import Severity


def _seven_zip(path: Path, members: dict[str, bytes], password: str | None = None) -> Path:
    with py7zr.SevenZipFile(path, "w", password=password) as archive:
        for name, data in members.items():
            archive.writestr(data, name)
    return path


def _state_dict_bytes() -> bytes:
    out = io.BytesIO()
    torch.save(architectures()["mlp"].state_dict(), out)
    return out.getvalue()


def _found(report: modelward.ScanReport) -> set[tuple[str, Severity]]:
    return {(f.rule_id, f.severity) for f in report.findings}


def test_benign_archive_is_clean_and_members_are_scanned(tmp_path: Path) -> None:
    path = _seven_zip(
        tmp_path / "model.7z",
        {"model/pytorch_model.bin": _state_dict_bytes(), "README.md": b"# a model\n"},
    )
    report = modelward.scan(path)
    assert report.results[0].format == "7z"
    assert report.findings == []


def test_payload_pickle_inside_is_critical(tmp_path: Path) -> None:
    state = {"state_dict": architectures()["mlp"].state_dict(), "hook": Payload()}
    checkpoint = io.BytesIO()
    torch.save(state, checkpoint)
    path = _seven_zip(
        tmp_path / "nullifai.7z",
        {"model.pkl": pickle.dumps(Payload(), protocol=4), "ckpt/model.pt": checkpoint.getvalue()},
    )
    report = modelward.scan(path)
    critical = {f.location.members[0] for f in report.findings if f.severity == Severity.CRITICAL}
    assert critical == {"model.pkl", "ckpt/model.pt"}


def test_declared_bomb_is_reported_without_decompressing(tmp_path: Path) -> None:
    path = _seven_zip(tmp_path / "bomb.7z", {"zeros.bin": bytes(64 * 1024**2)})
    assert path.stat().st_size < 64 * 1024**2 // 1000  # far past the 1000x ratio
    report = modelward.scan(path)
    assert ("MW-ARCHIVE-BOMB", Severity.MEDIUM) in _found(report)
    assert report.results[0].bytes_read < 64 * 1024


def test_decompression_stops_at_the_per_file_budget(tmp_path: Path) -> None:
    path = _seven_zip(tmp_path / "bomb.7z", {"zeros.bin": bytes(32 * 1024**2)})
    limits = Limits(max_compression_ratio=1e9, max_total_decompressed_bytes=2 * 1024**2)
    report = modelward.scan(path, config=ScanConfig(limits=limits))
    assert _found(report) == {("MW-LIMIT-DECOMPRESSED", Severity.MEDIUM)}


def test_member_over_the_per_stream_cap(tmp_path: Path) -> None:
    path = _seven_zip(tmp_path / "big.7z", {"a.bin": bytes(4 * 1024**2)})
    limits = Limits(max_compression_ratio=1e9, max_decompressed_bytes=1024**2)
    report = modelward.scan(path, config=ScanConfig(limits=limits))
    assert ("MW-ARCHIVE-BOMB", Severity.MEDIUM) in _found(report)


def test_encrypted_archive_is_low(tmp_path: Path) -> None:
    members = {"model.pkl": pickle.dumps(Payload())}
    path = _seven_zip(tmp_path / "secret.7z", members, password="pw")
    assert _found(modelward.scan(path)) == {("MW-ARCHIVE-ENCRYPTED", Severity.LOW)}
    hidden = tmp_path / "hidden.7z"
    with py7zr.SevenZipFile(hidden, "w", password="pw", header_encryption=True) as archive:
        archive.writestr(pickle.dumps(Payload()), "model.pkl")
    assert _found(modelward.scan(hidden)) == {("MW-ARCHIVE-ENCRYPTED", Severity.LOW)}


def test_corrupt_and_truncated_archives_are_findings(tmp_path: Path) -> None:
    good = _seven_zip(tmp_path / "good.7z", {"m.pkl": pickle.dumps(list(range(500)))}).read_bytes()
    variants = {
        "truncated": good[: len(good) // 2],
        "header_only": good[:32],
        "tiny": good[:10],
        "flipped": good[:40] + bytes(b ^ 0xFF for b in good[40:60]) + good[60:],
        "huge_next_header": good[:12] + (2**62).to_bytes(8, "little") + good[20:],
    }
    for name, data in variants.items():
        path = tmp_path / f"{name}.7z"
        path.write_bytes(data)
        report = modelward.scan(path)
        rules = {f.rule_id for f in report.findings}
        assert "MW-SCAN-ERROR" not in rules, name
        assert ("MW-ARCHIVE-MALFORMED", Severity.MEDIUM) in _found(report), name


def test_too_many_members(tmp_path: Path) -> None:
    path = _seven_zip(tmp_path / "many.7z", {f"f{i}.txt": b"x" for i in range(20)})
    report = modelward.scan(path, config=ScanConfig(limits=Limits(max_members=10)))
    assert _found(report) == {("MW-ARCHIVE-TOO-MANY-MEMBERS", Severity.MEDIUM)}


def test_nested_archives_are_scanned(tmp_path: Path) -> None:
    inner = _seven_zip(tmp_path / "inner.7z", {"evil.pkl": pickle.dumps(Payload())})
    outer = _seven_zip(tmp_path / "outer.7z", {"inner.7z": inner.read_bytes()})
    report = modelward.scan(outer)
    assert any(
        f.severity == Severity.CRITICAL and f.location.members == ("inner.7z", "evil.pkl")
        for f in report.findings
    )
