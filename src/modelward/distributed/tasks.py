"""What runs inside a Ray task: read, hash, scan and record files where the task runs.

Kept free of `ray` imports so a worker only needs modelward itself; the driver
(`modelward.distributed.ray_scan`) wraps `scan_batch` as a remote function.
"""

from __future__ import annotations

from typing import Any

from modelward.config import ScanConfig


def scan_batch(
    files: list[tuple[str, str]], config: ScanConfig, store_url: str | None, rescan: bool
) -> list[dict[str, Any]]:
    """Scan each `(path to read, path to show)` pair; one result dict per file, in order.

    The runner's batch scan (`runner.scan_batch`, as in `-j` workers) with source "ray".
    The dicts carry `data_files` (left out of `to_dict`), which the driver needs to claim
    ONNX external data.
    """
    from modelward.runner import scan_batch as run_batch

    results = run_batch(files, config, store_url, rescan, "ray")
    return [{**r.to_dict(), "data_files": r.data_files} for r in results]
