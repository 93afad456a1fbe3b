"""Everything the store knows about one file: its scan events and verdicts.

A file is found by its bytes (the digest of what is on disk now) and by the path it
was recorded under, so a history shows both earlier scans of the same bytes elsewhere
and earlier scans of whatever used to be at this path.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.store.records import CheckVerdict, StoredScan
from modelward.store.ruleset import sha256_file
from modelward.store.sql import ResultStore

_DIGEST = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class FileHistory:
    """Scan events and verdicts of one file, newest first."""

    query: str
    #: The digest of the file as it is now; None for a digest query or a file that is gone.
    sha256: str | None
    scans: list[StoredScan]
    verdicts: list[CheckVerdict]

    def __bool__(self) -> bool:
        return bool(self.scans or self.verdicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "query": self.query,
            "sha256": self.sha256,
            "scans": [s.to_dict() for s in self.scans],
            "verdicts": [v.to_dict() for v in self.verdicts],
        }


def file_history(store: ResultStore, target: str) -> FileHistory:
    """The history of `target`: a 64-hex SHA-256, or a file path (looked up both ways).

    Raises `IsADirectoryError` for a folder (a history is per file) and `OSError` when
    the file exists but cannot be read.
    """
    path = Path(target)
    if _DIGEST.fullmatch(target.lower()) and not path.exists():
        digest = target.lower()
        return FileHistory(
            target, None, store.scans_for_digest(digest), store.verdicts_for_digest(digest)
        )
    if path.is_dir():
        raise IsADirectoryError(f"{target} is a folder; give one file or a SHA-256")
    current = None
    if path.exists():
        from modelward.integrity.cache import digest_cache

        with digest_cache() as cache:  # a file scanned or verified before is not read again
            current = sha256_file(path, cache)
    # Scans record the path as given; verdicts record absolute paths. Try both spellings.
    names = list(dict.fromkeys((target, os.path.abspath(target))))
    scans = [s for name in names for s in store.scans_for_path(name)]
    verdicts = [v for name in names for v in store.verdicts_for_path(name)]
    if current is not None:
        scans += store.scans_for_digest(current)
        verdicts += store.verdicts_for_digest(current)
    unique_scans = {s.id: s for s in scans}.values()
    unique_verdicts = {(v.kind, v.path, v.recorded_at, v.passed): v for v in verdicts}.values()
    return FileHistory(
        target,
        current,
        sorted(unique_scans, key=lambda s: s.scanned_at, reverse=True),
        sorted(unique_verdicts, key=lambda v: v.recorded_at, reverse=True),
    )
