"""Server-side paths named by a client, confined to `serve --root`.

A name is refused before the file system is asked anything when it is absolute or has a
`..` part; otherwise it is resolved (symlinks followed) and must land inside the resolved
root, checked before existence so that a link pointing outside answers 403 whether or not
its target exists (a client learns nothing about the file system outside the root).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath

from fastapi import HTTPException, status


def resolve_under(root: Path | None, name: str, what: str = "path") -> Path:
    """The real path of regular file `name` under `root`; HTTP 400/403/404 otherwise."""
    if root is None:
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST,
            detail=f"{what}: this server was started without --root; upload the file instead",
        )
    if not name or "\x00" in name:
        raise HTTPException(status.HTTP_400_BAD_REQUEST, detail=f"{what}: empty or has a NUL byte")
    pure = PurePosixPath(name)
    if pure.is_absolute() or ".." in pure.parts:
        raise _outside(what)
    try:
        base = root.resolve(strict=True)
        if not (base / pure).resolve().is_relative_to(base):
            raise _outside(what)
        real = (base / pure).resolve(strict=True)
    except (OSError, RuntimeError) as exc:  # missing, not a folder, a symlink loop
        raise HTTPException(
            status.HTTP_404_NOT_FOUND, detail=f"{what}: {name!r} not found under the root"
        ) from exc
    if not real.is_relative_to(base):  # changed between the two resolutions
        raise _outside(what)
    if not real.is_file():
        raise HTTPException(
            status.HTTP_400_BAD_REQUEST, detail=f"{what}: {name!r} is not a regular file"
        )
    return real


def _outside(what: str) -> HTTPException:
    return HTTPException(
        status.HTTP_403_FORBIDDEN,
        detail=f"{what} must name a file inside the server's root (relative, no '..',"
        " no link leading out)",
    )
