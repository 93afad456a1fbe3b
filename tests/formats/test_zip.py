"""The bounded zip reader and the generic zip scanner: hostile directories become findings."""

from __future__ import annotations

import io
import pickle
import shutil
import struct
import subprocess
import zipfile
import zlib
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from fixtures.torch_models import Payload, payload_pickle
from modelward.config import Limits, ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.zip import looks_like_zip, member_names, read_zip
from modelward.scanner import dispatch


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_DEFLATED) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", method) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _scan(data: bytes, limits: Limits | None = None) -> ScanResult:
    result = ScanResult("a.zip")
    ctx = ScanContext(
        config=ScanConfig(limits=limits or Limits()), result=result, dispatch=dispatch
    )
    result.format = dispatch(Blob.from_bytes(Location("a.zip"), data), ctx)
    return result


def _rules(result: ScanResult) -> set[str]:
    return {f.rule_id for f in result.findings}


def test_members_are_scanned_by_content() -> None:
    data = _zip({"notes.txt": b"hello", "inner/model.bin": payload_pickle()})
    result = _scan(data)
    assert result.format == "zip"
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert critical
    assert {f.location.members for f in critical} == {("inner/model.bin",)}


def test_benign_zip_has_no_findings() -> None:
    data = _zip({"a.txt": b"x" * 100, "dir/b.json": b"{}", "dir/": b""})
    result = _scan(data)
    assert result.format == "zip"
    assert result.findings == []


def test_traversal_and_absolute_names() -> None:
    data = _zip({"../../etc/cron.d/x": b"a", "/abs": b"b", "C:\\win": b"c", "ok/../../x": b"d"})
    result = _scan(data)
    flagged = {f.location.members[0] for f in result.findings if f.rule_id.endswith("TRAVERSAL")}
    assert flagged == {"../../etc/cron.d/x", "/abs", "C:\\win", "ok/../../x"}
    assert all(f.severity == Severity.HIGH for f in result.findings if "TRAVERSAL" in f.rule_id)


def test_duplicate_names_are_an_evasion_finding() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive, pytest.warns(UserWarning):
        archive.writestr("data.pkl", pickle.dumps([1]))
        archive.writestr("data.pkl", payload_pickle())
    result = _scan(out.getvalue())
    assert ("MW-ZIP-DUPLICATE-NAME", Severity.MEDIUM) in {
        (f.rule_id, f.severity) for f in result.findings
    }
    # Both copies are scanned: the payload in the second one is found.
    assert result.max_severity == Severity.CRITICAL


def test_symlink_and_encrypted_members() -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        link = zipfile.ZipInfo("link")
        link.external_attr = (0o120777 << 16) | 0x20
        archive.writestr(link, "/etc/passwd")
        archive.writestr("secret", b"data")
    data = bytearray(out.getvalue())
    # Set the "encrypted" flag of `secret` in its central directory entry.
    entry = data.rfind(b"PK\x01\x02")
    data[entry + 8] |= 0x1
    result = _scan(bytes(data))
    found = {(f.rule_id, f.location.members) for f in result.findings}
    assert ("MW-ZIP-SYMLINK", ("link",)) in found
    assert ("MW-ZIP-ENCRYPTED", ("secret",)) in found


def test_bomb_ratio_and_decompression_cap() -> None:
    # A pickle of one long byte string: the pickle scanner reads it all, through the cap.
    data = _zip({"zeros.pkl": pickle.dumps(b"\x00" * (20 * 1024**2), protocol=4)})
    assert len(data) < 100 * 1024
    result = _scan(data)
    assert "MW-ZIP-BOMB" in _rules(result)
    assert result.max_severity == Severity.MEDIUM
    # Many small opcodes: read one by one until the decompressed-size cap stops the stream.
    many = _zip({"zeros.pkl": pickle.dumps([0] * 4_000_000, protocol=2)})
    capped = _scan(many, Limits(max_decompressed_bytes=1024**2))
    limited = [f for f in capped.findings if f.rule_id == "MW-LIMIT-SIZE"]
    assert [f.location.members for f in limited] == [("zeros.pkl",)]
    assert capped.max_severity == Severity.MEDIUM


def test_too_many_members() -> None:
    data = _zip({f"f{i}": b"" for i in range(5)})
    result = _scan(data, Limits(max_members=3))
    assert _rules(result) == {"MW-ZIP-TOO-MANY-MEMBERS"}


