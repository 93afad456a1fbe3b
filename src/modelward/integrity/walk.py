"""Listing the files of a model: ignore rules, symlink policy, special files.

Symlinks are refused unless allowed; an allowed link must resolve inside the
containment root, which is the model folder itself or, for a Hugging Face
snapshot (`models--org--name/snapshots/<rev>`), the repository folder whose
`blobs/` the snapshot links point into. A link that resolves anywhere else is
always refused, so a signed folder can never pull in `/etc/passwd` or a file
from another model.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from modelward.integrity.errors import ModelPathError, SymlinkError

#: Paths model-signing ignores by default (relative to the model root); we match it so
#: that bundles verify the same way in both tools.
DEFAULT_IGNORE = (".git", ".gitattributes", ".github", ".gitignore")

#: Name of the single resource when the model is one file, as model-signing writes it.
SINGLE_FILE_NAME = "."


@dataclass(frozen=True)
class FileEntry:
    """One regular file of a model, with the stat fields the digest cache keys on."""

    name: str  # POSIX path relative to the model root; "." for a single-file model
    path: str  # what to open (a link's resolved target when links are allowed)
    size: int
    dev: int
    ino: int
    mtime_ns: int
    ctime_ns: int

    @classmethod
    def from_stat(cls, name: str, path: str, st: os.stat_result) -> FileEntry:
        return cls(name, path, st.st_size, st.st_dev, st.st_ino, st.st_mtime_ns, st.st_ctime_ns)


def containment_root(model: Path) -> Path:
    """Where allowed symlinks may point: the model, or its HF repository folder."""
    real = Path(os.path.realpath(model))
    if real.parent.name == "snapshots" and (real.parent.parent / "blobs").is_dir():
        return real.parent.parent
    return real if real.is_dir() else real.parent


def list_files(
    model: Path,
    *,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE,
    allow_symlinks: bool = False,
) -> list[FileEntry]:
    """Every regular file of `model` (a file or a folder), sorted by name.

    Raises `ModelPathError` for a missing path, a special file (FIFO, socket,
    device), a refused symlink or one that escapes the containment root.
    """
    try:
        top = os.lstat(model)
    except OSError as exc:
        raise ModelPathError(f"{model}: {exc.strerror or exc}") from None
    root = containment_root(model)
    if stat.S_ISLNK(top.st_mode):
        # The path given is the user's own choice, not model content: always followed.
        try:
            top = os.stat(model)
        except OSError as exc:
            raise ModelPathError(f"{model}: broken symlink: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(top.st_mode):
        _require_regular(model, top)
        return [FileEntry.from_stat(SINGLE_FILE_NAME, os.path.realpath(model), top)]
    ignored = {posixpath.normpath(p.replace(os.sep, "/")).strip("/") for p in ignore_paths}
    entries: list[FileEntry] = []
    _walk(str(model), "", root, ignored, allow_symlinks, entries, set())
    entries.sort(key=lambda e: name_key(e.name))
    return entries


def name_key(name: str) -> tuple[str, ...]:
    """Sort key matching model-signing (`PurePosixPath` order: by path components)."""
    return tuple(name.split("/"))


def _walk(
    folder: str,
    prefix: str,
    root: Path,
    ignored: set[str],
    allow_symlinks: bool,
    out: list[FileEntry],
    seen: set[tuple[int, int]],
) -> None:
    st_dir = os.stat(folder)
    if (st_dir.st_dev, st_dir.st_ino) in seen:
        raise SymlinkError(f"{folder}: symlink loop")
    seen.add((st_dir.st_dev, st_dir.st_ino))
    with os.scandir(folder) as it:
        children = sorted(it, key=lambda d: d.name)
    for child in children:
        name = prefix + child.name
        if name in ignored:
            continue
        if child.is_symlink():
            target, st = _follow(Path(child.path), root, allow_symlinks)
            if stat.S_ISDIR(st.st_mode):
                _walk(target, name + "/", root, ignored, allow_symlinks, out, seen)
            else:
                out.append(FileEntry.from_stat(name, target, st))
            continue
        st = child.stat(follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            _walk(child.path, name + "/", root, ignored, allow_symlinks, out, seen)
        else:
            _require_regular(Path(child.path), st)
            out.append(FileEntry.from_stat(name, child.path, st))


def _follow(link: Path, root: Path, allow_symlinks: bool) -> tuple[str, os.stat_result]:
    if not allow_symlinks:
        raise SymlinkError(
            f"{link}: is a symlink; refused by default (allow with --allow-symlinks)"
        )
    target = os.path.realpath(link)
    if not Path(target).is_relative_to(root):
        raise SymlinkError(f"{link}: symlink resolves outside the model ({target}); refused")
    try:
        st = os.stat(target)
    except OSError as exc:
        raise ModelPathError(f"{link}: broken symlink: {exc.strerror or exc}") from None
    if not stat.S_ISDIR(st.st_mode):
        _require_regular(link, st)
    return target, st


def _require_regular(path: Path, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode):
        raise ModelPathError(f"{path}: not a regular file or folder (FIFO, socket or device)")
