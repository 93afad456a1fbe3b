"""Offline check of a Hugging Face hub cache: every snapshot file against its blob's name.

In `models--org--name/`, each `snapshots/<rev>/<file>` is a symlink to
`../../blobs/<name>`, where `<name>` is the SHA-256 of the content for LFS
files and the git blob SHA-1 (`sha1("blob <size>\\0" + content)`) for the
rest. Both are recomputed here; nothing is fetched. A snapshot file that is not
such a link (a copy, as made where symlinks are unavailable) cannot be checked
and is reported as unverified (`extra`), as is a link leaving `blobs/`.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

from modelward.integrity.cache import DigestCache
from modelward.integrity.comparison import Mismatch, VerificationResult
from modelward.integrity.errors import ModelPathError
from modelward.integrity.hashing import CHUNK_SIZE, HashTask, digest_tasks
from modelward.integrity.walk import FileEntry

_SHA256 = re.compile(r"[0-9a-f]{64}")
_SHA1 = re.compile(r"[0-9a-f]{40}")
REPO_PREFIXES = ("models--", "datasets--", "spaces--")


def repositories(cache_dir: Path) -> list[Path]:
    """The repository folders in `cache_dir`: the hub folder itself, or one repository."""
    if not cache_dir.is_dir():
        raise ModelPathError(f"{cache_dir}: not a folder")
    if (cache_dir / "snapshots").is_dir():
        return [cache_dir]
    repos = sorted(
        p for p in cache_dir.iterdir() if p.name.startswith(REPO_PREFIXES) and p.is_dir()
    )
    if not repos:
        raise ModelPathError(f"{cache_dir}: no Hugging Face repositories (models--*) found")
    return repos


def verify_hf_cache(
    cache_dir: Path, *, cache: DigestCache | None = None, jobs: int | None = None
) -> VerificationResult:
    """Recompute each snapshot file's digest and compare it with its blob name."""
    result = VerificationResult(model=str(cache_dir))
    lfs: dict[str, tuple[FileEntry, list[str]]] = {}
    for repo in repositories(cache_dir):
        blobs = Path(os.path.realpath(repo / "blobs"))
        for folder, dirs, files in os.walk(repo / "snapshots"):
            dirs.sort()
            for name in sorted(files):
                link = Path(folder) / name
                shown = link.relative_to(cache_dir).as_posix()
                target = Path(os.path.realpath(link))
                if not link.is_symlink() or target.parent != blobs:
                    result.extra.append(shown)
                    continue
                try:
                    st = target.stat()
                except OSError:
                    result.missing.append(shown)
                    continue
                if _SHA256.fullmatch(target.name):
                    entry = FileEntry.from_stat(target.name, str(target), st)
                    lfs.setdefault(str(target), (entry, []))[1].append(shown)
                elif _SHA1.fullmatch(target.name):
                    actual = git_blob_sha1(target, st.st_size)
                    if actual != target.name:
                        result.mismatch.append(Mismatch(shown, target.name, actual))
                else:
                    result.extra.append(shown)
    items = list(lfs.values())
    tasks = [HashTask(entry, 0, entry.size) for entry, _ in items]
    for (entry, shown_names), digest in zip(
        items, digest_tasks(tasks, "sha256", cache=cache, jobs=jobs), strict=True
    ):
        if digest.hex() != entry.name:
            result.mismatch += [Mismatch(n, entry.name, digest.hex()) for n in shown_names]
    result.hashed = True
    return result


def git_blob_sha1(path: Path, size: int) -> str:
    """The git object id of a file's content: what HF names non-LFS blobs by."""
    h = hashlib.sha1(f"blob {size}\0".encode(), usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            h.update(chunk)
    return h.hexdigest()
