"""`ResultStore`: scan results, scan events and verdicts in SQLite or PostgreSQL.

Every write is one transaction, so a process killed mid-write leaves the whole row or
nothing. SQLite runs in WAL mode with a busy timeout and takes its write lock when a
write transaction begins (`BEGIN IMMEDIATE`), so several processes (uvicorn workers,
`-j` workers, Ray tasks on one host) can write the same file without lock-upgrade
deadlocks. Each process opens its own store; an open store is never shared across a fork.

What a scan does (open, look up, record) and verdicts run on plain DB-API (`dbapi.py`):
a SQLite store already at the newest schema revision imports neither SQLAlchemy nor
Alembic. Creating or upgrading a schema (Alembic), PostgreSQL connections and the
history queries (`orm.py`) import SQLAlchemy on first use.
"""

from __future__ import annotations

import os
import sqlite3
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import partial
from typing import TYPE_CHECKING, Any, TypeVar

from modelward.findings import ScanResult
from modelward.store.dbapi import (
    FIND_RESULT,
    HEAD_REVISION,
    INSERT_RESULT,
    INSERT_SCAN,
    INSERT_VERDICT,
    Cursor,
    Database,
    connect_sqlite,
    sqlite_file,
)
from modelward.store.errors import StoreError
from modelward.store.records import CheckVerdict, ModelSummary, ScanEvent, StoredScan
from modelward.store.ruleset import ruleset_version
from modelward.store.urls import default_store_url, mask_url, normalise_url

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from modelward.store.orm import History

#: Formats whose result says the scan did not finish; such results are never reused.
UNFINISHED_FORMATS = frozenset({"aborted", "unreadable", "broken-symlink"})

_T = TypeVar("_T")


def open_store(url: str | None = None) -> ResultStore:
    """Open (creating or migrating the schema as needed) the store at `url` or the default."""
    return ResultStore(url if url is not None else default_store_url())


def is_reusable(result: ScanResult) -> bool:
    """Whether a result depends only on the file's bytes, so the same bytes may reuse it.

    Results with errors, cut short by a limit, or that read other files (ONNX external
    data, whose neighbours can change) are recorded but never reused.
    """
    return (
        not result.errors
        and result.format not in UNFINISHED_FORMATS
        and not result.data_files
        and not any(f.rule_id.startswith("MW-ONNX-EXTERNAL") for f in result.findings)
    )


def _key(sha256: str, config_digest: str) -> dict[str, str]:
    """The cache key of a result: the bytes, the rules and the config."""
    return {"sha256": sha256, "ruleset": ruleset_version(), "config_digest": config_digest}


def _scan_id() -> str:
    """A random (version 4) UUID as 32 hex digits, as `uuid.uuid4().hex` (without its import)."""
    raw = bytearray(os.urandom(16))
    raw[6] = (raw[6] & 0x0F) | 0x40
    raw[8] = (raw[8] & 0x3F) | 0x80
    return raw.hex()


