"""`ResultStore`: scan results, scan events and verdicts in SQLite or PostgreSQL.

Every write is one transaction, so a process killed mid-write leaves the whole row or
nothing. SQLite runs in WAL mode with a busy timeout and takes its write lock when a
write transaction begins (`BEGIN IMMEDIATE`), so several processes (uvicorn workers,
`-j` workers, Ray tasks on one host) can write the same file without lock-upgrade
deadlocks. Each process opens its own store; an open store is never shared across a fork.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from functools import cached_property
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, bindparam, create_engine, event, func, insert, select, text
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import ArgumentError, DBAPIError, SQLAlchemyError
from sqlalchemy.orm import Session

from modelward.findings import ScanResult, Severity
from modelward.store.errors import StoreError
from modelward.store.records import ModelSummary, StoredScan, Verdict
from modelward.store.ruleset import ruleset_version
from modelward.store.schema import HEAD_REVISION, ResultRow, ScanRow, VerdictRow
from modelward.store.urls import default_store_url, mask_url, normalise_url

#: Seconds a SQLite writer waits for another process's write before giving up.
SQLITE_BUSY_SECONDS = 30.0
#: Seconds to wait for a PostgreSQL server to answer a connection.
CONNECT_TIMEOUT_SECONDS = 10
#: Formats whose result says the scan did not finish; such results are never reused.
UNFINISHED_FORMATS = frozenset({"aborted", "unreadable", "broken-symlink"})
#: Key of the PostgreSQL advisory lock held while migrating, so two processes never race.
_MIGRATION_LOCK = 0x6D77_5354


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


_FIND_RESULT = select(ResultRow.id, ResultRow.result).where(
    ResultRow.sha256 == bindparam("sha256"),
    ResultRow.ruleset == bindparam("ruleset"),
    ResultRow.config_digest == bindparam("config_digest"),
)
_INSERT_SCAN = insert(ScanRow)


def _key(sha256: str, config_digest: str) -> dict[str, str]:
    """The cache key of a result: the bytes, the rules and the config."""
    return {"sha256": sha256, "ruleset": ruleset_version(), "config_digest": config_digest}


class ResultStore:
    """Scan results keyed by (SHA-256, rule-set version, config digest), and their history."""

    def __init__(self, url: str) -> None:
        self.url = normalise_url(url)
        #: How the store is named in messages: as the user wrote it, password masked.
        self.display_url = mask_url(url)
        self._secret = _password(self.url)
        with self._errors("cannot open"):
            self._engine = _create_engine(self.url)
            self._writer = self._engine.execution_options(modelward_write=True)
            _migrate(self._engine)

    def __repr__(self) -> str:
        return f"ResultStore({self.display_url!r})"

    def __enter__(self) -> ResultStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self._engine.dispose()

    def ping(self) -> None:
        """Raise `StoreError` unless the database answers (for health checks)."""
        with self._errors("cannot reach"), self._engine.connect() as conn:
            conn.execute(text("SELECT 1"))

    # -- scans -------------------------------------------------------------------------

    def cached_result(self, sha256: str, config_digest: str = "") -> ScanResult | None:
        """The stored result for these bytes under the current rules and config, else None."""
        if not sha256:
            return None
        with self._errors("cannot read"), self._engine.connect() as conn:
            row = conn.execute(_FIND_RESULT, _key(sha256, config_digest)).first()
        return ScanResult.from_dict(row.result) if row is not None else None

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
        caller saw the file change while it was scanned). Statements are built once
        (module level) and run on a plain connection: this runs once per scanned file.
        """
        now = datetime.now(UTC)
        doc = result.to_dict()
        top = None if result.max_severity is None else int(result.max_severity)
        key = _key(sha256, config_digest)
        scan_id = uuid.uuid4().hex
        with self._errors("cannot write"), self._writer.begin() as conn:
            result_id = None
            if reusable and sha256 and is_reusable(result):
                result_id = conn.execute(_FIND_RESULT, key).scalar()
                if result_id is None:
                    values = {"format": result.format, "max_severity": top, "result": doc}
                    # Another process may insert the same key meanwhile: then theirs stands.
                    conn.execute(self._insert_result, {**key, **values, "created_at": now})
                    result_id = conn.execute(_FIND_RESULT, key).scalar()
            conn.execute(
                _INSERT_SCAN,
                {
                    **key,
                    "id": scan_id,
                    "path": result.path,
                    "source": source,
                    "cached": cached,
                    "scanned_at": now,
                    "format": result.format,
                    "max_severity": top,
                    "result_id": result_id,
                    "result": None if result_id is not None else doc,
                    "diff": diff,
                },
            )
        return StoredScan(
            id=scan_id,
            sha256=sha256,
            path=result.path,
            ruleset=key["ruleset"],
            scanned_at=now,
            cached=cached,
            source=source,
            result=result,
            diff=diff,
        )

    @cached_property
    def _insert_result(self) -> Any:
        """The dialect's own INSERT ... ON CONFLICT DO NOTHING into `results`."""
        # Imported here: PostgreSQL's dialect module is costly and SQLite never needs it.
        key = ["sha256", "ruleset", "config_digest"]
        if self._engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as postgresql_insert

            return postgresql_insert(ResultRow).on_conflict_do_nothing(index_elements=key)
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(ResultRow).on_conflict_do_nothing(index_elements=key)

    def get_scan(self, scan_id: str) -> StoredScan | None:
        found = self._scans(ScanRow.id == scan_id)
        return found[0] if found else None

    def scans_for_digest(self, sha256: str) -> list[StoredScan]:
        """Every scan event of these bytes, newest first."""
        return self._scans(ScanRow.sha256 == sha256)

    def scans_for_path(self, path: str) -> list[StoredScan]:
        """Every scan event recorded under this path, newest first."""
        return self._scans(ScanRow.path == path)

    def _scans(self, where: Any) -> list[StoredScan]:
        query = (
            select(ScanRow, ResultRow.result)
            .outerjoin(ResultRow, ScanRow.result_id == ResultRow.id)
            .where(where)
            .order_by(ScanRow.scanned_at.desc(), ScanRow.seq.desc())
        )
        with self._errors("cannot read"), Session(self._engine) as session:
            rows = session.execute(query).all()
        return [_stored_scan(scan, shared) for scan, shared in rows]

    # -- verdicts ----------------------------------------------------------------------

    def record_verdict(
        self, sha256: str, path: str, kind: str, passed: bool, detail: str = ""
    ) -> Verdict:
        return self.record_verdicts([(sha256, path, kind, passed, detail)])[0]

    def record_verdicts(self, verdicts: Sequence[tuple[str, str, str, bool, str]]) -> list[Verdict]:
        """Record several (sha256, path, kind, passed, detail) verdicts in one transaction."""
        now = datetime.now(UTC)
        with self._errors("cannot write"), Session(self._writer) as session, session.begin():
            session.add_all(
                VerdictRow(
                    sha256=sha256,
                    path=path,
                    kind=kind,
                    passed=passed,
                    detail=detail,
                    recorded_at=now,
                )
                for sha256, path, kind, passed, detail in verdicts
            )
        return [Verdict(*v, recorded_at=now) for v in verdicts]

    def verdicts_for_digest(self, sha256: str) -> list[Verdict]:
        """Every verdict on these bytes, newest first."""
        return self._verdicts(VerdictRow.sha256 == sha256)

    def verdicts_for_path(self, path: str) -> list[Verdict]:
        """Every verdict recorded under this path, newest first."""
        return self._verdicts(VerdictRow.path == path)

    def _verdicts(self, where: Any) -> list[Verdict]:
        query = (
            select(VerdictRow)
            .where(where)
            .order_by(VerdictRow.recorded_at.desc(), VerdictRow.seq.desc())
        )
        with self._errors("cannot read"), Session(self._engine) as session:
            return [_verdict(v) for v in session.scalars(query)]

    # -- the index ---------------------------------------------------------------------

    def models(self, limit: int = 500) -> list[ModelSummary]:
        """The most recently scanned files (by digest), newest first, with latest verdicts."""
        latest = func.max(ScanRow.scanned_at).label("latest")
        groups = (
            select(ScanRow.sha256, func.count().label("n"), latest)
            .where(ScanRow.sha256 != "")
            .group_by(ScanRow.sha256)
            .order_by(latest.desc())
            .limit(limit)
        )
        with self._errors("cannot read"), Session(self._engine) as session:
            counted = session.execute(groups).all()
            digests = [row.sha256 for row in counted]
            newest = _newest_per_digest(
                session, ScanRow, digests, ScanRow.scanned_at, ScanRow.seq, ScanRow.sha256
            )
            verdicts = _newest_per_digest(
                session,
                VerdictRow,
                digests,
                VerdictRow.recorded_at,
                VerdictRow.seq,
                VerdictRow.sha256,
                VerdictRow.kind,
            )
        by_kind: dict[tuple[str, str], Verdict] = {
            (v.sha256, v.kind): _verdict(v) for v in verdicts
        }
        scans = {s.sha256: s for s in newest}
        return [
            ModelSummary(
                sha256=row.sha256,
                path=scans[row.sha256].path,
                format=scans[row.sha256].format,
                max_severity=_severity(scans[row.sha256].max_severity),
                last_scanned=scans[row.sha256].scanned_at,
                scans=row.n,
                signature=by_kind.get((row.sha256, "signature")),
                lock=by_kind.get((row.sha256, "lock")),
            )
            for row in counted
        ]

    # -- errors ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, doing: str) -> Iterator[None]:
        """Database and driver errors become one `StoreError` naming the store, password masked."""
        try:
            yield
        except (SQLAlchemyError, OSError, ImportError) as exc:
            message = f"{doing} store {self.display_url}: {_reason(exc)}"
            if self._secret:
                message = message.replace(self._secret, "***")
            raise StoreError(message) from None


