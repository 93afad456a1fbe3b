"""The data-file loader: TOML parsed once per content, kept as JSON in the user's cache."""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelward import _datafile
from modelward._datafile import DATA_DIR, load_table


@pytest.fixture
def data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    folder = tmp_path / "data"
    folder.mkdir()
    monkeypatch.setattr(_datafile, "DATA_DIR", folder)
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(tmp_path / "cache"))
    load_table.cache_clear()
    yield folder
    load_table.cache_clear()


def _cached(tmp_path: Path) -> list[Path]:
    return sorted((tmp_path / "cache" / "data").glob("*.json"))


def test_the_second_process_reads_the_json_the_first_wrote(data: Path, tmp_path: Path) -> None:
    (data / "lists.toml").write_text('[deny]\nglobals = ["os.system"]\n', encoding="utf-8")
    assert load_table("lists.toml") == {"deny": {"globals": ["os.system"]}}
    [cached] = _cached(tmp_path)
    # A later process (cache cleared) is answered from the JSON file, not by parsing TOML.
    cached.write_text(json.dumps({"from": "cache"}), encoding="utf-8")
    load_table.cache_clear()
    assert load_table("lists.toml") == {"from": "cache"}


def test_an_edited_file_is_parsed_again_under_a_new_name(data: Path, tmp_path: Path) -> None:
    path = data / "lists.toml"
    path.write_text("a = 1\n", encoding="utf-8")
    assert load_table("lists.toml") == {"a": 1}
    path.write_text("a = 2\n", encoding="utf-8")
    load_table.cache_clear()
    assert load_table("lists.toml") == {"a": 2}
    assert len(_cached(tmp_path)) == 2


def test_a_table_json_cannot_hold_is_not_cached(data: Path, tmp_path: Path) -> None:
    (data / "dated.toml").write_text("when = 2026-12-04\n", encoding="utf-8")
    assert str(load_table("dated.toml")["when"]) == "2026-12-04"
    assert _cached(tmp_path) == []


def test_an_unwritable_cache_only_costs_the_parse(
    data: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("", encoding="utf-8")
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(blocker))
    (data / "lists.toml").write_text("a = [1, 2]\n", encoding="utf-8")
    assert load_table("lists.toml") == {"a": [1, 2]}


def test_every_shipped_table_round_trips_through_the_cache() -> None:
    for path in sorted(DATA_DIR.glob("*.toml")):
        expected = tomllib.loads(path.read_text(encoding="utf-8"))
        load_table.cache_clear()
        assert load_table(path.name) == expected, path.name
        load_table.cache_clear()
        assert load_table(path.name) == expected, path.name
