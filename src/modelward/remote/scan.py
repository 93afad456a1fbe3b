"""Scan remote files without downloading them: each scanner reads only the ranges it needs.

Small files (up to `SMALL_FILE_BYTES`: configs, code, templates) are fetched whole, hashed and
staged in a temporary folder laid out like the repository, so that the folder-level checks of a
Hugging Face model folder run on them exactly as on a local copy; bigger files are read by
range. A file's result is stored under its SHA-256 when it is known (the Hub's LFS digest, or
the hash of a small file fetched whole), so re-scanning an unchanged repository costs its
listing and the small files.
"""

from __future__ import annotations

import hashlib
import io
import tempfile
import time
from collections.abc import Callable
from contextlib import closing
from dataclasses import replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.formats.interface import Blob
from modelward.remote.http import (
    HttpSettings,
    RangeClient,
    RangeReader,
    ReadClient,
    RemoteError,
    SegmentCache,
)
from modelward.remote.sources import RemoteFile, RemoteSource, resolve

if TYPE_CHECKING:
    from modelward.config import ScanConfig
    from modelward.store.base import ResultStore
    from modelward.store.records import ScanEvent

#: Files up to this size are fetched whole (one request) rather than read by range.
SMALL_FILE_BYTES = 1024 * 1024
#: Buffer over a range stream: scanners read a few bytes at a time (pickle opcodes).
READ_BUFFER = 16 * 1024


def scan_remote(
    target: str,
    config: ScanConfig,
    *,
    settings: HttpSettings | None = None,
    store: ResultStore | None = None,
    rescan: bool = False,
    on_result: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """Every file `target` names, scanned by range, then its model folders.

    Raises `RemoteError` when the target cannot be listed; a file that cannot be read is that
    file's error (the run ends with exit 2), the other files are still scanned.
    """
    settings = settings or HttpSettings()
    source = resolve(target, settings.read_timeout, settings)
    results: list[ScanResult] = []
    events: list[ScanEvent] = []
    with (
        closing(_client(source, settings)) as client,
        tempfile.TemporaryDirectory(prefix="modelward-remote-") as staging,
    ):
        stage = Path(staging)
        staged: list[Path] = []
        for remote in source.files:
            result, event = _scan_file(remote, client, config, store, rescan, stage, staged)
            results.append(result)
            if event is not None:
                events.append(event)
            if on_result is not None:
                on_result(result)
        from modelward.scanner import finish_results

        for folder in finish_results(staged, [], config):
            result = _relocated(folder, stage, source)
            results.append(result)
            if on_result is not None:
                on_result(result)
    if store is not None and events:
        store.record_scans(events)
    return results


def _client(source: RemoteSource, settings: HttpSettings) -> ReadClient:
    """The source's own client (S3, GCS), else HTTP range requests with its headers."""
    if source.client is not None:
        return source.client(settings)
    return RangeClient(settings, source.headers)


def _scan_file(
    remote: RemoteFile,
    client: ReadClient,
    config: ScanConfig,
    store: ResultStore | None,
    rescan: bool,
    stage: Path,
    staged: list[Path],
) -> tuple[ScanResult, ScanEvent | None]:
    from modelward.scanner import scan_blob

    start = time.monotonic()
    result = ScanResult(path=remote.shown)
    local = _stage_name(remote, stage, result)
    if local is not None:
        staged.append(local)
    try:
        size = remote.size if remote.size is not None else client.size(remote.url, remote.shown)
        if size < 0:
            raise RemoteError(f"{remote.shown}: the listing gives a negative size ({size})")
        data = None
        sha256 = remote.sha256 or ""
        if size <= SMALL_FILE_BYTES:
            data = client.read(remote.url, 0, size, size, remote.shown)
            sha256 = hashlib.sha256(data).hexdigest()
            if local is not None:
                local.write_bytes(data)
    except RemoteError as exc:
        result.errors.append(without_location(str(exc), remote.shown))
        result.format = "unreadable"
        return result, None
    digest = config.digest()
    # A finding about the listed name is not about the bytes: such a result is neither looked
    # up nor kept under the bytes' digest.
    named_badly = bool(result.findings)
    if store is not None and sha256 and not rescan and not named_badly:
        cached = store.cached_result(sha256, digest)
        if cached is not None:
            from modelward.store.records import ScanEvent

            moved = cached.moved_to(remote.shown)
            return moved, ScanEvent(sha256, moved, "cli", digest, True)
    if data is not None:
        blob = Blob.from_bytes(Location(remote.shown), data)
    else:
        cache = SegmentCache(client.settings.cache_bytes)
        blob = Blob(
            Location(remote.shown),
            size,
            lambda: io.BufferedReader(
                RangeReader(client, remote.url, size, cache, remote.shown), READ_BUFFER
            ),
        )
    failures = len(client.failures)
    scan_blob(blob, config, result, start)
    # A scanner may take a failed read for a malformed file: the read's error is the truth.
    for failure in dict.fromkeys(client.failures[failures:]):
        if not any(failure in error for error in result.errors):
            result.errors.append(failure)
    result.errors = [without_location(error, remote.shown) for error in result.errors]
    if store is None or not sha256:
        return result, None
    from modelward.store.records import ScanEvent

    reusable = not result.errors and not named_badly
    return result, ScanEvent(sha256, result, "cli", digest, False, reusable=reusable)


def _stage_name(remote: RemoteFile, stage: Path, result: ScanResult) -> Path | None:
    """The empty stand-in for `remote` in the staging copy (its bytes are written there when
    it is fetched whole), or None when its listed path cannot be staged.

    The path comes from the server: one that is absolute or has `..` parts is a finding and
    is never written (it would land outside the staging folder); one that clashes with
    another listed name (a file where a folder must be) is the file's error.
    """
    parts = PurePosixPath(remote.path).parts
    if not parts or remote.path.startswith("/") or "\\" in remote.path or ".." in parts:
        result.findings.append(
            Finding(
                "MW-ARCHIVE-PATH-TRAVERSAL",
                Severity.HIGH,
                Location(remote.shown),
                "the listing names a file whose path is absolute or climbs out of the"
                " repository with `..`; a download of it would write elsewhere on this machine",
                evidence=remote.path[:300],
            )
        )
        return None
    local = stage.joinpath(*parts)
    try:
        local.parent.mkdir(parents=True, exist_ok=True)
        local.touch()  # names alone matter to the folder checks for files read by range
    except OSError as exc:
        result.errors.append(f"cannot lay out the listed path {remote.path!r}: {exc.strerror}")
        return None
    return local


def without_location(message: str, shown: str) -> str:
    """`message` without the file's location: reports put it in front of each error."""
    return message.replace(f"{shown}: ", "")


def _relocated(result: ScanResult, stage: Path, source: RemoteSource) -> ScanResult:
    """A folder result on the staging copy, as if the repository had been scanned in place."""

    def remote_path(path: str) -> str:
        if not path.startswith(str(stage)):
            return path
        inside = Path(path).relative_to(stage).as_posix()
        return source.shown if inside == "." else f"{source.shown}/{inside}"

    findings = [
        replace(f, location=replace(f.location, path=remote_path(f.location.path)))
        for f in result.findings
    ]
    return replace(result, path=remote_path(result.path), findings=findings)


__all__ = ["SMALL_FILE_BYTES", "scan_remote"]
