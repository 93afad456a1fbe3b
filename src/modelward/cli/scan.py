"""`modelward scan`: statically scan model files and folders.

Only wiring lives here: parse arguments, load the config, call the scanner,
show progress, hand the report to a renderer and map it to an exit code.
Heavy modules (the scanners, `rich`) are imported inside `run` so that
`modelward --help` and JSON output start fast.
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._common import (
    EXIT_CLEAN,
    EXIT_ERROR,
    EXIT_FINDINGS,
    complain,
    fail,
    non_negative_int,
    positive_float,
    positive_int,
    severity,
    write_output,
)
from modelward.cli._store import add_store_arguments, open_cli_store
from modelward.config import Limits, ScanConfig
from modelward.findings import Severity
from modelward.remote.http import HttpSettings as HttpDefaults
from modelward.remote.sources import is_remote

if TYPE_CHECKING:
    from modelward.findings import ScanReport, ScanResult
    from modelward.store import ResultStore

FORMATS_HELP = """\
formats (--format):
  table   findings for people (default): styled on a terminal, plain text in a pipe or file
  json    the whole report as one JSON document: per-file results, findings, counts
  sarif   SARIF 2.1.0, for GitHub code scanning (upload-sarif) and other SARIF viewers
  html    one self-contained HTML page (inline CSS, no script): summary, files, findings, errors
"""

STORE_HELP = """\
results store (docs/store.md):
  Every file's result is stored by SHA-256, rule-set version and config; the same bytes
  are not scanned twice. Default: $MODELWARD_STORE, else a SQLite file in the user's data
  folder (~/.local/share/modelward/results.db). --store postgresql://user@host/db uses
  PostgreSQL. --no-store neither reads nor writes it; --rescan scans anyway and records.
"""

EXIT_CODES_HELP = """\
exit codes:
  0  clean: no finding at or above --fail-on
  1  at least one finding at or above --fail-on (default: medium)
  2  usage error, path not found, unreadable file, bad config or unwritable --output
"""

CONFIG_HELP = """\
config file (--config FILE; TOML; a pyproject.toml is read from its [tool.modelward] table):
  [scan]
  allow_globals = ["mypkg.layers.MyBlock"]  # exact module.qualname pairs trusted in pickles
  strict = false                            # true: as --strict
  [scan.limits]                             # any of these (defaults shown), positive numbers
{limits}
  Unknown keys are errors. No config file is read unless --config is given.
  A [policy] table (modelward gate) is checked and must be valid; scan does not enforce it.
