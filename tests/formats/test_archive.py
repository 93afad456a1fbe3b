"""Tar, gzip, bzip2 and xz: detection by content, member checks, streaming and limits."""

from __future__ import annotations

import io
import shutil
import tarfile
import tempfile
from dataclasses import replace
from pathlib import Path

import pytest

import modelward
from fixtures.archives import (
    COMPRESSORS,
    TarEntry,
    benign_pickle,
    gzip_of_zeros,
    malicious_pickle,
    tar_bytes,
    zip_bytes,
)
from modelward.config import Limits, ScanConfig
from modelward.findings import ScanResult, Severity
from modelward.formats import SCANNERS, tar
from modelward.formats.interface import IN_MEMORY_BYTES, Blob, ScanContext

SUFFIXES = {"gzip": ".gz", "bzip2": ".bz2", "xz": ".xz"}


def _rules(report: modelward.ScanReport) -> set[str]:
    return {f.rule_id for f in report.findings}


@pytest.mark.parametrize("fmt", [tarfile.USTAR_FORMAT, tarfile.GNU_FORMAT, tarfile.PAX_FORMAT])
def test_benign_tar_is_clean_and_members_are_scanned(tmp_path: Path, fmt: int) -> None:
    path = tmp_path / "model.tar"
    path.write_bytes(
        tar_bytes([TarEntry("README.md", b"# card\n"), TarEntry("dir/w.pkl", benign_pickle())], fmt)
    )
    report = modelward.scan(path)
    assert report.results[0].format == "tar"
    assert all(f.severity <= Severity.INFO for f in report.findings)


def test_v7_tar_without_magic_is_detected_by_checksum() -> None:
    data = tar_bytes([TarEntry("a.txt", b"hello")], tarfile.USTAR_FORMAT)
    v7 = bytearray(data)
    v7[257:265] = bytes(8)  # drop the "ustar" magic and version, then fix the checksum
    v7[148:156] = b"        "
    v7[148:156] = b"%06o\x00 " % (sum(v7[:512]))
    assert tar.TAR.detect(modelward_blob(bytes(v7)), bytes(v7[:4096]))
    assert not tar.TAR.detect(modelward_blob(b"x" * 600), b"x" * 600)


def modelward_blob(data: bytes) -> Blob:
    return Blob.from_bytes(modelward.Location("t"), data)


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_compressed_tar_reaches_a_malicious_member(tmp_path: Path, compression: str) -> None:
    inner = tar_bytes([TarEntry("ok.txt", b"fine"), TarEntry("evil/data.pkl", malicious_pickle())])
    path = tmp_path / f"model.tar{SUFFIXES[compression]}"
    path.write_bytes(COMPRESSORS[compression](inner))
    report = modelward.scan(path)
    assert report.results[0].format == compression
    member_paths = {f.location.container_path for f in report.findings}
    if "MW-FORMAT-UNKNOWN" in _rules(report):  # no pickle scanner registered: still fails closed
        assert f"{path}!model.tar!evil/data.pkl" in member_paths
    else:
        assert any(f.severity >= Severity.HIGH for f in report.findings)
    assert all("ok.txt" not in p for p in member_paths)


def test_single_stream_compressed_file_is_dispatched_by_content(tmp_path: Path) -> None:
    path = tmp_path / "weights.xz"
    path.write_bytes(COMPRESSORS["xz"](b"\x00\x01\x02\xffGARBAGE" * 50))
    [finding] = modelward.scan(path).findings
    assert finding.rule_id == "MW-FORMAT-UNKNOWN"
    assert finding.location.container_path == f"{path}!weights"


