"""The results store: every scan keyed by the file's SHA-256 and the rule-set version.

An unchanged file scanned again under the same rules and config reuses its stored
result; every scan event and every signature/lock/gate verdict is kept as history.
SQLite in the user's data folder by default, PostgreSQL by URL (see docs/store.md).

Names are imported on first use, so `modelward.store.errors` and `.urls` stay cheap for
the CLI; SQLAlchemy loads only when a store is opened.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelward._lazy import lazy_exports
from modelward.store.errors import StoreError
from modelward.store.urls import default_store_url, mask_url

_LAZY = {
    "ModelSummary": "modelward.store.records",
    "StoredScan": "modelward.store.records",
    "CheckVerdict": "modelward.store.records",
    "Verdict": "modelward.store.records",
    "ruleset_version": "modelward.store.ruleset",
    "sha256_file": "modelward.store.ruleset",
    "ResultStore": "modelward.store.sql",
    "is_reusable": "modelward.store.sql",
    "open_store": "modelward.store.sql",
}

if TYPE_CHECKING:
    from modelward.store.records import CheckVerdict, ModelSummary, StoredScan, Verdict
    from modelward.store.ruleset import ruleset_version, sha256_file
    from modelward.store.sql import ResultStore, is_reusable, open_store


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _LAZY)


__all__ = [
    "CheckVerdict",
    "ModelSummary",
    "ResultStore",
    "StoreError",
    "StoredScan",
    "Verdict",
    "default_store_url",
    "is_reusable",
    "mask_url",
    "open_store",
    "ruleset_version",
    "sha256_file",
]
