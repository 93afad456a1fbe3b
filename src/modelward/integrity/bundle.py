"""The OpenSSF model-signing signature format: in-toto Statement, DSSE, Sigstore bundle v0.3.

Layout, byte-compatible with `model-signing` 1.x for key and certificate signing:

* Statement v1 whose subject is the model name with the SHA-256 over the raw
  resource digests, predicateType `https://model_signing/signature/v1.0`, and a
  predicate with `serialization` and `resources` (name, algorithm, hex digest).
  modelward also writes `sizes` (file name to size) in the predicate, which v1.0
  verifiers ignore, so that a resized file is caught before anything is hashed.
* DSSE envelope, payloadType `application/vnd.in-toto+json`, signed over the
  PAE `DSSEv1 <len> <type> <len> <payload>`.
* Sigstore bundle v0.3 JSON whose verification material is a public-key hint
  (SHA-256 of the PEM public key) or an X.509 chain (leaf first, DER base64).

Keyless Sigstore bundles (Fulcio certificate plus Rekor entry) are recognised but
not verified: that needs the Sigstore trust root and transparency-log proofs;
use `model_signing verify sigstore` for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from modelward.integrity.errors import BundleError, IntegrityError, SignatureError
from modelward.integrity.keys import PrivateKey, PublicKey, key_hint, sign_bytes, verify_bytes
from modelward.integrity.manifest import Manifest, ManifestEntry, Serialization
from modelward.integrity.walk import name_key

BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
#: Cap on a bundle file: a manifest of 100k shards stays far below it.
MAX_BUNDLE_BYTES = 64 << 20


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding: what is actually signed."""
    head = f"DSSEv1 {len(payload_type.encode())} {payload_type} {len(payload)} "
    return head.encode() + payload


def statement(manifest: Manifest) -> dict[str, Any]:
    predicate: dict[str, Any] = {
        "serialization": manifest.serialization.to_predicate(),
        "resources": manifest.resources(),
    }
    if manifest.serialization.method == "files":
        predicate["sizes"] = manifest.files
    return {
        "_type": STATEMENT_TYPE,
        "subject": [{"name": manifest.name, "digest": {"sha256": manifest.subject_digest()}}],
        "predicateType": PREDICATE_TYPE,
        "predicate": predicate,
    }


def make_bundle(
    manifest: Manifest, key: PrivateKey, certificates: list[bytes] | None = None
) -> dict[str, Any]:
    """A signed bundle; `certificates` (DER, leaf first) switches to certificate material."""
    payload = json.dumps(statement(manifest), indent=2).encode()
    sig = sign_bytes(key, pae(PAYLOAD_TYPE, payload))
    material: dict[str, Any]
    if certificates:
        chain = [{"rawBytes": base64.b64encode(c).decode()} for c in certificates]
        material = {"x509CertificateChain": {"certificates": chain}, "tlogEntries": []}
    else:
        material = {"publicKey": {"hint": key_hint(key.public_key())}, "tlogEntries": []}
    return {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": material,
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": [{"sig": base64.b64encode(sig).decode(), "keyid": ""}],
        },
    }