def _newest_per_digest(session: Session, entity: Any, digests: list[str], *order: Any) -> list[Any]:
    """The newest row of `entity` per digest (and per the extra partition columns)."""
    if not digests:
        return []
    when, seq, *partition = order
    rank = (
        func.row_number()
        .over(partition_by=partition, order_by=(when.desc(), seq.desc()))
        .label("rank")
    )
    ranked = select(entity.seq, rank).where(entity.sha256.in_(digests)).subquery()
    return list(
        session.scalars(
            select(entity).join(ranked, entity.seq == ranked.c.seq).where(ranked.c.rank == 1)
        )
    )


def _stored_scan(scan: ScanRow, shared: dict[str, Any] | None) -> StoredScan:
    doc = scan.result if scan.result is not None else shared
    result = ScanResult.from_dict(doc or {"path": scan.path})
    return StoredScan(
        id=scan.id,
        sha256=scan.sha256,
        path=scan.path,
        ruleset=scan.ruleset,
        scanned_at=scan.scanned_at,
        cached=scan.cached,
        source=scan.source,
        result=result.moved_to(scan.path),
        diff=scan.diff,
    )


def _verdict(row: VerdictRow) -> Verdict:
    return Verdict(row.sha256, row.path, row.kind, row.passed, row.detail, row.recorded_at)


