"""The lazy format registry: a cheap pre-check must never turn away a file its scanner takes.

`formats.SCANNERS` imports a scanner's module only when a blob passes the entry's byte
test. A test that said no where the scanner would say yes would be a missed format, so
every pre-check is checked against its real `detect` on files written by the real libraries
and on hypothesis-made variants of their heads.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import pickle
import tarfile
import zipfile
from pathlib import Path

import joblib
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.numpy import save_file

from fixtures.gguf_files import write_gguf
from fixtures.onnx_models import benign_mlp
from fixtures.savedmodels import benign_keras_metadata, benign_saved_model, fingerprint
from modelward.findings import Location
from modelward.formats import SCANNERS, LazyScanner
from modelward.formats.interface import HEAD_SIZE, Blob


def _written(folder: Path) -> dict[str, Path]:
    """One file per format, as the libraries write them."""
    out: dict[str, Path] = {}
    state = {"w": torch.zeros(4, 4)}
    torch.save(state, out.setdefault("torch-zip", folder / "model.pt"))
    torch.save(
        state,
        out.setdefault("torch-legacy", folder / "old.pt"),
        _use_new_zipfile_serialization=False,
    )
    torch.jit.save(torch.jit.script(torch.nn.Linear(2, 2)), out.setdefault("ts", folder / "ts.pt"))
    np.save(out.setdefault("npy", folder / "a.npy"), np.arange(6))
    np.savez(out.setdefault("npz", folder / "a.npz"), a=np.arange(3))
    joblib.dump({"a": np.arange(10)}, out.setdefault("joblib", folder / "m.joblib"))
    joblib.dump({"a": np.arange(10)}, out.setdefault("joblib-z", folder / "m.z"), compress=3)
    joblib.dump({"a": 1}, out.setdefault("joblib-xz", folder / "m.xz"), compress=("xz", 3))
    out.setdefault("pickle", folder / "p.pkl").write_bytes(pickle.dumps({"a": [1, 2]}))
    save_file({"w": np.zeros(3, np.float32)}, str(out.setdefault("safetensors", folder / "w.st")))
    write_gguf(out.setdefault("gguf", folder / "m.gguf"))
    out["onnx"] = benign_mlp(folder / "m.onnx")
    out.setdefault("savedmodel", folder / "saved_model.pb").write_bytes(benign_saved_model())
    out.setdefault("keras-metadata", folder / "keras_metadata.pb").write_bytes(
        benign_keras_metadata()
    )
    out.setdefault("fingerprint", folder / "fingerprint.pb").write_bytes(fingerprint())
    raw = pickle.dumps(list(range(100)))
    out.setdefault("gz", folder / "p.pkl.gz").write_bytes(gzip.compress(raw))
    out.setdefault("bz2", folder / "p.pkl.bz2").write_bytes(bz2.compress(raw))
    out.setdefault("xz", folder / "p.pkl.xz").write_bytes(lzma.compress(raw))
    with tarfile.open(out.setdefault("tar", folder / "a.tar"), "w") as tar:
        info = tarfile.TarInfo("p.pkl")
        info.size = len(raw)
        tar.addfile(info, io.BytesIO(raw))
    with zipfile.ZipFile(out.setdefault("zip", folder / "a.zip"), "w") as archive:
        archive.writestr("p.pkl", raw)
    prefixed = folder / "prefixed.zip"
    prefixed.write_bytes(b"junk" * 100 + out["zip"].read_bytes())
    out["prefixed-zip"] = prefixed
    try:
        import h5py
    except ImportError:
        pass
    else:
        with h5py.File(out.setdefault("hdf5", folder / "m.h5"), "w") as f:
            f.attrs["model_config"] = '{"class_name": "Sequential"}'
        with h5py.File(out.setdefault("hdf5-userblock", folder / "u.h5"), "w", userblock_size=1024):
            pass
    out.setdefault("python", folder / "modeling.py").write_text("import os\n", encoding="utf-8")
    return out


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    return _written(tmp_path_factory.mktemp("formats"))


def _accepting(blob: Blob) -> list[str]:
    """Every registry entry whose real scanner accepts `blob`, and no pre-check said no to."""
    head = blob.head(HEAD_SIZE)
    misses = []
    for entry in SCANNERS:
        assert isinstance(entry, LazyScanner)
        if entry.scanner.detect(blob, head) and not entry.detect(blob, head):
            misses.append(entry.name)
    return misses


def test_every_entry_names_its_scanner() -> None:
    for entry in SCANNERS:
        assert isinstance(entry, LazyScanner)
        assert entry.scanner.name == entry.name


def test_no_pre_check_turns_away_a_file_its_scanner_takes(written: dict[str, Path]) -> None:
    for kind, path in written.items():
        assert _accepting(Blob.from_file(path)) == [], kind


def test_each_library_file_is_claimed_by_a_scanner(written: dict[str, Path]) -> None:
    for kind, path in written.items():
        blob = Blob.from_file(path)
        head = blob.head(HEAD_SIZE)
        assert any(entry.detect(blob, head) for entry in SCANNERS), kind


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.data())
def test_no_pre_check_turns_away_a_mutated_file(
    written: dict[str, Path], data: st.DataObject
) -> None:
    kind = data.draw(st.sampled_from(sorted(written)))
    raw = bytearray(written[kind].read_bytes()[: 64 * 1024])
    for _ in range(data.draw(st.integers(0, 4))):
        if raw:
            raw[data.draw(st.integers(0, len(raw) - 1))] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(raw)))
    name = data.draw(st.sampled_from([written[kind].name, "x.bin", "saved_model.pb", "a.index"]))
    blob = Blob.from_bytes(Location(name), bytes(raw[:cut]))
    assert _accepting(blob) == []
