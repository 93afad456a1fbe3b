"""NumPy `.npy` / `.npz` written by real `np.save`, parsed without NumPy and never loaded."""

from __future__ import annotations

import io
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures import numpy_arrays
from fixtures.torch_models import Payload
from modelward.config import ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.numpy import has_object, itemsize
from modelward.scanner import dispatch


def _scan(path: Path) -> ScanResult:
    return modelward.scan(path).results[0]


def _scan_bytes(data: bytes) -> ScanResult:
    result = ScanResult("a.npy")
    ctx = ScanContext(config=ScanConfig(), result=result, dispatch=dispatch)
    result.format = dispatch(Blob.from_bytes(Location("a.npy"), data), ctx)
    return result


def _npy(header: str, data: bytes = b"", version: int = 1) -> bytes:
    raw = header.encode("latin-1")
    length = struct.pack("<H" if version == 1 else "<I", len(raw))
    return b"\x93NUMPY" + bytes([version, 0]) + length + raw + data


def test_benign_arrays_have_no_finding_above_info(tmp_path: Path) -> None:
    paths = numpy_arrays.write_benign(tmp_path)
    assert len(paths) >= 10
    for path in paths:
        result = _scan(path)
        assert result.format == ("npz" if path.suffix == ".npz" else "numpy"), path.name
        assert all(f.severity <= Severity.INFO for f in result.findings), (path.name, result)


def test_malicious_object_arrays_are_critical(tmp_path: Path) -> None:
    paths = numpy_arrays.write_malicious(tmp_path)
    for path in paths:
        result = _scan(path)
        assert result.max_severity == Severity.CRITICAL, (path.name, result.findings)
    member = _scan(tmp_path / "payload_member.npz")
    critical = [f for f in member.findings if f.severity == Severity.CRITICAL]
    assert {f.location.members for f in critical} == {("evil.npy",)}


@pytest.mark.parametrize("version", [(1, 0), (2, 0), (3, 0)])
def test_every_header_version_parses(version: tuple[int, int]) -> None:
    out = io.BytesIO()
    np.lib.format.write_array(out, np.arange(12, dtype="<i4").reshape(3, 4), version=version)
    result = _scan_bytes(out.getvalue())
    assert result.format == "numpy"
    assert result.findings == []


def test_object_offsets_are_file_offsets() -> None:
    data = numpy_arrays.npy_bytes(np.array([numpy_arrays.Payload()], dtype=object), True)
    result = _scan_bytes(data)
    offsets = [f.location.offset for f in result.findings if f.severity == Severity.CRITICAL]
    assert offsets
    header_end = 10 + struct.unpack_from("<H", data, 8)[0]
    assert all(o is not None and header_end <= o < len(data) for o in offsets)


def test_truncated_and_trailing_data() -> None:
    data = numpy_arrays.npy_bytes(np.arange(10.0))
    truncated = _scan_bytes(data[:-8])
    assert {f.rule_id for f in truncated.findings} == {"MW-NUMPY-TRUNCATED"}
    trailing = _scan_bytes(data + b"\x80\x04junk")
    assert [(f.rule_id, f.severity) for f in trailing.findings] == [
        ("MW-NUMPY-TRAILING", Severity.LOW)
    ]


@pytest.mark.parametrize(
    "header",
    [
        "{'descr': __import__('os').system('true'), 'fortran_order': False, 'shape': ()}",
        "{'descr': '<f8', 'fortran_order': False}",
        "{'descr': '<f8', 'fortran_order': 'no', 'shape': (2,)}",
        "{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}",
        "[1, 2, 3]",
        "{'descr': '<q9x', 'fortran_order': False, 'shape': (1,)}",
    ],
)
def test_bad_headers_are_findings_not_code(header: str) -> None:
    result = _scan_bytes(_npy(header, b"\x00" * 8))
    assert result.format == "numpy"
    assert {f.rule_id for f in result.findings} == {"MW-NUMPY-HEADER"}
    assert result.max_severity == Severity.MEDIUM


def test_header_length_is_bounded_by_the_file() -> None:
    data = b"\x93NUMPY\x02\x00" + struct.pack("<I", 2**31) + b"{}"
    result = _scan_bytes(data)
    assert {f.rule_id for f in result.findings} == {"MW-NUMPY-HEADER"}


