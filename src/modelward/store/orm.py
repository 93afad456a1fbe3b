"""The SQLAlchemy side of the store: engines, migrations and the history queries.

Imported only when needed: to reach a database that is not a plain SQLite file
(PostgreSQL), to create or upgrade a schema (Alembic), and for the history and the
web index (`ResultStore.scans_for_digest`, `models`, ...). A scan of a store already
at the newest revision never imports it (`dbapi.py` is that path).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, func, select, text
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from modelward.findings import ScanResult, Severity
from modelward.store.dbapi import HEAD_REVISION, SQLITE_BUSY_SECONDS, configure_sqlite
from modelward.store.errors import StoreError
from modelward.store.records import CheckVerdict, ModelSummary, StoredScan
from modelward.store.schema import ResultRow, ScanRow, VerdictRow

#: Seconds to wait for a PostgreSQL server to answer a connection.
CONNECT_TIMEOUT_SECONDS = 10
#: Key of the PostgreSQL advisory lock held while migrating, so two processes never race.
_MIGRATION_LOCK = 0x6D77_5354


def store_engine(url: str, creator: Callable[[], Any] | None = None) -> Engine:
    """The engine for a store URL; `creator` makes the DB-API connections of a SQLite file."""
    from sqlalchemy.engine import make_url

    parsed = make_url(url)
    backend = parsed.get_backend_name()
    if backend == "sqlite":
        return _sqlite_engine(url, creator)
    if backend == "postgresql":
        return create_engine(
            url, pool_pre_ping=True, connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS}
        )
    return create_engine(url, pool_pre_ping=True)


def password(url: str) -> str | None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        return make_url(url).password
    except ArgumentError:
        return None


def _sqlite_engine(url: str, creator: Callable[[], Any] | None) -> Engine:
    if creator is not None:
        # The very connections of the hot path (`dbapi.connect_sqlite`), already configured.
        engine = create_engine(url, creator=creator)
    else:
        engine = create_engine(
            url, connect_args={"timeout": SQLITE_BUSY_SECONDS, "check_same_thread": False}
        )

        @event.listens_for(engine, "connect")
        def _configure(dbapi_connection: Any, _record: Any) -> None:
            configure_sqlite(dbapi_connection)

    @event.listens_for(engine, "begin")
    def _begin(conn: Connection) -> None:
        # A writer takes the lock up front: upgrading a read lock later can fail at once.
        write = conn.get_execution_options().get("modelward_write", False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")

    return engine


def migrate(engine: Engine, current: str | None) -> None:
    """Bring the schema from revision `current` (None: no schema) to the newest, by Alembic."""
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


class History:
    """The store's read side beyond the scan path: scan events, verdicts, the index."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def scans(self, column: str, value: str) -> list[StoredScan]:
        """Scan events whose `column` (id, sha256, path) is `value`, newest first."""
        query = (
            select(ScanRow, ResultRow.result)
            .outerjoin(ResultRow, ScanRow.result_id == ResultRow.id)
            .where(getattr(ScanRow, column) == value)
            .order_by(ScanRow.scanned_at.desc(), ScanRow.seq.desc())
        )
        with Session(self.engine) as session:
            rows = session.execute(query).all()
        return [_stored_scan(scan, shared) for scan, shared in rows]

    def verdicts(self, column: str, value: str) -> list[CheckVerdict]:
        """Verdicts whose `column` (sha256, path) is `value`, newest first."""
        query = (
            select(VerdictRow)
            .where(getattr(VerdictRow, column) == value)
            .order_by(VerdictRow.recorded_at.desc(), VerdictRow.seq.desc())
        )
        with Session(self.engine) as session:
            return [_verdict(v) for v in session.scalars(query)]

    def models(self, limit: int) -> list[ModelSummary]:
        """The most recently scanned files (by digest), newest first, with latest verdicts."""
        latest = func.max(ScanRow.scanned_at).label("latest")
        groups = (
            select(ScanRow.sha256, func.count().label("n"), latest)
            .where(ScanRow.sha256 != "")
            .group_by(ScanRow.sha256)
            .order_by(latest.desc())
            .limit(limit)
        )
        with Session(self.engine) as session:
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
        by_kind: dict[tuple[str, str], CheckVerdict] = {
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


def _verdict(row: VerdictRow) -> CheckVerdict:
    return CheckVerdict(row.sha256, row.path, row.kind, row.passed, row.detail, row.recorded_at)


def _severity(value: int | None) -> Severity | None:
    return None if value is None else Severity(value)
