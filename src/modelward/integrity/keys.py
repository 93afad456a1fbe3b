"""Key material: generation, loading, and the signature scheme each key type uses.

model-signing accepts ECDSA on P-256, P-384 and P-521 (hash matched to the
curve: SHA-256, SHA-384, SHA-512); Ed25519 is supported too but only
modelward verifies it.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import TypeAlias

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from modelward.integrity.errors import KeyMaterialError, SignatureError

PrivateKey: TypeAlias = ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
PublicKey: TypeAlias = ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey

KEY_TYPES = {"p256": ec.SECP256R1, "p384": ec.SECP384R1, "p521": ec.SECP521R1, "ed25519": None}
_CURVE_HASH: dict[str, type[hashes.HashAlgorithm]] = {
    "secp256r1": hashes.SHA256,
    "secp384r1": hashes.SHA384,
    "secp521r1": hashes.SHA512,
}
#: Environment variable holding the passphrase of an encrypted private key.
PASSWORD_ENV = "MODELWARD_KEY_PASSWORD"


def generate(key_type: str = "p256") -> PrivateKey:
    if key_type not in KEY_TYPES:
        raise KeyMaterialError(f"unknown key type {key_type!r}; use one of {sorted(KEY_TYPES)}")
    curve = KEY_TYPES[key_type]
    if curve is None:
        return ed25519.Ed25519PrivateKey.generate()
    return ec.generate_private_key(curve())


def write_keypair(key: PrivateKey, out: Path) -> Path:
    """Write the private key (PKCS#8 PEM, mode 0600) and `<stem>.pub.pem` beside it."""
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    pub_path = public_path_for(out)
    pub_path.write_bytes(public_pem(key.public_key()))
    return pub_path


def public_path_for(private: Path) -> Path:
    stem = private.name[: -len(".pem")] if private.name.endswith(".pem") else private.name
    return private.with_name(stem + ".pub.pem")


def public_pem(key: PublicKey) -> bytes:
    return key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def key_hint(key: PublicKey) -> str:
    """The bundle's `publicKey.hint`, as model-signing computes it: SHA-256 of the PEM."""
    return hashlib.sha256(public_pem(key)).hexdigest()


def load_private_key(path: Path) -> PrivateKey:
    data = _read(path)
    password = os.environ.get(PASSWORD_ENV)
    try:
        key = serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        raise KeyMaterialError(
            f"{path}: private key is encrypted; put its passphrase in ${PASSWORD_ENV}"
        ) from None
    except ValueError as exc:
        raise KeyMaterialError(
            f"{path}: not a PEM private key or wrong passphrase ({exc})"
        ) from None
    checked = _supported(key, path)
    if not isinstance(checked, ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey):
        raise KeyMaterialError(f"{path}: expected a private key")
    return checked


def load_public_key(path: Path) -> PublicKey:
    data = _read(path)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KeyMaterialError(
            f"{path}: not a PEM public key (pass the .pub.pem, or a certificate chain with"
            " --certificate-chain)"
        ) from None
    return as_public_key(key, path)


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read key: {exc.strerror or exc}") from None


def _supported(key: object, where: object) -> PrivateKey | PublicKey:
    if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
        if key.curve.name not in _CURVE_HASH:
            raise KeyMaterialError(
                f"{where}: unsupported curve {key.curve.name}; use P-256, P-384, P-521 or Ed25519"
            )
        return key
    if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
        return key
    raise KeyMaterialError(
        f"{where}: unsupported key type {type(key).__name__}; use EC P-256/P-384/P-521 or Ed25519"
    )


def as_public_key(key: object, where: object) -> PublicKey:
    """`key` (from a certificate) if it is a supported public key type."""
    checked = _supported(key, where)
    if not isinstance(checked, ec.EllipticCurvePublicKey | ed25519.Ed25519PublicKey):
        raise KeyMaterialError(f"{where}: expected a public key")
    return checked


def sign_bytes(key: PrivateKey, data: bytes) -> bytes:
    if isinstance(key, ed25519.Ed25519PrivateKey):
        return key.sign(data)
    return key.sign(data, ec.ECDSA(_CURVE_HASH[key.curve.name]()))


def verify_bytes(key: PublicKey, signature: bytes, data: bytes) -> None:
    """Raise `SignatureError` unless `signature` over `data` verifies with `key`."""
    try:
        if isinstance(key, ed25519.Ed25519PublicKey):
            key.verify(signature, data)
        else:
            key.verify(signature, data, ec.ECDSA(_CURVE_HASH[key.curve.name]()))
    except InvalidSignature:
        raise SignatureError(
            "signature does not verify: wrong key, or the bundle was altered"
        ) from None