""".format(limits="\n".join(f"  {f.name} = {f.default!r}" for f in fields(Limits)))


def register(subparsers: Any) -> None:
    from modelward.report import RENDERERS

    parser = subparsers.add_parser(
        "scan",
        help="scan model files or folders for code execution and tampering, without loading them",
        description="Statically scan model files (pickle, PyTorch, joblib, NumPy, ...) and\n"
        "folders, recursively. Formats are detected by content, not extension.\n"
        "Nothing is loaded or executed.",
        epilog="\n".join((FORMATS_HELP, STORE_HELP, EXIT_CODES_HELP, CONFIG_HELP)),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "paths",
        nargs="*",
        metavar="PATH",
        help="file or folder; or remote, read by range requests without downloading:"
        " hf://[datasets/|spaces/]ORG/REPO[@REVISION][/PATH] (a Hugging Face repository,"
        " honours HF_ENDPOINT and HF_TOKEN), an http(s):// URL of one file, or"
        " s3://BUCKET/KEY[/] and gs://BUCKET/KEY[/] (an object, or every object under a"
        " prefix; the s3 or gcs extra)",
    )
    parser.add_argument(
        "--files-from",
        type=argparse.FileType("r", encoding="utf-8"),
        metavar="LIST",
        help="also scan the paths listed in LIST, one per line (`-` reads stdin): a registry's"
        " inventory, `find ... -newer` output; blank lines are skipped, a missing path is exit 2",
    )
    parser.add_argument(
        "--format",
        "-f",
        default="table",
        choices=list(RENDERERS),
        help="output format (default: table)",
    )
    parser.add_argument(
        "--output", "-o", type=Path, metavar="FILE", help="write the report to FILE, not stdout"
    )
    parser.add_argument(
        "--fail-on",
        default=Severity.MEDIUM,
        type=severity,
        metavar="SEVERITY",
        help="exit 1 when a finding is at or above this severity:"
        " info, low, medium, high, critical (default: medium)",
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=positive_int,
        default=1,
        metavar="N",
        help="scan N files in parallel processes (default: 1)",
    )
    parser.add_argument(
        "--config",
        type=Path,
        metavar="FILE",
        help="TOML config (allow-list extensions, limits); see below",
    )
    parser.add_argument(
        "--strict",
        action="store_true",
        help="fail closed on pickles: every name that neither the lists nor the knowledge base"
        " vouch for is at least medium, even when loading would only reference it"
        " (default: info when referenced, low when constructed, high when called)",
    )
    add_store_arguments(parser, "store results in (and reuse them from)")
    parser.add_argument(
        "--rescan",
        action="store_true",
        help="scan every file even when the store has its result; still record it",
    )
    parser.add_argument(
        "--hf-cache",
        nargs="?",
        const=DEFAULT_HF_CACHE,
        type=Path,
        metavar="DIR",
        help="also scan every snapshot in a Hugging Face cache, by repository and revision"
        " (DIR defaults to the cache huggingface_hub uses: HF_HUB_CACHE, HF_HOME/hub or"
        " ~/.cache/huggingface/hub)",
    )
    parser.add_argument(
        "--http-timeout",
        type=positive_float,
        default=HttpDefaults.read_timeout,
        metavar="SECONDS",
        help="remote reads: seconds to wait for a server to connect or to send the next bytes"
        f" (default: {HttpDefaults.read_timeout:g})",
    )
    parser.add_argument(
        "--http-retries",
        type=non_negative_int,
        default=HttpDefaults.retries,
        metavar="N",
        help="remote reads: retries after a timeout, a dropped connection or a 5xx answer,"
        f" with exponential back-off (default: {HttpDefaults.retries})",
    )
    parser.add_argument(
        "--ray",
        nargs="?",
        const=LOCAL_RAY,
        type=_ray_address,
        metavar="ADDRESS",
        help="scan the files as Ray tasks: alone (or `local`) starts a local Ray with -j CPUs;"
        " ADDRESS (auto, host:6379, ray://host:10001) joins a running cluster;"
        " see docs/distributed.md",
    )
    parser.set_defaults(func=run)


#: `--hf-cache` with no folder: the one huggingface_hub uses, found when the scan runs.
DEFAULT_HF_CACHE = Path("<huggingface_hub's cache>")

#: `--ray` with no address: start a local Ray for this scan.
LOCAL_RAY = "local"
_RAY_ADDRESS = re.compile(r"auto|local|ray://\S+|[^\s/]+:\d+")


def _ray_address(text: str) -> str:
    """A Ray address; anything else is refused, so `--ray models/` cannot eat the PATH."""
    if not _RAY_ADDRESS.fullmatch(text):
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a Ray address (auto, local, host:port, ray://host:port);"
            " for a local Ray put --ray after the paths or write --ray local"
        )
    return text


def run(args: argparse.Namespace) -> int:
    from modelward.findings import ScanReport
    from modelward.report import RENDERERS
    from modelward.runner import finish_report, scan_files
    from modelward.scanner import iter_files

    targets = list(args.paths)
    if args.files_from is not None:
        with args.files_from as listing:
            targets += [line.rstrip("\r\n") for line in listing if line.strip()]
    remote = [t for t in targets if is_remote(t)]
    paths = [Path(t) for t in targets if not is_remote(t)]
    cache_problems: list[str] = []
    if args.hf_cache is not None:
        from modelward.hf_cache import cached_snapshots

        snapshots, cache_problems = cached_snapshots(
            None if args.hf_cache == DEFAULT_HF_CACHE else args.hf_cache
        )
        paths += [snapshot.path for snapshot in snapshots]
        targets += [str(snapshot.path) for snapshot in snapshots]
    if not targets:
        return fail("nothing to scan: give a PATH or a --files-from LIST that names one")
    store = None
    try:
        config = _scan_config(args.config, args.strict)
        start = time.monotonic()
        files = list(iter_files(paths))
        store = open_cli_store(args)
        with _progress(len(files)) as on_result:
            if not paths:
                report = ScanReport()
            elif args.ray is not None:
                report = _scan_on_ray(args, files, config, store, on_result)
            else:
                results = scan_files(
                    files,
                    config,
                    jobs=args.jobs,
                    store=store,
                    rescan=args.rescan,
                    on_result=on_result,
                )
                report = finish_report(files, results, config, start, on_result)
            report.results += _scan_remote_targets(remote, args, config, store, on_result)
            report.seconds = time.monotonic() - start
    except (FileNotFoundError, ConnectionError) as exc:  # a ModelwardError goes to main
        return fail(str(exc))
    finally:
        if store is not None:
            store.close()
    render = RENDERERS[args.format]
    if args.output:
        write_output(render(report), args.output)
    else:
        write_output(render(report, terminal=sys.stdout.isatty()), None)
    for error in [*cache_problems, *report.errors]:
        complain(error)
    if report.has_findings_at(args.fail_on):
        return EXIT_FINDINGS
    return EXIT_ERROR if report.errors or cache_problems else EXIT_CLEAN


def _scan_remote_targets(
    targets: list[str],
    args: argparse.Namespace,
    config: ScanConfig,
    store: ResultStore | None,
    on_result: Callable[[ScanResult], None] | None,
) -> list[ScanResult]:
    """Each remote target's results; a target that cannot be listed is one error result."""
    if not targets:
        return []
    from modelward.findings import ScanResult
    from modelward.remote import RemoteError, redact, scan_remote
    from modelward.remote.scan import without_location

    settings = HttpDefaults(
        connect_timeout=args.http_timeout, read_timeout=args.http_timeout, retries=args.http_retries
    )
    results: list[ScanResult] = []
    for target in targets:
        try:
            results += scan_remote(
                target,
                config,
                settings=settings,
                store=store,
                rescan=args.rescan,
                on_result=on_result,
            )
        except RemoteError as exc:
            failed = ScanResult(path=redact(target), format="unreadable")
            message = without_location(str(exc), failed.path)
            failed.errors.append(without_location(message, failed.path.rstrip("/")))
            results.append(failed)
    return results


