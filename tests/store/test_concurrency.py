"""Several processes opening and writing one store at once, as uvicorn workers and Ray do."""

from __future__ import annotations

import multiprocessing
from multiprocessing.synchronize import Event
from pathlib import Path

from fixtures.pickles import call_system_p4
from modelward.config import ScanConfig
from modelward.runner import scan_and_record
from modelward.store import open_store

WRITES_PER_PROCESS = 15


def _writer(url: str, folder: str, worker: int, start: Event) -> None:
    start.wait(10)
    # Both processes open (and so migrate) the same empty store at the same moment.
    with open_store(url) as store:
        for i in range(WRITES_PER_PROCESS):
            # Half the files are shared by both workers (same bytes), half are their own.
            name = f"shared{i % 3}.pkl" if i % 2 else f"own{worker}-{i}.pkl"
            scan_and_record(Path(folder) / name, ScanConfig(), store, source="service")
            store.record_verdict("f" * 64, name, "gate", bool(i % 2), f"worker {worker}")


def test_two_processes_write_one_store(store_url: str, tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"shared{i}.pkl").write_bytes(call_system_p4(f"echo shared {i}"))
    for worker in range(2):
        for i in range(0, WRITES_PER_PROCESS, 2):
            (tmp_path / f"own{worker}-{i}.pkl").write_bytes(call_system_p4(f"{worker} {i}"))
    ctx = multiprocessing.get_context("fork")
    start = ctx.Event()
    procs = [
        ctx.Process(target=_writer, args=(store_url, str(tmp_path), w, start)) for w in range(2)
    ]
    for p in procs:
        p.start()
    start.set()
    for p in procs:
        p.join(60)
    assert [p.exitcode for p in procs] == [0, 0]

    with open_store(store_url) as store:
        assert len(store.verdicts_for_digest("f" * 64)) == 2 * WRITES_PER_PROCESS
        shared = [
            s for i in range(3) for s in store.scans_for_path(str(tmp_path / f"shared{i}.pkl"))
        ]
        assert len(shared) == 2 * (WRITES_PER_PROCESS // 2)
        # Each shared file was scanned fresh at most once per worker (a race), then reused.
        assert sum(not s.cached for s in shared) <= 6
        assert all(s.result.max_severity is not None for s in shared)
        models = store.models()
        assert len(models) == 3 + 2 * len(range(0, WRITES_PER_PROCESS, 2))