def test_an_entry_count_only_miniz_believes_still_scans_what_zipfile_reads() -> None:
    """zipfile ignores the end record's count; miniz rejects it: zipfile's members are scanned."""
    data = bytearray(_zip({"a.pkl": payload_pickle(), "b.txt": b"hello"}))
    eocd = data.rfind(b"PK\x05\x06")
    struct.pack_into("<HH", data, eocd + 8, 60000, 60000)
    result = _scan(bytes(data))
    assert result.format == "zip"
    assert {f.location.members for f in result.findings if f.severity == Severity.CRITICAL} == {
        ("a.pkl",)
    }


@pytest.mark.parametrize(
    "damage",
    ["cut_directory", "bad_signature", "offset_past_end"],
)
def test_corrupt_directory_is_a_finding(damage: str) -> None:
    data = bytearray(_zip({"a.pkl": pickle.dumps([1, 2]), "b.txt": b"hello"}))
    eocd = data.rfind(b"PK\x05\x06")
    cd_offset = struct.unpack_from("<I", data, eocd + 16)[0]
    if damage == "cut_directory":
        data = data[: cd_offset + 10] + data[eocd:]
    elif damage == "bad_signature":
        data[cd_offset : cd_offset + 4] = b"XXXX"
    else:
        struct.pack_into("<I", data, eocd + 16, len(data) * 4)
    result = _scan(bytes(data))
    assert "MW-ZIP-CORRUPT" in _rules(result)
    assert "MW-SCAN-ERROR" not in _rules(result)


