"""`modelward scan`: statically scan model files and folders."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelward.config import ConfigError, ScanConfig
from modelward.findings import Severity


def register(subparsers: Any) -> None:
    from modelward.report import RENDERERS

    parser = subparsers.add_parser(
        "scan",
        help="scan model files or folders for code execution and tampering, without loading them",
        description="Statically scan model files (pickle, PyTorch, joblib, NumPy, ...) and"
        " folders, recursively. Formats are detected by content, not extension. Nothing is"
        " loaded or executed.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="file or folder")
    parser.add_argument(
        "--format",
        "-f",
        default="table",
        choices=sorted(RENDERERS),
        help="output format (default: table)",
    )
    parser.add_argument("--output", "-o", type=Path, help="write the report to FILE, not stdout")
    parser.add_argument(
        "--fail-on",
        default="medium",
        type=_severity,
        metavar="SEVERITY",
        help="exit 1 when a finding is at or above this severity:"
        " info, low, medium, high, critical (default: medium)",
    )
    parser.add_argument(
        "--jobs", "-j", type=int, default=1, metavar="N", help="scan N files in parallel"
    )
    parser.add_argument(
        "--config",
        type=Path,
        help="TOML config (allow-list extensions, limits); a pyproject.toml reads [tool.modelward]",
    )
    parser.set_defaults(func=run)


def _severity(text: str) -> Severity:
    try:
        return Severity.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def run(args: argparse.Namespace) -> int:
    from modelward.cli.main import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS
    from modelward.report import RENDERERS
    from modelward.scanner import scan_paths

    try:
        config = ScanConfig.from_file(args.config) if args.config else ScanConfig()
    except ConfigError as exc:
        print(f"modelward: {exc}", file=sys.stderr)
        return EXIT_ERROR
    if args.jobs < 1:
        print("modelward: --jobs must be at least 1", file=sys.stderr)
        return EXIT_ERROR
    try:
        report = scan_paths(args.paths, config=config, jobs=args.jobs)
    except FileNotFoundError as exc:
        print(f"modelward: {exc}", file=sys.stderr)
        return EXIT_ERROR
    text = RENDERERS[args.format](report)
    if args.output:
        args.output.write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text)
    for error in report.errors:
        print(f"modelward: {error}", file=sys.stderr)
    if report.has_findings_at(args.fail_on):
        return EXIT_FINDINGS
    return EXIT_ERROR if report.errors else EXIT_CLEAN
