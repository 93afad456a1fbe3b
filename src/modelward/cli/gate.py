"""`modelward gate`: scan + lock check + signature + policy, one PASS/FAIL for CI."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, fail, write_output
from modelward.cli._store import add_store_arguments, open_cli_store, record_verdicts

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
    from modelward.provenance.gate import gate
    from modelward.report import RENDERERS

    store = open_cli_store(args)
    try:  # a ConfigError (or StoreError) goes to main
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
    except FileNotFoundError as exc:
        return fail(str(exc))
    finally:
        if store is not None:
            store.close()
    if args.format == "json":
        # The report plus the verdict, so a JSON consumer need not re-derive it.
        text = json.dumps(result.to_dict(), indent=2) + "\n"
    else:
        terminal = args.output is None and sys.stdout.isatty()
        text = RENDERERS[args.format](result.to_report(), terminal=terminal)
        if args.format == "table":
            text += result.summary() + "\n"
    write_output(text, args.output)
    if args.format != "table" or args.output is not None:
        print(result.summary(), file=sys.stderr)
    if not recorded:
        return EXIT_ERROR
    return EXIT_CLEAN if result.passed else EXIT_FINDINGS
