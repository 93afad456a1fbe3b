"""Integrity: hash a model, sign it in the OpenSSF model-signing format, verify it.

    >>> from modelward.integrity import hash_model, sign, verify
    >>> manifest = hash_model("models/bert")            # every file, SHA-256
    >>> sign("models/bert", key="key.pem")               # writes models/bert/model.sig
    >>> verify("models/bert", key="key.pub.pem").ok      # True when nothing changed

Bundles are compatible with `model-signing` for key and certificate signing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from modelward._lazy import lazy_exports

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
    "DigestCache": "modelward.integrity.cache",
    "BundleError": "modelward.integrity.errors",
    "IntegrityError": "modelward.integrity.errors",
    "KeyMaterialError": "modelward.integrity.errors",
    "ModelPathError": "modelward.integrity.errors",
    "SignatureError": "modelward.integrity.errors",
    "Manifest": "modelward.integrity.manifest",
    "ManifestEntry": "modelward.integrity.manifest",
    "Serialization": "modelward.integrity.manifest",
    "hash_model": "modelward.integrity.manifest",
    "default_signature_path": "modelward.integrity.signing",
    "sign": "modelward.integrity.signing",
    "verify": "modelward.integrity.signing",
    "Mismatch": "modelward.integrity.comparison",
    "VerificationResult": "modelward.integrity.comparison",
    "verify_hf_cache": "modelward.integrity.hf_cache",
}


if not TYPE_CHECKING:  # type checkers see the imports above, and no catch-all __getattr__
    __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)


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
