"""The results store: every scan keyed by the file's SHA-256 and the rule-set version.

An unchanged file scanned again under the same rules and config reuses its stored
result; every scan event and every signature/lock/gate verdict is kept as history.
SQLite in the user's data folder by default, PostgreSQL by URL (see docs/store.md).
"""

from __future__ import annotations

from modelward.store.records import ModelSummary, StoredScan, Verdict
from modelward.store.ruleset import ruleset_version, sha256_file
from modelward.store.scanning import scan_and_record, store_for_url
from modelward.store.sql import ResultStore, StoreError, is_reusable, open_store
from modelward.store.urls import default_store_url, mask_url

__all__ = [
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
    "scan_and_record",
    "sha256_file",
    "store_for_url",
]
