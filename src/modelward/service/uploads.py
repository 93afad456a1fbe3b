"""Uploads streamed to disk with a running size limit, never held in memory whole.

Each server process owns one spool folder under the configured spool dir and holds an
exclusive `flock` on its lock file for as long as it lives. A process killed with SIGKILL
loses the lock with its life, so the next process to start removes that folder: at most
stray files of a dead server are left, and never for longer than the next start. Each
upload gets a private sub-folder, so a scanner that looks at a file's neighbours (ONNX
external data) sees nothing of other uploads.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import shutil
import stat
import tempfile
import unicodedata
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from fastapi import HTTPException, Request
from starlette.requests import ClientDisconnect

LOCK_SUFFIX = ".lock"
#: Longest display name kept from `?filename=`; it is only ever shown, never used as a path.
MAX_FILENAME_CHARS = 200


class UploadSpool:
    """This process's folder for uploads in flight; `sweep` removes those of dead processes."""

    def __init__(self, base: Path) -> None:
        _private_dir(base)
        self.sweep(base)
        # Lock first, folder second: a live process's folder always has a held lock file.
        fd, lock_name = tempfile.mkstemp(prefix="spool-", suffix=LOCK_SUFFIX, dir=base)
        self._lock: IO[bytes] = os.fdopen(fd, "wb")
        fcntl.flock(self._lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        self.lock_path = Path(lock_name)
        self.path = self.lock_path.with_suffix("")
        self.path.mkdir(mode=0o700)

    @staticmethod
    def sweep(base: Path) -> None:
        """Remove the spool folders whose owning process is gone (its lock is free)."""
        for lock_path in base.glob(f"spool-*{LOCK_SUFFIX}"):
            with contextlib.suppress(FileNotFoundError), lock_path.open("rb") as lock:
                try:
                    fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its process is alive
                shutil.rmtree(lock_path.with_suffix(""), ignore_errors=True)
                lock_path.unlink(missing_ok=True)
        for folder in base.glob("spool-*"):
            if folder.is_dir() and not folder.with_name(folder.name + LOCK_SUFFIX).exists():
                shutil.rmtree(folder, ignore_errors=True)  # owner died while cleaning up

    def close(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        self.lock_path.unlink(missing_ok=True)
        self._lock.close()


def _private_dir(path: Path) -> None:
    """Create `path` 0700, or accept it only if it is ours and not a link (it may be in /tmp)."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    info = path.lstat()
    if not stat.S_ISDIR(info.st_mode) or info.st_uid != os.getuid():
        raise RuntimeError(f"upload spool {path} is not a folder owned by this user")
    if info.st_mode & 0o077:
        path.chmod(0o700)


@dataclass(frozen=True)
class Upload:
    """A received upload: where it lies, its digest and size, and the name to show for it."""

    path: Path
    sha256: str
    size: int
    filename: str


def display_filename(raw: str | None) -> str:
    """A printable, path-free name for an upload: the last component, no control characters."""
    name = (raw or "").replace("\\", "/").rsplit("/", 1)[-1]
    name = "".join(c for c in name if unicodedata.category(c)[0] != "C").strip()
    if name in {"", ".", ".."}:
        return "upload"
    return name[:MAX_FILENAME_CHARS]


def too_large(limit: int) -> HTTPException:
    return HTTPException(
        413,  # Content Too Large (the constant was renamed across Starlette versions)
        detail=f"upload larger than the limit of {limit} bytes (serve --max-upload-mb)",
    )


@contextlib.asynccontextmanager
async def received_upload(
    request: Request, spool: UploadSpool, limit: int, filename: str | None
) -> AsyncIterator[Upload]:
    """Stream the request body into a private temp folder; removed when the block ends.

    413 before reading anything when Content-Length is over `limit`, and as soon as the
    bytes received pass it otherwise (chunked bodies); nothing is kept either way.
    """
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large(limit)
    folder = Path(tempfile.mkdtemp(prefix="upload-", dir=spool.path))
    try:
        path = folder / "body"
        digest = hashlib.sha256()
        size = 0
        # Writes land in the page cache; a thread hop per chunk would cost more than them.
        with path.open("wb") as out:
            try:
                async for chunk in request.stream():
                    size += len(chunk)
                    if size > limit:
                        raise too_large(limit)
                    digest.update(chunk)
                    out.write(chunk)
            except ClientDisconnect as exc:  # not a server error: no traceback in the log
                raise HTTPException(400, detail="the upload was interrupted") from exc
        yield Upload(path, digest.hexdigest(), size, display_filename(filename))
    finally:
        shutil.rmtree(folder, ignore_errors=True)
