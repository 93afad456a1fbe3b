"""`modelward scan --hf-cache [DIR]`: every snapshot of a Hugging Face cache, by repository."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest

from fixtures.pickles import call_system_p4
from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, main
from modelward.hf_cache import HfCacheError, cached_snapshots


def add_snapshot(cache: Path, repo_id: str, commit: str, files: dict[str, bytes]) -> Path:
    """Lay out one revision as huggingface_hub does: blobs by hash, snapshot links, a ref."""
    repo = cache / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    (repo / "blobs").mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        blob = repo / "blobs" / hashlib.sha256(data).hexdigest()
        blob.write_bytes(data)
        link = snapshot / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(os.path.relpath(blob, link.parent))
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    cache = tmp_path / "hub"
    config = json.dumps({"model_type": "gpt2"}).encode()
    add_snapshot(cache, "good/model", "a" * 40, {"config.json": config})
    add_snapshot(
        cache, "bad/model", "b" * 40, {"config.json": config, "pytorch_model.bin": call_system_p4()}
    )
    return cache


def test_snapshots_are_listed_by_repository_and_revision(cache: Path) -> None:
    snapshots, problems = cached_snapshots(cache)
    assert [(s.repo_id, s.commit, s.refs) for s in snapshots] == [
        ("bad/model", "b" * 40, ("main",)),
        ("good/model", "a" * 40, ("main",)),
    ]
    assert problems == []


def test_cli_scans_every_snapshot_and_finds_the_payload(cache: Path, capsys) -> None:
    assert main(["scan", "--no-store", "-f", "json", "--hf-cache", str(cache)]) == EXIT_FINDINGS
    report = json.loads(capsys.readouterr().out)
    paths = [r["path"] for r in report["results"]]
    bad = [p for p in paths if "models--bad--model" in p and p.endswith("pytorch_model.bin")]
    assert bad and any("models--good--model" in p for p in paths)
    assert paths.index(bad[0]) < min(i for i, p in enumerate(paths) if "models--good--" in p)
    findings = [f for r in report["results"] for f in r["findings"]]
    critical = [f for f in findings if f["severity"] == "critical"]
    assert critical and all("models--bad--model" in f["location"]["path"] for f in critical)


def test_default_cache_follows_hf_hub_cache(cache: Path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    assert main(["scan", "--no-store", "--hf-cache"]) == EXIT_FINDINGS


def test_a_missing_or_empty_cache_is_an_error_not_a_clean_scan(tmp_path: Path, capsys) -> None:
    assert main(["scan", "--no-store", "--hf-cache", str(tmp_path / "nowhere")]) == EXIT_ERROR
    assert "no Hugging Face cache" in capsys.readouterr().err
    (tmp_path / "empty").mkdir()
    assert main(["scan", "--no-store", "--hf-cache", str(tmp_path / "empty")]) == EXIT_ERROR
    with pytest.raises(HfCacheError):
        cached_snapshots(tmp_path / "empty")


def test_an_unreadable_cache_entry_is_reported(cache: Path, capsys) -> None:
    (cache / "models--broken--model").mkdir()  # no snapshots/ folder
    assert main(["scan", "--no-store", "--hf-cache", str(cache)]) == EXIT_FINDINGS
    assert "not scanned" in capsys.readouterr().err


def test_clean_cache_exits_clean(tmp_path: Path) -> None:
    cache = tmp_path / "hub"
    add_snapshot(cache, "good/model", "c" * 40, {"config.json": b'{"model_type": "bert"}'})
    assert main(["scan", "--no-store", "--hf-cache", str(cache)]) == EXIT_CLEAN
