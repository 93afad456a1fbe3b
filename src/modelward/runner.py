"""Running scans: one file through the results store, and many files fanned out.

The scan core (`scanner`) turns one file's bytes into a result and knows nothing of
stores, processes or Ray. This module is the one place that runs it for the CLI, the
public API, `-j` workers, Ray tasks and the service:

- `scan_and_record` (`scan_event` and one transaction): the store's cache rule. Hash the
  file, reuse the stored result for the same bytes under the same rules and config, else
  scan; record the event. A run of files records its events in batches (`file_scanner`).
- `scan_files`: the fan-out. In this process, in a local process pool (`jobs` > 1),
  each worker scanning a batch of files with its own store connection and digest
  cache, or as Ray tasks (`distributed/`, which calls `scan_batch` where it runs).

One error rule for every fan-out: a store that fails while a file is looked up or
recorded costs that file an error (its findings still count, and an error makes the
run exit 2 unless findings already fail it); the run goes on. The service, whose
answer *is* the stored scan, calls `scan_and_record` and gets the `StoreError`.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.config import ScanConfig
from modelward.findings import ScanReport, ScanResult
from modelward.scanner import finish_results, iter_files, scan_file

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache
    from modelward.store import ResultStore, StoredScan
    from modelward.store.records import ScanEvent

#: A batch holds at most this many files: per-task costs (a pool round trip, a Ray task)
#: are about a small file's scan, so small files travel together.
MAX_BATCH_FILES = 32
#: ...and at most about this many bytes, so big files get a task (and a CPU) each.
MAX_BATCH_BYTES = 64 * 1024**2
#: Aim for this many batches per worker, so a slow file does not leave the others idle.
BATCHES_PER_WORKER = 4
#: Scan events a run records in one transaction (a transaction costs more than a small
#: file's lookup), and the longest they wait to be written.
RECORD_BATCH = 64
RECORD_SECONDS = 1.0
#: Files smaller than this are hashed for the store without the digest cache: reading them
#: costs less than a cache lookup, and a cache entry costs a database write.
DIGEST_CACHE_MIN_BYTES = 1024 * 1024


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
    cache, so an unchanged big file is not read again just to be looked up. Raises
    `StoreError` when the store fails.
    """
    event = scan_event(
        path, config, store, source, display, diff, rescan=rescan, sha256=sha256, digests=digests
    )
    return store.record_scans([event])[0]


def scan_event(
    path: Path,
    config: ScanConfig,
    store: ResultStore,
    source: str = "cli",
    display: str | None = None,
    diff: dict[str, Any] | None = None,
    *,
    rescan: bool = False,
    sha256: str | None = None,
    digests: DigestCache | None = None,
) -> ScanEvent:
    """The event `scan_and_record` records: the stored result for `path`'s bytes, or a scan."""
    from modelward.store.records import ScanEvent
    from modelward.store.ruleset import sha256_file

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
            return ScanEvent(sha256, cached.moved_to(shown), source, digest, True, diff)
    result = scan_file(path, config, shown)
    # Bytes that changed between hashing and scanning must not be cached under that hash.
    unchanged = before is not None and before == _identity(path)
    return ScanEvent(sha256, result, source, digest, False, diff, reusable=unchanged)


def _identity(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns)


def store_for_url(url: str) -> ResultStore:
    """This process's store for `url`, opened once (pool workers and Ray tasks)."""
    return _process_store(url, os.getpid())


@lru_cache(maxsize=8)
def _process_store(url: str, pid: int) -> ResultStore:
    from modelward.store import open_store

    return open_store(url)


@contextmanager
def file_scanner(
    config: ScanConfig, store: ResultStore | None, *, source: str = "cli", rescan: bool = False
) -> Iterator[Callable[[Path, str | None], ScanResult]]:
    """A function scanning one file (through `store` when given) for a run of files.

    The digest cache is opened once for the run, when the first file big enough to need it
    comes. Events are recorded in batches (`RECORD_BATCH`, at the latest every
    `RECORD_SECONDS`, and when the run ends), each batch one transaction. A store failure is
    the file's error, never the run's end (the module's error rule): every file of a batch
    that cannot be written gets it.
    """
    if store is None:
        yield lambda path, shown: scan_file(path, config, shown)
        return
    from modelward.store.errors import StoreError

    with ExitStack() as stack:
        opened: list[DigestCache | None] = []

        def digests_for(path: Path) -> DigestCache | None:
            if file_size(path) < DIGEST_CACHE_MIN_BYTES:
                return None
            if not opened:
                from modelward.integrity.cache import digest_cache

                opened.append(stack.enter_context(digest_cache()))
            return opened[0]

        pending: list[ScanEvent] = []

        def flush() -> None:
            """Record the pending events in one transaction; a failure is each file's error."""
            try:
                store.record_scans(pending)
            except StoreError as exc:
                for event in pending:
                    event.result.errors.append(f"not recorded in the results store: {exc}")
            pending.clear()

        def scan_one(path: Path, shown: str | None) -> ScanResult:
            try:
                event = scan_event(
                    path, config, store, source, shown, rescan=rescan, digests=digests_for(path)
                )
            except StoreError as exc:
                result = scan_file(path, config, shown)
                result.errors.append(f"not recorded in the results store: {exc}")
                return result
            pending.append(event)
            if len(pending) >= RECORD_BATCH or time.monotonic() - started[0] >= RECORD_SECONDS:
                flush()
                started[0] = time.monotonic()
            return event.result

        started = [time.monotonic()]
        stack.callback(lambda: flush() if pending else None)
        yield scan_one


