"""Sign and verify: every key type, wrong keys, tampered bundles, changed models, the CLI."""

from __future__ import annotations

import base64
import json
import os
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from fixtures.integrity import make_ca, make_model, sha256_hex, write_ec_key
from modelward.cli.main import main
from modelward.integrity import (
    BundleError,
    KeyMaterialError,
    SignatureError,
    sign,
    verify,
)
from modelward.integrity.keys import generate, write_keypair

KEY_TYPES = ["p256", "p384", "p521", "ed25519"]


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return make_model(tmp_path / "model")


@pytest.fixture
def keypair(tmp_path: Path) -> tuple[Path, Path]:
    key = tmp_path / "key.pem"
    return key, write_keypair(generate("p256"), key)


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_keygen_cli_writes_private_key_0600(tmp_path: Path, key_type: str) -> None:
    key = tmp_path / "k.pem"
    assert main(["keygen", "--out", str(key), "--type", key_type]) == 0
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert (tmp_path / "k.pub.pem").read_text().startswith("-----BEGIN PUBLIC KEY-----")
    assert main(["keygen", "--out", str(key)]) == 2  # never overwrites


@pytest.mark.parametrize("key_type", KEY_TYPES)
def test_sign_verify_every_key_type(tmp_path: Path, model: Path, key_type: str) -> None:
    key = tmp_path / f"{key_type}.pem"
    pub = write_keypair(generate(key_type), key)
    sig = sign(model, key)
    assert sig == model / "model.sig"
    result = verify(model, key=pub)
    assert result.ok and result.hashed
    payload = json.loads(base64.b64decode(json.loads(sig.read_text())["dsseEnvelope"]["payload"]))
    assert "model.sig" in payload["predicate"]["serialization"]["ignore_paths"]


