"""Alembic environment: migrations run only on a connection that `open_store` passes in."""

from __future__ import annotations

from alembic import context
from sqlalchemy.engine import Connection

from modelward.store.schema import Base

connection = context.config.attributes.get("connection")
if not isinstance(connection, Connection):
    raise RuntimeError("modelward migrations run through modelward.store.open_store only")
context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
