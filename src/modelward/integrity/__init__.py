"""Integrity: hash a model, sign it in the OpenSSF model-signing format, verify it.

    >>> from modelward.integrity import hash_model, sign, verify
    >>> manifest = hash_model("models/bert")            # every file, SHA-256
    >>> sign("models/bert", key="key.pem")               # writes models/bert/model.sig
    >>> verify("models/bert", key="key.pub.pem").ok      # True when nothing changed

Bundles are compatible with `model-signing` for key and certificate signing.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache
    from modelward.integrity.comparison import Mismatch, VerificationResult
    from modelward.integrity.errors import (
        BundleError,
        IntegrityError,
        KeyMaterialError,
        ModelPathError,
        SignatureError,
    )
    from modelward.integrity.hf_cache import verify_hf_cache
    from modelward.integrity.manifest import Manifest, ManifestEntry, Serialization, hash_model
    from modelward.integrity.signing import default_signature_path, sign, verify

#: Public name to defining module; imported on first use so that `modelward.integrity.walk`
#: and the CLI start without loading `cryptography` or `sqlite3`.
_EXPORTS = {
    "DigestCache": "cache",
    "BundleError": "errors",
    "IntegrityError": "errors",
    "KeyMaterialError": "errors",
    "ModelPathError": "errors",
    "SignatureError": "errors",
    "Manifest": "manifest",
    "ManifestEntry": "manifest",
    "Serialization": "manifest",
    "hash_model": "manifest",
    "default_signature_path": "signing",
    "sign": "signing",
    "verify": "signing",
    "Mismatch": "comparison",
    "VerificationResult": "comparison",
    "verify_hf_cache": "hf_cache",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'modelward.integrity' has no attribute {name!r}")
    return getattr(importlib.import_module(f"modelward.integrity.{module}"), name)


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
    "verify_hf_cache",
]
