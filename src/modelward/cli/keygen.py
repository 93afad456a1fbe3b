"""`modelward keygen`: a signing key pair (private key mode 0600, public key beside it)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, fail


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "keygen",
        help="create a key pair for `modelward sign`",
        description="Write a private key (PKCS#8 PEM, mode 0600) and its public key as"
        " <name>.pub.pem beside it. EC P-256 by default, which model-signing also accepts;"
        " Ed25519 keys are verified by modelward only.",
    )
    parser.add_argument("--out", "-o", type=Path, required=True, metavar="KEY.pem")
    parser.add_argument(
        "--type", default="p256", choices=("p256", "p384", "p521", "ed25519"), help="key type"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.integrity.errors import IntegrityError
    from modelward.integrity.keys import generate, public_path_for, write_keypair

    if args.out.exists() or public_path_for(args.out).exists():
        return fail(f"{args.out} or its .pub.pem exists; not overwriting")
    try:
        public = write_keypair(generate(args.type), args.out)
    except (OSError, IntegrityError) as exc:
        return fail(f"cannot write key: {exc}")
    print(f"private key: {args.out} (mode 0600)\npublic key:  {public}")
    return EXIT_CLEAN
