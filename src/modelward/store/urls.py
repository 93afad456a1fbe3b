"""Store URLs: the default location, the PostgreSQL driver choice, and masking passwords."""

from __future__ import annotations

import os
from pathlib import Path

#: The user's default store, unless `$MODELWARD_STORE` names another.
STORE_ENV = "MODELWARD_STORE"


def default_store_url() -> str:
    """`$MODELWARD_STORE`, else a SQLite file in the user's data folder."""
    explicit = os.environ.get(STORE_ENV)
    if explicit:
        return explicit
    base = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return f"sqlite:///{Path(base) / 'modelward' / 'results.db'}"


def normalise_url(url: str) -> str:
    """`postgresql://` and `postgres://` mean PostgreSQL through psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


def mask_url(url: str) -> str:
    """The URL with any password replaced by `***`, safe to print or log.

    Errs on the side of hiding: everything between the user name and the last `@` goes.
    """
    scheme, sep, rest = url.partition("://")
    at = rest.rfind("@")
    user, colon, _ = rest[: max(at, 0)].partition(":")
    if not sep or at < 0 or not colon or "/" in user:
        return url
    return f"{scheme}://{user}:***{rest[at:]}"
