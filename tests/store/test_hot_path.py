"""The scan path on plain DB-API: no SQLAlchemy or Alembic import, and the same rows as the ORM.

`record_scan`, `cached_result` and `record_verdicts` write and read with the driver
(`store/dbapi.py`); the history and the web index read with SQLAlchemy (`store/orm.py`).
Each must read what the other wrote, stored the same way down to the column values.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy
from sqlalchemy.orm import Session

from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.store import open_store, ruleset_version
from modelward.store.dbapi import sqlite_file
from modelward.store.schema import ResultRow, ScanRow, VerdictRow
from modelward.store.urls import normalise_url

SHA = "ab" * 32
CONFIG = "c0" * 32


def _result(path: str = "model.pkl") -> ScanResult:
    finding = Finding(
        "MW-PICKLE-GLOBAL",
        Severity.CRITICAL,
        Location(path, ("archive/data.pkl",), 7),
        "imports posix.system — é",
        evidence="posix.system",
    )
    return ScanResult(path, "pickle", [finding], bytes_read=40, size=40, seconds=0.25)


def _raw_rows(url: str, query: str) -> list[tuple[Any, ...]]:
    """Rows as the driver returns them, past SQLAlchemy's type processing."""
    engine = sqlalchemy.create_engine(normalise_url(url))
    try:
        with engine.connect() as conn:
            return [tuple(r) for r in conn.exec_driver_sql(query)]
    finally:
        engine.dispose()