@dataclass(frozen=True)
class Bundle:
    """A parsed, not yet verified, bundle."""

    material: dict[str, Any]
    payload_type: str
    payload: bytes
    signature: bytes

    @classmethod
    def read(cls, path: Path) -> Bundle:
        try:
            with path.open("rb") as f:
                data = f.read(MAX_BUNDLE_BYTES + 1)
        except OSError as exc:
            raise IntegrityError(f"{path}: cannot read signature: {exc.strerror or exc}") from None
        if len(data) > MAX_BUNDLE_BYTES:
            raise BundleError(f"{path}: signature bundle larger than {MAX_BUNDLE_BYTES} bytes")
        try:
            return cls.parse(json.loads(data))
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise BundleError(f"{path}: not a JSON signature bundle ({exc})") from None

    @classmethod
    def parse(cls, doc: Any) -> Bundle:
        if not isinstance(doc, dict):
            raise BundleError("bundle is not a JSON object")
        media = doc.get("mediaType")
        if media != BUNDLE_MEDIA_TYPE:
            raise BundleError(f"unsupported bundle mediaType {media!r}; expected v0.3")
        material = doc.get("verificationMaterial")
        env = doc.get("dsseEnvelope")
        if not isinstance(material, dict) or not isinstance(env, dict):
            raise BundleError("bundle lacks verificationMaterial or dsseEnvelope")
        sigs = env.get("signatures")
        if not isinstance(sigs, list) or len(sigs) != 1 or not isinstance(sigs[0], dict):
            raise BundleError("DSSE envelope must hold exactly one signature")
        payload_type = env.get("payloadType")
        if not isinstance(payload_type, str):
            raise BundleError("DSSE envelope lacks payloadType")
        return cls(
            material=material,
            payload_type=payload_type,
            payload=_b64(env.get("payload"), "payload"),
            signature=_b64(sigs[0].get("sig"), "signature"),
        )

    @property
    def kind(self) -> str:
        """`key`, `certificate` or `keyless`."""
        if "x509CertificateChain" in self.material:
            return "certificate"
        if "certificate" in self.material:
            return "keyless"
        if "publicKey" in self.material:
            return "key"
        raise BundleError("bundle verificationMaterial has no key, certificate or chain")

    def verify_with_key(self, key: PublicKey) -> Manifest:
        self._refuse_keyless()
        if self.kind != "key":
            raise BundleError(f"bundle is {self.kind}-signed; verify it with --certificate-chain")
        material = self.material["publicKey"]
        hint = material.get("hint") if isinstance(material, dict) else material
        if hint is not None and not isinstance(hint, str):
            raise BundleError("bundle publicKey is not an object with a string hint")
        if hint and hint != key_hint(key):
            raise SignatureError(
                "wrong key: the bundle was signed by a different key"
                f" (hint {hint[:16]}..., given key {key_hint(key)[:16]}...)"
            )
        verify_bytes(key, self.signature, pae(self.payload_type, self.payload))
        return self._manifest()

    def verify_with_chain(self, trusted: list[bytes]) -> Manifest:
        self._refuse_keyless()
        if self.kind != "certificate":
            raise BundleError("bundle is key-signed; verify it with --key")
        raw = self.material["x509CertificateChain"].get("certificates")
        if not isinstance(raw, list) or not raw:
            raise BundleError("bundle certificate chain is empty")
        chain = [
            _b64(c.get("rawBytes") if isinstance(c, dict) else None, "certificate") for c in raw
        ]
        from modelward.integrity.certs import verify_chain  # x509 only when needed

        key = verify_chain(chain, trusted)
        verify_bytes(key, self.signature, pae(self.payload_type, self.payload))
        return self._manifest()

    def _refuse_keyless(self) -> None:
        if self.kind == "keyless":
            raise BundleError(
                "keyless Sigstore bundle: modelward cannot verify it offline (it needs the"
                " Sigstore trust root and Rekor proofs); use `model_signing verify sigstore`"
            )

    def _manifest(self) -> Manifest:
        """The signed manifest; only called once the signature verified."""
        if self.payload_type != PAYLOAD_TYPE:
            raise BundleError(f"unexpected DSSE payloadType {self.payload_type!r}")
        try:
            doc = json.loads(self.payload)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise BundleError("signed payload is not JSON") from None
        return manifest_from_statement(doc)


def manifest_from_statement(doc: Any) -> Manifest:
    """The expected manifest in a signed statement, after checking its consistency."""
    if not isinstance(doc, dict) or doc.get("_type") != STATEMENT_TYPE:
        raise BundleError("signed payload is not an in-toto Statement v1")
    if doc.get("predicateType") != PREDICATE_TYPE:
        raise BundleError(f"unsupported predicateType {doc.get('predicateType')!r}")
    subjects = doc.get("subject")
    predicate = doc.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(predicate, dict):
        raise BundleError("statement must have one subject and a predicate")
    serialization = Serialization.from_predicate(predicate.get("serialization"))
    resources = predicate.get("resources")
    if not isinstance(resources, list):
        raise BundleError("predicate.resources is not a list")
    sizes = predicate.get("sizes", {})
    if not isinstance(sizes, dict):
        raise BundleError("predicate.sizes is not an object")
    subject_hash = hashlib.sha256()
    entries: list[ManifestEntry] = []
    for res in resources:
        if not isinstance(res, dict):
            raise BundleError("predicate.resources holds a non-object")
        name, algo, digest = res.get("name"), res.get("algorithm"), res.get("digest")
        if not (isinstance(name, str) and isinstance(algo, str) and isinstance(digest, str)):
            raise BundleError(f"resource {res!r} lacks name, algorithm or digest")
        if algo != serialization.resource_algorithm:
            raise BundleError(
                f"resource {name!r} uses {algo!r}, not {serialization.resource_algorithm!r}"
            )
        try:
            raw = bytes.fromhex(digest)
        except ValueError:
            raise BundleError(f"resource {name!r} digest is not hex") from None
        subject_hash.update(raw)
        entries.append(_entry(name, raw, serialization, sizes))
    subject = subjects[0]
    digest_map = subject.get("digest") if isinstance(subject, dict) else None
    expected = digest_map.get("sha256") if isinstance(digest_map, dict) else None
    if expected != subject_hash.hexdigest():
        raise BundleError("statement is inconsistent: subject digest does not match its resources")
    entries.sort(key=lambda e: (name_key(e.path), e.start, e.end))
    return Manifest(str(subject.get("name", "")), serialization, entries)


def _entry(
    name: str, raw: bytes, serialization: Serialization, sizes: dict[str, Any]
) -> ManifestEntry:
    if serialization.method == "files":
        size = sizes.get(name, -1)
        return ManifestEntry(name, size if isinstance(size, int) else -1, 0, -1, raw)
    try:
        path, start, end = name.rsplit(":", 2)
        return ManifestEntry(path, -1, int(start), int(end), raw)
    except ValueError:
        raise BundleError(f"shard resource {name!r} is not path:start:end") from None


def _b64(value: Any, what: str) -> bytes:
    if not isinstance(value, str):
        raise BundleError(f"bundle {what} is missing")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BundleError(f"bundle {what} is not valid base64") from None
