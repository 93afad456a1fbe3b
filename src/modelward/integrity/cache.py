"""A persistent digest cache so that re-verifying an unchanged model costs a few `stat` calls.

An entry is keyed by what `stat` says about the file: device, inode, size,
mtime_ns and ctime_ns (plus the algorithm and byte range hashed). Writing a
file changes its mtime and ctime; restoring the mtime with `os.utime` changes
the ctime again, and no unprivileged call can set ctime. Replacing the file
(rename over it) changes the inode. What the key cannot see: a write to the raw
block device or a change made while the clock is set back (both need root),
and a second write inside the same timestamp tick as the hash. That last race
is closed like git's "racy clean" rule: a digest is only stored when the file
was last changed at least `racy_window_ns` before hashing started, and the
stat is taken again after hashing and must not have moved.

The database lives in the user's cache folder (mode 0700 folder, 0600 file).
Whoever can write it can make a changed file pass: use `--no-cache` where the
cache folder is not trusted.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from modelward.config import default_cache_dir
from modelward.integrity.walk import FileEntry

#: Digests of files changed less than this long before hashing are not stored (coarse
#: kernel clocks tick every few ms; FAT and some network filesystems store 2 s).
RACY_WINDOW_NS = 2_000_000_000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS digests (
    dev INTEGER NOT NULL, ino INTEGER NOT NULL, size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL, ctime_ns INTEGER NOT NULL,
    algorithm TEXT NOT NULL, start INTEGER NOT NULL, end INTEGER NOT NULL,
    digest BLOB NOT NULL,
    PRIMARY KEY (dev, ino, algorithm, start, end)
) WITHOUT ROWID
"""


class DigestCache:
    """SQLite-backed map from (file identity, algorithm, range) to digest."""

    def __init__(self, path: Path | None = None, *, racy_window_ns: int = RACY_WINDOW_NS):
        self.path = path if path is not None else default_cache_dir() / "digests.sqlite"
        self.racy_window_ns = racy_window_ns
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        os.close(fd)
        # Autocommit: each digest is its own short transaction. A transaction held open until
        # close would hold the write lock, and every other process (`-j` workers, Ray tasks,
        # a concurrent verify) would wait on it for the busy timeout, then lose its entry.
        self._db = sqlite3.connect(
            self.path, timeout=5.0, check_same_thread=False, isolation_level=None
        )
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(_SCHEMA)
        self.hits = 0

    def close(self) -> None:
        with contextlib.suppress(sqlite3.Error):
            self._db.commit()
        self._db.close()

    def __enter__(self) -> DigestCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def get(self, entry: FileEntry, algorithm: str, start: int, end: int) -> bytes | None:
        """The cached digest, or None on a miss (a busy or broken database is a miss)."""
        try:
            row = self._db.execute(
                "SELECT digest, size, mtime_ns, ctime_ns FROM digests"
                " WHERE dev=? AND ino=? AND algorithm=? AND start=? AND end=?",
                (entry.dev, entry.ino, algorithm, start, end),
            ).fetchone()
        except sqlite3.Error:
            return None
        if row is None or tuple(row[1:]) != (entry.size, entry.mtime_ns, entry.ctime_ns):
            return None
        self.hits += 1
        digest: bytes = row[0]
        return digest

    def put(
        self,
        entry: FileEntry,
        after: os.stat_result,
        started_ns: int,
        algorithm: str,
        start: int,
        end: int,
        digest: bytes,
    ) -> None:
        """Store a digest unless the file moved while hashing or changed too recently."""
        unchanged = (after.st_size, after.st_mtime_ns, after.st_ctime_ns, after.st_ino) == (
            entry.size,
            entry.mtime_ns,
            entry.ctime_ns,
            entry.ino,
        )
        settled = max(entry.mtime_ns, entry.ctime_ns) <= started_ns - self.racy_window_ns
        if not (unchanged and settled):
            return
        with contextlib.suppress(sqlite3.Error):  # a cache that cannot be written is no cache
            self._db.execute(
                "INSERT OR REPLACE INTO digests VALUES (?,?,?,?,?,?,?,?,?)",
                (
                    entry.dev,
                    entry.ino,
                    entry.size,
                    entry.mtime_ns,
                    entry.ctime_ns,
                    algorithm,
                    start,
                    end,
                    digest,
                ),
            )

    @staticmethod
    def now_ns() -> int:
        return time.time_ns()


def open_cache(cache: bool | DigestCache) -> DigestCache | None:
    """The digest cache to use; none when disabled or when the cache folder is unusable."""
    if isinstance(cache, DigestCache):
        return cache
    if not cache:
        return None
    try:
        return DigestCache()
    except (OSError, sqlite3.Error):
        return None


@contextmanager
def digest_cache() -> Iterator[DigestCache | None]:
    """The user's digest cache for one piece of work (None where unusable), closed after it."""
    cache = open_cache(True)
    try:
        yield cache
    finally:
        if cache is not None:
            cache.close()
