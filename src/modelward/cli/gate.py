"""`modelward gate`: scan + lock check + signature + policy, one PASS/FAIL for CI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from modelward.cli._store import add_store_arguments, open_cli_store, record_verdicts
from modelward.store.errors import StoreError

EPILOG = """\
config (--config FILE, else ./modelward.toml, else ./pyproject.toml [tool.modelward]):
  [scan] as for `modelward scan`; [policy] as in docs/policy.md. Unknown keys are errors.

exit codes:
  0  PASS: every check passed
  1  FAIL: at least one reason (each is listed, with a MW-GATE-* rule id)
  2  usage error, path not found, bad config or unwritable --output
"""


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "gate",
        help="one pass/fail verdict for CI: scan, lock check, signature and trust policy",
        description="Scan a model, check it against the lock file and its signature with the\n"
        "trusted keys, and apply the policy (allowed sources, safetensors-only, fail_on).\n"
        "Prints one PASS or FAIL line with every reason.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model file or folder")
    parser.add_argument("--config", type=Path, metavar="FILE", help="policy/config TOML file")
    parser.add_argument(
        "--signature",
        type=Path,
        metavar="SIG",
        help="signature bundle (default: PATH/model.sig for a folder, PATH.sig for a file)",
    )
    parser.add_argument(
        "--format",
        "-f",
        default="table",
        choices=("table", "json", "sarif"),
        help="output format (default: table)",
    )
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write output to FILE")
    add_store_arguments(parser, "record each file's gate verdict in")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
    from modelward.config import ConfigError
    from modelward.provenance.gate import gate
    from modelward.report import RENDERERS

    try:
        store = open_cli_store(args)
    except StoreError as exc:
        print(f"modelward: {exc}", file=sys.stderr)
        return EXIT_ERROR
    try:
        result = gate(args.path, args.config, signature=args.signature)
        # Links inside an HF snapshot are the norm; one leaving it is a warning, not a verdict.
        recorded = record_verdicts(
            store,
            args.path,
            "gate",
            passed=result.passed,
            detail=result.summary(),
            allow_symlinks=True,
        )
    except (ConfigError, FileNotFoundError) as exc:
        print(f"modelward: {exc}", file=sys.stderr)
        return EXIT_ERROR
    finally:
        if store is not None:
            store.close()
    terminal = args.output is None and sys.stdout.isatty()
    text = RENDERERS[args.format](result.report(), terminal=terminal)
    if args.format == "table":
        text += result.summary() + "\n"
    elif args.format == "json":
        # The renderer's document plus the verdict, so a JSON consumer need not re-derive it.
        doc = json.loads(text)
        doc["gate"] = {"verdict": result.verdict.lower(), "checks": result.checks}
        text = json.dumps(doc, indent=2) + "\n"
    if args.output is not None:
        try:
            args.output.write_text(text, encoding="utf-8")
        except OSError as exc:
            print(f"modelward: cannot write {args.output}: {exc.strerror or exc}", file=sys.stderr)
            return EXIT_ERROR
    else:
        sys.stdout.write(text)
        sys.stdout.flush()
    if args.format != "table" or args.output is not None:
        print(result.summary(), file=sys.stderr)
    if not recorded:
        return EXIT_ERROR
    return EXIT_CLEAN if result.passed else EXIT_FINDINGS
