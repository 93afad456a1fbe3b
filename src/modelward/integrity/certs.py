"""Certificate-chain checks for certificate-signed bundles, with `cryptography` alone.

Mirrors model-signing: the chain in the bundle (leaf first) must lead to one of
the trusted certificates given by the user, every certificate valid at the
leaf's notBefore (the signing time, as there is no timestamp), issuers marked
as CAs, and the leaf allowed to sign (digitalSignature key usage or the
codeSigning extended key usage).
"""

from __future__ import annotations

from datetime import datetime

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.x509.oid import ExtendedKeyUsageOID

from modelward.integrity.errors import KeyMaterialError, SignatureError
from modelward.integrity.keys import PublicKey, as_public_key

MAX_CHAIN_DEPTH = 8


def load_pem_certificates(data: bytes, where: object) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise KeyMaterialError(f"{where}: not a PEM certificate file") from None
    return certs


def verify_chain(chain_der: list[bytes], trusted_pem: list[bytes]) -> PublicKey:
    """The leaf's public key, once the chain is shown to lead to a trusted certificate."""
    try:
        chain = [x509.load_der_x509_certificate(c) for c in chain_der]
    except ValueError:
        raise SignatureError("bundle holds a malformed certificate") from None
    anchors = [c for pem in trusted_pem for c in load_pem_certificates(pem, "trusted chain")]
    if not anchors:
        raise KeyMaterialError("no trusted certificates given")
    leaf = chain[0]
    when = leaf.not_valid_before_utc
    _check_leaf_usage(leaf)
    current = leaf
    pool = chain[1:]
    for _ in range(MAX_CHAIN_DEPTH):
        _check_time(current, when)
        if any(current == a for a in anchors):
            return as_public_key(leaf.public_key(), "signing certificate")
        issuer = _find_issuer(current, anchors)
        if issuer is not None:
            _check_time(issuer, when)
            return as_public_key(leaf.public_key(), "signing certificate")
        issuer = _find_issuer(current, pool)
        if issuer is None:
            raise SignatureError(
                f"certificate chain does not lead to a trusted certificate"
                f" (stuck at {current.subject.rfc4514_string()})"
            )
        pool = [c for c in pool if c != issuer]
        current = issuer
    raise SignatureError("certificate chain is too long")


def _find_issuer(
    cert: x509.Certificate, candidates: list[x509.Certificate]
) -> x509.Certificate | None:
    for cand in candidates:
        if cand.subject != cert.issuer or not _is_ca(cand):
            continue
        try:
            cert.verify_directly_issued_by(cand)
        except (InvalidSignature, ValueError, TypeError):
            continue
        return cand
    return None


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        constraints = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not constraints.ca:
        return False
    try:
        usage = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return True
    return usage.key_cert_sign


def _check_time(cert: x509.Certificate, when: datetime) -> None:
    if not cert.not_valid_before_utc <= when <= cert.not_valid_after_utc:
        raise SignatureError(
            f"certificate {cert.subject.rfc4514_string()} was not valid at signing time {when}"
        )


def _check_leaf_usage(leaf: x509.Certificate) -> None:
    try:
        if leaf.extensions.get_extension_for_class(x509.KeyUsage).value.digital_signature:
            return
    except x509.ExtensionNotFound:
        pass
    try:
        eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        if ExtendedKeyUsageOID.CODE_SIGNING in eku:
            return
    except x509.ExtensionNotFound:
        pass
    raise SignatureError(
        "signing certificate is not allowed to sign (no digitalSignature or codeSigning usage)"
    )
