"""The digest cache is shared by processes at once (`-j` workers, Ray tasks, a verify)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from modelward.integrity.cache import DigestCache
from modelward.integrity.walk import FileEntry


def _entry(path: Path) -> tuple[FileEntry, os.stat_result]:
    st = os.stat(path)
    return FileEntry.from_stat(path.name, str(path), st), st


def test_an_open_cache_does_not_lock_out_another(tmp_path: Path) -> None:
    db = tmp_path / "digests.sqlite"
    first_file, second_file = tmp_path / "a.bin", tmp_path / "b.bin"
    first_file.write_bytes(b"a" * 10)
    second_file.write_bytes(b"b" * 10)
    first, second = DigestCache(db, racy_window_ns=0), DigestCache(db, racy_window_ns=0)
    try:
        entry, st = _entry(first_file)
        first.put(entry, st, time.time_ns(), "sha256", 0, 10, b"\x01" * 32)
        # The first cache stays open (a worker mid-batch): the second writes at once, and
        # each sees the other's entry without closing.
        started = time.monotonic()
        other, other_st = _entry(second_file)
        second.put(other, other_st, time.time_ns(), "sha256", 0, 10, b"\x02" * 32)
        assert time.monotonic() - started < 1.0
        assert second.get(entry, "sha256", 0, 10) == b"\x01" * 32
        assert first.get(other, "sha256", 0, 10) == b"\x02" * 32
    finally:
        first.close()
        second.close()