def test_zip64_end_records(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(zipfile, "ZIP_FILECOUNT_LIMIT", 1)
    data = _zip({"a.pkl": pickle.dumps({"w": 1}), "b.txt": b"x"})
    assert b"PK\x06\x06" in data
    blob = Blob.from_bytes(Location("z.zip"), data)
    assert member_names(blob, Limits()) == ["a.pkl", "b.txt"]
    assert _scan(data).findings == []


def test_junk_prefix_is_still_a_zip() -> None:
    data = b"#!/bin/sh\nexit 0\n" + _zip({"m.pkl": pickle.dumps(Payload())})
    blob = Blob.from_bytes(Location("p.zip"), data)
    assert looks_like_zip(blob, data[:4096])
    result = _scan(data)
    assert result.format == "zip"
    assert "MW-ZIP-PREFIX" in _rules(result)
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert {f.location.members for f in critical} == {("m.pkl",)}


def test_member_blob_streams_only_the_member(tmp_path: Path) -> None:
    path = tmp_path / "two.zip"
    path.write_bytes(_zip({"small": b"abc", "big": b"\x01" * 1024**2}, zipfile.ZIP_STORED))
    result = ScanResult("two.zip")
    ctx = ScanContext(config=ScanConfig(), result=result, dispatch=dispatch)
    with read_zip(Blob.from_file(path), ctx) as archive:
        [small] = [m for m in archive.members if m.name == "small"]
        with ctx.open(archive.member_blob(small)) as stream:
            assert stream.read() == b"abc"
    assert ctx.read_counter[0] < 64 * 1024
    assert result.findings == []


def test_non_zip_is_not_claimed() -> None:
    data = b"\x00" * 100 + b"PK\x05\x06" + b"\x00" * 30
    assert not looks_like_zip(Blob.from_bytes(Location("x"), data), data)


@given(st.integers(min_value=0, max_value=400), st.binary(min_size=1, max_size=16))
def test_damaged_zips_never_crash(position: int, noise: bytes) -> None:
    data = bytearray(_zip({"a.pkl": pickle.dumps([1]), "b/c.txt": b"text" * 20}))
    position %= len(data)
    data[position : position + len(noise)] = noise
    result = _scan(bytes(data))
    assert "MW-SCAN-ERROR" not in _rules(result)


@pytest.mark.parametrize("method", [zipfile.ZIP_DEFLATED, zipfile.ZIP_STORED])
def test_zip_and_checkpoints_inside_a_zip_are_scanned(tmp_path: Path, method: int) -> None:
    # A model bundle zipped for download: the checkpoint (itself a zip) and a zip of pickles
    # inside must be scanned through, not reported as unreadable.
    from fixtures.torch_models import write_benign, write_malicious

    evil_checkpoint = write_malicious(tmp_path)[0].read_bytes()
    clean_checkpoint = write_benign(tmp_path)[0].read_bytes()
    inner = _zip({"evil.pkl": payload_pickle()})
    bundle = _zip(
        {"model.pt": evil_checkpoint, "clean.pt": clean_checkpoint, "pickles.zip": inner}, method
    )
    result = _scan(bundle)
    assert not result.errors, result.errors
    dangerous = {
        str(f.location).split("@")[0] for f in result.findings if f.severity >= Severity.HIGH
    }
    assert any(where.startswith("a.zip!model.pt!") for where in dangerous), dangerous
    assert "a.zip!pickles.zip!evil.pkl" in dangerous
    assert not any(where.startswith("a.zip!clean.pt") for where in dangerous), dangerous


def test_zip_nested_in_zips_is_stopped_by_the_decompression_budget() -> None:
    # 42.zip in miniature: every member under the per-stream cap, the total over the budget.
    layer = _zip({f"part{i}.pkl": pickle.dumps(bytes(200_000)) for i in range(4)})
    for depth in range(3):
        layer = _zip({f"level{depth}-{i}.zip": layer for i in range(4)})
    limits = Limits(
        max_decompressed_bytes=4 * 1024**2,
        max_compression_ratio=1e9,
        max_total_decompressed_bytes=8 * 1024**2,
    )
    result = _scan(layer, limits)
    assert "MW-LIMIT-DECOMPRESSED" in _rules(result), result.findings
    assert not result.errors


def _png(width: int = 4, height: int = 3) -> bytes:
    """A valid RGB PNG, chunk by chunk as the PNG specification lays it out."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    rows = b"".join(b"\x00" + bytes(range(width * 3)) for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize("name", ["model.pt", "pytorch_model.bin", "figure.png"])
def test_a_png_is_a_note_whatever_it_is_called(tmp_path: Path, name: str) -> None:
    import modelward

    path = tmp_path / name
    path.write_bytes(_png())
    report = modelward.scan(path)
    assert report.results[0].format == "not-a-model"
    assert {(f.rule_id, f.severity) for f in report.findings} == {
        ("MW-FORMAT-NOT-MODEL", Severity.INFO)
    }
    bundle = _scan(_zip({"model.pt": _png(), "README.md": b"# card"}))
    assert {(f.rule_id, f.severity) for f in bundle.findings} == {
        ("MW-FORMAT-NOT-MODEL", Severity.INFO)
    }


def test_a_png_with_a_zip_or_pickle_is_still_scanned() -> None:
    """The note comes only after every format declined: an appended zip is still a zip."""
    polyglot = _png() + _zip({"data.pkl": payload_pickle()})
    assert _scan(polyglot).max_severity == Severity.CRITICAL
    # Only the magic and no more is not enough: a truncated signature is an unknown binary.
    assert _scan(_png()[:3] + b"\x00" * 20).max_severity == Severity.MEDIUM


@pytest.mark.skipif(shutil.which("zip") is None, reason="needs Info-ZIP's zip to encrypt")
def test_really_encrypted_members_are_low(tmp_path: Path) -> None:
    """ZipCrypto members made by Info-ZIP: a payload inside cannot run by loading the file."""
    (tmp_path / "data.pkl").write_bytes(payload_pickle())
    (tmp_path / "notes.txt").write_bytes(b"hello")
    target = tmp_path / "secret.zip"
    subprocess.run(
        ["zip", "-q", "-P", "pw", str(target), "data.pkl", "notes.txt"], cwd=tmp_path, check=True
    )
    result = _scan(target.read_bytes())
    assert {(f.rule_id, f.severity) for f in result.findings} == {
        ("MW-ZIP-ENCRYPTED", Severity.LOW)
    }


def test_encrypted_checkpoint_pickle_is_low() -> None:
    """torch.load cannot open an encrypted data.pkl: the checkpoint is at most low."""
    import torch

    out = io.BytesIO()
    torch.save({"w": torch.ones(2)}, out)
    data = bytearray(out.getvalue())
    # The central directory entry of data.pkl: its name follows the 46-byte fixed part.
    entry = data.find(b"PK\x01\x02")
    while not data[entry + 46 : entry + 80].split(b"PK")[0].endswith(b"/data.pkl"):
        entry = data.find(b"PK\x01\x02", entry + 4)
    data[entry + 8] |= 0x1
    result = _scan(bytes(data))
    assert result.format == "pytorch-zip"
    assert result.max_severity <= Severity.LOW
    assert ("MW-ZIP-ENCRYPTED", Severity.LOW) in {(f.rule_id, f.severity) for f in result.findings}
