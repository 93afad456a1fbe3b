"""Sign and verify whole models: the glue between hashing, keys, bundles and comparison."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import replace
from os import PathLike
from pathlib import Path
from typing import TYPE_CHECKING

from modelward.integrity.bundle import Bundle, make_bundle
from modelward.integrity.cache import DigestCache, open_cache
from modelward.integrity.comparison import VerificationResult, compare
from modelward.integrity.errors import KeyMaterialError
from modelward.integrity.keys import load_private_key, load_public_key
from modelward.integrity.manifest import DEFAULT_SHARD_SIZE, Manifest, hash_model
from modelward.integrity.walk import DEFAULT_IGNORE

if TYPE_CHECKING:
    from cryptography import x509

StrPath = str | PathLike[str]


def default_signature_path(model: StrPath) -> Path:
    """`<folder>/model.sig` for a folder (model-signing's name), `<file>.sig` for a file."""
    path = Path(model)
    return path / "model.sig" if path.is_dir() else path.with_name(path.name + ".sig")


def with_signature_ignored(model: Path, signature: Path, ignore: Iterable[str]) -> tuple[str, ...]:
    """`ignore` plus the bundle's own path when it lies inside the model folder."""
    paths = tuple(ignore)
    if model.is_dir():
        rel = os.path.relpath(os.path.abspath(signature), os.path.abspath(model))
        if not rel.startswith("..") and Path(rel).as_posix() not in paths:
            paths += (Path(rel).as_posix(),)
    return paths


def sign(
    model: StrPath,
    key: StrPath,
    *,
    signature: StrPath | None = None,
    certificate: StrPath | None = None,
    certificate_chain: Iterable[StrPath] = (),
    method: str = "files",
    algorithm: str = "sha256",
    shard_size: int = DEFAULT_SHARD_SIZE,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE,
    allow_symlinks: bool = False,
    cache: bool | DigestCache = True,
    jobs: int | None = None,
) -> Path:
    """Hash `model` and write a signed bundle; returns the bundle's path.

    With `certificate` (PEM, matching `key`) the bundle carries that certificate
    followed by `certificate_chain`, for verifiers that trust a CA rather than a key.
    """
    from cryptography.hazmat.primitives.serialization import Encoding

    path = Path(model)
    out = Path(signature) if signature is not None else default_signature_path(path)
    private = load_private_key(Path(key))
    certs: list[bytes] | None = None
    if certificate is not None:
        chain = _read_certs(Path(certificate))[:1]
        if chain[0].public_key() != private.public_key():
            raise KeyMaterialError(f"{certificate}: certificate does not match the private key")
        for extra in certificate_chain:
            chain += _read_certs(Path(extra))
        certs = [c.public_bytes(Encoding.DER) for c in chain]
    db = open_cache(cache)
    try:
        manifest = hash_model(
            path,
            algorithm=algorithm,
            method=method,
            shard_size=shard_size,
            ignore_paths=with_signature_ignored(path, out, ignore_paths),
            allow_symlinks=allow_symlinks,
            cache=db,
            jobs=jobs,
        )
    finally:
        if db is not None and db is not cache:
            db.close()
    out.write_text(json.dumps(make_bundle(manifest, private, certs), indent=2) + "\n")
    return out


def verify(
    model: StrPath,
    *,
    signature: StrPath | None = None,
    key: StrPath | None = None,
    certificate_chain: Iterable[StrPath] = (),
    allow_symlinks: bool = False,
    cache: bool | DigestCache = True,
    jobs: int | None = None,
    whole_sha256: bool = False,
) -> VerificationResult:
    """Check the bundle's signature, then compare `model` with the signed manifest.

    Raises `IntegrityError` subclasses for a bad bundle, key or signature; a
    model that differs is not an exception: see `VerificationResult.ok`. With
    `whole_sha256`, the result's `file_sha256` holds every hashed file's SHA-256
    even when the bundle uses shards or another algorithm, from the same read.
    """
    path = Path(model)
    sig = Path(signature) if signature is not None else default_signature_path(path)
    expected, signer = verified_manifest(sig, key=key, certificate_chain=certificate_chain)
    db = open_cache(cache)
    try:
        result = compare_signed(
            path,
            sig,
            expected,
            allow_symlinks=allow_symlinks,
            cache=db,
            jobs=jobs,
            whole_sha256=whole_sha256,
        )
    finally:
        if db is not None and db is not cache:
            db.close()
    result.signer = signer
    return result


def compare_signed(
    model: Path,
    signature: Path,
    expected: Manifest,
    *,
    allow_symlinks: bool = False,
    cache: DigestCache | None = None,
    jobs: int | None = None,
    whole_sha256: bool = False,
) -> VerificationResult:
    """Compare `model` with a verified manifest, leaving the bundle itself out."""
    ser = expected.serialization
    ignore = with_signature_ignored(model, signature, ser.ignore_paths)
    if ignore != ser.ignore_paths:
        expected = replace(expected, serialization=replace(ser, ignore_paths=ignore))
    return compare(
        model,
        expected,
        allow_symlinks=allow_symlinks,
        cache=cache,
        jobs=jobs,
        whole_sha256=whole_sha256,
    )


def verified_manifest(
    signature: Path, *, key: StrPath | None = None, certificate_chain: Iterable[StrPath] = ()
) -> tuple[Manifest, str]:
    """The manifest a bundle signs, once its signature checks out; and who signed it."""
    bundle = Bundle.read(signature)
    chain = [Path(c) for c in certificate_chain]
    if chain:
        expected = bundle.verify_with_chain([_read_bytes(c) for c in chain])
        return expected, "certificate chain " + ", ".join(str(c) for c in chain)
    if key is not None:
        return bundle.verify_with_key(load_public_key(Path(key))), f"key {key}"
    raise KeyMaterialError(
        "give a public key (--key) or trusted certificates (--certificate-chain)"
    )


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise KeyMaterialError(f"{path}: cannot read: {exc.strerror or exc}") from None


def _read_certs(path: Path) -> list[x509.Certificate]:
    from modelward.integrity.certs import load_pem_certificates  # x509 only when needed

    return list(load_pem_certificates(_read_bytes(path), path))
