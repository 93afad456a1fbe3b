"""The results store on SQLite and PostgreSQL: round trip, cache rule, migrations, errors."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import sqlalchemy

from fixtures.pickles import call_system_p4
from modelward.config import Limits, ScanConfig
from modelward.findings import Finding, Location, ScanResult, Severity
from modelward.runner import scan_and_record
from modelward.store import StoreError, open_store, ruleset_version, sha256_file
from modelward.store import ruleset as ruleset_module
from modelward.store.schema import HEAD_REVISION
from modelward.store.urls import default_store_url, mask_url, normalise_url


@pytest.fixture
def malicious(tmp_path: Path) -> Path:
    path = tmp_path / "model.pkl"
    path.write_bytes(call_system_p4("id"))
    return path


def test_round_trip_and_cache_hit_on_same_bytes(store_url: str, malicious: Path) -> None:
    with open_store(store_url) as store:
        first = scan_and_record(malicious, ScanConfig(), store)
        copy = malicious.with_name("copy.pkl")
        copy.write_bytes(malicious.read_bytes())
        second = scan_and_record(copy, ScanConfig(), store, source="service")

        assert (first.cached, second.cached) == (False, True)
        assert first.sha256 == second.sha256 == sha256_file(malicious)
        assert first.result.max_severity is Severity.CRITICAL
        # The reused result speaks of the file where it was found this time.
        assert second.result.path == str(copy)
        assert {f.location.path for f in second.result.findings} == {str(copy)}
        assert [f.rule_id for f in second.result.findings] == [
            f.rule_id for f in first.result.findings
        ]

        stored = store.get_scan(first.id)
        assert stored is not None
        assert stored.result.to_dict() == first.result.to_dict()
        assert stored.scanned_at.tzinfo is not None
        assert [s.id for s in store.scans_for_digest(first.sha256)] == [second.id, first.id]
        assert [s.source for s in store.scans_for_path(str(copy))] == ["service"]
        assert store.get_scan("0" * 32) is None


def test_new_ruleset_or_config_rescans(
    store_url: str, malicious: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(store_url) as store:
        scan_and_record(malicious, ScanConfig(), store)
        other = ScanConfig(limits=dataclasses.replace(Limits(), max_pickle_opcodes=10_000))
        assert scan_and_record(malicious, other, store).cached is False
        assert scan_and_record(malicious, other, store).cached is True
        assert scan_and_record(malicious, other, store, rescan=True).cached is False

        monkeypatch.setattr(ruleset_module, "__version__", "99.0")
        ruleset_version.cache_clear()
        try:
            fresh = scan_and_record(malicious, ScanConfig(), store)
        finally:
            ruleset_version.cache_clear()
        assert fresh.cached is False
        assert fresh.ruleset.startswith("99.0+")


def test_errored_and_aborted_results_are_never_reused(store_url: str, tmp_path: Path) -> None:
    with open_store(store_url) as store:
        for name, result in (
            ("a" * 64, ScanResult("x.pkl", format="pickle", errors=["cannot read: EIO"])),
            ("b" * 64, ScanResult("y.pkl", format="aborted")),
        ):
            store.record_scan(name, result, config_digest="c")
            assert store.cached_result(name, "c") is None
            [event] = store.scans_for_digest(name)
            assert event.result.to_dict() == result.to_dict()

        unreadable = tmp_path / "gone.pkl"
        unreadable.symlink_to(tmp_path / "missing")
        event = scan_and_record(unreadable, ScanConfig(), store)
        assert (event.sha256, event.cached, event.result.format) == ("", False, "broken-symlink")
        assert [s.id for s in store.scans_for_path(str(unreadable))] == [event.id]


def test_verdicts_and_model_summaries(store_url: str, malicious: Path) -> None:
    with open_store(store_url) as store:
        scan = scan_and_record(malicious, ScanConfig(), store)
        store.record_verdict(scan.sha256, str(malicious), "signature", False, "bad key")
        store.record_verdict(scan.sha256, str(malicious), "signature", True, "ok")
        store.record_verdict(scan.sha256, str(malicious), "lock", True)
        verdicts = store.verdicts_for_digest(scan.sha256)
        assert [(v.kind, v.passed) for v in verdicts] == [
            ("lock", True),
            ("signature", True),
            ("signature", False),
        ]
        [summary] = store.models()
        assert summary.sha256 == scan.sha256
        assert summary.path == str(malicious)
        assert (summary.format, summary.max_severity, summary.scans) == (
            "pickle",
            Severity.CRITICAL,
            1,
        )
        assert summary.signature is not None and summary.signature.detail == "ok"
        assert summary.lock is not None and summary.lock.passed


def test_migrates_an_empty_database_and_reopens_without_alembic(
    store_url: str, malicious: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with open_store(store_url) as store:
        scan = scan_and_record(malicious, ScanConfig(), store)
        engine = sqlalchemy.create_engine(store.url)
    with engine.connect() as conn:
        version = conn.execute(sqlalchemy.text("SELECT version_num FROM alembic_version"))
        assert version.scalar() == HEAD_REVISION
    engine.dispose()

    import alembic.command

    def no_alembic(*args: object, **kwargs: object) -> None:
        raise AssertionError("alembic ran on a database already at head")

    monkeypatch.setattr(alembic.command, "upgrade", no_alembic)
    with open_store(store_url) as again:
        assert again.get_scan(scan.id) is not None


def test_head_revision_matches_the_migration_scripts() -> None:
    from alembic.script import ScriptDirectory

    import modelward.store.schema as schema

    scripts = ScriptDirectory(str(Path(schema.__file__).parent / "migrations"))
    assert scripts.get_current_head() == HEAD_REVISION


@pytest.mark.parametrize(
    "url",
    [
        "postgresql://user:s3cret@127.0.0.1:1/none",
        "nosuchdb://user:s3cret@host/x",
        "not a url s3cret",
    ],
)
def test_bad_url_is_a_clear_error_without_the_password(url: str) -> None:
    with pytest.raises(StoreError) as info:
        open_store(url)
    assert "s3cret" not in str(info.value) or url == "not a url s3cret"


def test_sqlite_store_file_is_private(tmp_path: Path) -> None:
    open_store(f"sqlite:///{tmp_path / 'new' / 'results.db'}").close()
    assert (tmp_path / "new").stat().st_mode & 0o777 == 0o700
    assert (tmp_path / "new" / "results.db").stat().st_mode & 0o777 == 0o600


def test_urls() -> None:
    assert normalise_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalise_url("sqlite:///x.db") == "sqlite:///x.db"
    assert mask_url("postgresql+psycopg://u:p@ss@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("sqlite:////tmp/x.db") == "sqlite:////tmp/x.db"


def test_results_that_read_other_files_are_not_reused(tmp_path: Path) -> None:
    from fixtures.onnx_models import benign_external_data

    model = benign_external_data(tmp_path / "model.onnx")
    with open_store(f"sqlite:///{tmp_path / 'store.db'}") as store:
        first = scan_and_record(model, ScanConfig(), store)
        assert first.result.data_files  # it read weights.bin: its verdict depends on it
        assert scan_and_record(model, ScanConfig(), store).cached is False


def test_scan_result_round_trips_through_dict() -> None:
    finding = Finding(
        "MW-X",
        Severity.HIGH,
        Location("a.pt", ("archive/data.pkl",), 12),
        "message",
        evidence="os.system",
        technique="AML.T0018.001",
    )
    result = ScanResult("a.pt", "pytorch", [finding], ["oops"], bytes_read=3, size=4, seconds=0.5)
    again = ScanResult.from_dict(result.to_dict())
    assert again == result
    moved = again.moved_to("b.pt")
    assert moved.path == "b.pt"
    assert moved.findings[0].location == Location("b.pt", ("archive/data.pkl",), 12)


def test_config_digest_is_stable_and_tells_configs_apart() -> None:
    assert ScanConfig().digest() == ScanConfig().digest()
    assert (
        ScanConfig(allow_globals=frozenset({"a.b", "c.d"})).digest()
        == ScanConfig(allow_globals=frozenset({"c.d", "a.b"})).digest()
    )
    assert ScanConfig(allow_globals=frozenset({"a.b"})).digest() != ScanConfig().digest()


def test_default_url_follows_env_and_xdg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("MODELWARD_STORE")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path))
    assert default_store_url() == f"sqlite:///{tmp_path}/modelward/results.db"
    monkeypatch.setenv("MODELWARD_STORE", "postgresql://h/db")
    assert default_store_url() == "postgresql://h/db"


def test_sha256_file_uses_the_digest_cache_and_refuses_special_files(tmp_path: Path) -> None:
    import hashlib
    import os

    from modelward.integrity.cache import DigestCache

    path = tmp_path / "w.bin"
    path.write_bytes(b"weights" * 1000)
    with DigestCache(tmp_path / "digests.sqlite", racy_window_ns=0) as cache:
        first = sha256_file(path, cache)
        assert sha256_file(path, cache) == first == hashlib.sha256(path.read_bytes()).hexdigest()
        assert cache.hits == 1
    os.mkfifo(tmp_path / "fifo")
    with pytest.raises(OSError, match="not a regular file"):
        sha256_file(tmp_path / "fifo")


def test_a_schema_from_a_newer_modelward_is_a_clear_error(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'store.db'}"
    open_store(url).close()
    engine = sqlalchemy.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    with pytest.raises(StoreError, match="revision '9999', which this modelward does not know"):
        open_store(url)


@pytest.mark.parametrize("size", [0, 1000, 3 * 1024 * 1024 + 7])
def test_sha256_file_is_the_files_sha256_on_both_paths(tmp_path: Path, size: int) -> None:
    """Small files are hashed in one read, big ones streamed: the same digest either way."""
    import hashlib
    import os

    path = tmp_path / "weights.bin"
    path.write_bytes(os.urandom(size))
    assert sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_sha256_file_refuses_what_is_not_a_regular_file(tmp_path: Path) -> None:
    import os

    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):
        sha256_file(fifo)
