"""`modelward diff REFERENCE CANDIDATE`: what changed in a model's architecture (and weights).

Only wiring: parse arguments, call `modelward.diff`, render its report, map it to an
exit code. Readers and renderers are imported inside `run`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, EXIT_FINDINGS, fail, severity, write_output
from modelward.cli.scan import FORMATS_HELP
from modelward.findings import Severity

EXIT_CODES_HELP = """\
exit codes:
  0  identical, or only weight drift below --fail-on
  1  a difference at or above --fail-on (default: medium): the architecture changed
  2  usage error, unreadable file, or a format diff cannot read
"""


def register(subparsers: Any) -> None:
    from modelward.report import RENDERERS

    parser = subparsers.add_parser(
        "diff",
        help="compare a model with a reference: tensors/layers/nodes added, removed,"
        " reshaped, rewired (and weight drift)",
        description="Compare a candidate model with a reference, statically. Works across\n"
        "safetensors, PyTorch checkpoints, ONNX, Keras (.keras) and GGUF, and between\n"
        "formats (a safetensors file against a PyTorch checkpoint of the same weights).\n"
        "Reports tensors added, removed, reshaped or retyped, graph nodes added or\n"
        "changed, and outputs that now depend on operations they did not (a spliced-in\n"
        "branch). Nothing is loaded or executed.",
        epilog="\n".join((FORMATS_HELP, EXIT_CODES_HELP)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("reference", type=Path, metavar="REFERENCE", help="the trusted model")
    parser.add_argument("candidate", type=Path, metavar="CANDIDATE", help="the model to check")
    parser.add_argument(
        "--weights",
        action="store_true",
        help="also compare tensor values (memory-mapped, chunked): per-tensor max abs and"
        " relative L2 drift, so a fine-tune is told apart from a re-architecture",
    )
    parser.add_argument(
        "--format",
        "-f",
        default="table",
        choices=list(RENDERERS),
        help="output format (default: table)",
    )
    parser.add_argument(
        "--fail-on",
        default=Severity.MEDIUM,
        type=severity,
        metavar="SEVERITY",
        help="exit 1 when a difference is at or above this severity:"
        " info, low, medium, high, critical (default: medium)",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.modeldiff import diff
    from modelward.report import RENDERERS

    try:  # a DiffError goes to main
        result = diff(args.reference, args.candidate, weights=args.weights)
    except OSError as exc:
        return fail(f"{exc.filename or args.candidate}: {exc.strerror or exc}")
    report = result.to_report()
    write_output(RENDERERS[args.format](report, terminal=sys.stdout.isatty()), None)
    return EXIT_FINDINGS if report.has_findings_at(args.fail_on) else EXIT_CLEAN
