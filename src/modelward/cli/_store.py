"""The `--store URL` / `--no-store` options and their wiring, shared by every command that
reads or writes the results store. SQLAlchemy is imported only when a store is used."""

from __future__ import annotations

import argparse
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._common import complain
from modelward.store.errors import StoreError

if TYPE_CHECKING:
    from modelward.store import ResultStore


def add_store_arguments(parser: argparse.ArgumentParser, what: str) -> None:
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--store",
        metavar="URL",
        help=f"results store to {what} (default: $MODELWARD_STORE or the user's SQLite file;"
        " postgresql://... for PostgreSQL)",
    )
    group.add_argument("--no-store", action="store_true", help="do not use the results store")


def open_cli_store(args: argparse.Namespace) -> ResultStore | None:
    """The store `--store`/`--no-store` ask for; raises `StoreError` when it cannot open.

    Only a store the user named (`--store`, `$MODELWARD_STORE`) is an error when it cannot
    be opened; the implicit default (a read-only home, say) is a warning and the command
    runs without it, as with `--no-store`.
    """
    if args.no_store:
        return None
    from modelward.store import open_store
    from modelward.store.urls import STORE_ENV

    try:
        return open_store(args.store)
    except StoreError as exc:
        if args.store is not None or os.environ.get(STORE_ENV):
            raise
        complain(f"warning: {exc}; going on without the results store")
        return None


def record_verdicts(store: ResultStore | None, model: Path, kind: str, **verdict: Any) -> bool:
    """Record a model check per file; False (after saying why) when the store failed.

    A model whose files cannot be listed again (it changed, a link is refused) is a
    warning, not a failure: the check itself already reported what it found.
    """
    if store is None:
        return True
    from modelward.integrity.errors import IntegrityError
    from modelward.store.verdicts import record_model_verdicts

    try:
        record_model_verdicts(store, model, kind, **verdict)
    except StoreError as exc:
        complain(str(exc))
        return False
    except (IntegrityError, OSError) as exc:
        complain(f"{kind} verdict not recorded: {exc}")
    return True
