"""`modelward names`: hub model ids and Python packages that imitate well-known ones."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, EXIT_FINDINGS, fail, write_output

COMMAND_LINE = "<command line>"


def register(subparsers: Any) -> None:
    from modelward.report import RENDERERS

    parser = subparsers.add_parser(
        "names",
        help="flag look-alike hub model ids and typosquatted Python packages",
        description="Check Hugging Face model ids (given as arguments or read from models.lock)"
        " and Python requirements against shipped lists of popular organisations, models and"
        " PyPI projects: edit distance, confusable Unicode, separators, official-looking"
        " affixes, and a known model name under an unknown organisation. Without arguments,"
        " ./models.lock is checked when it exists.",
    )
    parser.add_argument("ids", nargs="*", metavar="ID", help="hub model id org/name[@rev]")
    parser.add_argument("--lock", type=Path, metavar="FILE", help="check the hub ids of a lock")
    parser.add_argument(
        "--requirements",
        "-r",
        type=Path,
        action="append",
        default=[],
        metavar="FILE",
        help="check the packages of a requirements.txt or pylock.toml (repeatable)",
    )
    parser.add_argument("--format", "-f", default="table", choices=list(RENDERERS))
    parser.add_argument(
        "--fail-on",
        default="low",
        metavar="SEVERITY",
        help="exit 1 when a finding is at least this severe (default: low, i.e. any finding)",
    )
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the report")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.findings import ScanReport, ScanResult, Severity
    from modelward.provenance.bom import read_requirements
    from modelward.provenance.lock import DEFAULT_LOCK_FILE, is_hub_id, read_lock
    from modelward.provenance.names import check_model_id, check_package, to_finding
    from modelward.report import RENDERERS

    try:
        threshold = Severity.parse(args.fail_on)
    except ValueError as exc:
        return fail(str(exc))
    lock = args.lock
    if lock is None and not args.ids and not args.requirements:
        lock = Path(DEFAULT_LOCK_FILE)
        if not lock.exists():
            return fail("nothing to check: give IDs, --lock or --requirements")
    start = time.monotonic()
    report = ScanReport()
    id_sources: list[tuple[str, list[str]]] = []
    if args.ids:
        id_sources.append((COMMAND_LINE, list(args.ids)))
    if lock is not None:
        base = lock.resolve().parent
        hub = [m.source for m in read_lock(lock) if is_hub_id(m.source, base)]
        id_sources.append((str(lock), hub))
    for source, ids in id_sources:
        result = ScanResult(path=source, format="hub-model-ids")
        result.findings = [to_finding(m, source) for i in ids for m in check_model_id(i)]
        report.results.append(result)
    for path in args.requirements:
        result = ScanResult(path=str(path), format="python-requirements")
        result.findings = [
            to_finding(m, str(path), package=True)
            for p in read_requirements(path)
            for m in check_package(p.name)
        ]
        report.results.append(result)
    report.seconds = time.monotonic() - start
    render = RENDERERS[args.format]
    if args.output:
        write_output(render(report), args.output)
    else:
        write_output(render(report, terminal=sys.stdout.isatty()), None)
    return EXIT_FINDINGS if report.has_findings_at(threshold) else EXIT_CLEAN
