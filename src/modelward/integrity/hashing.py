"""Streaming, parallel file digests (SHA-256, BLAKE2b, BLAKE3) with the digest cache.

Work is split into tasks (a whole file, or one shard of a file) run on a thread
pool: `hashlib` releases the GIL while it hashes a buffer, so threads use every
core without the cost of processes. Each task streams its byte range through a
reused 1 MiB buffer, so memory stays flat whatever the file size.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass
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


def digest_range(path: str, algorithm: str, start: int, end: int) -> bytes:
    """Digest bytes [start, end) of `path`, streaming; fails if the file got shorter."""
    hasher = new_hasher(algorithm)
    buf = bytearray(CHUNK_SIZE)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        if start:
            f.seek(start)
        if hasattr(os, "posix_fadvise"):
            os.posix_fadvise(f.fileno(), start, end - start, os.POSIX_FADV_SEQUENTIAL)
        remaining = end - start
        while remaining > 0:
            n = f.readinto(view[: min(CHUNK_SIZE, remaining)])
            if not n:
                raise IntegrityError(f"{path}: file shrank while it was being hashed")
            hasher.update(view[:n])
            remaining -= n
    return hasher.digest()


def digest_tasks(
    tasks: Sequence[HashTask],
    algorithm: str,
    *,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> list[bytes]:
    """Digests of `tasks`, in order: cached ones from `cache`, the rest hashed in parallel."""
    results: list[bytes | None] = [
        cache.get(t.entry, algorithm, t.start, t.end) if cache else None for t in tasks
    ]
    todo = [i for i, r in enumerate(results) if r is None]
    if todo:
        started = DigestCache.now_ns()
        # Largest first: the pool stays busy to the end instead of waiting on one big file.
        todo.sort(key=lambda i: tasks[i].end - tasks[i].start, reverse=True)
        workers = max(1, min(jobs or MAX_THREADS, len(todo)))

        def run(i: int) -> bytes:
            t = tasks[i]
            return digest_range(t.entry.path, algorithm, t.start, t.end)

        if workers == 1:
            digests = [run(i) for i in todo]
        else:
            # Imported here: concurrent.futures pulls in logging, a cost a cached run skips.
            from concurrent.futures import ThreadPoolExecutor

            with ThreadPoolExecutor(max_workers=workers) as pool:
                digests = list(pool.map(run, todo))
        for i, digest in zip(todo, digests, strict=True):
            results[i] = digest
            if cache is not None:
                t = tasks[i]
                cache.put(
                    t.entry, os.stat(t.entry.path), started, algorithm, t.start, t.end, digest
                )
    return [r for r in results if r is not None]  # every slot is filled by now
