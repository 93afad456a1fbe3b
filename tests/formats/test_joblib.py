"""joblib files (plain and compressed) and plain pickles of scikit-learn estimators."""

from __future__ import annotations

import io
import pickle
from dataclasses import replace
from pathlib import Path

import joblib
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures import sklearn_models
from fixtures.torch_models import Payload
from modelward.config import Limits, ScanConfig
from modelward.findings import Location, ScanResult, Severity
from modelward.formats._joblib_layout import read_layout
from modelward.formats._magic import compression
from modelward.formats.interface import Blob, ScanContext
from modelward.scanner import dispatch


def _scan(path: Path, config: ScanConfig | None = None) -> ScanResult:
    return modelward.scan(path, config=config).results[0]


def _ctx() -> ScanContext:
    return ScanContext(config=ScanConfig(), result=ScanResult("t"), dispatch=dispatch)


@pytest.fixture(scope="module")
def benign(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sklearn_models.write_benign(tmp_path_factory.mktemp("benign_sklearn"))


@pytest.fixture(scope="module")
def malicious(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    return sklearn_models.write_malicious(tmp_path_factory.mktemp("malicious_sklearn"))


def test_benign_estimators_have_no_finding_above_info(benign: list[Path]) -> None:
    # GradientBoosting pickles numpy RandomState (`numpy.random._pickle.__randomstate_ctor`).
    assert len(benign) >= 19
    for path in benign:
        result = _scan(path)
        expected = "pickle" if path.suffix == ".pkl" else "joblib"
        assert result.format == expected, path.name
        assert all(f.severity <= Severity.INFO for f in result.findings), (path.name, result)


def test_every_malicious_joblib_is_high_or_critical(malicious: list[Path]) -> None:
    assert len(malicious) == 7
    for path in malicious:
        result = _scan(path)
        assert result.format == "joblib", path.name
        assert result.max_severity is not None
        assert result.max_severity >= Severity.HIGH, (path.name, result.findings)


@pytest.mark.parametrize("codec", sklearn_models.COMPRESSORS)
def test_compression_is_recognised_by_content(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "model.bin"  # no telling extension
    joblib.dump({"w": np.arange(3.0)}, path, compress=(codec, 1))
    assert compression(path.read_bytes()[:32]) == codec
    assert _scan(path).format == "joblib"


def test_layout_skips_raw_arrays_and_finds_object_arrays(tmp_path: Path) -> None:
    path = tmp_path / "mixed.joblib"
    labels = np.array(["a", "b", 3], dtype=object)
    joblib.dump({"w": np.ones((100, 10)), "labels": labels, "b": np.zeros(7, ">i2")}, path)
    with path.open("rb") as stream:
        layout = read_layout(stream, _ctx())
    assert layout.problem is None
    assert layout.arrays == 3
    assert len(layout.nested) == 1
    pickled = sum(end - start for start, end in layout.outer + layout.nested)
    # 8000 + 14 raw data bytes (plus padding) are the only bytes left out.
    assert path.stat().st_size - pickled >= 8000 + 14


def test_finding_offsets_point_into_the_file(tmp_path: Path) -> None:
    path = tmp_path / "after_array.joblib"
    joblib.dump({"big": np.zeros(4096), "hook": Payload()}, path)
    data = path.read_bytes()
    result = _scan(path)
    offsets = [f.location.offset for f in result.findings if f.severity >= Severity.HIGH]
    assert offsets
    for offset in offsets:
        assert offset is not None
        assert 4096 * 8 < offset < len(data)


def test_decompression_bomb_is_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "bomb.joblib"
    joblib.dump(np.zeros(4 * 1024**2), path, compress=("zlib", 9))
    config = ScanConfig(limits=Limits(max_decompressed_bytes=1024**2))
    result = _scan(path, config)
    assert path.stat().st_size < 200 * 1024
    assert "MW-LIMIT-SIZE" in {f.rule_id for f in result.findings}
    assert result.max_severity == Severity.MEDIUM


@pytest.mark.parametrize("codec", sklearn_models.COMPRESSORS)
def test_corrupt_compressed_stream_is_a_finding(tmp_path: Path, codec: str) -> None:
    path = tmp_path / "corrupt.joblib"
    joblib.dump({"w": np.arange(5000.0)}, path, compress=(codec, 3))
    data = bytearray(path.read_bytes())
    path.write_bytes(bytes(data[: len(data) // 2]))
    result = _scan(path)
    # A cut bz2 stream yields nothing at all (one block): the bzip2 archive scanner takes it.
    assert result.format == ("bzip2" if codec == "bz2" else "joblib")
    assert result.max_severity == Severity.MEDIUM
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}


def test_unreadable_wrapper_state_stops_with_a_finding(tmp_path: Path) -> None:
    path = tmp_path / "odd.joblib"
    joblib.dump({"w": np.arange(3.0)}, path)
    data = path.read_bytes().replace(b"\x8c\x02f8", b"\x8c\x02zz")
    path.write_bytes(data)
    result = _scan(path)
    assert "MW-JOBLIB-LAYOUT" in {f.rule_id for f in result.findings}


@given(st.binary(max_size=300), st.integers(min_value=0, max_value=2000))
def test_damaged_joblib_never_crashes(noise: bytes, cut: int) -> None:
    buffer = io.BytesIO()
    joblib.dump({"w": np.arange(4.0), "s": "text"}, buffer)
    data = buffer.getvalue()
    damaged = data[:cut] + noise + data[cut + len(noise) :]
    ctx = _ctx()
    with io.BytesIO(damaged) as stream:
        layout = read_layout(stream, ctx)
    assert all(start <= end for start, end in layout.outer)
    blob_result = ScanResult("t")
    ctx = replace(ctx, result=blob_result)
    dispatch(Blob.from_bytes(Location("t.joblib"), damaged), ctx)
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in blob_result.findings}


def test_layout_pass_memory_is_bounded() -> None:
    """Memoised containers by the million would exhaust memory; the layout pass gives up
    when the machine it shares with the scanner reaches `max_pickle_bytes`."""
    crafted = b"\x80\x04" + b"]\x94" * 2000 + b"."
    ctx = _ctx()
    small = replace(ctx.config.limits, max_pickle_bytes=64 * 1000)
    ctx = replace(ctx, config=replace(ctx.config, limits=small))
    layout = read_layout(io.BytesIO(crafted), ctx)
    assert layout.problem is not None
    assert layout.problem[2] == "MW-JOBLIB-LAYOUT"
    assert "max_pickle_bytes" in layout.problem[1]


def test_old_zfile_format_is_scanned(tmp_path: Path) -> None:
    """joblib < 0.10 wrote `ZF` + the length in hex + a zlib stream (numpy_pickle_compat)."""
    from joblib.numpy_pickle_compat import write_zfile

    path = tmp_path / "old.pkl.z"
    with path.open("wb") as handle:
        write_zfile(handle, pickle.dumps({"hook": Payload()}, protocol=2))
    assert compression(path.read_bytes()[:32]) == "zfile"
    result = _scan(path)
    assert result.format == "joblib"
    assert result.max_severity == Severity.CRITICAL
