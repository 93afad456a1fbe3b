"""The rule-set version a stored result was produced with, and file digests.

A stored result is reused only for the same bytes scanned by the same rules: the
version is the package version plus a digest of everything that decides a verdict
(the rule data and the scanner sources), so a changed allow-list or scanner re-scans
even before a release bumps the version.
"""

from __future__ import annotations

import hashlib
import os
import stat
from functools import lru_cache
from pathlib import Path
from typing import TYPE_CHECKING

from modelward import __version__
from modelward.integrity.errors import IntegrityError
from modelward.integrity.hashing import HashTask, digest_tasks
from modelward.integrity.walk import SINGLE_FILE_NAME, FileEntry

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache

_PACKAGE = Path(__file__).resolve().parent.parent
#: Folders and modules whose content decides what a scan finds.
_RULE_SOURCES = (
    "data",
    "formats",
    "pickle",
    "scanner.py",
    "folders.py",
    "findings.py",
    "config.py",
)


@lru_cache(maxsize=1)
def ruleset_version() -> str:
    """`<version>+<12 hex>`: the package version and a digest of the rules and scanners."""
    digest = hashlib.sha256()
    for path in _rule_files():
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes())
        digest.update(b"\0")
    return f"{__version__}+{digest.hexdigest()[:12]}"


def _rule_files() -> list[Path]:
    files: list[Path] = []
    for name in _RULE_SOURCES:
        root = _PACKAGE / name
        if root.is_dir():
            files.extend(
                p
                for p in root.rglob("*")
                if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".pyc"
            )
        elif root.is_file():
            files.append(root)
    return sorted(files)


def sha256_file(path: Path, cache: DigestCache | None = None) -> str:
    """The hex SHA-256 of a regular file's bytes, streamed by the integrity hasher.

    With the integrity digest `cache`, an unchanged file (same inode, size, mtime and
    ctime as when it was hashed) is not read again: for big weights whose scan reads
    only a header, hashing would otherwise cost more than the scan it saves. Raises
    `OSError` for anything but a regular file (a FIFO would block the read forever) and
    for a file that shrinks while it is read.
    """
    st = os.stat(path)
    if not stat.S_ISREG(st.st_mode):
        raise OSError(f"{path}: not a regular file")
    entry = FileEntry.from_stat(SINGLE_FILE_NAME, os.path.realpath(path), st)
    try:
        [raw] = digest_tasks([HashTask(entry, 0, entry.size)], "sha256", cache=cache)
    except IntegrityError as exc:
        raise OSError(str(exc)) from exc
    return raw.hex()
