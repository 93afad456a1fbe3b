"""The store's one error type, importable without loading SQLAlchemy (the CLI catches it)."""

from __future__ import annotations

from modelward.errors import ModelwardError


class StoreError(ModelwardError):
    """The store cannot be opened, migrated, read or written; the message is safe to print."""
