"""`modelward history`: what the results store recorded about a file, and when."""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from io import StringIO
from typing import TYPE_CHECKING, Any

from modelward.cli._common import EXIT_CLEAN, fail, write_output

if TYPE_CHECKING:
    from rich.console import Console

    from modelward.store.history import FileHistory


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "history",
        help="show every recorded scan and signature/lock/gate verdict of a file",
        description="Show what the results store recorded about a file: every scan (when,"
        " from where, fresh or reused from an earlier scan of the same bytes, the worst"
        " severity, the finding rule ids) and every signature, lock and gate verdict. A PATH"
        " is hashed and looked up by its bytes as well as by the path it was recorded under;"
        " a SHA-256 (64 hex) is looked up by digest.",
        epilog="exit codes: 0 history shown; 2 nothing recorded for it, or the store or file"
        " cannot be read",
    )
    parser.add_argument("target", metavar="PATH|DIGEST", help="a file, or its SHA-256 in hex")
    parser.add_argument(
        "--store",
        metavar="URL",
        help="results store to read (default: $MODELWARD_STORE or the user's SQLite file)",
    )
    parser.add_argument("--format", "-f", default="table", choices=("table", "json"))
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.store import open_store
    from modelward.store.history import file_history

    try:  # a StoreError goes to main
        with open_store(args.store) as store:
            history = file_history(store, args.target)
            where = store.display_url
    except OSError as exc:
        return fail(str(exc))
    if not history:
        return fail(f"the store ({where}) has nothing for {args.target}")
    if args.format == "json":
        write_output(json.dumps(history.to_dict(), indent=2) + "\n", None)
    else:
        write_output(_render(history, terminal=sys.stdout.isatty()), None)
    return EXIT_CLEAN


def _render(history: FileHistory, *, terminal: bool) -> str:
    from rich.console import Console

    from modelward.report.table import PLAIN_WIDTH

    width = shutil.get_terminal_size((PLAIN_WIDTH, 24)).columns if terminal else PLAIN_WIDTH
    buffer = StringIO()
    console = Console(
        file=buffer, width=width, force_terminal=terminal, highlight=False, emoji=False
    )
    _print_scans(console, history)
    _print_verdicts(console, history)
    return "\n".join(line.rstrip() for line in buffer.getvalue().splitlines()) + "\n"


def _print_scans(console: Console, history: FileHistory) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from modelward.report.table import SEVERITY_STYLES, printable

    if history.sha256:
        console.print(Text(f"{printable(history.query)}  sha256:{history.sha256}"), soft_wrap=True)
    if not history.scans:
        console.print("no scans recorded")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(history.scans)} scan(s), newest first")
    for column in ("scanned (UTC)", "source", "result", "worst"):
        table.add_column(column, no_wrap=True)
    table.add_column("findings", min_width=26)
    table.add_column("path", overflow="fold")
    table.add_column("sha256", no_wrap=True)
    for scan in history.scans:
        top = scan.result.max_severity
        worst = Text(top.label, style=SEVERITY_STYLES[top]) if top is not None else Text("clean")
        if scan.result.errors:
            worst = Text("error", style="bold red")
        rules = sorted({f.rule_id for f in scan.result.findings})
        # Text, never markup: a shared store holds what others wrote (upload names).
        table.add_row(
            scan.scanned_at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(printable(scan.source)),
            "cached" if scan.cached else "scanned",
            worst,
            Text(printable(", ".join(rules)) or "-"),
            Text(printable(scan.path)),
            Text(scan.sha256[:12] or "-"),
        )
    console.print(table)


def _print_verdicts(console: Console, history: FileHistory) -> None:
    from rich import box
    from rich.table import Table
    from rich.text import Text

    from modelward.report.table import printable

    if not history.verdicts:
        console.print("no signature, lock or gate verdicts recorded")
        return
    table = Table(box=box.SIMPLE_HEAD, title=f"{len(history.verdicts)} verdict(s), newest first")
    for column in ("recorded (UTC)", "check", "verdict"):
        table.add_column(column, no_wrap=True)
    table.add_column("path", overflow="fold")
    table.add_column("detail", min_width=30)
    for verdict in history.verdicts:
        table.add_row(
            verdict.recorded_at.strftime("%Y-%m-%d %H:%M:%S"),
            Text(printable(verdict.kind)),
            Text("pass", style="green") if verdict.passed else Text("FAIL", style="bold red"),
            Text(printable(verdict.path)),
            Text(printable(verdict.detail)),
        )
    console.print(table)