def _severity(value: int | None) -> Severity | None:
    return None if value is None else Severity(value)


def _password(url: str) -> str | None:
    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _reason(exc: BaseException) -> str:
    """The driver's own words, without SQLAlchemy's statement dump and help links."""
    if isinstance(exc, DBAPIError) and exc.orig is not None:
        exc = exc.orig
    if isinstance(exc, ImportError):
        return (
            f"missing database driver ({exc.name or exc});"
            " for PostgreSQL install 'modelward[postgres]'"
        )
    text_ = str(exc).strip().splitlines()
    return text_[0] if text_ else type(exc).__name__


def _create_engine(url: str) -> Engine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        return _sqlite_engine(url, parsed.database)
    if parsed.get_backend_name() == "postgresql":
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )
    return create_engine(url, pool_pre_ping=True)


def _sqlite_engine(url: str, database: str | None) -> Engine:
    if database and database != ":memory:" and not database.startswith("file:"):
        path = Path(database).expanduser()
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        # Paths and findings are nobody else's business: 0600 (SQLite's WAL files follow).
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
    engine = create_engine(
        url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        # Transactions are ours to begin (below), not the sqlite3 module's.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute(f"PRAGMA busy_timeout = {int(SQLITE_BUSY_SECONDS * 1000)}")
        cursor.execute("PRAGMA journal_mode = WAL")
        cursor.execute("PRAGMA synchronous = NORMAL")
        cursor.execute("PRAGMA foreign_keys = ON")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the lock up front: upgrading a read lock later can fail at once.
        write = conn.get_execution_options().get("modelward_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def _migrate(engine: Engine) -> None:
    """Bring the schema to the newest revision; a no-op read when it already is there."""
    with engine.connect() as conn:
        try:
            current = conn.execute(text("SELECT version_num FROM alembic_version")).scalar()
        except SQLAlchemyError:
            current = None
        conn.rollback()
    if current == HEAD_REVISION:
        return
    # Imported only here: Alembic costs ~0.3 s to import and is needed once per database.
    from alembic import command
    from alembic.config import Config
    from alembic.util.exc import CommandError

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.connect().execution_options(modelward_write=True) as conn, conn.begin():
        if engine.dialect.name == "postgresql":
            conn.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": _MIGRATION_LOCK})
        config.attributes["connection"] = conn
        try:
            command.upgrade(config, "head")
        except CommandError as exc:  # a revision from a newer modelward, most likely
            raise StoreError(
                f"store schema at revision {current!r}, which this modelward does not know"
                f" (newest: {HEAD_REVISION}); upgrade modelward ({exc})"
            ) from None
