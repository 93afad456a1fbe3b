"""The rule-set version a stored result was produced with, and file digests.

A stored result is reused only for the same bytes scanned by the same rules: the
version is the package version plus a digest of the rule registry (`modelward.rules`:
every rule's id, severity, title, technique and help, serialised deterministically) and
of the rule data (every file under `modelward/data/`: allow/deny lists, the pickle
knowledge base), so a changed rule or list re-scans even before a release bumps the
version, and of the package's code: a fixed scanner must not hand back a stored "clean"
for a file it now flags. Code is hashed by content alone (the sorted digests of every
module, not their paths), so moving a module changes nothing; no list of paths is kept.

The digest is of content only (the registry, each data file's path inside the package
and its bytes, the code's content), so the same package gives the same version on every machine and
a shared PostgreSQL store reuses results across them. Reading the ~18 MB of data costs
~30 ms, too much for every process, so it is remembered in a small per-user file
(`ruleset.json` in the integrity cache folder, `$MODELWARD_CACHE_DIR`), keyed by the
registry's digest and what `stat` says of every data file (path, size, mtime_ns,
ctime_ns, inode, device): a changed rule, any write to a data file, adding or removing
one, or another install of the package changes the key, and the next process reads the
files again. As with the digest cache, files changed less than two seconds before they
were read are not remembered (a second write inside one timestamp tick would not change
the key), nor when a file changed while it was read. Whoever can write the cache folder
can make a stale result be reused: it belongs to the user running the scans. Checking
the key costs one `stat` per data file (~170, about 1 ms).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import time
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
#: The folder (inside the package) of the rule data whose content decides what a scan finds.
_DATA = "data"
#: Names of code files in the file list start with this: they are hashed without their path.
_CODE = "code:"
#: The file remembering content digests by stat key, in the user's cache folder.
CACHE_NAME = "ruleset.json"
#: Rule files changed less than this long before they were read are not remembered.
RACY_WINDOW_NS = 2_000_000_000
#: Keys remembered (several installs of modelward for one user: venvs, checkouts).
_MAX_KEYS = 16


@lru_cache(maxsize=1)
def ruleset_version() -> str:
    """`<version>+<12 hex>`: the package version and a digest of the rules and their data."""
    files = _rule_files()
    registry = registry_digest()
    key = _stat_key(registry, files)
    cache = _cache_path()
    known = _read_cache(cache)
    digest = known.get(key) if key is not None else None
    if digest is None:
        started = time.time_ns()
        digest = content_digest(files)
        if key is not None and key == _stat_key(registry, files, settled_before=started):
            known.pop(key, None)
            known[key] = digest
            _write_cache(cache, dict(list(known.items())[-_MAX_KEYS:]))
    return f"{__version__}+{digest}"


def registry_digest() -> str:
    """SHA-256 (hex) of the rule registry, serialised deterministically."""
    from modelward.rules import registry_json

    return hashlib.sha256(registry_json().encode("utf-8")).hexdigest()


def content_digest(files: list[tuple[str, str]] | None = None) -> str:
    """12 hex digits of SHA-256 over the registry's digest, every data file's package path
    and bytes, then the sorted SHA-256s of the code files (their paths left out)."""
    digest = hashlib.sha256()
    digest.update(b"rules\0" + registry_digest().encode() + b"\0")
    code: list[bytes] = []
    for name, path in files if files is not None else _rule_files():
        with open(path, "rb") as f:
            data = f.read()
        if name.startswith(_CODE):
            code.append(hashlib.sha256(data).digest())
        else:
            digest.update(name.encode() + b"\0" + data + b"\0")
    for item in sorted(code):
        digest.update(b"code\0" + item)
    return digest.hexdigest()[:12]


def _rule_files() -> list[tuple[str, str]]:
    """(path inside the package, path) of every data file and (`code:` + path, path) of
    every module, in a stable order."""
    root = os.path.join(_PACKAGE, _DATA)
    files: list[tuple[str, str]] = []
    if os.path.isdir(root):
        files.extend((f"{_DATA}/{inner}", os.path.join(root, inner)) for inner in _walk(root, ""))
    files.extend(
        (f"{_CODE}{inner}", os.path.join(_PACKAGE, inner))
        for inner in _walk(str(_PACKAGE), "")
        if inner.endswith(".py") and not inner.startswith(f"{_DATA}/")
    )
    # Ordered as the paths' parts (as `sorted(Path)` did): the digest depends on the order.
    return sorted(files, key=lambda item: item[0].split("/"))


def _walk(folder: str, prefix: str) -> list[str]:
    """Files under `folder` (following links as `Path.is_file` does), `/`-joined, no bytecode."""
    found: list[str] = []
    with os.scandir(folder) as entries:
        for entry in entries:
            if entry.is_dir():
                if entry.name != "__pycache__" and not entry.is_symlink():
                    found.extend(_walk(entry.path, f"{prefix}{entry.name}/"))
            elif entry.is_file() and not entry.name.endswith(".pyc"):
                found.append(prefix + entry.name)
    return found


def _stat_key(
    registry: str, files: list[tuple[str, str]], settled_before: int | None = None
) -> str | None:
    """A digest of the registry's digest and what `stat` says of every data file; None if
    one cannot be statted, or (with `settled_before`) changed less than `RACY_WINDOW_NS`
    before that time."""
    lines = [str(_PACKAGE), registry]
    for name, path in files:
        try:
            st = os.stat(path)
        except OSError:
            return None
        changed = max(st.st_mtime_ns, st.st_ctime_ns)
        if settled_before is not None and changed > settled_before - RACY_WINDOW_NS:
            return None
        lines.append(
            f"{name}\0{st.st_size} {st.st_mtime_ns} {st.st_ctime_ns} {st.st_ino} {st.st_dev}"
        )
    return hashlib.sha256("\n".join(lines).encode("utf-8", "surrogateescape")).hexdigest()


def _cache_path() -> Path:
    from modelward.config import default_cache_dir

    return default_cache_dir() / CACHE_NAME


def _read_cache(path: Path) -> dict[str, str]:
    try:
        known = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(known, dict):
        return {}
    return {
        k: v for k, v in known.items() if isinstance(k, str) and isinstance(v, str) and len(v) == 12
    }


def _write_cache(path: Path, known: dict[str, str]) -> None:
    """Replace the cache file atomically (0600, its folder 0700); a failure only costs time."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}")
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as out:
            json.dump(known, out)
        os.replace(temporary, path)
    with contextlib.suppress(OSError):
        temporary.unlink()


#: Files up to this size are hashed in one read rather than through the streaming hasher.
_DIRECT_BYTES = 1024 * 1024


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
    if cache is None and st.st_size <= _DIRECT_BYTES:
        # A small file in one read: the streaming hasher's set-up costs more than the bytes.
        with open(path, "rb") as f:
            data = f.read(st.st_size)
        if len(data) < st.st_size:
            raise OSError(f"{path}: file shrank while it was read")
        return hashlib.sha256(data).hexdigest()
    entry = FileEntry.from_stat(SINGLE_FILE_NAME, os.path.realpath(path), st)
    try:
        [raw] = digest_tasks([HashTask(entry, 0, entry.size)], "sha256", cache=cache)
    except IntegrityError as exc:
        raise OSError(str(exc)) from exc
    return raw.hex()