@pytest.mark.parametrize(
    "dtype",
    ["<f8", ">i2", "|b1", "<U7", "|S3", "<c16", "<M8[ns]", "|V5", "<f2"],
)
def test_itemsize_matches_numpy(dtype: str) -> None:
    descr = np.lib.format.dtype_to_descr(np.dtype(dtype))
    assert itemsize(descr) == np.dtype(dtype).itemsize
    assert not has_object(descr)


def test_structured_itemsize_and_object_fields() -> None:
    plain = np.dtype([("a", "<f4"), ("b", "<i8", (2, 3)), ("c", "S2")])
    assert itemsize(np.lib.format.dtype_to_descr(plain)) == plain.itemsize
    mixed = np.dtype([("a", "<f4"), ("inner", [("o", "O")])])
    assert has_object(np.lib.format.dtype_to_descr(mixed))


@given(st.text(max_size=200), st.binary(max_size=64))
def test_arbitrary_headers_never_crash(header: str, data: bytes) -> None:
    try:
        raw = _npy(header, data)
    except UnicodeEncodeError:
        raw = _npy(header.encode("utf-8").decode("latin-1"), data, version=3)
    result = _scan_bytes(raw)
    assert result.format == "numpy"
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}


def _zfile(data: bytes) -> bytes:
    """Bytes as joblib < 0.10 wrote them (`numpy_pickle_compat.write_zfile`, kept in joblib)."""
    from joblib.numpy_pickle_compat import write_zfile

    out = io.BytesIO()
    write_zfile(out, data, compress=3)
    return out.getvalue()


def test_legacy_joblib_array_files_are_recognised(tmp_path: Path) -> None:
    """`x.pkl_01.npy.z`: the array's raw buffer (`__reduce__` state data), zlib'd behind `ZF`."""
    for name, array in numpy_arrays.benign_arrays().items():
        raw = array.__reduce__()[2][-1]
        path = tmp_path / f"model.pkl_{name}.npy.z"
        path.write_bytes(_zfile(raw))
        result = _scan(path)
        assert result.format == "joblib-zfile", name
        assert result.findings == [], name
    renamed = tmp_path / "weights"  # by content, not by name
    renamed.write_bytes(_zfile(np.arange(100.0).tobytes()))
    assert _scan(renamed).format == "joblib-zfile"


def test_npy_inside_a_zfile_is_scanned_as_numpy(tmp_path: Path) -> None:
    benign = tmp_path / "a.npy.z"
    benign.write_bytes(_zfile(numpy_arrays.npy_bytes(np.arange(12.0).reshape(3, 4))))
    assert _scan(benign).findings == []
    evil = np.array([Payload(), 1], dtype=object)
    path = tmp_path / "evil.npy.z"
    path.write_bytes(_zfile(numpy_arrays.npy_bytes(evil, allow_pickle=True)))
    result = _scan(path)
    assert result.format == "joblib-zfile"
    assert result.max_severity == Severity.CRITICAL
    assert ("MW-NUMPY-OBJECT", Severity.LOW) in {(f.rule_id, f.severity) for f in result.findings}


def test_zfile_bombs_and_damage_are_bounded(tmp_path: Path) -> None:
    from modelward.config import Limits

    bomb = tmp_path / "bomb.npy.z"
    bomb.write_bytes(_zfile(bytes(16 * 1024**2)))
    small = ScanConfig(limits=Limits(max_total_decompressed_bytes=1024**2))
    report = modelward.scan(bomb, config=small)
    assert ("MW-LIMIT-DECOMPRESSED", Severity.MEDIUM) in {
        (f.rule_id, f.severity) for f in report.findings
    }
    good = _zfile(np.arange(1000.0).tobytes())
    lying = good[:2] + b"0x10".ljust(19) + good[21:]  # declares 16 bytes, holds 8000
    truncated = good[: len(good) // 2]
    for data in (lying, truncated):
        path = tmp_path / "damaged.npy.z"
        path.write_bytes(data)
        found = {(f.rule_id, f.severity) for f in _scan(path).findings}
        assert found in (
            {("MW-JOBLIB-CORRUPT", Severity.LOW)},  # the length joblib asserts
            {("MW-JOBLIB-CORRUPT", Severity.MEDIUM)},  # a stream cut short
        )