def test_statement_layout(model: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    key, _ = keypair
    bundle = json.loads(sign(model, key, signature=tmp_path / "s.sig").read_text())
    assert bundle["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert len(bundle["verificationMaterial"]["publicKey"]["hint"]) == 64
    env = bundle["dsseEnvelope"]
    assert env["payloadType"] == "application/vnd.in-toto+json"
    st = json.loads(base64.b64decode(env["payload"]))
    assert st["_type"] == "https://in-toto.io/Statement/v1"
    assert st["predicateType"] == "https://model_signing/signature/v1.0"
    resources = st["predicate"]["resources"]
    expected = b"".join(bytes.fromhex(r["digest"]) for r in resources)
    assert st["subject"][0]["digest"]["sha256"] == sha256_hex(expected)
    by_name = {r["name"]: r["digest"] for r in resources}
    assert by_name["config.json"] == sha256_hex((model / "config.json").read_bytes())


def test_wrong_key_is_named(model: Path, keypair: tuple[Path, Path], tmp_path: Path) -> None:
    key, _ = keypair
    sign(model, key)
    other = write_keypair(generate("p256"), tmp_path / "other.pem")
    with pytest.raises(SignatureError, match="wrong key"):
        verify(model, key=other)
    assert main(["verify", str(model), "--key", str(other)]) == 1


def test_unsupported_key_types(tmp_path: Path, model: Path) -> None:
    rsa_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    pem = rsa_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    (tmp_path / "rsa.pem").write_bytes(pem)
    with pytest.raises(KeyMaterialError, match="unsupported key type"):
        sign(model, tmp_path / "rsa.pem")
    k1, _ = write_ec_key(tmp_path / "k1.pem", ec.SECP256K1())
    with pytest.raises(KeyMaterialError, match="unsupported curve"):
        sign(model, k1)
    assert main(["sign", str(model), "--key", str(tmp_path / "rsa.pem")]) == 2
    (tmp_path / "junk.pem").write_text("not a key")
    with pytest.raises(KeyMaterialError, match="not a PEM"):
        sign(model, tmp_path / "junk.pem")


def test_encrypted_key_needs_passphrase(
    tmp_path: Path, model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    key = ec.generate_private_key(ec.SECP256R1())
    enc = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"hunter2"),
    )
    (tmp_path / "enc.pem").write_bytes(enc)
    with pytest.raises(KeyMaterialError, match="MODELWARD_KEY_PASSWORD"):
        sign(model, tmp_path / "enc.pem")
    monkeypatch.setenv("MODELWARD_KEY_PASSWORD", "hunter2")
    assert sign(model, tmp_path / "enc.pem").is_file()


def _tamper(sig: Path, edit) -> None:  # type: ignore[no-untyped-def]
    bundle = json.loads(sig.read_text())
    edit(bundle)
    sig.write_text(json.dumps(bundle))


def _payload(bundle: dict) -> dict:  # type: ignore[type-arg]
    return json.loads(base64.b64decode(bundle["dsseEnvelope"]["payload"]))


def _set_payload(bundle: dict, statement: dict) -> None:  # type: ignore[type-arg]
    raw = json.dumps(statement).encode()
    bundle["dsseEnvelope"]["payload"] = base64.b64encode(raw).decode()


def _drop_resource(b: dict) -> None:  # type: ignore[type-arg]
    st = _payload(b)
    st["predicate"]["resources"].pop()
    _set_payload(b, st)


def _swap_digest(b: dict) -> None:  # type: ignore[type-arg]
    st = _payload(b)
    st["predicate"]["resources"][0]["digest"] = "00" * 32
    _set_payload(b, st)


def _flip_signature(b: dict) -> None:  # type: ignore[type-arg]
    sig = bytearray(base64.b64decode(b["dsseEnvelope"]["signatures"][0]["sig"]))
    sig[-1] ^= 1
    b["dsseEnvelope"]["signatures"][0]["sig"] = base64.b64encode(bytes(sig)).decode()


def _payload_type(b: dict) -> None:  # type: ignore[type-arg]
    b["dsseEnvelope"]["payloadType"] = "application/json"


def _whitespace(b: dict) -> None:  # type: ignore[type-arg]
    raw = base64.b64decode(b["dsseEnvelope"]["payload"]) + b" "
    b["dsseEnvelope"]["payload"] = base64.b64encode(raw).decode()


@pytest.mark.parametrize(
    "edit", [_drop_resource, _swap_digest, _flip_signature, _payload_type, _whitespace]
)
def test_altered_envelope_never_verifies(model: Path, keypair: tuple[Path, Path], edit) -> None:  # type: ignore[no-untyped-def]
    key, pub = keypair
    sig = sign(model, key)
    _tamper(sig, edit)
    with pytest.raises(SignatureError):
        verify(model, key=pub)
    assert main(["verify", str(model), "--key", str(pub)]) == 1


@pytest.mark.parametrize(
    ("content", "match"),
    [
        ("{not json", "not a JSON"),
        ('{"mediaType": "application/vnd.dev.sigstore.bundle+json;version=0.1"}', "mediaType"),
        ("[]", "not a JSON object"),
    ],
)
def test_corrupted_bundle(
    model: Path, keypair: tuple[Path, Path], content: str, match: str
) -> None:
    key, pub = keypair
    sig = sign(model, key)
    sig.write_text(content)
    with pytest.raises(BundleError, match=match):
        verify(model, key=pub)


def test_bad_base64_and_two_signatures(model: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    sig = sign(model, key)
    _tamper(sig, lambda b: b["dsseEnvelope"].__setitem__("payload", "!!!"))
    with pytest.raises(BundleError, match="base64"):
        verify(model, key=pub)
    sig = sign(model, key)
    _tamper(
        sig, lambda b: b["dsseEnvelope"]["signatures"].append(b["dsseEnvelope"]["signatures"][0])
    )
    with pytest.raises(BundleError, match="exactly one"):
        verify(model, key=pub)


def test_missing_signature_file_is_usage_error(model: Path, keypair: tuple[Path, Path]) -> None:
    _, pub = keypair
    assert main(["verify", str(model), "--key", str(pub)]) == 2
    assert main(["verify", str(model)]) == 2


def test_added_removed_resized_changed_files(
    model: Path, keypair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, pub = keypair
    sign(model, key)
    (model / "extra.py").write_text("import os\n")
    (model / "tokenizer" / "vocab.txt").unlink()
    with (model / "config.json").open("ab") as f:
        f.write(b" ")
    result = verify(model, key=pub)
    assert not result.ok and not result.hashed  # failed on the listing, nothing hashed
    assert result.extra == ["extra.py"]
    assert result.missing == ["tokenizer/vocab.txt"]
    assert [(m.name, m.actual, m.actual_size - m.expected_size) for m in result.mismatch] == [
        ("config.json", None, 1)
    ]

    sign(model, key)
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[10] ^= 0x01
    weights.write_bytes(data)
    capsys.readouterr()
    assert main(["verify", str(model), "--key", str(pub), "--format", "json"]) == 1
    out = json.loads(capsys.readouterr().out)
    assert out["extra"] == [] and out["missing"] == []
    assert out["mismatch"] == [
        {
            "name": "model.safetensors",
            "expected": verify_expected_digest(model, key),
            "actual": sha256_hex(bytes(data)),
        }
    ]


def verify_expected_digest(model: Path, key: Path) -> str:
    bundle = json.loads((model / "model.sig").read_text())
    st = _payload(bundle)
    return next(
        r["digest"] for r in st["predicate"]["resources"] if r["name"] == "model.safetensors"
    )


def test_cli_verify_ok_and_text_output(
    model: Path, keypair: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    key, pub = keypair
    assert main(["sign", str(model), "--key", str(key)]) == 0
    assert main(["verify", str(model), "--key", str(pub)]) == 0
    assert "OK" in capsys.readouterr().out
    (model / "config.json").write_text('{"hidden_size": 9}\n')
    assert main(["verify", str(model), "--key", str(pub), "--no-cache"]) == 1
    out = capsys.readouterr().out
    assert "changed: config.json" in out and sha256_hex(b'{"hidden_size": 9}\n') in out


def test_shards_sign_verify_detects_one_changed_shard(
    tmp_path: Path, keypair: tuple[Path, Path]
) -> None:
    key, pub = keypair
    data = bytearray(os.urandom(5000))
    model = make_model(tmp_path / "m", {"w.bin": bytes(data)})
    sign(model, key, method="shards", shard_size=1024)
    assert verify(model, key=pub).ok
    data[3000] ^= 0xFF
    (model / "w.bin").write_bytes(data)
    result = verify(model, key=pub)
    assert [m.name for m in result.mismatch] == ["w.bin"]
    assert result.mismatch[0].actual == sha256_hex(bytes(data[2048:3072]))


def test_single_file_model(tmp_path: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    f = tmp_path / "w.safetensors"
    f.write_bytes(b"x" * 100)
    assert sign(f, key) == tmp_path / "w.safetensors.sig"
    assert verify(f, key=pub).ok
    f.write_bytes(b"y" * 100)
    assert [m.name for m in verify(f, key=pub).mismatch] == ["."]


def test_certificate_signing_and_chain(tmp_path: Path, model: Path) -> None:
    ca = make_ca(tmp_path / "ca")
    sig = sign(model, ca["key"], certificate=ca["leaf"], certificate_chain=[ca["intermediate"]])
    chain = json.loads(sig.read_text())["verificationMaterial"]["x509CertificateChain"]
    assert len(chain["certificates"]) == 2
    assert verify(model, certificate_chain=[ca["root"]]).ok
    other = make_ca(tmp_path / "other", "Other")
    with pytest.raises(SignatureError, match="trusted"):
        verify(model, certificate_chain=[other["root"]])
    with pytest.raises(BundleError, match="certificate-chain"):
        verify(model, key=_leaf_pub(ca["leaf"], tmp_path))
    with pytest.raises(KeyMaterialError, match="does not match"):
        sign(model, other["key"], certificate=ca["leaf"])


def _leaf_pub(leaf: Path, tmp_path: Path) -> Path:
    from cryptography import x509

    cert = x509.load_pem_x509_certificate(leaf.read_bytes())
    out = tmp_path / "leaf.pub.pem"
    out.write_bytes(
        cert.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return out


def test_keyless_bundle_is_refused_clearly(model: Path, keypair: tuple[Path, Path]) -> None:
    key, pub = keypair
    sig = sign(model, key)
    _tamper(
        sig,
        lambda b: b.__setitem__(
            "verificationMaterial", {"certificate": {"rawBytes": "AA=="}, "tlogEntries": []}
        ),
    )
    ca_file = sig.with_name("unused.pem")
    ca_file.write_text("")
    with pytest.raises(BundleError, match="keyless Sigstore"):
        verify(model, certificate_chain=[ca_file])
    with pytest.raises(BundleError, match="keyless Sigstore"):
        verify(model, key=pub)
