"""Manifests: what is hashed, how it is named and sorted, symlink policy, the digest cache."""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

import pytest

from fixtures.integrity import make_model, sha256_hex
from modelward.integrity import DigestCache, ModelPathError, hash_model
from modelward.integrity.errors import SymlinkError
from modelward.integrity.manifest import shard_ranges


def test_folder_manifest_matches_hashlib_and_skips_git(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    manifest = hash_model(model, cache=None)
    names = [e.path for e in manifest.entries]
    assert names == ["config.json", "empty.txt", "model.safetensors", "tokenizer/vocab.txt"]
    for e in manifest.entries:
        assert e.digest.hex() == sha256_hex((model / e.path).read_bytes())
        assert e.size == (model / e.path).stat().st_size


def test_sort_order_is_by_path_components_like_model_signing(tmp_path: Path) -> None:
    # "a.txt" < "a/b" as strings ('.' < '/'), but ("a",) < ("a.txt",) as components.
    model = make_model(tmp_path / "m", {"a.txt": b"1", "a/b": b"2"})
    assert [e.path for e in hash_model(model, cache=None).entries] == ["a/b", "a.txt"]


def test_single_file_is_named_dot(tmp_path: Path) -> None:
    f = tmp_path / "w.bin"
    f.write_bytes(b"weights")
    manifest = hash_model(f, cache=None)
    assert [(e.path, e.digest.hex()) for e in manifest.entries] == [(".", sha256_hex(b"weights"))]
    assert manifest.name == "w.bin"


def test_configured_ignore_paths(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    manifest = hash_model(model, ignore_paths=[".git", "./tokenizer/"], cache=None)
    assert "tokenizer/vocab.txt" not in manifest.files
    assert "config.json" in manifest.files


@pytest.mark.parametrize("algorithm", ["blake2b", "blake3"])
def test_other_algorithms(tmp_path: Path, algorithm: str) -> None:
    model = make_model(tmp_path / "m")
    data = (model / "config.json").read_bytes()
    manifest = hash_model(model, algorithm=algorithm, cache=None)
    entry = next(e for e in manifest.entries if e.path == "config.json")
    if algorithm == "blake2b":
        assert entry.digest == hashlib.blake2b(data).digest()
    else:
        blake3 = pytest.importorskip("blake3")
        assert entry.digest == blake3.blake3(data).digest()


def test_shards_cover_file_and_skip_empty(tmp_path: Path) -> None:
    data = os.urandom(2500)
    model = make_model(tmp_path / "m", {"w.bin": data, "empty": b""})
    manifest = hash_model(model, method="shards", shard_size=1000, cache=None)
    assert [(e.start, e.end) for e in manifest.entries] == [(0, 1000), (1000, 2000), (2000, 2500)]
    assert [e.digest.hex() for e in manifest.entries] == [
        sha256_hex(data[s:e]) for s, e in shard_ranges(2500, 1000)
    ]
    assert manifest.resources()[0]["name"] == "w.bin:0:1000"
    assert manifest.resources()[0]["algorithm"] == "sha256-sharded-1000"


def test_symlink_refused_by_default(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    (model / "link.json").symlink_to("config.json")
    with pytest.raises(SymlinkError, match="refused by default"):
        hash_model(model, cache=None)


def test_symlink_inside_allowed_when_asked(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    (model / "link.json").symlink_to("config.json")
    manifest = hash_model(model, allow_symlinks=True, cache=None)
    by_name = {e.path: e.digest for e in manifest.entries}
    assert by_name["link.json"] == by_name["config.json"]


def test_symlink_outside_always_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    secret = tmp_path / "secret.txt"
    secret.write_text("not part of the model")
    (model / "leak.txt").symlink_to(secret)
    with pytest.raises(SymlinkError, match="outside the model"):
        hash_model(model, allow_symlinks=True, cache=None)
    (model / "leak.txt").unlink()
    (model / "up").symlink_to("..")
    with pytest.raises(SymlinkError, match="outside the model"):
        hash_model(model, allow_symlinks=True, cache=None)


def test_special_file_and_missing_path_refused(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    os.mkfifo(model / "pipe")
    with pytest.raises(ModelPathError, match="not a regular file"):
        hash_model(model, cache=None)
    with pytest.raises(ModelPathError, match="No such file"):
        hash_model(tmp_path / "absent", cache=None)


def _settled(path: Path) -> None:
    """Make the file old enough for the racy-clean rule (a small window in tests)."""
    time.sleep(0.06)


def test_cache_serves_unchanged_files(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    _settled(model)
    with DigestCache(tmp_path / "c.sqlite", racy_window_ns=50_000_000) as cache:
        first = hash_model(model, cache=cache)
        assert cache.hits == 0
        second = hash_model(model, cache=cache)
        assert cache.hits == len(first.entries)
    assert first.digest() == second.digest()


def test_cache_never_passes_content_changed_with_mtime_restored(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m")
    target = model / "model.safetensors"
    _settled(model)
    with DigestCache(tmp_path / "c.sqlite", racy_window_ns=50_000_000) as cache:
        before = hash_model(model, cache=cache)
        st = target.stat()
        data = bytearray(target.read_bytes())
        data[1000] ^= 0xFF  # same size
        with target.open("r+b") as f:  # same inode
            f.write(data)
        os.utime(target, ns=(st.st_atime_ns, st.st_mtime_ns))  # mtime restored; ctime moves
        assert target.stat().st_ino == st.st_ino and target.stat().st_mtime_ns == st.st_mtime_ns
        _settled(model)
        after = hash_model(model, cache=cache)
    changed = {e.path for e in before.entries} - {
        e.path for e in after.entries if e in before.entries
    }
    assert changed == {"model.safetensors"}
    entry = next(e for e in after.entries if e.path == "model.safetensors")
    assert entry.digest.hex() == sha256_hex(bytes(data))


def test_cache_misses_a_replaced_file(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", {"w.bin": b"A" * 100})
    _settled(model)
    with DigestCache(tmp_path / "c.sqlite", racy_window_ns=50_000_000) as cache:
        hash_model(model, cache=cache)
        replacement = tmp_path / "new.bin"
        replacement.write_bytes(b"B" * 100)
        st = (model / "w.bin").stat()
        os.utime(replacement, ns=(st.st_atime_ns, st.st_mtime_ns))
        os.replace(replacement, model / "w.bin")  # new inode, same size and mtime
        after = hash_model(model, cache=cache)
    assert after.entries[0].digest.hex() == sha256_hex(b"B" * 100)


def test_cache_does_not_store_a_file_changed_just_now(tmp_path: Path) -> None:
    model = make_model(tmp_path / "m", {"w.bin": b"fresh"})
    with DigestCache(tmp_path / "c.sqlite") as cache:  # default 2 s racy window
        hash_model(model, cache=cache)
        hash_model(model, cache=cache)
        assert cache.hits == 0


def test_cache_file_is_private(tmp_path: Path) -> None:
    with DigestCache(tmp_path / "sub" / "c.sqlite") as cache:
        assert cache.path.stat().st_mode & 0o077 == 0


def test_hash_cli_text_and_json(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    from modelward.cli.main import main

    model = make_model(tmp_path / "m")
    assert main(["hash", str(model), "--no-cache"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == [
        sha256_hex((model / "config.json").read_bytes()),
        str((model / "config.json").stat().st_size),
        "config.json",
    ]
    assert lines[-1].startswith("sha256:") and "4 files" in lines[-1]
    assert main(["hash", str(model), "--format", "json", "--ignore", "tokenizer"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [f["name"] for f in doc["files"]] == ["config.json", "empty.txt", "model.safetensors"]
    assert (
        doc["digest"] == hash_model(model, ignore_paths=[".git", "tokenizer"], cache=None).digest()
    )
    assert main(["hash", str(tmp_path / "absent")]) == 2


def test_model_path_given_as_a_symlink_is_followed(tmp_path: Path) -> None:
    model = make_model(tmp_path / "v2")
    (tmp_path / "current").symlink_to("v2")
    assert (
        hash_model(tmp_path / "current", cache=None).digest()
        == hash_model(model, cache=None).digest()
    )
    (tmp_path / "w.link").symlink_to(model / "config.json")
    (entry,) = hash_model(tmp_path / "w.link", cache=None).entries
    assert entry.digest.hex() == sha256_hex((model / "config.json").read_bytes())


def test_unusable_cache_falls_back_to_hashing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from modelward.integrity.cache import open_cache

    broken = tmp_path / "cachedir"
    broken.mkdir()
    (broken / "digests.sqlite").write_bytes(b"this is not a database" * 100)
    monkeypatch.setenv("MODELWARD_CACHE_DIR", str(broken))
    assert open_cache(True) is None
    model = make_model(tmp_path / "m")
    from modelward.cli.main import main

    assert main(["hash", str(model)]) == 0
