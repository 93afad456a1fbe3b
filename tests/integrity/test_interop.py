"""Interoperability with OpenSSF `model-signing`, both ways, API and CLI."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from fixtures.integrity import make_ca, make_model, write_ec_key
from modelward.integrity import sign, verify

model_signing = pytest.importorskip("model_signing")


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


@pytest.fixture
def keys(tmp_path: Path) -> tuple[Path, Path]:
    return write_ec_key(tmp_path / "key.pem")


def _ms_verify_key(model: Path, sig: Path, pub: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)


@pytest.mark.parametrize("method", ["files", "shards"])
def test_model_signing_bundle_verifies_with_modelward(
    tmp_path: Path, model: Path, keys: tuple[Path, Path], method: str
) -> None:
    key, pub = keys
    sig = tmp_path / "ms.sig"
    hashing = model_signing.hashing.Config()
    if method == "shards":
        hashing = hashing.use_shard_serialization(shard_size=100_000)
    cfg = model_signing.signing.Config().use_elliptic_key_signer(private_key=key)
    cfg.set_hashing_config(hashing).sign(model, sig)
    assert verify(model, signature=sig, key=pub).ok
    (model / "model.safetensors").write_bytes(os.urandom(300_000))
    result = verify(model, signature=sig, key=pub)
    assert {m.name for m in result.mismatch} == {"model.safetensors"}


@pytest.mark.parametrize("method", ["files", "shards"])
def test_modelward_bundle_verifies_with_model_signing(
    tmp_path: Path, model: Path, keys: tuple[Path, Path], method: str
) -> None:
    key, pub = keys
    sig = sign(model, key, signature=tmp_path / "mw.sig", method=method, shard_size=100_000)
    _ms_verify_key(model, sig, pub)
    (model / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="mismatch"):
        _ms_verify_key(model, sig, pub)


def test_certificate_bundles_both_ways(tmp_path: Path, model: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    ours = sign(
        model,
        ca["key"],
        signature=tmp_path / "mw.sig",
        certificate=ca["leaf"],
        certificate_chain=[ca["intermediate"]],
    )
    model_signing.verifying.Config().use_certificate_verifier(
        certificate_chain=[ca["root"]]
    ).verify(model, ours)
    theirs = tmp_path / "ms.sig"
    model_signing.signing.Config().use_certificate_signer(
        private_key=ca["key"],
        signing_certificate=ca["leaf"],
        certificate_chain=[ca["intermediate"]],
    ).sign(model, theirs)
    assert verify(model, signature=theirs, certificate_chain=[ca["root"]]).ok


def _cli() -> str:
    exe = shutil.which("model_signing", path=str(Path(sys.executable).parent))
    if exe is None:
        pytest.skip("model_signing CLI not installed")
    return exe


def test_cli_both_ways(tmp_path: Path, model: Path, keys: tuple[Path, Path]) -> None:
    key, pub = keys
    ms = _cli()
    # model-signing CLI signs (signature inside the model, which it ignores), modelward verifies.
    subprocess.run(
        [ms, "sign", "key", str(model), "--private_key", str(key)],
        cwd=model,
        check=True,
        capture_output=True,
    )
    assert verify(model, key=pub).ok
    # modelward signs, model-signing CLI verifies.
    sign(model, key)
    done = subprocess.run(
        [
            ms,
            "verify",
            "key",
            str(model),
            "--signature",
            str(model / "model.sig"),
            "--public_key",
            str(pub),
        ],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stdout + done.stderr
