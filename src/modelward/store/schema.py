"""The store's tables as SQLAlchemy ORM classes; `migrations/` creates and evolves them.

The scan path writes the same rows without these classes (`dbapi.py`), storing each value
as the column types below would: keep the two in step.

`results` holds one reusable result per (bytes, rule set, config): the cache. `scans`
holds every scan event; it points at its `results` row, or carries its own result when
that result may not be reused (errors, time limits, a scan that read other files).
`verdicts` holds signature, lock and gate checks by digest.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# The newest migration lives with the hot path (imported without SQLAlchemy); kept here too.
from modelward.store.dbapi import HEAD_REVISION

__all__ = ["HEAD_REVISION", "Base", "ResultRow", "ScanRow", "UTCDateTime", "VerdictRow"]


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp stored in UTC and always read back tz-aware (SQLite keeps no zone)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {datetime: UTCDateTime, dict[str, Any]: JSON}


class ResultRow(Base):
    """A reusable scan result: same bytes, same rules, same config give the same findings."""

    __tablename__ = "results"
    __table_args__ = (
        UniqueConstraint("sha256", "ruleset", "config_digest", name="uq_results_key"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    ruleset: Mapped[str] = mapped_column(String(64))
    config_digest: Mapped[str] = mapped_column(String(64))
    format: Mapped[str] = mapped_column(String(64))
    max_severity: Mapped[int | None] = mapped_column(Integer)
    result: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]


class ScanRow(Base):
    """One scan event."""

    __tablename__ = "scans"
    __table_args__ = (
        Index("ix_scans_sha256", "sha256"),
        Index("ix_scans_path", "path"),
        Index("ix_scans_scanned_at", "scanned_at"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    id: Mapped[str] = mapped_column(String(32), unique=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    ruleset: Mapped[str] = mapped_column(String(64))
    config_digest: Mapped[str] = mapped_column(String(64))
    source: Mapped[str] = mapped_column(String(16))
    cached: Mapped[bool] = mapped_column(Boolean)
    scanned_at: Mapped[datetime]
    format: Mapped[str] = mapped_column(String(64))
    max_severity: Mapped[int | None] = mapped_column(Integer)
    result_id: Mapped[int | None] = mapped_column(ForeignKey("results.id"))
    #: The result itself when it is not reusable (then `result_id` is null).
    result: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    diff: Mapped[dict[str, Any] | None] = mapped_column(JSON)


class VerdictRow(Base):
    """One signature, lock or gate check of a file."""

    __tablename__ = "verdicts"
    __table_args__ = (
        Index("ix_verdicts_sha256", "sha256"),
        Index("ix_verdicts_path", "path"),
    )

    seq: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    sha256: Mapped[str] = mapped_column(String(64))
    path: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    passed: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[str] = mapped_column(Text)
    recorded_at: Mapped[datetime]