def test_traversal_absolute_links_and_special_members(tmp_path: Path) -> None:
    path = tmp_path / "evil.tar"
    path.write_bytes(
        tar_bytes(
            [
                TarEntry("../../evil.py", b"print(1)\n"),
                TarEntry("/etc/cron.d/x", b"* * * * * true\n"),
                TarEntry("sub/up", kind=tarfile.SYMTYPE, linkname="../../outside"),
                TarEntry("sub/sibling", kind=tarfile.SYMTYPE, linkname="../README.md"),
                TarEntry("hard", kind=tarfile.LNKTYPE, linkname="/etc/passwd"),
                TarEntry("pipe", kind=tarfile.FIFOTYPE),
                TarEntry("dev", kind=tarfile.CHRTYPE),
            ]
        )
    )
    by_member = {
        f.location.members[-1]: (f.rule_id, f.severity) for f in modelward.scan(path).findings
    }
    assert by_member["../../evil.py"] == ("MW-ARCHIVE-PATH-TRAVERSAL", Severity.HIGH)
    assert by_member["/etc/cron.d/x"] == ("MW-ARCHIVE-PATH-TRAVERSAL", Severity.HIGH)
    assert by_member["sub/up"] == ("MW-ARCHIVE-LINK-ESCAPE", Severity.HIGH)
    assert by_member["hard"] == ("MW-ARCHIVE-LINK-ESCAPE", Severity.HIGH)
    assert by_member["sub/sibling"] == ("MW-ARCHIVE-LINK", Severity.LOW)
    assert by_member["pipe"] == ("MW-ARCHIVE-SPECIAL-MEMBER", Severity.MEDIUM)
    assert by_member["dev"] == ("MW-ARCHIVE-SPECIAL-MEMBER", Severity.MEDIUM)


@pytest.mark.parametrize(
    ("name", "escapes"),
    [
        ("a/b", False),
        ("a/../b", False),
        ("./a", False),
        ("a/../../b", True),
        ("..", True),
        ("/a", True),
        ("C:/x", True),
        ("a\\..\\..\\b", True),
    ],
)
def test_member_path_escapes(name: str, escapes: bool) -> None:
    assert tar.member_path_escapes(name) is escapes


def test_too_many_members_stops_with_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "many.tar"
    path.write_bytes(tar_bytes([TarEntry(f"f{i}.txt", b"x") for i in range(30)]))
    config = ScanConfig(limits=Limits(max_members=10))
    report = modelward.scan(path, config=config)
    assert _rules(report) == {"MW-ARCHIVE-TOO-MANY-MEMBERS"}


def test_huge_extended_header_is_refused_not_read(tmp_path: Path) -> None:
    data = bytearray(tar_bytes([TarEntry("a" * 200, b"x")], tarfile.GNU_FORMAT))
    assert data[156:157] == tarfile.GNUTYPE_LONGNAME
    data[124:136] = b"%011o\x00" % (8 * 1024**3)  # the long name claims 8 GiB
    data[148:156] = b"        "
    data[148:156] = b"%06o\x00 " % sum(data[:512])
    path = tmp_path / "longname.tar"
    path.write_bytes(bytes(data))
    [finding] = modelward.scan(path).findings
    assert finding.rule_id == "MW-ARCHIVE-MALFORMED"


def test_truncated_and_corrupt_streams_fail_closed(tmp_path: Path) -> None:
    good = COMPRESSORS["gzip"](tar_bytes([TarEntry("a.txt", b"hello" * 1000)]))
    (tmp_path / "cut.tar.gz").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(COMPRESSORS["bzip2"](b"hello world" * 100))
    corrupt[20:30] = b"\xff" * 10
    (tmp_path / "bad.bz2").write_bytes(bytes(corrupt))
    report = modelward.scan(tmp_path)
    assert {r.format for r in report.results} == {"gzip", "bzip2"}
    for result in report.results:
        assert "MW-ARCHIVE-MALFORMED" in {f.rule_id for f in result.findings}
        assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}


def test_gzip_ratio_bomb_and_size_limit(tmp_path: Path) -> None:
    path = tmp_path / "zeros.gz"
    path.write_bytes(gzip_of_zeros(64 * 1024**2))
    assert {f.rule_id for f in modelward.scan(path).findings} == {"MW-ARCHIVE-BOMB"}
    lenient = ScanConfig(
        limits=replace(Limits(), max_compression_ratio=1e9, max_decompressed_bytes=16 * 1024**2)
    )
    assert {f.rule_id for f in modelward.scan(path, config=lenient).findings} == {"MW-ARCHIVE-BOMB"}


def _members_seen(path: Path) -> dict[str, bytes]:
    """Scan `path` with a dispatcher that records what each member blob reads back."""
    seen: dict[str, bytes] = {}

    def record(blob: Blob, ctx: ScanContext) -> str:
        with blob.open() as stream:
            seen[blob.location.container_path] = stream.read()
            if stream.seekable() and blob.size > 10:
                stream.seek(-10, io.SEEK_END)
                assert stream.read() == seen[blob.location.container_path][-10:]
        for scanner in SCANNERS:
            if scanner.detect(blob, blob.head()):
                scanner.scan(blob, ctx)
                return scanner.name
        return "other"

    ctx = ScanContext(config=ScanConfig(), result=ScanResult(str(path)), dispatch=record)
    record(Blob.from_file(path), ctx)
    return seen


