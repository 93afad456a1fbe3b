"""`modelward serve`: the scan service (FastAPI on uvicorn) in front of the results store.

Only wiring: check the options, find the token, open the store once (so the schema is
migrated before any worker starts), put the settings into the environment and let
uvicorn start `--workers` processes that each build the app from it. fastapi and
uvicorn are imported inside `run`.
"""

from __future__ import annotations

import argparse
import ipaddress
import os
import secrets
import socket
import stat
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.service.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    TOKEN_ENV,
    ServiceSettings,
)

if TYPE_CHECKING:
    import uvicorn

DESCRIPTION = """\
Serve scans over HTTP: POST a model file (or name one under --root) and get its
findings as JSON; every result goes to the results store, so the same bytes are
scanned once per rule-set version. Nothing uploaded is loaded or executed.
"""

EPILOG = f"""\
endpoints (JSON; the OpenAPI 3 document is at /openapi.json):
  POST /scans             bearer token; body application/octet-stream (?filename=NAME,
                          optional ?reference=REL under --root) or application/json
                          {{"path": "REL", "reference": "REL"}} for files under --root.
                          Answers 201 with the result, and its diff when a reference
                          was given. 401 bad token, 413 too large, 403 outside --root.
  GET  /scans/ID          one scan event          GET /models         scanned models
  GET  /models/SHA256     a file's scans and signature/lock/gate verdicts
  GET  /healthz           200 when the store answers, 503 otherwise
  GET  /                  web report: models, findings, diffs, an upload form

the token (needed for POST only):
  --token-file FILE, else ${TOKEN_ENV}, else a random token printed once to stderr.
  It is passed to the worker processes in the environment, never on a command line.

reads are public: anyone who can reach the port sees every stored result (file
names, findings). So the default bind is loopback ({DEFAULT_HOST}); any other
address needs --public, meaning you put an authenticating reverse proxy (TLS,
access control) in front or accept that exposure. The service speaks plain HTTP.

the store: --store URL, else $MODELWARD_STORE, else SQLite in the user's data
folder (the same default as `modelward scan`). postgresql://... for PostgreSQL;
give a URL with a password in $MODELWARD_STORE rather than --store (argv is public).

uploads are streamed to a private folder under $TMPDIR (modelward-serve-UID),
one sub-folder per process; folders of killed servers are removed at the next start.

exit codes:
  0  stopped (Ctrl-C / SIGTERM)
  2  cannot start: bad option, --root not a folder, unreadable token file, store
     that cannot be opened, unusable upload folder, non-loopback --host without
     --public, address already in use
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve",
        help="HTTP service: upload or name model files, get stored scan results and a web report",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--host",
        default=DEFAULT_HOST,
        help=f"address to bind (default {DEFAULT_HOST}; a non-loopback one needs --public)",
    )
    parser.add_argument(
        "--public",
        action="store_true",
        help="allow a non-loopback --host although reads need no token",
    )
    parser.add_argument(
        "--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT})"
    )
    parser.add_argument(
        "--root",
        type=Path,
        metavar="DIR",
        help="folder whose files clients may name in POST /scans (path, reference); nothing"
        " outside it is ever opened. Without it only uploads are scanned",
    )
    parser.add_argument(
        "--store",
        metavar="URL",
        help="results store: sqlite:///FILE or postgresql://... (default: $MODELWARD_STORE,"
        " else SQLite in the user's data folder)",
    )
    parser.add_argument(
        "--workers",
        type=_positive,
        default=1,
        metavar="N",
        help="server processes (default 1); each scans one file at a time, so N scans at once",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=_positive,
        default=DEFAULT_MAX_UPLOAD_MB,
        metavar="N",
        help=f"largest upload in MiB (default {DEFAULT_MAX_UPLOAD_MB}); larger ones get 413"
        " and nothing is kept",
    )
    parser.add_argument(
        "--token-file",
        type=Path,
        metavar="FILE",
        help=f"file holding the write token (default: ${TOKEN_ENV}, else a random one)",
    )
    parser.set_defaults(func=run)


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, not {value}")
    return value


def run(args: argparse.Namespace) -> int:
    from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR

    try:
        settings = _settings(args)
    except UsageError as exc:
        print(f"modelward serve: {exc}", file=sys.stderr)
        return EXIT_ERROR
    os.environ.update(settings.to_env())
    try:
        started = _serve(settings)
    except SystemExit as exc:  # uvicorn exits non-zero when it cannot bind or start the app
        started = not exc.code
    if not started:
        print(
            f"modelward serve: could not serve on {settings.host}:{settings.port}"
            " (uvicorn's message above says why)",
            file=sys.stderr,
        )
        return EXIT_ERROR
    return EXIT_CLEAN


def _serve(settings: ServiceSettings) -> bool:
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
    """uvicorn's bound socket for its workers, as an IPPROTO_TCP socket (see `_serve`)."""
    bound = config.bind_socket()
    if bound.family in (socket.AF_INET, socket.AF_INET6) and bound.proto == 0:
        bound = socket.socket(bound.family, bound.type, socket.IPPROTO_TCP, fileno=bound.detach())
    return bound


class UsageError(Exception):
    """An option `serve` cannot start with; the message says which and why."""


def _settings(args: argparse.Namespace) -> ServiceSettings:
    try:  # the `serve` extra; the worker processes import both
        import fastapi  # noqa: F401
        import uvicorn  # noqa: F401
    except ImportError as exc:
        raise UsageError(f"{exc}; install it with: pip install 'modelward[serve]'") from exc
    from modelward.service.uploads import UploadSpool
    from modelward.store import StoreError, default_store_url, mask_url, open_store

    if not _is_loopback(args.host) and not args.public:
        raise UsageError(
            f"--host {args.host} is not a loopback address and reads need no token;"
            " add --public to serve it anyway (see modelward serve --help)"
        )
    if not 0 <= args.port <= 65535:
        raise UsageError(f"--port {args.port}: not a TCP port")
    root = None
    if args.root is not None:
        if not args.root.is_dir():
            raise UsageError(f"--root {args.root}: not a folder")
        root = args.root.resolve()
    store_url = args.store or default_store_url()
    try:
        open_store(store_url).close()  # create or migrate the schema once, before the workers
    except StoreError as exc:
        raise UsageError(f"store {mask_url(store_url)}: {exc}") from exc
    settings = ServiceSettings(
        store_url=store_url,
        token=_token(args.token_file),
        host=args.host,
        port=args.port,
        root=root,
        workers=args.workers,
        max_upload_bytes=args.max_upload_mb * 1024 * 1024,
    )
    try:  # check the spool folder here (not in N workers) and sweep what killed servers left
        UploadSpool(settings.spool_dir).close()
    except (OSError, RuntimeError) as exc:
        raise UsageError(f"upload folder: {exc}") from exc
    return settings


def _token(token_file: Path | None) -> str:
    if token_file is not None:
        try:
            token = token_file.read_text(encoding="utf-8").strip()
            mode = token_file.stat().st_mode
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"--token-file {token_file}: {exc}") from exc
        if not token:
            raise UsageError(f"--token-file {token_file} is empty")
        if mode & (stat.S_IRWXG | stat.S_IRWXO):
            print(
                f"modelward serve: warning: {token_file} is readable by other users",
                file=sys.stderr,
            )
        return token
    token = os.environ.get(TOKEN_ENV, "").strip()
    if token:
        return token
    token = secrets.token_urlsafe(32)
    print(f"modelward serve: write token for this run (POST /scans): {token}", file=sys.stderr)
    return token


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