class ResultStore:
    """Scan results keyed by (SHA-256, rule-set version, config digest), and their history."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        #: How the store is named in messages: as the user wrote it, password masked.
        self.display_url = mask_url(url)
        self._file = sqlite_file(self.url)
        self._sa_engine: Engine | None = None
        self._sa_history: History | None = None
        self._db: Database | None = None
        self._lazy = threading.Lock()
        self._secret = None if self._file is not None else _password(self.url)
        try:
            with self._errors("cannot open"):
                if self._file is not None:
                    self._db = Database.sqlite(self._file)
                else:
                    self._db = Database.on_engine(self._engine())
                current = self._db.revision()
                if current != HEAD_REVISION:
                    from modelward.store.orm import migrate

                    migrate(self._engine(), current)
        except BaseException:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"ResultStore({self.display_url!r})"

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
        if self._sa_engine is not None:
            self._sa_engine.dispose()

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers (for health checks)."""
        with self._errors("cannot reach"), self._database().transaction() as cursor:
            cursor.execute("SELECT 1").fetchone()

    # -- scans -------------------------------------------------------------------------

    def cached_result(self, sha256: str, config_digest: str = "") -> ScanResult | None:
        """The stored result for these bytes under the current rules and config, else None."""
        if not sha256:
            return None
        db = self._database()
        with self._errors("cannot read"), db.transaction() as cursor:
            row = cursor.execute(FIND_RESULT, _key(sha256, config_digest)).fetchone()
        return ScanResult.from_dict(db.from_json(row[1])) if row is not None else None

    def record_scan(
        self,
        sha256: str,
        result: ScanResult,
        *,
        source: str = "cli",
        config_digest: str = "",
        cached: bool = False,
        diff: dict[str, Any] | None = None,
        reusable: bool = True,
    ) -> StoredScan:
        """Record one scan event (and, when it may be reused, its result) in one transaction.

        `reusable=False` keeps a result out of the cache even when it looks clean (the
        caller saw the file change while it was scanned).
        """
        event = ScanEvent(sha256, result, source, config_digest, cached, diff, reusable)
        return self.record_scans([event])[0]

    def record_scans(self, events: Sequence[ScanEvent]) -> list[StoredScan]:
        """Record scan events (and the reusable results among them) in one transaction.

        A run of many files records them in batches: a transaction costs more than a small
        file's lookup. All of them are written, or none. Plain DB-API.
        """
        now = datetime.now(UTC)
        db = self._database()
        stored: list[StoredScan] = []
        with self._errors("cannot write"), db.transaction(write=True) as cursor:
            for event in events:
                stored.append(self._record(cursor, db, event, now))
        return stored

    @staticmethod
    def _record(cursor: Cursor, db: Database, event: ScanEvent, now: datetime) -> StoredScan:
        result = event.result
        top = None if result.max_severity is None else int(result.max_severity)
        key = _key(event.sha256, event.config_digest)
        scan_id = _scan_id()
        result_id = None
        if event.reusable and event.sha256 and is_reusable(result):
            row = cursor.execute(FIND_RESULT, key).fetchone()
            if row is None:
                values = {
                    "format": result.format,
                    "max_severity": top,
                    "result": db.to_json(result.to_dict()),
                    "created_at": db.time(now),
                }
                # Another process may insert the same key meanwhile: then theirs stands.
                cursor.execute(INSERT_RESULT, {**key, **values})
                row = cursor.execute(FIND_RESULT, key).fetchone()
            result_id = row[0]
        cursor.execute(
            INSERT_SCAN,
            {
                **key,
                "id": scan_id,
                "path": result.path,
                "source": event.source,
                "cached": event.cached,
                "scanned_at": db.time(now),
                "format": result.format,
                "max_severity": top,
                "result_id": result_id,
                # A result the event points to is not stored twice (nor serialised).
                "result": db.to_json(None if result_id is not None else result.to_dict()),
                "diff": db.to_json(event.diff),
            },
        )
        return StoredScan(
            id=scan_id,
            sha256=event.sha256,
            path=result.path,
            ruleset=key["ruleset"],
            scanned_at=now,
            cached=event.cached,
            source=event.source,
            result=result,
            diff=event.diff,
        )

    def get_scan(self, scan_id: str) -> StoredScan | None:
        found = self._history(lambda history: history.scans("id", scan_id))
        return found[0] if found else None

    def scans_for_digest(self, sha256: str) -> list[StoredScan]:
        """Every scan event of these bytes, newest first."""
        return self._history(lambda history: history.scans("sha256", sha256))

    def scans_for_path(self, path: str) -> list[StoredScan]:
        """Every scan event recorded under this path, newest first."""
        return self._history(lambda history: history.scans("path", path))

    # -- verdicts ----------------------------------------------------------------------

    def record_verdict(
        self, sha256: str, path: str, kind: str, passed: bool, detail: str = ""
    ) -> CheckVerdict:
        return self.record_verdicts([(sha256, path, kind, passed, detail)])[0]

    def record_verdicts(
        self, verdicts: Sequence[tuple[str, str, str, bool, str]]
    ) -> list[CheckVerdict]:
        """Record several (sha256, path, kind, passed, detail) verdicts in one transaction."""
        now = datetime.now(UTC)
        db = self._database()
        rows = [
            {
                "sha256": sha256,
                "path": path,
                "kind": kind,
                "passed": passed,
                "detail": detail,
                "recorded_at": db.time(now),
            }
            for sha256, path, kind, passed, detail in verdicts
        ]
        if rows:
            with self._errors("cannot write"), db.transaction(write=True) as cursor:
                cursor.executemany(INSERT_VERDICT, rows)
        return [CheckVerdict(*v, recorded_at=now) for v in verdicts]

    def verdicts_for_digest(self, sha256: str) -> list[CheckVerdict]:
        """Every verdict on these bytes, newest first."""
        return self._history(lambda history: history.verdicts("sha256", sha256))

    def verdicts_for_path(self, path: str) -> list[CheckVerdict]:
        """Every verdict recorded under this path, newest first."""
        return self._history(lambda history: history.verdicts("path", path))

    # -- the index ---------------------------------------------------------------------

    def models(self, limit: int = 500) -> list[ModelSummary]:
        """The most recently scanned files (by digest), newest first, with latest verdicts."""
        return self._history(lambda history: history.models(limit))

    # -- SQLAlchemy, on first use ------------------------------------------------------

    def _database(self) -> Database:
        if self._db is None:
            raise StoreError(f"store {self.display_url} is not open")
        return self._db

    def _engine(self) -> Engine:
        """The SQLAlchemy engine (created on first use): migrations, PostgreSQL, history."""
        with self._lazy:
            if self._sa_engine is None:
                from modelward.store.orm import store_engine

                creator = None if self._file is None else partial(connect_sqlite, self._file)
                self._sa_engine = store_engine(self.url, creator)
            return self._sa_engine

    def _history(self, query: Callable[[History], _T]) -> _T:
        """Run a history query (SQLAlchemy ORM, imported on first use)."""
        with self._errors("cannot read"):
            if self._sa_history is None:
                from modelward.store.orm import History

                self._sa_history = History(self._engine())
            return query(self._sa_history)

    # -- errors ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database and driver errors become one `StoreError` naming the store, password masked."""
        try:
            yield
        except Exception as exc:
            if not isinstance(exc, self._failures()):
                raise
            message = f"{doing} store {self.display_url}: {_reason(exc)}"
            if self._secret:
                message = message.replace(self._secret, "***")
            raise StoreError(message) from None

    def _failures(self) -> tuple[type[Exception], ...]:
        """What a database can raise: the driver's errors, and SQLAlchemy's once it is loaded."""
        kinds: list[type[Exception]] = [OSError, ImportError, sqlite3.Error]
        if self._db is not None:
            kinds.append(self._db.error)
        sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
        if sqlalchemy_errors is not None:
            kinds.append(sqlalchemy_errors.SQLAlchemyError)
        return tuple(kinds)


def _password(url: str) -> str | None:
    from modelward.store.orm import password

    return password(url)


def _reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and help links."""
    sqlalchemy_errors = sys.modules.get("sqlalchemy.exc")
    if (
        sqlalchemy_errors is not None
        and isinstance(exc, sqlalchemy_errors.DBAPIError)
        and exc.orig is not None
    ):
        exc = exc.orig
    if isinstance(exc, ImportError):
        return (
            f"missing database driver ({exc.name or exc});"
            " for PostgreSQL install 'modelward[postgres]'"
        )
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__
