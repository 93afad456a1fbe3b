"""`modelward scan-text`: trigger tokens and duplicates in a labelled text dataset (no model)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, EXIT_FINDINGS, fail, severity
from modelward.findings import Severity

EPILOG = """\
DATA is JSON Lines (one object per line) or CSV with a header (by the .csv suffix). For an
instruction dataset, pass the response field as --label-field.

exit codes:
  0  no finding at or above --fail-on
  1  trigger tokens or duplicates at or above --fail-on (default: medium)
  2  usage or I/O error
"""


def register(subparsers: Any) -> None:
    from modelward.report import RENDERERS

    parser = subparsers.add_parser(
        "scan-text",
        help="find trigger tokens and duplicate records in a labelled text dataset",
        description="Flag tokens and phrases whose records carry one label beyond what the\n"
        "label prior explains (binomial test, Bonferroni), and exact or near duplicates\n"
        "(MinHash), especially with conflicting labels. No model, no torch.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("data", type=Path, metavar="DATA", help="JSONL or CSV file")
    parser.add_argument("--text-field", default="text", metavar="NAME", help="(default: text)")
    parser.add_argument("--label-field", default="label", metavar="NAME", help="(default: label)")
    parser.add_argument("--format", "-f", default="table", choices=list(RENDERERS))
    parser.add_argument(
        "--fail-on",
        default=Severity.MEDIUM,
        type=severity,
        metavar="SEVERITY",
        help="exit 1 when a finding is at or above this severity (default: medium)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.behaviour.text_scan import scan_text_dataset
    from modelward.findings import ScanReport
    from modelward.report import RENDERERS

    try:
        scan = scan_text_dataset(args.data, args.text_field, args.label_field)
    except OSError as exc:
        return fail(f"cannot read {args.data}: {exc.strerror or exc}")
    report = ScanReport([scan.result], seconds=scan.result.seconds)
    sys.stdout.write(RENDERERS[args.format](report, terminal=sys.stdout.isatty()))
    return EXIT_FINDINGS if report.has_findings_at(args.fail_on) else EXIT_CLEAN
