"""`modelward verify`: check a model against its signature, or a Hugging Face cache offline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._common import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, complain, fail
from modelward.cli._store import add_store_arguments, open_cli_store, record_verdicts
from modelward.cli.hash import add_common_arguments

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache
    from modelward.integrity.comparison import VerificationResult
    from modelward.store import ResultStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "verify",
        help="verify a model against its signature (or a Hugging Face cache against blob names)",
        description="Verify the bundle's signature with a public key or trusted certificates,"
        " then compare the model with the signed manifest: an added, missing or resized file"
        " fails at once, before anything is hashed; then every file is hashed with the"
        " method and algorithm the signature records. Exit 0 only when everything matches."
        " With --hf-cache, check every snapshot file of a Hugging Face cache against its"
        " blob name (SHA-256 for LFS files, git SHA-1 for the rest), offline.",
    )
    parser.add_argument("path", type=Path, nargs="?", metavar="PATH", help="model file or folder")
    parser.add_argument(
        "--signature",
        "-s",
        type=Path,
        metavar="SIG",
        help="bundle (default: PATH/model.sig for a folder, PATH.sig for a file)",
    )
    parser.add_argument("--key", "-k", type=Path, metavar="PUB.pem", help="signer's public key")
    parser.add_argument(
        "--certificate-chain",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="trusted CA certificates for a certificate-signed bundle (repeatable)",
    )
    parser.add_argument(
        "--hf-cache",
        type=Path,
        metavar="DIR",
        help="verify a Hugging Face hub cache (or one models--org--name folder) instead",
    )
    parser.add_argument("--format", "-f", default="text", choices=("text", "json"))
    add_common_arguments(parser)
    add_store_arguments(parser, "record each file's signature verdict in (not with --hf-cache)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.integrity import IntegrityError, verify, verify_hf_cache
    from modelward.integrity.cache import open_cache

    if (args.hf_cache is None) == (args.path is None):
        return fail("give either PATH or --hf-cache DIR")
    if args.hf_cache is None and args.key is None and not args.certificate_chain:
        return fail("give --key PUB.pem or --certificate-chain PEM")
    # A blob-name check of an HF cache is no signature verdict: nothing is recorded.
    store = open_cli_store(args) if args.hf_cache is None else None
    cache = open_cache(not args.no_cache)
    try:
        try:
            if args.hf_cache is not None:
                result = verify_hf_cache(args.hf_cache, cache=cache, jobs=args.jobs)
            else:
                result = verify(
                    args.path,
                    signature=args.signature,
                    key=args.key,
                    certificate_chain=args.certificate_chain,
                    allow_symlinks=args.allow_symlinks,
                    cache=cache if cache is not None else False,
                    jobs=args.jobs,
                    # The store keys verdicts by each file's SHA-256: taken in the same
                    # read as the signed digests, so the model is read once.
                    whole_sha256=store is not None,
                )
        except (IntegrityError, OSError) as exc:
            complain(f"verification failed: {exc}")
            if not _is_rejection(exc):
                return EXIT_ERROR
            recorded = _record(store, args, cache, False, f"signature rejected: {exc}", None)
            return EXIT_FINDINGS if recorded else EXIT_ERROR
        if result.ok:
            detail = f"matches the manifest signed by {result.signer}"
        else:
            detail = f"differs from the manifest signed by {result.signer}"
        recorded = _record(store, args, cache, result.ok, detail, result)
    finally:
        if cache is not None:
            cache.close()
        if store is not None:
            store.close()
    if args.format == "json":
        sys.stdout.write(json.dumps(result.to_dict(), indent=2) + "\n")
    elif result.ok:
        print(f"OK: {result.model} matches ({result.signer or 'blob names'})")
    else:
        print(f"FAILED: {result.model}")
        for line in result.lines():
            print(f"  {line}")
    if not recorded:
        return EXIT_ERROR
    return EXIT_CLEAN if result.ok else EXIT_FINDINGS


def _record(
    store: ResultStore | None,
    args: argparse.Namespace,
    cache: DigestCache | None,
    passed: bool,
    detail: str,
    result: VerificationResult | None,
) -> bool:
    """Each file's signature verdict, the bundle itself left out."""
    if store is None:
        return True
    from modelward.integrity.signing import default_signature_path, with_signature_ignored
    from modelward.integrity.walk import DEFAULT_IGNORE
    from modelward.store.verdicts import culprits_of

    signature = args.signature or default_signature_path(args.path)
    return record_verdicts(
        store,
        args.path,
        "signature",
        passed=passed,
        detail=detail,
        culprits=culprits_of(result, "signed manifest") if result is not None else None,
        ignore_paths=with_signature_ignored(args.path, signature, DEFAULT_IGNORE),
        allow_symlinks=args.allow_symlinks,
        cache=cache,
        sha256=result.file_sha256 if result is not None else None,
    )


def _is_rejection(exc: Exception) -> bool:
    """A bundle that does not verify (wrong key, tampered) fails the check: exit 1, not 2."""
    from modelward.integrity.errors import BundleError, SignatureError, SymlinkError

    return isinstance(exc, SignatureError | BundleError | SymlinkError)
