"""Every integrity test gets its own digest cache folder, never the user's."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(autouse=True)
def _private_cache(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> Path:
    folder = tmp_path_factory.mktemp("mwcache")
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(folder))
    return folder
