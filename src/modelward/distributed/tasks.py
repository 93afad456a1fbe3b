"""What runs inside a Ray task: read, hash, scan and record files where the task runs.

Kept free of `ray` imports so a worker only needs modelward itself; the driver
(`modelward.distributed.ray_scan`) wraps `scan_batch` as a remote function.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.config import ScanConfig
from modelward.findings import ScanResult

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache


def scan_batch(
    files: list[tuple[str, str]], config: ScanConfig, store_url: str | None, rescan: bool
) -> list[dict[str, Any]]:
    """Scan each `(path to read, path to show)` pair; one result dict per file, in order.

    With a `store_url` every file goes through the store (`scan_and_record`, source
    "ray"), opened once per worker process, and this node's digest cache (as in `-j`
    workers) spares re-hashing unchanged big files. The dicts carry `data_files` (left
    out of `to_dict`), which the driver needs to claim ONNX external data.
    """
    from modelward.integrity.cache import digest_cache
    from modelward.scanner import scan_file

    if store_url is None:
        results = [scan_file(Path(path), config, shown) for path, shown in files]
    else:
        with digest_cache() as digests:
            results = [
                _scan_stored(Path(path), shown, config, store_url, rescan, digests)
                for path, shown in files
            ]
    return [{**r.to_dict(), "data_files": r.data_files} for r in results]


def _scan_stored(
    path: Path,
    shown: str,
    config: ScanConfig,
    store_url: str,
    rescan: bool,
    digests: DigestCache | None,
) -> ScanResult:
    from modelward.scanner import scan_file
    from modelward.store import StoreError, scan_and_record, store_for_url

    try:
        stored = scan_and_record(
            path,
            config,
            store_for_url(store_url),
            source="ray",
            display=shown,
            rescan=rescan,
            digests=digests,
        )
    except StoreError as exc:
        # The findings still count, but a result the store never got is an error (fail closed).
        result = scan_file(path, config, shown)
        result.errors.append(f"not recorded in the results store: {exc}")
        return result
    return stored.result
