"""`modelward` entry point: one sub-command per module in this package.

Exit codes are stable and shared by every sub-command:
0 clean, 1 findings at or above the threshold (or a failed check), 2 usage or I/O error.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from modelward import __version__
from modelward.cli import bom as bom_command
from modelward.cli import diff as diff_command
from modelward.cli import gate as gate_command
from modelward.cli import hash as hash_command
from modelward.cli import history as history_command
from modelward.cli import keygen as keygen_command
from modelward.cli import lock as lock_command
from modelward.cli import names as names_command
from modelward.cli import scan as scan_command
from modelward.cli import scan_data as scan_data_command
from modelward.cli import scan_model as scan_model_command
from modelward.cli import scan_text as scan_text_command
from modelward.cli import serve as serve_command
from modelward.cli import sign as sign_command
from modelward.cli import verify as verify_command

EXIT_CLEAN = 0
EXIT_FINDINGS = 1
EXIT_ERROR = 2

#: Sub-command modules; each has `register(subparsers)` which sets `func` on its parser.
COMMANDS = (
    scan_command,
    hash_command,
    keygen_command,
    sign_command,
    verify_command,
    lock_command,
    bom_command,
    names_command,
    diff_command,
    gate_command,
    scan_model_command,
    scan_data_command,
    scan_text_command,
    serve_command,
    history_command,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="modelward",
        description="Defend the AI supply chain: scan model files for code that runs on load,"
        " without loading them.",
        epilog="Exit codes: 0 clean, 1 findings at/above --fail-on (or a failed check),"
        " 2 usage or I/O error.",
    )
    parser.add_argument("--version", action="version", version=f"modelward {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for command in COMMANDS:
        command.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except KeyboardInterrupt:
        print("modelward: interrupted", file=sys.stderr)
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
