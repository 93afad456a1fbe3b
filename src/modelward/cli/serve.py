"""`modelward serve`: the scan service (FastAPI on uvicorn) in front of the results store.

Only wiring: the options go to `modelward.service.runner`, which checks them, finds the
token, opens the store once (so the schema is migrated before any worker starts) and runs
uvicorn with `--workers` processes. fastapi and uvicorn are imported when it starts.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._common import EXIT_CLEAN, complain, positive_int
from modelward.service.settings import (
    DEFAULT_HOST,
    DEFAULT_MAX_UPLOAD_MB,
    DEFAULT_PORT,
    TOKEN_ENV,
)

if TYPE_CHECKING:
    import socket

    import uvicorn

#: What `serve`'s messages start with (errors printed by `main` too).
ERROR_PREFIX = "modelward serve"

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
        type=positive_int,
        default=1,
        metavar="N",
        help="server processes (default 1); each scans one file at a time, so N scans at once",
    )
    parser.add_argument(
        "--max-upload-mb",
        type=positive_int,
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
    parser.set_defaults(func=run, error_prefix=ERROR_PREFIX)


def run(args: argparse.Namespace) -> int:
    from modelward.service.runner import serve, service_settings

    settings = service_settings(
        host=args.host,
        port=args.port,
        public=args.public,
        root=args.root,
        store_url=args.store,
        workers=args.workers,
        max_upload_mb=args.max_upload_mb,
        token_file=args.token_file,
        say=_say,
    )
    serve(settings)  # a ServeError goes to main, which prints it after ERROR_PREFIX
    return EXIT_CLEAN


def _say(message: str) -> None:
    complain(message, ERROR_PREFIX)


def _token(token_file: Path | None) -> str:
    """The write token, as `serve` finds it (`service.runner.find_token`)."""
    from modelward.service.runner import find_token

    return find_token(token_file, say=_say)


def tcp_listener(config: uvicorn.Config) -> socket.socket:
    """uvicorn's bound socket for its workers (`service.runner.tcp_listener`)."""
    from modelward.service.runner import tcp_listener as listener

    return listener(config)