def test_a_store_at_head_imports_neither_sqlalchemy_nor_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()  # created and migrated here, in this process
    code = textwrap.dedent(
        f"""
        import sys
        from modelward.findings import ScanResult
        from modelward.store import open_store

        with open_store({url!r}) as store:
            assert store.cached_result({SHA!r}, "c") is None
            store.record_scan({SHA!r}, ScanResult("m.pkl", format="pickle"), config_digest="c")
            assert store.cached_result({SHA!r}, "c") is not None
            store.record_verdict({SHA!r}, "/m.pkl", "lock", True)
            store.ping()
        loaded = sorted(
            m for m in sys.modules if m.split(".")[0] in ("sqlalchemy", "alembic")
        )
        print(loaded)
        """
    )
    env = {**os.environ, "MODELWARD_STORE": url}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_a_new_store_still_migrates_through_alembic(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'new.db'}"
    code = f"""
import sys
from modelward.store import open_store
open_store({url!r}).close()
print("alembic" in sys.modules)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "True"


def test_hot_path_rows_read_back_through_the_orm_history(store_url: str) -> None:
    diff = {"verdict": "changed", "report": {"added": ["posix.system"]}, "é": 1}
    with open_store(store_url) as store:
        fresh = store.record_scan(SHA, _result(), config_digest=CONFIG, source="service")
        again = store.record_scan(
            SHA, _result("copy.pkl"), config_digest=CONFIG, cached=True, diff=diff
        )
        odd = ScanResult("bad.pkl", format="aborted", errors=["time limit"])
        unreusable = store.record_scan("cd" * 32, odd, config_digest=CONFIG)
        verdicts = store.record_verdicts(
            [(SHA, "/m/model.pkl", "signature", False, "bad key"), (SHA, "/m/a", "lock", True, "")]
        )

        read = store.scans_for_digest(SHA)
        assert read == [again, fresh]  # every field: times (UTC, microseconds), JSON, booleans
        assert store.get_scan(unreusable.id) == unreusable
        assert store.scans_for_path("bad.pkl") == [unreusable]
        assert sorted(store.verdicts_for_digest(SHA), key=lambda v: v.kind) == sorted(
            verdicts, key=lambda v: v.kind
        )
        assert all(v.recorded_at.tzinfo is not None for v in store.verdicts_for_digest(SHA))
        summary = {m.sha256: m for m in store.models()}[SHA]
        assert (summary.sha256, summary.path, summary.scans) == (SHA, "copy.pkl", 2)
        assert summary.last_scanned == again.scanned_at
        assert summary.signature == verdicts[0] and summary.lock == verdicts[1]
        assert store.cached_result(SHA, CONFIG) == _result()


def test_orm_rows_read_back_through_the_hot_path(store_url: str) -> None:
    """What SQLAlchemy writes, the scan path finds; and both write the same column values."""
    when = datetime(2026, 1, 2, 3, 4, 5, 600_000, tzinfo=UTC)
    doc = _result().to_dict()
    with open_store(store_url) as store:
        engine = sqlalchemy.create_engine(store.url)
    try:
        with Session(engine) as session, session.begin():
            shared = ResultRow(
                sha256=SHA,
                ruleset=ruleset_version(),
                config_digest=CONFIG,
                format="pickle",
                max_severity=int(Severity.CRITICAL),
                result=doc,
                created_at=when,
            )
            session.add(shared)
            session.flush()
            for scan_id, diff in (("1" * 32, None), ("2" * 32, {"verdict": "same"})):
                session.add(
                    ScanRow(
                        id=scan_id,
                        sha256=SHA,
                        path="model.pkl",
                        ruleset=ruleset_version(),
                        config_digest=CONFIG,
                        source="cli",
                        cached=diff is not None,
                        scanned_at=when,
                        format="pickle",
                        max_severity=int(Severity.CRITICAL),
                        result_id=shared.id,
                        result=None,
                        diff=diff,
                    )
                )
            session.add(
                VerdictRow(
                    sha256=SHA, path="/m", kind="gate", passed=True, detail="", recorded_at=when
                )
            )
    finally:
        engine.dispose()

    with open_store(store_url) as store:
        assert store.cached_result(SHA, CONFIG) == _result()
        # The same events again through the scan path, at the same moment.
        from modelward.store import sql

        class Frozen(datetime):
            @classmethod
            def now(cls, tz: Any = None) -> Frozen:
                return cls.fromtimestamp(when.timestamp(), tz)

        mp = pytest.MonkeyPatch()
        mp.setattr(sql, "datetime", Frozen)
        try:
            store.record_scan("ef" * 32, _result(), config_digest=CONFIG)
            store.record_scan(
                "ef" * 32, _result(), config_digest=CONFIG, cached=True, diff={"verdict": "same"}
            )
            store.record_verdict("ef" * 32, "/m", "gate", True)
        finally:
            mp.undo()

    def columns(rows: list[tuple[Any, ...]], skip: set[int]) -> list[tuple[Any, ...]]:
        return [
            tuple(
                "<digest>" if v in (SHA, "ef" * 32) else v for i, v in enumerate(r) if i not in skip
            )
            for r in rows
        ]

    results = columns(_raw_rows(store_url, "SELECT * FROM results ORDER BY id"), {0})
    assert results[0] == results[1]
    # scans: seq, id, result_id differ; everything else is stored alike.
    scans = columns(_raw_rows(store_url, "SELECT * FROM scans ORDER BY seq"), {0, 1, 11})
    assert scans[0] == scans[2] and scans[1] == scans[3]
    verdicts = columns(_raw_rows(store_url, "SELECT * FROM verdicts ORDER BY seq"), {0})
    assert verdicts[0] == verdicts[1]
    # JSON as the same text (PostgreSQL's `json` keeps it verbatim), None as JSON null.
    as_text = "SELECT CAST(result AS TEXT), CAST(diff AS TEXT) FROM scans ORDER BY seq"
    texts = _raw_rows(store_url, as_text)
    assert texts[0] == texts[2] == ("null", "null")
    assert texts[1] == texts[3] == ("null", json.dumps({"verdict": "same"}))
    as_text = "SELECT CAST(result AS TEXT) FROM results ORDER BY id"
    assert _raw_rows(store_url, as_text) == [(json.dumps(doc),)] * 2
    if sqlite_file(normalise_url(store_url)) is not None:
        # SQLAlchemy's SQLite forms: DATETIME text in UTC without a zone, 0/1 booleans.
        assert scans[0][5:7] == (0, "2026-01-02 03:04:05.600000")


def test_sqlite_urls_opened_without_sqlalchemy() -> None:
    assert sqlite_file("sqlite:////tmp/a%20b.db") == Path("/tmp/a b.db")
    assert sqlite_file("sqlite:///rel.db") == Path("rel.db")
    assert sqlite_file("sqlite+pysqlite:////x/y.db") == Path("/x/y.db")
    # In memory, URI files and query options go through SQLAlchemy's own parsing.
    for url in ("sqlite://", "sqlite:///:memory:", "sqlite:///file:x?uri=true", "sqlite:///x?a=b"):
        assert sqlite_file(url) is None
    assert sqlite_file("postgresql+psycopg://u@h/db") is None


def test_an_in_memory_store_works_through_sqlalchemy() -> None:
    with open_store("sqlite://") as store:
        event = store.record_scan(SHA, _result(), config_digest=CONFIG)
        assert store.cached_result(SHA, CONFIG) == _result()
        assert store.scans_for_digest(SHA) == [event]


def test_threads_share_one_store(tmp_path: Path) -> None:
    """The service scans in a thread pool over one open store."""
    from concurrent.futures import ThreadPoolExecutor

    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:

        def work(i: int) -> None:
            digest = f"{i % 4:064x}"
            store.record_scan(digest, _result(f"m{i}.pkl"), config_digest=CONFIG)
            assert store.cached_result(digest, CONFIG) is not None

        with ThreadPoolExecutor(8) as pool:
            list(pool.map(work, range(64)))
        assert sum(m.scans for m in store.models()) == 64
