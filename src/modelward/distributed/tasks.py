"""What runs inside a Ray task: read, hash, scan and record files where the task runs.

Kept free of `ray` imports so a worker only needs modelward itself; the driver
(`modelward.distributed.ray_scan`) wraps `scan_batch` as a remote function.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from modelward.config import ScanConfig
from modelward.findings import ScanResult


def scan_batch(
    files: list[tuple[str, str]], config: ScanConfig, store_url: str | None, rescan: bool
) -> list[dict[str, Any]]:
    """Scan each `(path to read, path to show)` pair; one result dict per file, in order.

    With a `store_url` every file goes through the store (`scan_and_record`,
    source "ray"), opened once per worker process. The dicts carry `data_files`
    (left out of `to_dict`), which the driver needs to claim ONNX external data.
    """
    out = []
    for path, shown in files:
        result = _scan_one(Path(path), shown, config, store_url, rescan)
        out.append({**result.to_dict(), "data_files": result.data_files})
    return out


def _scan_one(
    path: Path, shown: str, config: ScanConfig, store_url: str | None, rescan: bool
) -> ScanResult:
    from modelward.scanner import scan_file

    if store_url is None:
        return scan_file(path, config, shown)
    from modelward.store import StoreError, scan_and_record, store_for_url

    try:
        store = store_for_url(store_url)
        stored = scan_and_record(path, config, store, source="ray", display=shown, rescan=rescan)
    except StoreError as exc:
        # The findings still count, but a result the store never got is an error (fail closed).
        result = scan_file(path, config, shown)
        result.errors.append(f"not recorded in the results store: {exc}")
        return result
    return stored.result
