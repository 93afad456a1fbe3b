"""What every command shares: exit codes, the one way to complain, output, argument types.

Kept light (no scanner, no renderer): every command imports it before it parses anything.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from modelward.errors import ModelwardError
from modelward.findings import Severity

#: Exit codes, stable and shared by every command.
EXIT_CLEAN = 0
#: Findings at or above the threshold, or a failed check.
EXIT_FINDINGS = 1
#: Usage or I/O error: bad option, missing path, unreadable file, bad config, unwritable output.
EXIT_ERROR = 2

#: What an error message starts with; a command may set its own (`modelward serve`) with
#: `parser.set_defaults(error_prefix=...)`.
PROG = "modelward"


def complain(message: str, prog: str = PROG) -> None:
    """Print `<prog>: <message>` to stderr: an error, or a warning that says so."""
    print(f"{prog}: {message}", file=sys.stderr)


def fail(message: str, code: int = EXIT_ERROR) -> int:
    """Complain and return `code` (by default `EXIT_ERROR`), for `return fail(...)`."""
    complain(message)
    return code


def write_output(text: str, path: Path | None) -> None:
    """`text` to `path` (UTF-8), or to stdout when `path` is None.

    Raises `ModelwardError` ("cannot write PATH: why") when the file cannot be written.
    """
    if path is None:
        sys.stdout.write(text)
        sys.stdout.flush()
        return
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise ModelwardError(f"cannot write {path}: {exc.strerror or exc}") from exc


def severity(text: str) -> Severity:
    """Argument type: a severity name (info, low, medium, high, critical)."""
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def positive_int(text: str) -> int:
    """Argument type: a whole number of at least 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, not {text!r}")
    return value


def positive_float(text: str) -> float:
    """Argument type: a number above 0."""
    try:
        value = float(text)
    except ValueError:
        value = 0.0
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be a number above 0, not {text!r}")
    return value


def non_negative_int(text: str) -> int:
    """Argument type: a whole number of at least 0 (digits only)."""
    if not text.isdigit():
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 0, not {text!r}")
    return int(text)
