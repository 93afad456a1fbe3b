"""Shared test settings: Hypothesis profiles, small by default so CI stays fast; store fixtures.

`HYPOTHESIS_PROFILE=long` runs every fuzz test much longer (see docs/fuzzing.md).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from fixtures.services import service_missing

settings.register_profile(
    "ci", max_examples=50, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.register_profile(
    "long", max_examples=5000, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


@pytest.fixture(autouse=True)
def _isolated_store(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Every test stores scans in its own SQLite file and digests in its own cache folder,
    never in the user's data or cache folders, and outside `tmp_path` (which tests scan)."""
    state = tmp_path_factory.mktemp("modelward-state")
    monkeypatch.setenv("MODELWARD_STORE", f"sqlite:///{state / 'results.db'}")
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(state / "cache"))


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A URL to a fresh, empty schema of the test PostgreSQL database, dropped afterwards."""
    base = os.environ.get("MODELWARD_TEST_POSTGRES")
    if not base:
        service_missing(
            "PostgreSQL", 'MODELWARD_TEST_POSTGRES is not set (eval "$(.ci/services.sh)")'
        )
    try:
        import psycopg
    except ImportError:
        service_missing(
            "PostgreSQL", "psycopg is not installed (pip install 'modelward[postgres]')"
        )
    schema = f"mw_test_{uuid.uuid4().hex[:16]}"
    try:
        with psycopg.connect(base, connect_timeout=5, autocommit=True) as conn:
            conn.execute(f"CREATE SCHEMA {schema}")
    except psycopg.Error as exc:
        service_missing("PostgreSQL", f"cannot connect to the test database: {exc}")
    separator = "&" if "?" in base else "?"
    yield f"{base}{separator}options=-csearch_path%3D{schema}"
    with psycopg.connect(base, connect_timeout=5, autocommit=True) as conn:
        conn.execute(f"DROP SCHEMA {schema} CASCADE")


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> str:
    """A fresh store URL on each backend: a SQLite file, and an empty PostgreSQL schema."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('store') / 'store.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url
