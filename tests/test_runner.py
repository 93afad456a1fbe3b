"""The runner: one file through the store, the fan-out, and its one error rule."""

from __future__ import annotations

import pickle
from collections.abc import Sequence
from pathlib import Path

import pytest

from fixtures.pickles import call_system_p4
from modelward.config import ScanConfig
from modelward.findings import ScanResult, Severity
from modelward.runner import batches, scan_files, scan_paths
from modelward.store import StoredScan, StoreError, open_store
from modelward.store.records import ScanEvent
from modelward.store.sql import ResultStore


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    models = tmp_path / "models"
    models.mkdir()
    (models / "evil.pkl").write_bytes(call_system_p4("true"))
    for i in range(5):
        (models / f"clean{i}.pkl").write_bytes(pickle.dumps({"layer": i}, protocol=4))
    return models


def _summary(results: Sequence[ScanResult]) -> list[tuple[str, str, list[str]]]:
    return [(Path(r.path).name, r.format, sorted(f.rule_id for f in r.findings)) for r in results]


def test_a_pool_run_gives_the_results_of_a_serial_run_in_order(folder: Path) -> None:
    serial = scan_paths([folder], ScanConfig(), jobs=1)
    parallel = scan_paths([folder], ScanConfig(), jobs=2)
    assert _summary(parallel.results) == _summary(serial.results)
    assert any(f.severity == Severity.CRITICAL for f in parallel.findings)


def test_a_pool_run_records_every_file_in_the_store(folder: Path, tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        first = scan_paths([folder], ScanConfig(), jobs=2, store=store)
        assert not first.errors
        again = scan_files(sorted(folder.iterdir()), ScanConfig(), jobs=2, store=store)
    assert _summary(again) == _summary(first.results)
    with open_store(url) as store:
        for result in first.results:
            [*events] = store.scans_for_path(result.path)
            assert len(events) == 2 and [e.cached for e in events] == [True, False]


class _FailingStore(ResultStore):
    """A store whose writes fail, as a full disk or a dropped database connection would."""

    def record_scans(self, events: Sequence[ScanEvent]) -> list[StoredScan]:
        raise StoreError("cannot write store test: disk I/O error")


def test_a_failing_store_costs_each_file_an_error_not_the_run(folder: Path, tmp_path: Path) -> None:
    store = _FailingStore(f"sqlite:///{tmp_path / 'store.db'}")
    try:
        report = scan_paths([folder], ScanConfig(), store=store)
    finally:
        store.close()
    # Every file is still scanned and its findings still count ...
    assert len(report.results) == 6
    assert any(f.severity == Severity.CRITICAL for f in report.findings)
    # ... and none passes silently as recorded.
    assert all(
        any("not recorded in the results store" in e for e in r.errors) for r in report.results
    )


def test_a_store_pool_workers_cannot_open_is_each_files_error(folder: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        store.url = f"sqlite:///{blocker / 'store.db'}"  # what the workers will open
        results = scan_files(sorted(folder.iterdir()), ScanConfig(), jobs=2, store=store)
    assert len(results) == 6
    assert all(any("not recorded" in e for e in r.errors) for r in results)
    assert any(r.findings for r in results)


def test_batches_keep_order_and_put_big_files_alone() -> None:
    sizes = [10] * 200
    sizes[5] = 70 * 1024**2
    runs = batches(sizes, 2)
    assert [i for run in runs for i in run] == list(range(200))
    assert [5] in runs
    assert len(runs) >= 8  # enough for both workers to share the work


def test_a_run_records_its_events_in_batches(folder: Path, tmp_path: Path) -> None:
    """Many files, few transactions; every event is still recorded, in order."""
    url = f"sqlite:///{tmp_path / 'store.db'}"
    with open_store(url) as store:
        calls: list[int] = []
        record = store.record_scans

        def counting(events: Sequence[ScanEvent]) -> list[StoredScan]:
            calls.append(len(events))
            return record(events)

        store.record_scans = counting  # type: ignore[method-assign]
        report = scan_paths([folder], ScanConfig(), store=store)
        assert calls == [6]
        assert all(store.scans_for_path(r.path) for r in report.results if r.format == "pickle")
