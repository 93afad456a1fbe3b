"""safe_load: verify, scan, then load with a loader that cannot run code; or refuse."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file

import modelward
from fixtures.integrity import MALICIOUS_PICKLE
from modelward.formats import SCANNERS
from modelward.integrity import sign
from modelward.integrity.keys import generate, write_keypair
from modelward.provenance.lock import lock_model, write_lock

TENSORS = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "b": torch.zeros(3)}


def _lock(folder: Path) -> Path:
    lock = folder.parent / "models.lock"
    write_lock(lock, [lock_model(folder.name, base_dir=folder.parent)])
    return lock


def _equal(loaded: dict[str, torch.Tensor]) -> bool:
    return loaded.keys() == TENSORS.keys() and all(
        torch.equal(loaded[k], v) for k, v in TENSORS.items()
    )


def test_benign_safetensors_with_lock(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(TENSORS, str(folder / "model.safetensors"))
    lock = _lock(folder)
    assert _equal(modelward.safe_load(folder / "model.safetensors", lock=lock))
    arrays = modelward.safe_load(folder / "model.safetensors", lock=lock, framework="np")
    assert arrays["w"].tolist() == TENSORS["w"].tolist()


def test_benign_torch_legacy_file_with_signature(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(TENSORS, folder / "model.pt", _use_new_zipfile_serialization=False)
    key = tmp_path / "k.pem"
    pub = write_keypair(generate("p256"), key)
    sign(folder, key)
    assert _equal(modelward.safe_load(folder / "model.pt", signature=folder / "model.sig", key=pub))


@pytest.mark.skipif(
    not any(s.name in ("pytorch", "pytorch-zip") for s in SCANNERS),
    reason="needs the PyTorch zip scanner registered in SCANNERS",
)
def test_benign_torch_zip_file_with_lock(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    torch.save(TENSORS, folder / "model.pt")
    assert _equal(modelward.safe_load(folder / "model.pt", lock=_lock(folder)))


def test_malicious_pickle_refused_by_scan_even_when_locked(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "model.pt").write_bytes(MALICIOUS_PICKLE)  # never loaded
    lock = _lock(folder)
    with pytest.raises(modelward.UnsafeModelError, match="scan found") as info:
        modelward.safe_load(folder / "model.pt", lock=lock)
    assert max(f.severity for f in info.value.findings) == modelward.Severity.CRITICAL


def test_unverified_and_tampered_files_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    target = folder / "model.safetensors"
    save_file(TENSORS, str(target))
    with pytest.raises(modelward.UnsafeModelError, match="no lock file or signature"):
        modelward.safe_load(target)
    assert _equal(modelward.safe_load(target, allow_unverified=True))
    lock = _lock(folder)
    save_file({k: v + 1 for k, v in TENSORS.items()}, str(target))
    with pytest.raises(modelward.UnsafeModelError, match="digest differs"):
        modelward.safe_load(target, lock=lock)
    other = tmp_path / "other.safetensors"
    save_file(TENSORS, str(other))
    with pytest.raises(modelward.UnsafeModelError, match="not listed"):
        modelward.safe_load(other, lock=lock)


def test_wrong_signature_key_refused(tmp_path: Path) -> None:
    folder = tmp_path / "m"
    folder.mkdir()
    save_file(TENSORS, str(folder / "model.safetensors"))
    key = tmp_path / "k.pem"
    write_keypair(generate("p256"), key)
    sign(folder, key)
    other = write_keypair(generate("p256"), tmp_path / "o.pem")
    with pytest.raises(modelward.UnsafeModelError, match="wrong key"):
        modelward.safe_load(folder / "model.safetensors", signature=folder / "model.sig", key=other)


def test_unsupported_format_refused(tmp_path: Path) -> None:
    f = tmp_path / "notes.txt"
    f.write_text("just text\n")
    with pytest.raises(modelward.UnsafeModelError, match="not a safetensors or PyTorch"):
        modelward.safe_load(f, allow_unverified=True)
