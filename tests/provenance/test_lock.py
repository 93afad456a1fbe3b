"""models.lock: locking paths and hub ids, and `--check` failing on drift."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from fixtures.integrity import make_hf_cache, make_model, write_ec_key
from modelward.cli.main import main
from modelward.provenance.lock import LockError, check_model, lock_model, read_lock


def test_lock_then_check_clean(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    make_model(tmp_path / "models" / "bert")
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "models/bert"]) == 0
    doc = tomllib.loads((tmp_path / "models.lock").read_text())
    assert doc["version"] == 1
    (entry,) = doc["model"]
    assert entry["source"] == "models/bert"
    assert entry["digest"].startswith("sha256:")
    assert set(entry["files"]) == {
        "config.json",
        "empty.txt",
        "model.safetensors",
        "tokenizer/vocab.txt",
    }
    assert main(["lock", "--check"]) == 0


def test_signing_a_locked_model_does_not_drift_its_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = make_model(tmp_path / "m")
    private, _public = write_ec_key(tmp_path / "key.pem")
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "m"]) == 0
    assert main(["sign", "m", "--key", str(private)]) == 0
    assert (model / "model.sig").is_file()
    assert main(["lock", "--check"]) == 0
    (model / "config.json").write_text('{"hidden_size": 9}\n')
    assert main(["lock", "--check"]) == 1  # the bundle is ignored, nothing else is


@pytest.mark.parametrize("change", ["edit", "add", "remove"])
def test_check_fails_on_drift(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], change: str
) -> None:
    model = make_model(tmp_path / "m")
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "m"]) == 0
    if change == "edit":
        (model / "config.json").write_text('{"hidden_size": 9}\n')
    elif change == "add":
        (model / "pwn.py").write_text("print('hi')\n")
    else:
        (model / "empty.txt").unlink()
    capsys.readouterr()
    assert main(["lock", "--check"]) == 1
    out = capsys.readouterr().out
    assert "DRIFTED m" in out
    assert {"edit": "changed: config.json", "add": "pwn.py", "remove": "missing: empty.txt"}[
        change
    ] in out


def test_relock_updates_and_keeps_other_models(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    a = make_model(tmp_path / "a")
    make_model(tmp_path / "b")
    monkeypatch.chdir(tmp_path)
    assert main(["lock", "a", "b"]) == 0
    (a / "config.json").write_text("{}")
    assert main(["lock", "--check"]) == 1
    assert main(["lock", "a"]) == 0
    assert [m.source for m in read_lock(tmp_path / "models.lock")] == ["a", "b"]
    assert main(["lock", "--check"]) == 0


def test_hub_id_resolved_in_hf_cache(tmp_path: Path) -> None:
    hub = tmp_path / "hub"
    make_hf_cache(hub, "org/tiny", "c" * 40)
    entry = lock_model("org/tiny", base_dir=tmp_path, hf_cache=hub)
    assert entry.source == "org/tiny@" + "c" * 40
    assert set(entry.files) == {"config.json", "model.safetensors", "sub/tokenizer.json"}
    assert check_model(entry, base_dir=tmp_path, hf_cache=hub).ok
    lock = tmp_path / "models.lock"
    assert main(["lock", "org/tiny@main", "--hf-cache", str(hub), "-l", str(lock)]) == 0
    assert main(["lock", "--check", "--hf-cache", str(hub), "-l", str(lock)]) == 0
    with pytest.raises(LockError, match="not in the Hugging Face cache"):
        lock_model("org/absent", base_dir=tmp_path, hf_cache=hub)


def test_malformed_lock(tmp_path: Path) -> None:
    lock = tmp_path / "models.lock"
    lock.write_text("version = 1\n[[model]]\nsource = 'x'\n")
    with pytest.raises(LockError, match="malformed"):
        read_lock(lock)
    lock.write_text("not toml [")
    assert main(["lock", "--check", "-l", str(lock)]) == 2
