"""Scans on a local Ray: the same report as a local scan, stored results, dead tasks, addresses."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any, cast

import pytest

from modelward.config import ScanConfig
from modelward.distributed import RayConnectionError, scan_on_ray
from modelward.distributed.ray_scan import _check_one_node
from modelward.findings import ScanReport, ScanResult, Severity
from modelward.formats.hf_folder import FOLDER_FORMAT
from modelward.runner import batches, file_size, scan_paths
from modelward.store import StoreError, open_store

pytestmark = pytest.mark.usefixtures("local_ray")


def comparable(report: ScanReport) -> list[dict[str, Any]]:
    """Each result as JSON, without the timings that differ from run to run."""
    return [{k: v for k, v in r.to_dict().items() if k != "seconds"} for r in report.results]


def test_same_report_as_a_local_scan(mixed_folder: Path) -> None:
    seen: list[ScanResult] = []
    remote = scan_on_ray(
        [mixed_folder], config=ScanConfig(), address=None, store_url=None, on_result=seen.append
    )
    local = scan_paths([mixed_folder], ScanConfig())
    assert comparable(remote) == comparable(local)
    assert sorted(r.path for r in seen) == sorted(r.path for r in remote.results)
    by_format = {r.format: r for r in remote.results}
    assert by_format["external-data"].path.endswith("weights.bin")
    assert by_format[FOLDER_FORMAT].max_severity == Severity.HIGH  # remote code, hostile template
    evil = next(r for r in remote.results if r.path.endswith("evil.pkl"))
    assert evil.max_severity == Severity.CRITICAL
    assert remote.errors == []


def test_results_are_stored_with_source_ray(mixed_folder: Path, store_url: str) -> None:
    config = ScanConfig()
    first = scan_on_ray([mixed_folder], config=config, address=None, store_url=store_url)
    again = scan_on_ray([mixed_folder], config=config, address=None, store_url=store_url)
    assert comparable(again) == comparable(first)
    evil = str(mixed_folder / "evil.pkl")
    with open_store(store_url) as store:
        events = store.scans_for_path(evil)
    assert [(e.source, e.cached) for e in events] == [("ray", True), ("ray", False)]
    assert events[0].result.max_severity == Severity.CRITICAL


def workers_reading(path: Path) -> list[int]:
    """Processes under this one (Ray's raylet, then its workers) that have `path` open."""
    children: dict[int, list[int]] = {}
    for entry in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    found, todo = [], list(children.get(os.getpid(), []))
    while todo:
        pid = todo.pop()
        todo.extend(children.get(pid, []))
        with contextlib.suppress(OSError):
            fds = Path(f"/proc/{pid}/fd")
            if any(os.readlink(fds / fd) == str(path) for fd in os.listdir(fds)):
                found.append(pid)
    return found


def test_a_task_that_dies_becomes_an_error_result(tmp_path: Path) -> None:
    """Workers scanning a slow file (~10 s of pickle opcodes) are killed mid-scan.

    16 files make batches of two: the batch holding the slow file dies, its files are
    resubmitted one per task, and the slow file's own task dies again.
    """
    slow = tmp_path / "07-slow.pkl"
    slow.write_bytes(b"\x80\x04" + b"N0" * 7_000_000 + b"N.")
    for i in range(15):
        (tmp_path / f"{i + (i >= 7):02}-plain.pkl").write_bytes(b"\x80\x04K%c." % i)
    finished = threading.Event()

    def kill_workers_reading_it() -> None:
        while not finished.wait(0.05):
            for pid in workers_reading(slow):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)

    assert [len(run) for run in batches([file_size(p) for p in sorted(tmp_path.iterdir())], 2)] == [
        2
    ] * 8
    killer = threading.Thread(target=kill_workers_reading_it)
    killer.start()
    try:
        report = scan_on_ray([tmp_path], config=ScanConfig(), address=None, store_url=None)
    finally:
        finished.set()
        killer.join()
    [died] = [r for r in report.results if r.errors]
    assert died.path == str(slow) and died.format == "aborted"
    assert "Ray task scanning this file died" in died.errors[0]
    assert [r.path for r in report.results] == [str(p) for p in sorted(tmp_path.iterdir())]
    assert {r.format for r in report.results if r is not died} == {"pickle"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port


@pytest.mark.parametrize("scheme", ["ray://", ""])
def test_an_address_nothing_listens_at_is_a_clear_error(scheme: str, mixed_folder: Path) -> None:
    address = f"{scheme}127.0.0.1:{free_port()}"
    start = time.monotonic()
    with pytest.raises(RayConnectionError, match=f"cannot connect to Ray at {address}"):
        scan_on_ray([mixed_folder], config=ScanConfig(), address=address, store_url=None)
    assert time.monotonic() - start < 10


def test_a_malformed_address_is_a_clear_error(mixed_folder: Path) -> None:
    with pytest.raises(RayConnectionError, match="not ray://HOST:PORT"):
        scan_on_ray([mixed_folder], config=ScanConfig(), address="head-node", store_url=None)


def test_a_sqlite_store_is_refused_on_a_cluster_of_several_nodes(mixed_folder: Path) -> None:
    """Ray's `nodes()` as a two-node cluster reports it: a SQLite file cannot serve both."""
    two_nodes = SimpleNamespace(nodes=lambda: [{"Alive": True}, {"Alive": True}, {"Alive": False}])
    with pytest.raises(StoreError, match="this Ray cluster has 2 nodes"):
        _check_one_node(cast(ModuleType, two_nodes))
    _check_one_node(cast(ModuleType, SimpleNamespace(nodes=lambda: [{"Alive": True}])))


def test_joining_a_running_cluster_by_address_leaves_it_running(mixed_folder: Path) -> None:
    """`modelward scan --ray HOST:PORT` from another process: joins this session's Ray."""
    import ray

    address = ray.get_runtime_context().gcs_address
    command = [sys.executable, "-m", "modelward", "scan", str(mixed_folder / "evil.pkl")]
    command += ["--ray", address, "--no-store", "--format", "json"]
    # Ray sends the cluster's token to an explicit address only when told to.
    env = {**os.environ, "RAY_AUTH_MODE": "token"}
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr
    [result] = json.loads(done.stdout)["results"]
    assert result["max_severity"] == "critical"
    # The cluster outlives the scan that joined it.
    again = scan_on_ray(
        [mixed_folder / "evil.pkl"], config=ScanConfig(), address=None, store_url=None
    )
    assert again.results[0].max_severity == Severity.CRITICAL
