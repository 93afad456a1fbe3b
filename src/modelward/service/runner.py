"""Start the service: check the options, find the write token, run uvicorn.

`service_settings` turns the options of `modelward serve` into `ServiceSettings` (opening
the store once, so the schema is migrated before any worker starts); `serve` puts them
into the environment and lets uvicorn start `workers` processes that each build the app
from it. fastapi and uvicorn are imported only here, when the service starts.
"""

from __future__ import annotations

import ipaddress
import os
import secrets
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from modelward.errors import ModelwardError
from modelward.service.settings import TOKEN_ENV, ServiceSettings

if TYPE_CHECKING:
    import uvicorn


class ServeError(ModelwardError):
    """The service cannot start (an option, the store, the upload folder, the address)."""


def service_settings(
    *,
    host: str,
    port: int,
    public: bool = False,
    root: Path | None = None,
    store_url: str | None = None,
    workers: int = 1,
    max_upload_mb: int,
    token_file: Path | None = None,
    say: Callable[[str], None],
) -> ServiceSettings:
    """Checked settings for `serve`; raises `ServeError` saying which option and why.

    A non-loopback `host` needs `public` (reads need no token). The write token comes from
    `token_file`, else `$MODELWARD_SERVICE_TOKEN`, else is generated; `say` is told a
    generated token and a token file others can read.
    """
    try:  # the `serve` extra; the worker processes import both
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise ServeError(f"{exc}; install it with: pip install 'modelward[serve]'") from exc
    from modelward.service.uploads import UploadSpool
    from modelward.store import StoreError, default_store_url, mask_url, open_store

    if not is_loopback(host) and not public:
        raise ServeError(
            f"--host {host} is not a loopback address and reads need no token;"
            " add --public to serve it anyway (see modelward serve --help)"
        )
    if not 0 <= port <= 65535:
        raise ServeError(f"--port {port}: not a TCP port")
    if root is not None:
        if not root.is_dir():
            raise ServeError(f"--root {root}: not a folder")
        root = root.resolve()
    store_url = store_url or default_store_url()
    try:
        open_store(store_url).close()  # create or migrate the schema once, before the workers
    except StoreError as exc:
        raise ServeError(f"store {mask_url(store_url)}: {exc}") from exc
    settings = ServiceSettings(
        store_url=store_url,
        token=find_token(token_file, say=say),
        host=host,
        port=port,
        root=root,
        workers=workers,
        max_upload_bytes=max_upload_mb * 1024 * 1024,
    )
    try:  # check the spool folder here (not in N workers) and sweep what killed servers left
        UploadSpool(settings.spool_dir).close()
    except (OSError, RuntimeError) as exc:
        raise ServeError(f"upload folder: {exc}") from exc
    return settings


def find_token(token_file: Path | None, *, say: Callable[[str], None]) -> str:
    """The write token: `token_file`, else `$MODELWARD_SERVICE_TOKEN`, else a random one.

    `say` is told a generated token (it is shown once) and a token file others can read.
    """
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
            mode = token_file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise ServeError(f"--token-file {token_file}: {exc}") from exc
        if not token:
            raise ServeError(f"--token-file {token_file} is empty")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            say(f"warning: {token_file} is readable by other users")
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    token = secrets.token_urlsafe(32)
    say(f"write token for this run (POST /scans): {token}")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def serve(settings: ServiceSettings) -> None:
    """Run the service until it is stopped; `ServeError` when it never started.

    The settings go to the worker processes through the environment (the token too: never
    on a command line). uvicorn prints why it could not bind or start the app.
    """
    os.environ.update(settings.to_env())
    try:
        started = _run_uvicorn(settings)
    except SystemExit as exc:  # uvicorn exits non-zero when it cannot bind or start the app
        started = not exc.code
    if not started:
        raise ServeError(
            f"could not serve on {settings.host}:{settings.port} (uvicorn's message above says why)"
        )


def _run_uvicorn(settings: ServiceSettings) -> bool:
    """Run uvicorn until it is stopped; False when it never started.

    What `uvicorn.run` does, except that with several workers the shared listening socket
    is made an IPPROTO_TCP socket: uvicorn 0.54 binds it with protocol 0, asyncio then never
    sets TCP_NODELAY on accepted connections, and Nagle's algorithm with delayed ACKs adds
    about 40 ms to every request after the first on a kept-alive connection
    (Kludex/uvicorn#3149).
    """
    import uvicorn
    from uvicorn.supervisors import Multiprocess

    config = uvicorn.Config(
        "modelward.service.app:app_from_env",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        server_header=False,
        timeout_graceful_shutdown=30,
    )
    if settings.workers == 1:
        server = uvicorn.Server(config)
        server.run()
        return server.started
    Multiprocess(config, sockets=[tcp_listener(config)]).run()
    return True


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """uvicorn's bound socket for its workers, as an IPPROTO_TCP socket (see `_run_uvicorn`)."""
    bound = config.bind_socket()
    if bound.family in (socket.AF_INET, socket.AF_INET6) and bound.proto == 0:
        bound = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    return bound
