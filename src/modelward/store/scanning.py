"""Scan a file through the store: reuse the stored result for the same bytes, else scan.

One function for every caller that stores (the CLI, `-j` workers, the service, Ray
tasks), so the cache rule lives in one place.
"""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.config import ScanConfig
from modelward.store.records import StoredScan
from modelward.store.ruleset import sha256_file
from modelward.store.sql import ResultStore, open_store

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache


def scan_and_record(
    path: Path,
    config: ScanConfig,
    store: ResultStore,
    *,
    source: str = "cli",
    display: str | None = None,
    diff: dict[str, Any] | None = None,
    rescan: bool = False,
    sha256: str | None = None,
    digests: DigestCache | None = None,
) -> StoredScan:
    """Hash `path`, reuse a stored result for those bytes (unless `rescan`), else scan it.

    Either way one scan event is recorded. A file that cannot be hashed is scanned
    (the scanner reports why it cannot be read) and recorded with an empty digest.
    `sha256` is the file's digest when the caller already computed it (an upload hashed
    while it was received), saving a second read; `digests` is the integrity digest
    cache, so an unchanged big file is not read again just to be looked up.
    """
    from modelward.scanner import scan_file

    shown = display if display is not None else str(path)
    digest = config.digest()
    before = _identity(path)
    if sha256 is None:
        try:
            sha256 = sha256_file(path, digests)
        except OSError:
            sha256 = ""
    if sha256 and not rescan:
        cached = store.cached_result(sha256, digest)
        if cached is not None:
            return store.record_scan(
                sha256,
                cached.moved_to(shown),
                source=source,
                config_digest=digest,
                cached=True,
                diff=diff,
            )
    result = scan_file(path, config, shown)
    # Bytes that changed between hashing and scanning must not be cached under that hash.
    unchanged = before is not None and before == _identity(path)
    return store.record_scan(
        sha256, result, source=source, config_digest=digest, diff=diff, reusable=unchanged
    )


def store_for_url(url: str) -> ResultStore:
    """This process's store for `url`, opened once (worker processes and Ray tasks)."""
    return _process_store(url, os.getpid())


@lru_cache(maxsize=8)
def _process_store(url: str, pid: int) -> ResultStore:
    return open_store(url)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)
