"""Files built to hurt scanners: each must be a finding, fast, in bounded memory, never a crash.

Every case is scanned through the public `modelward.scan` with the default
limits, timed, and traced with `tracemalloc` (Python-level allocations, which
is where a parser that trusts a length field would allocate).
"""

from __future__ import annotations

import gzip
import struct
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest

import modelward
from fixtures.archives import (
    COMPRESSORS,
    TarEntry,
    gzip_of_zeros,
    malicious_pickle,
    nested_archive,
    tar_bytes,
    zip_declaring,
    zip_of_zeros,
)
from fixtures.gguf_files import KV_COUNT_AT, TENSOR_COUNT_AT, patched, write_gguf
from fixtures.safetensors_files import huge_header_length
from modelward.findings import Severity

#: Seconds one hostile file may take (a few, with headroom for a busy shared CI machine).
MAX_SECONDS = 10.0
#: Peak traced memory one hostile scan may use.
MAX_PEAK_BYTES = 200 * 1024**2


def scan_bounded(path: Path) -> modelward.ScanReport:
    """Scan `path`, asserting the time and memory bounds and that nothing crashed."""
    tracemalloc.start()
    start = time.monotonic()
    try:
        report = modelward.scan(path)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    seconds = time.monotonic() - start
    assert seconds < MAX_SECONDS, f"{path.name} took {seconds:.1f} s"
    assert peak < MAX_PEAK_BYTES, f"{path.name} peaked at {peak / 1024**2:.0f} MiB"
    assert report.errors == []
    rules = {f.rule_id for f in report.findings}
    assert "MW-SCAN-ERROR" not in rules, report.findings
    assert any(f.severity >= Severity.MEDIUM for f in report.findings), report.findings
    return report


def _write(data: bytes) -> Callable[[Path], Path]:
    def make(path: Path) -> Path:
        path.write_bytes(data)
        return path

    return make


def test_zip_bomb_of_real_zeros(tmp_path: Path) -> None:
    """1 GiB of zeros in about 1 MiB of zip: expands past the compression-ratio limit."""
    path = tmp_path / "bomb.zip"
    path.write_bytes(zip_of_zeros(1024**3))
    assert path.stat().st_size < 2 * 1024**2
    report = scan_bounded(path)
    assert report.results[0].format == "zip"
    assert {f.rule_id for f in report.findings} & {"MW-ZIP-BOMB", "MW-LIMIT-SIZE"}


def test_zip_declaring_four_gigabytes(tmp_path: Path) -> None:
    """A 10 KB zip whose headers claim ~4 GiB for a member (the size field lies)."""
    path = tmp_path / "liar.zip"
    path.write_bytes(zip_declaring("weights.bin", bytes(10 * 1024**2), 0xFFFFFFFE))
    assert path.stat().st_size < 64 * 1024
    report = scan_bounded(path)
    assert report.results[0].format == "zip"
    assert {f.rule_id for f in report.findings} & {"MW-ZIP-BOMB", "MW-ZIP-CORRUPT"}


@pytest.mark.parametrize("compression", sorted(COMPRESSORS))
def test_compressed_stream_bombs(tmp_path: Path, compression: str) -> None:
    path = tmp_path / f"zeros.{compression}"
    if compression == "gzip":
        data = gzip_of_zeros(512 * 1024**2)
    else:
        data = COMPRESSORS[compression](bytes(64 * 1024**2))
    path.write_bytes(data)
    report = scan_bounded(path)
    assert {f.rule_id for f in report.findings} == {"MW-ARCHIVE-BOMB"}


