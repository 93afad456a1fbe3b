"""The store's hot path on plain DB-API: open, look up a result, record a scan or verdicts.

A scan runs three kinds of statement: read the schema revision, find a stored result,
insert a result and a scan event. Those run here on a DB-API connection, one set of SQL
statements for every database (written `:name`, rewritten to `%(name)s` for drivers that
want that), so a store already at the newest revision costs neither SQLAlchemy nor Alembic
on the scan path:

- a plain SQLite file (`sqlite:///PATH`) is opened with the standard `sqlite3` module,
  the connection configured by `configure_sqlite` (WAL, busy timeout, our own
  transactions: `BEGIN IMMEDIATE` for writers);
- any other URL (PostgreSQL, a SQLite URL with query options or in memory) gets its
  connections from the SQLAlchemy engine; servers do not mind its import.

Values are written exactly as the SQLAlchemy columns of `schema.py` write them, so the
history queries (still SQLAlchemy, `orm.py`) read rows written here and the other way
round: JSON as `json.dumps` text (Python None as JSON `null`), booleans as the driver
adapts them (SQLite 0/1), times in UTC, on SQLite as SQLAlchemy's DATETIME text
(`YYYY-MM-DD HH:MM:SS.ffffff`, no zone).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import unquote

#: The newest migration; a store that says this is opened without Alembic.
HEAD_REVISION = "0001"
#: Seconds a SQLite writer waits for another process's write before giving up.
SQLITE_BUSY_SECONDS = 30.0

SELECT_REVISION = "SELECT version_num FROM alembic_version"
FIND_RESULT = (
    "SELECT id, result FROM results"
    " WHERE sha256 = :sha256 AND ruleset = :ruleset AND config_digest = :config_digest"
)
# Another process may insert the same key meanwhile: then theirs stands.
INSERT_RESULT = (
    "INSERT INTO results"
    " (sha256, ruleset, config_digest, format, max_severity, result, created_at)"
    " VALUES (:sha256, :ruleset, :config_digest, :format, :max_severity, :result, :created_at)"
    " ON CONFLICT (sha256, ruleset, config_digest) DO NOTHING"
)
INSERT_SCAN = (
    "INSERT INTO scans"
    " (id, sha256, path, ruleset, config_digest, source, cached, scanned_at, format,"
    " max_severity, result_id, result, diff)"
    " VALUES (:id, :sha256, :path, :ruleset, :config_digest, :source, :cached, :scanned_at,"
    " :format, :max_severity, :result_id, :result, :diff)"
)
INSERT_VERDICT = (
    "INSERT INTO verdicts (sha256, path, kind, passed, detail, recorded_at)"
    " VALUES (:sha256, :path, :kind, :passed, :detail, :recorded_at)"
)

_NAMED = re.compile(r":(\w+)")
#: The SQLite URLs opened with `sqlite3` directly: a file path and nothing else.
_SQLITE_FILE_URL = re.compile(r"sqlite(?:\+pysqlite)?:///([^?#]+)")


def sqlite_file(url: str) -> Path | None:
    """The file of a plain `sqlite:///PATH` URL (as SQLAlchemy reads it), else None."""
    match = _SQLITE_FILE_URL.fullmatch(url)
    if match is None:
        return None
    database = unquote(match.group(1))
    if database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser()


def create_private_file(path: Path) -> None:
    """Create the store file 0600 (its folder 0700): paths and findings are private."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))


def configure_sqlite(connection: sqlite3.Connection) -> None:
    """WAL, a busy timeout, foreign keys; transactions are ours to begin, not the module's."""
    connection.isolation_level = None
    cursor = connection.cursor()
    cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")
    cursor.execute("PRAGMA journal_mode = WAL")
    cursor.execute("PRAGMA synchronous = NORMAL")
    cursor.execute("PRAGMA foreign_keys = ON")
    cursor.close()


def connect_sqlite(path: Path) -> sqlite3.Connection:
    """A configured connection to the store file (which `create_private_file` made)."""
    connection = sqlite3.connect(path, timeout=SQLITE_BUSY_SECONDS, check_same_thread=False)
    configure_sqlite(connection)
    return connection


def utc(when: datetime) -> datetime:
    return when.astimezone(UTC)


