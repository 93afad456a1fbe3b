"""The rule-set version: a digest of the rule registry, the data files and the code's content,
remembered per user by the registry's digest and the files' stat."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from modelward import __version__, rules
from modelward.store import ruleset


@pytest.fixture
def package(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A stand-in package with a few rule files, and an empty cache folder."""
    root = tmp_path / "pkg"
    (root / "data" / "kb").mkdir(parents=True)
    (root / "data" / "kb" / "a.tsv").write_text("os.system\tcall\n")
    (root / "data" / "names.toml").write_text("x = 1\n")
    (root / "data" / "__pycache__").mkdir()
    (root / "data" / "__pycache__" / "x.pyc").write_bytes(b"ignored")
    (root / "scanner.py").write_text("# scanner\n")  # code counts by content, not by path
    monkeypatch.setattr(ruleset, "_PACKAGE", root)
    monkeypatch.setattr(ruleset, "RACY_WINDOW_NS", 0)
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(tmp_path / "cache"))
    ruleset.ruleset_version.cache_clear()
    yield root
    ruleset.ruleset_version.cache_clear()


def _expected(root: Path, names: list[str], code: tuple[str, ...] = ("scanner.py",)) -> str:
    registry = hashlib.sha256(rules.registry_json().encode()).hexdigest()
    digest = hashlib.sha256(b"rules\0" + registry.encode() + b"\0")
    for name in names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for item in sorted(hashlib.sha256((root / name).read_bytes()).digest() for name in code):
        digest.update(b"code\0" + item)
    return f"{__version__}+{digest.hexdigest()[:12]}"


def _fresh() -> str:
    ruleset.ruleset_version.cache_clear()
    return ruleset.ruleset_version()


def test_version_is_a_digest_of_the_registry_and_data_file_names_and_bytes(
    package: Path,
) -> None:
    names = ["data/kb/a.tsv", "data/names.toml"]  # ordered by path parts
    assert ruleset.ruleset_version() == _expected(package, names)


def test_moving_a_module_does_not_change_the_version(package: Path) -> None:
    first = ruleset.ruleset_version()
    (package / "analysis").mkdir()
    (package / "scanner.py").rename(package / "analysis" / "scanner.py")
    assert _fresh() == first


def test_changed_code_changes_the_version(package: Path) -> None:
    """A fixed scanner must not hand back a result stored before the fix."""
    first = ruleset.ruleset_version()
    (package / "scanner.py").write_text("# scanner, fixed\n")
    assert _fresh() != first


def test_a_changed_rule_changes_the_version(package: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = ruleset.ruleset_version()
    old = rules.RULES["MW-PICKLE-UNKNOWN-GLOBAL"]
    changed = dict(rules.RULES)
    changed[old.id] = dataclasses.replace(old, help=old.help + " Changed.")
    monkeypatch.setattr(rules, "RULES", changed)
    second = _fresh()  # the registry is part of the cache key: not the remembered digest
    assert second != first
    assert second == _expected(package, ["data/kb/a.tsv", "data/names.toml"])


def test_the_registry_is_serialised_deterministically() -> None:
    text = rules.registry_json()
    assert text == rules.registry_json()
    assert [r["id"] for r in json.loads(text)] == list(rules.RULES)


def test_unchanged_rule_files_are_not_read_again(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = ruleset.ruleset_version()
    cache = tmp_path / "cache" / ruleset.CACHE_NAME
    assert cache.stat().st_mode & 0o777 == 0o600

    def no_reading(*args: object) -> str:
        raise AssertionError("rule files read again")

    monkeypatch.setattr(ruleset, "content_digest", no_reading)
    assert _fresh() == first


def test_a_changed_added_or_removed_rule_file_is_read_again(package: Path) -> None:
    first = ruleset.ruleset_version()
    kb = package / "data" / "kb" / "a.tsv"
    stat = kb.stat()
    kb.write_text("os.system\tsafe\n")  # same size; the mtime put back: ctime still moves
    os.utime(kb, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    changed = _fresh()
    assert changed != first
    assert changed == _expected(package, ["data/kb/a.tsv", "data/names.toml"])

    (package / "data" / "new.toml").write_text("y = 2\n")
    added = _fresh()
    names = ["data/kb/a.tsv", "data/names.toml", "data/new.toml"]
    assert added == _expected(package, names)
    (package / "data" / "new.toml").unlink()
    assert _fresh() == changed


def test_files_changed_within_the_racy_window_are_not_remembered(
    package: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(ruleset, "RACY_WINDOW_NS", 3_600 * 10**9)
    ruleset.ruleset_version()
    assert not (tmp_path / "cache" / ruleset.CACHE_NAME).exists()


def test_a_broken_or_unwritable_cache_only_costs_time(package: Path, tmp_path: Path) -> None:
    (tmp_path / "cache").mkdir()
    (tmp_path / "cache" / ruleset.CACHE_NAME).write_text("{not json")
    first = ruleset.ruleset_version()
    assert first.startswith(f"{__version__}+")
    (tmp_path / "cache" / ruleset.CACHE_NAME).unlink()
    (tmp_path / "cache" / ruleset.CACHE_NAME).mkdir()  # cannot be replaced by a file
    assert _fresh() == first


def test_the_real_package_version_matches_its_content() -> None:
    ruleset.ruleset_version.cache_clear()
    assert ruleset.ruleset_version() == f"{__version__}+{ruleset.content_digest()}"