def test_tar_escaping_the_extraction_folder(tmp_path: Path) -> None:
    path = tmp_path / "escape.tar.gz"
    path.write_bytes(
        gzip.compress(
            tar_bytes(
                [
                    TarEntry("../../evil.pkl", malicious_pickle()),
                    TarEntry("/etc/profile.d/evil.sh", b"true\n"),
                    TarEntry("model/link", kind=b"2", linkname="../../../../home/user/.ssh"),
                ]
            )
        )
    )
    report = scan_bounded(path)
    high = {(f.rule_id, f.location.members[-1]) for f in report.findings if f.severity >= 3}
    assert {
        ("MW-ARCHIVE-PATH-TRAVERSAL", "../../evil.pkl"),
        ("MW-ARCHIVE-PATH-TRAVERSAL", "/etc/profile.d/evil.sh"),
        ("MW-ARCHIVE-LINK-ESCAPE", "model/link"),
    } <= high
    # The member is still scanned by content: the pickle inside is flagged too.
    assert any(
        f.location.members[-1] == "../../evil.pkl" and f.severity == Severity.CRITICAL
        for f in report.findings
    )


def test_deeply_nested_archives_stop_at_the_depth_limit(tmp_path: Path) -> None:
    """zip in tar.gz in zip ... 20 containers deep, a malicious pickle at the bottom."""
    path = tmp_path / "nested.zip"
    path.write_bytes(nested_archive(20, malicious_pickle()))
    report = scan_bounded(path)
    depth = [f for f in report.findings if f.rule_id == "MW-LIMIT-DEPTH"]
    assert depth and all(f.severity == Severity.MEDIUM for f in depth)
    limit = modelward.ScanConfig().limits.max_nesting_depth
    assert max(len(f.location.members) for f in report.findings) <= limit + 1


def test_safetensors_header_claiming_2_to_the_63_bytes(tmp_path: Path) -> None:
    scan_bounded(huge_header_length(tmp_path / "model.safetensors"))


@pytest.mark.parametrize("field", [TENSOR_COUNT_AT, KV_COUNT_AT])
def test_gguf_with_absurd_counts(tmp_path: Path, field: int) -> None:
    path = patched(write_gguf(tmp_path / "model.gguf"), field, "<Q", 2**62)
    scan_bounded(path)


@pytest.mark.parametrize(
    ("opcode", "name"),
    [(b"\x95", "FRAME"), (b"\x8e", "BINBYTES8"), (b"\x8d", "BINUNICODE8")],
)
def test_pickle_with_a_2_to_the_63_length(tmp_path: Path, opcode: bytes, name: str) -> None:
    path = tmp_path / f"{name}.pkl"
    path.write_bytes(b"\x80\x04" + opcode + struct.pack("<Q", 2**63) + b"abc." * 4)
    scan_bounded(path)


def test_tar_extended_header_claiming_gigabytes_inside_gzip(tmp_path: Path) -> None:
    """A GNU long-name header of 4 GiB, backed by real (decompressed) bytes to read."""
    header = bytearray(tar_bytes([TarEntry("n" * 200, b"x")], fmt=1))
    header[124:136] = b"%011o\x00" % (4 * 1024**3)
    header[148:156] = b"        "
    header[148:156] = b"%06o\x00 " % sum(header[:512])
    path = tmp_path / "longname.tar.gz"
    path.write_bytes(gzip.compress(bytes(header[:512]) + bytes(300 * 1024**2), 1))
    report = scan_bounded(path)
    assert "MW-ARCHIVE-MALFORMED" in {f.rule_id for f in report.findings}


@pytest.mark.parametrize("wrap", ["plain", "gzip"])
def test_tar_member_claiming_more_than_the_archive_holds(tmp_path: Path, wrap: str) -> None:
    data = bytearray(tar_bytes([TarEntry("weights.bin", b"\x80\x02" + bytes(100))]))
    data[124:136] = b"\x80" + (2**62).to_bytes(11, "big")  # base-256 size: 4 EiB
    data[148:156] = b"        "
    data[148:156] = b"%06o\x00 " % sum(data[:512])
    path = tmp_path / ("huge.tar" if wrap == "plain" else "huge.tar.gz")
    path.write_bytes(bytes(data) if wrap == "plain" else gzip.compress(bytes(data)))
    report = scan_bounded(path)
    assert "MW-ARCHIVE-MALFORMED" in {f.rule_id for f in report.findings}
