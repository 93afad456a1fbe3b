"""Streaming, parallel file digests (SHA-256, BLAKE2b, BLAKE3) with the digest cache.

Work is split into tasks (a whole file, or one shard of a file) run on a thread
pool: `hashlib` releases the GIL while it hashes a buffer, so threads use every
core without the cost of processes. Each task streams its byte range through a
reused 1 MiB buffer, so memory stays flat whatever the file size.

A caller that also needs each file's whole-file SHA-256 (the results store keys
files by it) asks `hash_tasks(..., whole_sha256=True)`: a file whose tasks do not
already give it (shards, another algorithm) is then read once, front to back, and
every chunk goes both to its shard's hasher and to the file's SHA-256, instead of
reading the file a second time. `bytes_read()` counts what was read, for tests and
benchmarks.

Files are read with `readinto`, not `mmap`: a memory map saves one copy (about 10 %
of the CPU time of SHA-256) but a file truncated while it is mapped kills the
process with SIGBUS, where a read just comes back short.
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from functools import partial
from io import FileIO
from typing import Protocol

from modelward.integrity.cache import DigestCache
from modelward.integrity.errors import IntegrityError
from modelward.integrity.walk import FileEntry

CHUNK_SIZE = 1 << 20
#: Default thread count: more threads than cores, so that three equal files on two cores
#: share both cores to the end (the kernel time-slices them) instead of one core hashing
#: the third file alone. Each thread costs one CHUNK_SIZE buffer.
MAX_THREADS = 32

#: Names as model-signing writes them in `hash_type`; "blake2" is accepted on input.
ALGORITHMS = ("sha256", "blake2b", "blake3")
_ALIASES = {"blake2": "blake2b", "sha-256": "sha256"}


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> object: ...
    def digest(self) -> bytes: ...


def canonical_algorithm(name: str) -> str:
    """The canonical algorithm name, or `IntegrityError` if unsupported or not installed."""
    algo = _ALIASES.get(name.lower(), name.lower())
    if algo not in ALGORITHMS:
        raise IntegrityError(f"unsupported hash algorithm {name!r}; use one of {ALGORITHMS}")
    if algo == "blake3":
        _blake3_factory()
    return algo


def new_hasher(algorithm: str) -> _Hasher:
    if algorithm == "sha256":
        return hashlib.sha256()
    if algorithm == "blake2b":
        return hashlib.blake2b()
    return _blake3_factory()()


def _blake3_factory() -> Callable[[], _Hasher]:
    try:
        from blake3 import blake3
    except ImportError:
        raise IntegrityError(
            "BLAKE3 needs the optional 'blake3' package: pip install 'modelward[blake3]'"
        ) from None
    factory: Callable[[], _Hasher] = blake3
    return factory


@dataclass(frozen=True)
class HashTask:
    """A byte range [start, end) of one file to digest."""

    entry: FileEntry
    start: int
    end: int


@dataclass
class TaskDigests:
    """What `hash_tasks` computed: one digest per task, and whole-file SHA-256s if asked."""

    digests: list[bytes]
    #: Whole-file SHA-256 by `FileEntry.name`, for every file of the tasks (with
    #: `whole_sha256=True`; else only where a task is itself the file's SHA-256).
    sha256: dict[str, bytes] = field(default_factory=dict)


_read_lock = threading.Lock()
_bytes_read = 0


def bytes_read() -> int:
    """Bytes this process has read from files to hash them, so far (tests, benchmarks)."""
    return _bytes_read


def _count(n: int) -> None:
    global _bytes_read
    with _read_lock:
        _bytes_read += n


def digest_range(path: str, algorithm: str, start: int, end: int) -> bytes:
    """Digest bytes [start, end) of `path`, streaming; fails if the file got shorter."""
    digests, _ = _read_and_digest(path, algorithm, start, end, [(start, end)], whole=False)
    return digests[0]


class _RangeHashers:
    """The hashers of sorted byte ranges, fed consecutive chunks of one stream."""

    def __init__(self, algorithm: str, ranges: Sequence[tuple[int, int]]) -> None:
        self.ranges = ranges
        self.hashers = [new_hasher(algorithm) for _ in ranges]
        self.first = 0  # ranges before this one end before the next chunk

    def update(self, chunk: memoryview, pos: int) -> None:
        """Feed bytes [pos, pos + len(chunk)) of the stream to the ranges they fall in."""
        ranges, stop = self.ranges, pos + len(chunk)
        i = self.first
        while i < len(ranges) and ranges[i][0] < stop:
            lo, hi = max(ranges[i][0], pos), min(ranges[i][1], stop)
            if lo < hi:
                self.hashers[i].update(chunk[lo - pos : hi - pos])
            i += 1
        while self.first < len(ranges) and ranges[self.first][1] <= stop:
            self.first += 1

    def digests(self) -> list[bytes]:
        return [h.digest() for h in self.hashers]


def _read_and_digest(
    path: str,
    algorithm: str,
    start: int,
    end: int,
    ranges: Sequence[tuple[int, int]],
    *,
    whole: bool,
    pipelined: bool = True,
) -> tuple[list[bytes], bytes | None]:
    """One sequential read of bytes [start, end) of `path`: the digest of each of `ranges`
    (sorted by start, inside [start, end)) and, with `whole`, the SHA-256 of all of it.

    With both (and `pipelined`), the ranges are hashed on a second thread while this one
    reads and hashes the whole, so a file costs one hash pass of wall time, not two.
    """
    ranged = _RangeHashers(algorithm, ranges)
    if whole and ranges and pipelined:
        total = _read_pipelined(path, start, end, ranged)
        return ranged.digests(), total
    hasher = hashlib.sha256() if whole else None
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    pos = start
    try:
        with _open_at(path, start, end) as f:
            while pos < end:
                n = f.readinto(view[: min(CHUNK_SIZE, end - pos)])
                if not n:
                    raise IntegrityError(f"{path}: file shrank while it was being hashed")
                if hasher is not None:
                    hasher.update(view[:n])
                ranged.update(view[:n], pos)
                pos += n
    finally:
        _count(pos - start)
    return ranged.digests(), hasher.digest() if hasher is not None else None


def _open_at(path: str, start: int, end: int) -> FileIO:
    f = FileIO(path, "rb")
    try:
        if start:
            f.seek(start)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), start, end - start, os.POSIX_FADV_SEQUENTIAL)
    except BaseException:
        f.close()
        raise
    return f


#: Buffers in flight between the reading thread and the range-hashing thread.
_PIPELINE_DEPTH = 4


def _read_pipelined(path: str, start: int, end: int, ranged: _RangeHashers) -> bytes:
    """SHA-256 of bytes [start, end), read once; each chunk also goes to `ranged` on a
    helper thread (hashlib releases the GIL, so the two hashes run on two cores)."""
    import queue  # only here: most runs never need it

    views = [memoryview(bytearray(CHUNK_SIZE)) for _ in range(_PIPELINE_DEPTH)]
    free: queue.SimpleQueue[int] = queue.SimpleQueue()
    ready: queue.SimpleQueue[tuple[int, int, int] | None] = queue.SimpleQueue()
    for k in range(_PIPELINE_DEPTH):
        free.put(k)
    failed: list[BaseException] = []

    def hash_ranges() -> None:
        while (item := ready.get()) is not None:
            k, pos, n = item
            try:
                if not failed:
                    ranged.update(views[k][:n], pos)
            except BaseException as exc:  # re-raised by the reading thread
                failed.append(exc)
            free.put(k)

    helper = threading.Thread(target=hash_ranges, name="modelward-range-hash", daemon=True)
    helper.start()
    total = hashlib.sha256()
    pos = start
    try:
        with _open_at(path, start, end) as f:
            while pos < end and not failed:
                k = free.get()
                n = f.readinto(views[k][: min(CHUNK_SIZE, end - pos)])
                if not n:
                    free.put(k)
                    raise IntegrityError(f"{path}: file shrank while it was being hashed")
                total.update(views[k][:n])
                ready.put((k, pos, n))
                pos += n
    finally:
        ready.put(None)
        helper.join()
        _count(pos - start)
    if failed:
        raise failed[0]
    return total.digest()


def digest_tasks(
    tasks: Sequence[HashTask],
    algorithm: str,
    *,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> list[bytes]:
    """Digests of `tasks`, in order: cached ones from `cache`, the rest hashed in parallel."""
    return hash_tasks(tasks, algorithm, cache=cache, jobs=jobs).digests


def _is_whole_sha256(task: HashTask, algorithm: str) -> bool:
    return algorithm == "sha256" and task.start == 0 and task.end == task.entry.size


def hash_tasks(
    tasks: Sequence[HashTask],
    algorithm: str,
    *,
    cache: DigestCache | None = None,
    jobs: int | None = None,
    whole_sha256: bool = False,
) -> TaskDigests:
    """Digests of `tasks`, in order, reading each byte at most once.

    Cached digests come from `cache`; the rest are hashed in parallel, one pool job per
    task, except that with `whole_sha256` a file whose SHA-256 is neither a task's own
    digest nor cached is one job that reads the whole file and digests its tasks and its
    SHA-256 together. New digests (the whole-file SHA-256 too) go into `cache`.
    """
    results: list[bytes | None] = [
        cache.get(t.entry, algorithm, t.start, t.end) if cache else None for t in tasks
    ]
    sha: dict[str, bytes] = {}
    for t, r in zip(tasks, results, strict=True):
        if r is not None and _is_whole_sha256(t, algorithm):
            sha[t.entry.name] = r
    # Files whose SHA-256 must be computed in the same read as their tasks: name to tasks.
    whole: dict[str, list[int]] = {}
    if whole_sha256:
        for i, t in enumerate(tasks):
            name = t.entry.name
            if name in sha or _is_whole_sha256(t, algorithm):
                continue
            if name not in whole:
                found = cache.get(t.entry, "sha256", 0, t.entry.size) if cache else None
                if found is not None:
                    sha[name] = found
                    continue
                whole[name] = []
            whole[name].append(i)
    jobs_todo: list[tuple[int, Callable[[], None]]] = []  # (bytes to read, job)
    started = DigestCache.now_ns()
    stored: list[tuple[FileEntry, str, int, int, bytes]] = []

    def range_job(i: int) -> None:
        t = tasks[i]
        digest = digest_range(t.entry.path, algorithm, t.start, t.end)
        results[i] = digest
        stored.append((t.entry, algorithm, t.start, t.end, digest))

    def file_job(name: str, indices: list[int]) -> None:
        entry = tasks[indices[0]].entry
        todo = sorted((i for i in indices if results[i] is None), key=lambda i: tasks[i].start)
        ranges = [(tasks[i].start, tasks[i].end) for i in todo]
        digests, total = _read_and_digest(
            entry.path, algorithm, 0, entry.size, ranges, whole=True, pipelined=jobs != 1
        )
        for i, digest in zip(todo, digests, strict=True):
            results[i] = digest
            stored.append((entry, algorithm, tasks[i].start, tasks[i].end, digest))
        assert total is not None
        sha[name] = total
        stored.append((entry, "sha256", 0, entry.size, total))

    in_file_job = {i for indices in whole.values() for i in indices}
    for i, r in enumerate(results):
        if r is None and i not in in_file_job:
            jobs_todo.append((tasks[i].end - tasks[i].start, partial(range_job, i)))
    for name, indices in whole.items():
        jobs_todo.append((tasks[indices[0]].entry.size, partial(file_job, name, indices)))
    if jobs_todo:
        # Largest first: the pool stays busy to the end instead of waiting on one big file.
        jobs_todo.sort(key=lambda job: job[0], reverse=True)
        workers = max(1, min(jobs or MAX_THREADS, len(jobs_todo)))
        if workers == 1:
            for _, job in jobs_todo:
                job()
        else:
            # Imported here: concurrent.futures pulls in logging, a cost a cached run skips.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                for future in [pool.submit(job) for _, job in jobs_todo]:
                    future.result()
    if cache is not None:
        for entry, algo, start, end, digest in stored:
            cache.put(entry, os.stat(entry.path), started, algo, start, end, digest)
    digests = [r for r in results if r is not None]  # every slot is filled by now
    for t, digest in zip(tasks, digests, strict=True):
        if _is_whole_sha256(t, algorithm):
            sha[t.entry.name] = digest
    return TaskDigests(digests, sha)