@pytest.mark.parametrize("wrapped", [False, True])
def test_member_blobs_read_back_exactly(
    tmp_path: Path, wrapped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Members of a tar on disk are windows; of a decompressed tar, copies (large ones spooled)."""
    spool = tmp_path / "spool"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))
    big = bytes(range(256)) * (IN_MEMORY_BYTES // 256 + 7)
    small = b"small member"
    inner = tar_bytes([TarEntry("big.bin", big), TarEntry("small.txt", small)])
    path = tmp_path / ("m.tar.gz" if wrapped else "m.tar")
    path.write_bytes(COMPRESSORS["gzip"](inner) if wrapped else inner)
    seen = _members_seen(path)
    prefix = f"{path}!m.tar" if wrapped else str(path)
    assert seen[f"{prefix}!big.bin"] == big
    assert seen[f"{prefix}!small.txt"] == small
    if wrapped:
        assert seen[prefix] == inner
    assert list(spool.iterdir()) == []  # spooled members are deleted after their scan


def test_large_compressed_zip_is_found_by_its_end(tmp_path: Path) -> None:
    """A zip is sniffed at its end; for large decompressed content that end is kept, not re-read."""
    filler = bytes(range(256)) * (IN_MEMORY_BYTES // 256 + 1024)
    path = tmp_path / "bundle.zip.gz"
    path.write_bytes(
        COMPRESSORS["gzip"](zip_bytes({"filler.bin": filler, "data.pkl": malicious_pickle()}))
    )
    report = modelward.scan(path)
    critical = [f for f in report.findings if f.severity == Severity.CRITICAL]
    assert critical
    assert {f.location.container_path for f in critical} == {f"{path}!bundle.zip!data.pkl"}


@pytest.mark.parametrize("archive_format", ["tar", "gztar", "bztar", "xztar"])
def test_real_model_folder_archived_by_shutil_is_clean(tmp_path: Path, archive_format: str) -> None:
    """Benign torch checkpoints packed the way people ship them (`shutil.make_archive`)."""
    from fixtures.torch_models import write_benign

    folder = tmp_path / "model"
    folder.mkdir()
    write_benign(folder)
    (folder / "config.json").write_text('{"hidden": 16}', encoding="utf-8")
    packed = Path(
        shutil.make_archive(str(tmp_path / "out" / "model"), archive_format, tmp_path, "model")
    )
    report = modelward.scan(packed)
    assert report.results[0].format == {"tar": "tar", "gztar": "gzip", "bztar": "bzip2"}.get(
        archive_format, "xz"
    )
    assert [f for f in report.findings if f.severity > Severity.INFO] == []


def test_zip_appended_to_a_tar_is_scanned(tmp_path: Path) -> None:
    """Tar readers stop at the end blocks; zip readers (torch.load) find the appended zip."""
    path = tmp_path / "model.tar"
    tail = zip_bytes({"archive/data.pkl": malicious_pickle()})
    path.write_bytes(tar_bytes([TarEntry("weights.bin", bytes(2000))]) + tail)
    report = modelward.scan(path)
    assert report.results[0].format == "tar"
    rules = {f.rule_id: f for f in report.findings}
    assert rules["MW-ARCHIVE-TRAILING-DATA"].location.offset == len(path.read_bytes()) - len(tail)
    assert any(
        f.severity == Severity.CRITICAL and f.location.members[:1] == ("<after-tar>",)
        for f in report.findings
    )


def test_tar_whose_first_header_is_a_pickle(tmp_path: Path) -> None:
    """A protocol 0 pickle fits in the name field; `pickle.load` would run it."""
    path = tmp_path / "model.tar"
    path.write_bytes(tar_bytes([TarEntry("cos\nsystem\n(S'true'\ntR.", b"data")]))
    report = modelward.scan(path)
    assert report.results[0].format == "tar"
    rules = {f.rule_id: f.severity for f in report.findings}
    assert rules["MW-ARCHIVE-POLYGLOT"] == Severity.HIGH
    assert max(rules.values()) == Severity.CRITICAL