def _scan_config(path: Path | None, strict: bool = False) -> ScanConfig:
    """The `[scan]` settings; a `[policy]` in the same file is validated as `gate` would.

    One modelward.toml is shared by `scan` and `gate`, so a broken policy is reported
    by whichever runs first rather than only when the gate finally reads it. `--strict`
    turns strict mode on whatever the file says.
    """
    config = ScanConfig()
    if path is not None:
        from modelward.provenance.policy import ModelwardConfig

        config = ModelwardConfig.from_file(path).scan
    return dataclasses.replace(config, strict=True) if strict else config


def _scan_on_ray(
    args: argparse.Namespace,
    files: list[Path],
    config: ScanConfig,
    store: ResultStore | None,
    on_result: Callable[[ScanResult], None] | None,
) -> ScanReport:
    """`--ray`: the files as Ray tasks; each task opens the store by URL where it runs."""
    from modelward.distributed import scan_on_ray

    local = args.ray == LOCAL_RAY
    return scan_on_ray(
        files,
        config=config,
        address=None if local else args.ray,
        store_url=store.url if store is not None else None,
        num_cpus=args.jobs if local and args.jobs > 1 else None,
        on_result=on_result,
        rescan=args.rescan,
    )


@contextmanager
def _progress(total: int) -> Iterator[Callable[[ScanResult], None] | None]:
    """A progress bar on stderr for multi-file scans on a terminal; nothing otherwise."""
    if total < 2 or not sys.stderr.isatty():
        yield None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
    )
    from rich.table import Column

    from modelward.report.table import printable

    columns = (
        TextColumn("scanning", table_column=Column(no_wrap=True)),
        BarColumn(bar_width=30),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        # The last file scanned; a long path is cut, never the bar.
        TextColumn(
            "{task.description}",
            markup=False,
            table_column=Column(no_wrap=True, overflow="ellipsis", ratio=1),
        ),
    )
    with Progress(*columns, console=Console(stderr=True), transient=True, expand=True) as progress:
        task = progress.add_task("", total=total)

        def advance(result: ScanResult) -> None:
            # Folder-level results (a Hugging Face model folder) come on top of the files.
            done = progress.tasks[0].completed + 1
            progress.update(
                task, completed=done, total=max(total, done), description=printable(result.path)
            )

        yield advance
