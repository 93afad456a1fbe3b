"""The driver side of a scan on Ray: list files, fan batches out as tasks, gather the report.

Files are listed here (`scanner.iter_files`); each task reads, hashes, scans and
records its files where it runs (`tasks.scan_batch`); the folder-level steps that
need every result (external data claimed by a model, Hugging Face folder checks)
run here afterwards, with the scanner's own functions, so the report is the one a
local scan gives.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections import deque
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from modelward.config import ScanConfig
from modelward.errors import ModelwardError
from modelward.findings import ScanReport, ScanResult
from modelward.runner import BATCHES_PER_WORKER, batches, file_size, finish_report
from modelward.scanner import iter_files

if TYPE_CHECKING:
    from types import ModuleType

#: Seconds to wait for a TCP connection to the given address before calling Ray.
CONNECT_TIMEOUT = 5.0


class RayConnectionError(ModelwardError, ConnectionError):
    """Ray is not installed, or the cluster cannot be reached; the message says which."""


def scan_on_ray(
    paths: Sequence[Path],
    *,
    config: ScanConfig,
    address: str | None,
    store_url: str | None,
    num_cpus: int | None = None,
    on_result: Callable[[ScanResult], None] | None = None,
    rescan: bool = False,
) -> ScanReport:
    """Scan files and folders as Ray tasks; the report matches `scanner.scan_paths`.

    `address` None starts a local Ray with `num_cpus` (stopped again afterwards);
    otherwise it is a Ray Client (`ray://host:10001`), GCS (`host:6379`) or `auto`
    address of a running cluster, which is left running (only this process
    disconnects). A process already connected to Ray keeps using that connection.
    With a `store_url` (reachable from every worker) each file is recorded there with
    source "ray". Results come back in input order; `on_result` sees them as they
    arrive. A task that dies (worker crash, OOM) becomes an error result for its files,
    never a gap. Raises `FileNotFoundError` for a missing path, `RayConnectionError`
    when Ray cannot be started or reached, and `StoreError` for a SQLite store with a
    cluster of several nodes.
    """
    if address is not None and num_cpus is not None:
        raise ValueError("num_cpus is for a local Ray; a cluster has its own CPUs")
    start = time.monotonic()
    files = list(iter_files(paths))
    ray = _import_ray()
    opened = _connect(ray, address, num_cpus)
    try:
        if store_url is not None and store_url.startswith("sqlite"):
            _check_one_node(ray)
        results = _run_tasks(ray, files, config, store_url, rescan, on_result)
    finally:
        if opened:
            ray.shutdown()
    return finish_report(files, results, config, start, on_result)


def _import_ray() -> ModuleType:
    try:
        import ray
    except ImportError:
        raise RayConnectionError(
            "Ray is not installed; install it with: pip install 'modelward[ray]'"
        ) from None
    return ray


def _connect(ray: ModuleType, address: str | None, num_cpus: int | None) -> bool:
    """Start or join Ray; True when this call opened the connection (and must close it).

    `ray.shutdown()` then stops a local Ray this call started, and only disconnects
    from a cluster.
    """
    if address is not None:
        _check_reachable(address)
    if ray.is_initialized():
        return False
    quiet: dict[str, Any] = {"log_to_driver": False, "logging_level": logging.ERROR}
    if address is None:
        try:
            ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, **quiet)
        except Exception as exc:
            raise RayConnectionError(f"cannot start a local Ray: {exc}") from None
        return True
    try:
        ray.init(address=address, **quiet)
    # Ray ends the process (SystemExit) when a GCS address answers but never becomes ready.
    except (Exception, SystemExit) as exc:
        hint = ""
        if address != "auto" and "RAY_AUTH_MODE" not in os.environ:
            # Ray sends its token to an explicit address only when told to.
            hint = " (a cluster with token authentication needs RAY_AUTH_MODE=token)"
        raise RayConnectionError(f"cannot connect to Ray at {address}: {exc}{hint}") from None
    return True


def _check_one_node(ray: ModuleType) -> None:
    """A SQLite file is on one machine: tasks on other nodes would write elsewhere or fail."""
    from modelward.store.errors import StoreError

    nodes = sum(1 for node in ray.nodes() if node.get("Alive"))
    if nodes > 1:
        raise StoreError(
            f"a SQLite store is on one machine but this Ray cluster has {nodes} nodes;"
            " give every node the same store with --store postgresql://..."
        )


def _check_reachable(address: str) -> None:
    """Fail in seconds on an address nothing listens at (Ray itself retries for minutes)."""
    if address == "auto":
        return
    hostport = address.removeprefix("ray://").rsplit("/", 1)[0]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        raise RayConnectionError(
            f"Ray address {address!r} is not ray://HOST:PORT, HOST:PORT or auto"
        )
    try:
        socket.create_connection((host.strip("[]"), int(port)), CONNECT_TIMEOUT).close()
    except OSError as exc:
        raise RayConnectionError(
            f"cannot connect to Ray at {address}: {exc.strerror or exc}"
        ) from None


def _run_tasks(
    ray: ModuleType,
    files: list[Path],
    config: ScanConfig,
    store_url: str | None,
    rescan: bool,
    on_result: Callable[[ScanResult], None] | None,
) -> list[ScanResult]:
    """Every file's result in `files` order; a batch whose task died is retried file by file."""
    from ray.exceptions import RayError

    from modelward.distributed.tasks import scan_batch

    # No automatic retries: a file that kills its worker would kill the next one too.
    remote = ray.remote(max_retries=0)(scan_batch)
    config_ref = ray.put(config)
    results: list[ScanResult | None] = [None] * len(files)
    cpus = int(ray.cluster_resources().get("CPU", 1))
    # A task costs ~0.6-1.2 ms, about a small file's scan: small files travel in batches.
    queue = deque(batches([file_size(f) for f in files], cpus))
    # A bounded number of tasks in flight keeps the driver's memory and `ray.wait` small
    # for a million files, while every CPU still has work queued behind the running task.
    window = 2 * BATCHES_PER_WORKER * max(cpus, 1)
    pending: dict[Any, list[int]] = {}
    while queue or pending:
        while queue and len(pending) < window:
            batch = queue.popleft()
            # Tasks read absolute paths (a worker's working folder is not ours), show them as given.
            pairs = [(os.path.abspath(files[i]), str(files[i])) for i in batch]
            pending[remote.remote(pairs, config_ref, store_url, rescan)] = batch
        [ref], _ = ray.wait(list(pending), num_returns=1)
        batch = pending.pop(ref)
        try:
            arrived = [ScanResult.from_dict(d) for d in ray.get(ref)]
        except RayError as exc:
            if len(batch) > 1:
                queue.extendleft([i] for i in reversed(batch))
                continue
            arrived = [_task_died(files[batch[0]], exc)]
        for i, result in zip(batch, arrived, strict=True):
            results[i] = result
            if on_result is not None:
                on_result(result)
    # Every batch ends above with its results or is resubmitted, so no slot is left empty.
    return cast(list[ScanResult], results)


def _task_died(path: Path, exc: Exception) -> ScanResult:
    reason = f"{type(exc).__name__}: {exc}".splitlines()[0][:300]
    return ScanResult(
        path=str(path),
        format="aborted",
        errors=[f"the Ray task scanning this file died before it finished ({reason})"],
    )
