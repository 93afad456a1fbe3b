"""The first schema: results (the cache), scans (every event) and verdicts.

Revision ID: 0001
Revises:
Create Date: 2026-11-23
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("ruleset", sa.String(64), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("max_severity", sa.Integer, nullable=True),
        sa.Column("result", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("sha256", "ruleset", "config_digest", name="uq_results_key"),
    )
    op.create_table(
        "scans",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("id", sa.String(32), nullable=False, unique=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("ruleset", sa.String(64), nullable=False),
        sa.Column("config_digest", sa.String(64), nullable=False),
        sa.Column("source", sa.String(16), nullable=False),
        sa.Column("cached", sa.Boolean, nullable=False),
        sa.Column("scanned_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("format", sa.String(64), nullable=False),
        sa.Column("max_severity", sa.Integer, nullable=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("results.id"), nullable=True),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("diff", sa.JSON, nullable=True),
    )
    op.create_index("ix_scans_sha256", "scans", ["sha256"])
    op.create_index("ix_scans_path", "scans", ["path"])
    op.create_index("ix_scans_scanned_at", "scans", ["scanned_at"])
    op.create_table(
        "verdicts",
        sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("sha256", sa.String(64), nullable=False),
        sa.Column("path", sa.Text, nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("passed", sa.Boolean, nullable=False),
        sa.Column("detail", sa.Text, nullable=False),
        sa.Column("recorded_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_index("ix_verdicts_sha256", "verdicts", ["sha256"])
    op.create_index("ix_verdicts_path", "verdicts", ["path"])


def downgrade() -> None:
    op.drop_table("verdicts")
    op.drop_table("scans")
    op.drop_table("results")
