"""`modelward` entry point: one sub-command per module in this package.

Exit codes are stable and shared by every sub-command (`cli/_common.py`):
0 clean, 1 findings at or above the threshold (or a failed check), 2 usage or I/O error.
A `ModelwardError` a command raises is printed here, once, as `modelward: <message>`.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from modelward import __version__
from modelward.cli._common import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, PROG, complain
from modelward.errors import ModelwardError

__all__ = ["COMMANDS", "EXIT_CLEAN", "EXIT_ERROR", "EXIT_FINDINGS", "build_parser", "main"]

#: Sub-command name -> its module; each module has `register(subparsers)` which sets `func`
#: on its parser. Only the named command's module is imported to run it (start-up is most
#: of a small scan); `--help` and anything else that is no command name imports them all.
COMMANDS = {
    "scan": "scan",
    "hash": "hash",
    "keygen": "keygen",
    "sign": "sign",
    "verify": "verify",
    "lock": "lock",
    "bom": "bom",
    "names": "names",
    "diff": "diff",
    "gate": "gate",
    "scan-model": "scan_model",
    "scan-data": "scan_data",
    "scan-text": "scan_text",
    "serve": "serve",
    "history": "history",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser for every sub-command, or only for `command` (which runs the same way)."""
    parser = argparse.ArgumentParser(
        prog="modelward",
        description="Defend the AI supply chain: scan model files for code that runs on load,"
        " without loading them.",
        epilog="Exit codes: 0 clean, 1 findings at/above --fail-on (or a failed check),"
        " 2 usage or I/O error.",
    )
    parser.add_argument("--version", action="version", version=f"modelward {__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in [command] if command in COMMANDS else COMMANDS:
        module = importlib.import_module(f"modelward.cli.{COMMANDS[name]}")
        module.register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    try:
        code: int = args.func(args)
    except ModelwardError as exc:
        complain(str(exc), getattr(args, "error_prefix", PROG))
        return EXIT_ERROR
    except KeyboardInterrupt:
        complain("interrupted")
        return EXIT_ERROR
    return code


if __name__ == "__main__":
    sys.exit(main())