def scan_batch(
    files: Sequence[tuple[str, str]],
    config: ScanConfig,
    store_url: str | None,
    rescan: bool,
    source: str,
) -> list[ScanResult]:
    """Scan `(path to read, path to show)` pairs where this runs (a pool worker, a Ray task).

    The store is opened by URL once per process; one digest cache serves the batch.
    """
    from modelward.store.errors import StoreError

    store = None
    error = None
    if store_url is not None:
        try:
            store = store_for_url(store_url)
        except StoreError as exc:
            error = f"not recorded in the results store: {exc}"
    with file_scanner(config, store, source=source, rescan=rescan) as scan_one:
        results = [scan_one(Path(path), shown) for path, shown in files]
    if error is not None:
        for result in results:
            result.errors.append(error)
    return results


def batches(sizes: Sequence[int], workers: int) -> list[list[int]]:
    """Indexes of consecutive files, in runs small enough to spread over `workers`;
    big files alone. `sizes` are the files' sizes in bytes (0 when unknown)."""
    per_batch = max(1, min(MAX_BATCH_FILES, len(sizes) // (BATCHES_PER_WORKER * max(workers, 1))))
    out: list[list[int]] = []
    batch: list[int] = []
    batch_bytes = 0
    for i, size in enumerate(sizes):
        if batch and (len(batch) >= per_batch or batch_bytes + size > MAX_BATCH_BYTES):
            out.append(batch)
            batch, batch_bytes = [], 0
        batch.append(i)
        batch_bytes += size
    if batch:
        out.append(batch)
    return out


def file_size(path: Path) -> int:
    """`path`'s size for batching; 0 when it cannot be read (its scan reports why)."""
    try:
        return path.stat().st_size
    except OSError:
        return 0


def scan_files(
    files: Sequence[Path],
    config: ScanConfig,
    *,
    jobs: int = 1,
    store: ResultStore | None = None,
    rescan: bool = False,
    on_result: Callable[[ScanResult], None] | None = None,
) -> list[ScanResult]:
    """Every file's result, in `files` order: here, or in `jobs` processes.

    Pool workers get batches of files (`batches`), open the store by its URL once per
    process and send results back per batch, so a run of small files does not pay a
    round trip, a store connection and a digest-cache open per file.
    """
    results: list[ScanResult] = []

    def add(result: ScanResult) -> None:
        results.append(result)
        if on_result is not None:
            on_result(result)

    if jobs > 1 and len(files) > 1:
        runs = batches([file_size(f) for f in files], jobs)
        workers = min(jobs, len(runs))
        pairs = [[(str(files[i]), str(files[i])) for i in run] for run in runs]
        store_url = store.url if store is not None else None
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(max_workers=workers) as pool:
            done = pool.map(
                scan_batch,
                pairs,
                [config] * len(pairs),
                [store_url] * len(pairs),
                [rescan] * len(pairs),
                ["cli"] * len(pairs),
            )
            for batch_results in done:
                for result in batch_results:
                    add(result)
    else:
        with file_scanner(config, store, rescan=rescan) as scan_one:
            for path in files:
                add(scan_one(path, None))
    return results


def scan_paths(
    paths: Sequence[Path],
    config: ScanConfig | None = None,
    jobs: int = 1,
    on_result: Callable[[ScanResult], None] | None = None,
    store: ResultStore | None = None,
    rescan: bool = False,
) -> ScanReport:
    """Scan files and folders; `jobs` > 1 scans files in that many processes.

    With a `store`, each file's result is reused from it when the same bytes were
    scanned under the same rules and config (unless `rescan`), and every scan is
    recorded there. Folder-level results (a Hugging Face model folder) come last and
    are not stored: they are no one file's result.
    """
    config = config if config is not None else ScanConfig()
    start = time.monotonic()
    files = list(iter_files(paths))
    results = scan_files(files, config, jobs=jobs, store=store, rescan=rescan, on_result=on_result)
    return finish_report(files, results, config, start, on_result)


def finish_report(
    files: Sequence[Path],
    results: list[ScanResult],
    config: ScanConfig,
    start: float,
    on_result: Callable[[ScanResult], None] | None = None,
) -> ScanReport:
    """The report of a run begun at `start` (`time.monotonic`): every file's result, then
    what only the whole set shows (`scanner.finish_results`). Local and Ray runs end here."""
    report = ScanReport(results=results)
    for result in finish_results(files, report.results, config):
        report.results.append(result)
        if on_result is not None:
            on_result(result)
    report.seconds = time.monotonic() - start
    return report


__all__ = [
    "batches",
    "file_scanner",
    "file_size",
    "finish_report",
    "scan_and_record",
    "scan_batch",
    "scan_event",
    "scan_files",
    "scan_paths",
    "store_for_url",
]
