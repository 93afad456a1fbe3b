"""`modelward sign`: sign a model in the OpenSSF model-signing bundle format."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, fail
from modelward.cli.hash import add_hashing_arguments, hashing_options


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "sign",
        help="sign a model (model-signing / Sigstore bundle format)",
        description="Hash every file of a model and write a signed Sigstore bundle (in-toto"
        " statement in a DSSE envelope) that `modelward verify` and `model_signing verify`"
        " both accept. Private keys: EC P-256/P-384/P-521 (model-signing compatible) or"
        " Ed25519; an encrypted key reads its passphrase from $MODELWARD_KEY_PASSWORD.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model file or folder")
    parser.add_argument("--key", "-k", type=Path, required=True, metavar="KEY.pem")
    parser.add_argument(
        "--signature",
        "-s",
        type=Path,
        metavar="SIG",
        help="bundle to write (default: PATH/model.sig for a folder, PATH.sig for a file)",
    )
    parser.add_argument(
        "--certificate", type=Path, metavar="CERT.pem", help="signing certificate for the key"
    )
    parser.add_argument(
        "--certificate-chain",
        type=Path,
        action="append",
        default=[],
        metavar="PEM",
        help="intermediate certificates to embed after --certificate (repeatable)",
    )
    add_hashing_arguments(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.integrity import sign

    if args.certificate_chain and args.certificate is None:
        return fail("--certificate-chain needs --certificate")
    try:  # an IntegrityError goes to main
        out = sign(
            args.path,
            args.key,
            signature=args.signature,
            certificate=args.certificate,
            certificate_chain=args.certificate_chain,
            **hashing_options(args),
        )
    except OSError as exc:
        return fail(str(exc))
    print(f"signed {args.path} -> {out}")
    return EXIT_CLEAN
