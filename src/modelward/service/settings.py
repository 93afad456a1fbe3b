"""What one `modelward serve` is configured with, passed to every uvicorn worker process.

`--workers N` starts N processes that each build the app from scratch with
`app_from_env`; the settings travel to them through the environment, the token in its
own variable so that it never appears in a command line (`ps` shows argv to everyone).
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

#: The write token; read by `modelward serve` when no `--token-file` is given.
TOKEN_ENV = "MODELWARD_SERVE_TOKEN"
#: Everything but the token, as one JSON object, for the worker processes.
SETTINGS_ENV = "MODELWARD_SERVE_SETTINGS"

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 8000
DEFAULT_MAX_UPLOAD_MB = 1024


def default_spool_dir() -> Path:
    """Per-user folder for uploads in flight, under $TMPDIR (uid-suffixed: /tmp is shared)."""
    return Path(tempfile.gettempdir()) / f"modelward-serve-{os.getuid()}"


@dataclass(frozen=True)
class ServiceSettings:
    """The service's configuration; `token` is kept out of `repr` so it is never logged."""

    store_url: str
    token: str = field(repr=False)
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT
    #: Folder that `{"path": ...}` scans and `reference` paths are confined to; None: no
    #: server-side paths at all (uploads only).
    root: Path | None = None
    #: uvicorn server processes.
    workers: int = 1
    #: Scans one process runs at once (threads); more processes come from `workers`.
    scans_per_worker: int = 1
    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_MB * 1024 * 1024
    #: Where uploads are streamed to; one sub-folder per process (see `uploads.UploadSpool`).
    spool_dir: Path = field(default_factory=default_spool_dir)

    def __post_init__(self) -> None:
        if not self.token:
            raise ValueError("the service needs a non-empty write token")
        if self.workers < 1 or self.scans_per_worker < 1 or self.max_upload_bytes < 1:
            raise ValueError("workers, scans per worker and the upload limit must be positive")

    def to_env(self) -> dict[str, str]:
        """Environment variables from which `from_env` rebuilds these settings."""
        data = asdict(self)
        del data["token"]
        data["root"] = str(self.root) if self.root is not None else None
        data["spool_dir"] = str(self.spool_dir)
        return {SETTINGS_ENV: json.dumps(data), TOKEN_ENV: self.token}

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> ServiceSettings:
        env = os.environ if environ is None else environ
        try:
            data = json.loads(env[SETTINGS_ENV])
            token = env[TOKEN_ENV]
        except (KeyError, ValueError) as exc:
            raise RuntimeError(
                f"{SETTINGS_ENV} and {TOKEN_ENV} must be set (start with `modelward serve`)"
            ) from exc
        root = data.pop("root")
        spool_dir = Path(data.pop("spool_dir"))
        return cls(
            **data, token=token, root=Path(root) if root is not None else None, spool_dir=spool_dir
        )
