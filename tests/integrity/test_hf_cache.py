"""Offline check of a Hugging Face cache: snapshot files against their blob names."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from fixtures.integrity import make_hf_cache
from modelward.cli.main import main
from modelward.integrity import ModelPathError, verify_hf_cache


def test_intact_cache_verifies(tmp_path: Path) -> None:
    repo = make_hf_cache(tmp_path / "hub")
    result = verify_hf_cache(tmp_path / "hub")
    assert result.ok and result.hashed
    assert verify_hf_cache(repo).ok  # one repository folder works too
    assert main(["verify", "--hf-cache", str(tmp_path / "hub")]) == 0


def _blob_of(repo: Path, name: str) -> Path:
    snapshot = next((repo / "snapshots").iterdir())
    return Path(os.path.realpath(snapshot / name))


@pytest.mark.parametrize("name", ["model.safetensors", "sub/tokenizer.json"])
def test_tampered_blob_is_named(
    tmp_path: Path, name: str, capsys: pytest.CaptureFixture[str]
) -> None:
    repo = make_hf_cache(tmp_path / "hub")
    blob = _blob_of(repo, name)
    data = bytearray(blob.read_bytes())
    data[5] ^= 0xFF
    blob.write_bytes(data)
    result = verify_hf_cache(tmp_path / "hub")
    assert [m.name.rsplit("/", 1)[-1] for m in result.mismatch] == [name.rsplit("/", 1)[-1]]
    assert result.mismatch[0].expected == blob.name
    assert main(["verify", "--hf-cache", str(tmp_path / "hub"), "--format", "json"]) == 1
    assert json.loads(capsys.readouterr().out)["mismatch"][0]["expected"] == blob.name


def test_planted_file_and_dangling_link(tmp_path: Path) -> None:
    repo = make_hf_cache(tmp_path / "hub")
    snapshot = next((repo / "snapshots").iterdir())
    (snapshot / "modeling_evil.py").write_text("import os\n")
    _blob_of(repo, "config.json").unlink()
    result = verify_hf_cache(repo)
    assert [n.rsplit("/", 1)[-1] for n in result.extra] == ["modeling_evil.py"]
    assert [n.rsplit("/", 1)[-1] for n in result.missing] == ["config.json"]


def test_link_leaving_blobs_is_not_trusted(tmp_path: Path) -> None:
    repo = make_hf_cache(tmp_path / "hub")
    snapshot = next((repo / "snapshots").iterdir())
    outside = tmp_path / ("0" * 64)
    outside.write_bytes(b"x")
    (snapshot / "config.json").unlink()
    (snapshot / "config.json").symlink_to(outside)
    assert [n.rsplit("/", 1)[-1] for n in verify_hf_cache(repo).extra] == ["config.json"]


def test_not_a_cache(tmp_path: Path) -> None:
    with pytest.raises(ModelPathError, match="no Hugging Face"):
        verify_hf_cache(tmp_path)
    assert main(["verify", "--hf-cache", str(tmp_path / "absent")]) == 2
