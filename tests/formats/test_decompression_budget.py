"""The per-file budget of decompressed bytes, shared by every nested decoder of one file."""

from __future__ import annotations

import gzip
import pickle
import tracemalloc
from pathlib import Path

import pytest

import modelward
from fixtures.archives import TarEntry, tar_bytes, zip_bytes
from modelward.config import Limits, ScanConfig
from modelward.findings import ScanResult, Severity
from modelward.formats.interface import DECOMPRESSION_BUDGET_RULE, Blob, ScanContext
from modelward.scanner import dispatch

#: Every stream of the fixtures stays under this per-stream cap ...
STREAM_CAP = 256 * 1024
#: ... and the ratio check is out of the way: only the total may stop these files.
RATIO = 1e9


def _config(budget: int) -> ScanConfig:
    return ScanConfig(
        limits=Limits(
            max_decompressed_bytes=STREAM_CAP,
            max_compression_ratio=RATIO,
            max_total_decompressed_bytes=budget,
        )
    )


def _nested(outer: str) -> bytes:
    """16 pickles of 200 kB (3.2 MB in all), each stream under the cap, three containers deep.

    A gzip of one pickle, four of those in a tar.gz, four of those in a zip (or a tar.gz).
    """
    inner = gzip.compress(pickle.dumps(bytes(200_000), protocol=4))
    middle = gzip.compress(tar_bytes([TarEntry(f"part{i}.pkl.gz", inner) for i in range(4)]))
    if outer == "zip":
        return zip_bytes({f"shard{i}.tar.gz": middle for i in range(4)})
    return gzip.compress(tar_bytes([TarEntry(f"shard{i}.tar.gz", middle) for i in range(4)]))


def _charged(data: bytes) -> int:
    """Decompressed bytes one scan of `data` charges to its budget, with a budget to spare."""
    ctx = ScanContext(config=_config(1024**3), result=ScanResult("t"), dispatch=dispatch)
    dispatch(Blob.from_bytes(modelward.Location("t"), data), ctx)
    assert not ctx.result.findings
    return ctx.budget.used


@pytest.mark.parametrize(("outer", "suffix"), [("zip", ".zip"), ("tar.gz", ".tar.gz")])
def test_nested_bomb_under_every_stream_cap_stops_at_the_total(
    tmp_path: Path, outer: str, suffix: str
) -> None:
    path = tmp_path / f"bomb{suffix}"
    path.write_bytes(_nested(outer))
    tracemalloc.start()
    try:
        report = modelward.scan(path, config=_config(1024**2))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    result = report.results[0]
    budget = [f for f in result.findings if f.rule_id == DECOMPRESSION_BUDGET_RULE]
    assert len(budget) == 1, result.findings
    assert budget[0].severity == Severity.MEDIUM
    assert "max_total_decompressed_bytes" in budget[0].message
    assert not result.errors
    assert "MW-SCAN-ERROR" not in {f.rule_id for f in result.findings}
    assert peak < 8 * 1024**2


@pytest.mark.parametrize("outer", ["zip", "tar.gz"])
def test_benign_nested_archive_under_the_budget_is_clean(tmp_path: Path, outer: str) -> None:
    path = tmp_path / "model.bin"
    path.write_bytes(_nested(outer))
    report = modelward.scan(path, config=_config(64 * 1024**2))
    assert all(f.severity <= Severity.INFO for f in report.findings), report.findings


def test_budget_is_per_file(tmp_path: Path) -> None:
    data = _nested("zip")
    used = _charged(data)
    assert used > 16 * 200_000  # every pickle was decompressed and charged
    for name in ("a.zip", "b.zip"):
        (tmp_path / name).write_bytes(data)
    # Enough for either file alone, not for both together: each gets a budget of its own.
    report = modelward.scan(tmp_path, config=_config(used + used // 4))
    assert len(report.results) == 2
    assert all(f.severity <= Severity.INFO for f in report.findings), report.findings
    tight = modelward.scan(tmp_path / "a.zip", config=_config(used - 1))
    assert DECOMPRESSION_BUDGET_RULE in {f.rule_id for f in tight.findings}