class Database:
    """DB-API connections to one store, and the few statements a scan runs on them.

    `acquire` gives a connection and `release` takes it back: a small pool of `sqlite3`
    connections (one per thread at a time; the service scans in threads), or the
    SQLAlchemy engine's pool. `error` is the driver's base exception class.
    """

    def __init__(
        self,
        dialect: str,
        paramstyle: str,
        error: type[Exception],
        acquire: Callable[[], Any],
        release: Callable[[Any], None],
        close: Callable[[], None],
    ) -> None:
        self.dialect = dialect
        self.error = error
        self._pyformat = paramstyle in ("pyformat", "format")
        self._acquire = acquire
        self._release = release
        self.close = close
        self._sql: dict[str, str] = {}

    @classmethod
    def sqlite(cls, path: Path) -> Database:
        """A store in a SQLite file, on the standard `sqlite3` module."""
        create_private_file(path)
        idle: list[sqlite3.Connection] = []
        lock = threading.Lock()

        def acquire() -> sqlite3.Connection:
            with lock:
                if idle:
                    return idle.pop()
            return connect_sqlite(path)

        def release(connection: sqlite3.Connection) -> None:
            with lock:
                idle.append(connection)

        def close() -> None:
            with lock:
                while idle:
                    idle.pop().close()

        return cls("sqlite", sqlite3.paramstyle, sqlite3.Error, acquire, release, close)

    @classmethod
    def on_engine(cls, engine: Any) -> Database:
        """A store reached through a SQLAlchemy engine (PostgreSQL, unusual SQLite URLs)."""
        dbapi = engine.dialect.loaded_dbapi
        return cls(
            engine.dialect.name,
            dbapi.paramstyle,
            dbapi.Error,
            engine.raw_connection,
            lambda connection: connection.close(),  # back to the engine's pool
            lambda: None,  # the engine's owner disposes of it
        )

    # -- values as the SQLAlchemy columns store them -------------------------------------

    def time(self, when: datetime) -> Any:
        """A `UTCDateTime` column value: UTC; on SQLite SQLAlchemy's DATETIME text."""
        if self.dialect == "sqlite":
            return utc(when).strftime("%Y-%m-%d %H:%M:%S.%f")
        return utc(when)

    @staticmethod
    def to_json(value: Any) -> str:
        """A `JSON` column value: `json.dumps` text, None as JSON `null` (as SQLAlchemy)."""
        return json.dumps(value)

    @staticmethod
    def from_json(value: Any) -> Any:
        """What a driver returns for a `JSON` column: text (SQLite), or already decoded."""
        return json.loads(value) if isinstance(value, str | bytes) else value

    # -- statements ----------------------------------------------------------------------

    @contextmanager
    def transaction(self, *, write: bool = False) -> Iterator[Cursor]:
        """A cursor in one transaction: committed on success, rolled back on any error.

        A SQLite writer takes the lock when the transaction begins (`BEGIN IMMEDIATE`):
        upgrading a read lock later can fail at once. A SQLite read runs without one
        (each of our reads is a single statement).
        """
        connection = self._acquire()
        try:
            if self.dialect == "sqlite" and write:
                connection.execute("BEGIN IMMEDIATE")
            cursor = Cursor(self, connection.cursor())
            try:
                yield cursor
            finally:
                cursor.close()
            connection.commit()
        except BaseException:
            with suppress(Exception):  # a broken connection: the pool re-checks it
                connection.rollback()
            raise
        finally:
            self._release(connection)

    def statement(self, sql: str) -> str:
        """`sql` in the driver's parameter style."""
        if not self._pyformat:
            return sql
        found = self._sql.get(sql)
        if found is None:
            found = self._sql[sql] = _NAMED.sub(r"%(\1)s", sql)
        return found

    def revision(self) -> str | None:
        """The schema revision the store says it is at; None when it has no schema yet."""
        connection = self._acquire()  # cannot connect: that error is the caller's
        try:
            cursor = connection.cursor()
            try:
                cursor.execute(SELECT_REVISION)
                row = cursor.fetchone()
            except self.error:  # no alembic_version table: a new database
                row = None
            finally:
                cursor.close()
            connection.rollback()
        finally:
            self._release(connection)
        return None if row is None else str(row[0])


class Cursor:
    """A driver cursor taking `:name` statements, whatever the driver's style."""

    def __init__(self, database: Database, cursor: Any) -> None:
        self._database = database
        self._cursor = cursor

    def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> Cursor:
        self._cursor.execute(self._database.statement(sql), params or {})
        return self

    def executemany(self, sql: str, params: Sequence[Mapping[str, Any]]) -> Cursor:
        self._cursor.executemany(self._database.statement(sql), params)
        return self

    def fetchone(self) -> Any:
        return self._cursor.fetchone()

    def close(self) -> None:
        self._cursor.close()
