"""Integrity: hash a model, sign it in the OpenSSF model-signing format, verify it.

    >>> from modelward.integrity import hash_model, sign, verify
    >>> manifest = hash_model("models/bert")            # every file, SHA-256
    >>> sign("models/bert", key="key.pem")               # writes models/bert/model.sig
    >>> verify("models/bert", key="key.pub.pem").ok      # True when nothing changed

Bundles are compatible with `model-signing` for key and certificate signing.
"""

from __future__ import annotations

from modelward.integrity.cache import DigestCache
from modelward.integrity.errors import (
    BundleError,
    IntegrityError,
    KeyMaterialError,
    ModelPathError,
    SignatureError,
)
from modelward.integrity.manifest import Manifest, ManifestEntry, Serialization, hash_model
from modelward.integrity.signing import default_signature_path, sign, verify
from modelward.integrity.verify import Mismatch, VerificationResult

__all__ = [
    "BundleError",
    "DigestCache",
    "IntegrityError",
    "KeyMaterialError",
    "Manifest",
    "ManifestEntry",
    "Mismatch",
    "ModelPathError",
    "Serialization",
    "SignatureError",
    "VerificationResult",
    "default_signature_path",
    "hash_model",
    "sign",
    "verify",
]
