"""One adapter per scanner: run it once over a path, time it, and read a verdict per file.

Every tool runs as its own process (its CLI, or `peer_api.py` for tools whose per-file
verdicts are only available through their Python API), so start-up and imports count the
same for all. Verdicts: flagged, clean, error (the tool failed on the file) or unsupported
(the tool says it does not handle the format).
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1]
REPO = BENCH.parent
MODELWARD_BIN = REPO / ".venv" / "bin"
PEERS_BIN = BENCH / ".venv-peers" / "bin"
PEER_API = Path(__file__).with_name("peer_api.py")

#: Tool time limit for one run over the whole corpus.
TIMEOUT_S = 1800

#: modelaudit severities that make its CLI exit 1 (info and debug do not).
MODELAUDIT_FLAGGING = {"warning", "critical", "high", "medium"}


@dataclass
class ToolRun:
    """One tool's pass over a path: wall time and a verdict per file (relative path)."""

    tool: str
    version: str = "?"
    seconds: float = 0.0
    exit_code: int | None = None
    verdicts: dict[str, tuple[str, str]] = field(default_factory=dict)
    failure: str = ""
    #: modelward only: detected format -> (files, seconds spent in them), from its report.
    formats: dict[str, tuple[int, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Tool:
    name: str
    rule: str
    run: Callable[[Path, Path], ToolRun]
    available: Callable[[], bool]


def _timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> tuple[float, int, str]:
    start = time.perf_counter()
    proc = subprocess.run(
        argv,
        cwd=cwd,
        env={**os.environ, **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        timeout=TIMEOUT_S,
        check=False,
    )
    return time.perf_counter() - start, proc.returncode, proc.stdout.decode(errors="replace")


def _files(target: Path) -> tuple[Path, list[str]]:
    """The base folder verdict paths are relative to, and every file under `target`."""
    if target.is_dir():
        files = (p.relative_to(target).as_posix() for p in target.rglob("*") if p.is_file())
        return target, sorted(files)
    return target.parent, [target.name]


def _owner(source: str, files: list[str]) -> str | None:
    """The corpus file a tool's `source` names: the file itself, or `file:member`,
    `file/member`, `file!member`, `file (pos 12)` and the like."""
    for rel in sorted(files, key=len, reverse=True):
        if source == rel or (source.startswith(rel) and source[len(rel)] in ":/! (#"):
            return rel
    return None


# --- modelward -----------------------------------------------------------------------------


def _modelward(jobs: int) -> Callable[[Path, Path], ToolRun]:
    def run(target: Path, work: Path) -> ToolRun:
        return run_modelward(target, work, jobs)

    return run


def run_modelward(target: Path, work: Path, jobs: int = 1) -> ToolRun:
    """`modelward scan --format json --no-store`; flagged = a finding at or above the default
    --fail-on (medium), which is exactly when the CLI exits 1. The results store is off: a
    repeated run would otherwise reuse stored results and time a cache, not a scan (peers get
    `--no-cache` for the same reason)."""
    out = work / "modelward.json"
    seconds, code, text = _timed(
        [
            str(MODELWARD_BIN / "modelward"),
            *("scan", str(target), "-f", "json", "-o", str(out), f"--jobs={jobs}", "--no-store"),
        ],
        cwd=work,
    )
    run = ToolRun("modelward" if jobs == 1 else f"modelward -j{jobs}", seconds=seconds)
    run.exit_code = code
    if not out.exists():
        run.failure = f"exit {code}: {text[-500:]}"
        return run
    report = json.loads(out.read_text())
    run.version = report.get("version", "?")
    base, _ = _files(target)
    for result in report["results"]:
        rel = Path(result["path"]).resolve().relative_to(base.resolve()).as_posix()
        files, spent = run.formats.get(result.get("format", "?"), (0, 0.0))
        run.formats[result.get("format", "?")] = (files + 1, spent + result.get("seconds", 0.0))
        top = result.get("max_severity")
        findings = result.get("findings", [])
        if top in ("medium", "high", "critical"):
            worst = [f for f in findings if f["severity"] == top]
            run.verdicts[rel] = ("flagged", f"{top}: {worst[0]['rule_id']}" if worst else top)
        elif result.get("errors"):
            run.verdicts[rel] = ("error", "; ".join(result["errors"])[:300])
        else:
            run.verdicts[rel] = ("clean", result.get("format", ""))
    return run


def modelward_bytes_read(work: Path) -> dict[str, tuple[int, int]]:
    """Per file of the last modelward run: (size, bytes read)."""
    report = json.loads((work / "modelward.json").read_text())
    return {r["path"]: (r.get("size", 0), r.get("bytes_read", 0)) for r in report["results"]}


# --- modelscan -----------------------------------------------------------------------------


def run_modelscan(target: Path, work: Path) -> ToolRun:
    """`modelscan -p PATH -r json`: any issue on a file is flagged (its exit code 1); files in
    `errors` are errors, files it lists as skipped are unsupported."""
    out = work / "modelscan.json"
    seconds, code, text = _timed(
        [
            str(PEERS_BIN / "modelscan"),
            *("-p", str(target), "-r", "json", "--show-skipped", "-o", str(out)),
        ],
        cwd=work,
    )
    run = ToolRun("modelscan", seconds=seconds, exit_code=code, version=_dist("modelscan"))
    if not out.exists():
        run.failure = f"exit {code}: {text[-500:]}"
        return run
    report = json.loads(out.read_text())
    _, files = _files(target)
    for rel in files:
        run.verdicts[rel] = ("clean", "")
    skipped = report["summary"].get("skipped", {}).get("skipped_files", [])
    for entry in skipped:
        owner = _owner(entry["source"], files)
        if owner is not None and entry["source"] == owner:
            run.verdicts[owner] = ("unsupported", entry.get("category", ""))
    for entry in report.get("errors", []):
        owner = _owner(entry.get("source", ""), files)
        if owner is not None:
            run.verdicts[owner] = ("error", str(entry.get("description", ""))[:300])
    for issue in report.get("issues", []):
        owner = _owner(issue["source"], files)
        if owner is not None:
            detail = f"{issue.get('severity', '')}: {issue.get('operator', '')}"
            run.verdicts[owner] = ("flagged", f"{issue.get('module', '')}.{detail}")
    return run


# --- modelaudit ----------------------------------------------------------------------------

MODELAUDIT_ENV = {"PROMPTFOO_DISABLE_TELEMETRY": "1", "NO_ANALYTICS": "1", "CI": "1"}


def _modelaudit(target: Path, out: Path, work: Path) -> tuple[float, int, str]:
    """Given a folder, modelaudit gets every file in it as its own argument: given the folder
    itself, one hostile ONNX file (an external-data name too long for the OS) ends its whole
    directory scan with an OSError and nothing else is reported."""
    base, files = _files(target)
    return _timed(
        [
            str(PEERS_BIN / "modelaudit"),
            *("scan", *(str(base / rel) for rel in files)),
            *("--format", "json", "--no-cache", "-o", str(out)),
        ],
        cwd=work,
        env=MODELAUDIT_ENV,
    )


def _modelaudit_flags(
    report: dict[str, object], base: Path, files: list[str]
) -> tuple[dict[str, tuple[str, str]], list[dict[str, object]]]:
    """Flagging issues (warning or critical, what makes its CLI exit 1) per corpus file, and
    those whose location names no corpus file."""
    flagged: dict[str, tuple[str, str]] = {}
    orphans = []
    for issue in report.get("issues", []):  # type: ignore[union-attr]
        severity = str(issue.get("severity", "")).lower()
        if severity not in MODELAUDIT_FLAGGING:
            continue
        details = issue.get("details") or {}
        places = [str(issue.get("location") or "")]
        places += [v for v in details.values() if isinstance(v, str)]
        owners = [o for o in (_owner(_relative(p, base), files) for p in places) if o]
        if not owners:
            orphans.append(issue)
            continue
        flagged.setdefault(owners[0], ("flagged", f"{severity}: {issue.get('message', '')}"[:300]))
    return flagged, orphans


def run_modelaudit(target: Path, work: Path) -> ToolRun:
    """`modelaudit scan PATH --format json --no-cache`: an issue of severity warning or worse
    is flagged (what makes its CLI exit 1); info notes are not.

    An issue located outside the corpus (an ONNX external-data target) names no model file;
    those are attributed by re-running it, untimed, on each unflagged file of that format.
    """
    out = work / "modelaudit.json"
    seconds, code, text = _modelaudit(target, out, work)
    run = ToolRun("modelaudit", seconds=seconds, exit_code=code, version=_dist("modelaudit"))
    if not out.exists():
        run.failure = f"exit {code}: {text[-500:]}"
        return run
    report = json.loads(out.read_text())
    base, files = _files(target)
    types = {}
    for asset in report.get("assets", []):
        owner = _owner(_relative(str(asset.get("path", "")), base), files)
        if owner is not None:
            types[owner] = str(asset.get("type", ""))
    for rel in files:
        known = types.get(rel, "unknown") not in ("", "unknown")
        run.verdicts[rel] = ("clean", types.get(rel, "")) if known else ("unsupported", "")
    for path, meta in (report.get("file_metadata") or {}).items():
        owner = _owner(_relative(path, base), files)
        if owner is not None and isinstance(meta, dict) and meta.get("operational_error"):
            run.verdicts[owner] = ("error", str(meta.get("operational_error"))[:300])
    flagged, orphans = _modelaudit_flags(report, base, files)
    run.verdicts.update(flagged)
    retry = sorted(
        {
            rel
            for issue in orphans
            for rel in files
            if rel not in flagged and types.get(rel) in _kinds(issue, types.get(rel))
        }
    )
    for rel in retry:
        single = work / "modelaudit-single.json"
        single.unlink(missing_ok=True)
        _modelaudit(base / rel, single, work)
        if single.exists():
            one, stray = _modelaudit_flags(json.loads(single.read_text()), base, [rel])
            if one or stray:
                first = stray[0] if stray else {}
                run.verdicts[rel] = one.get(rel) or (
                    "flagged",
                    f"{first.get('severity')}: {first.get('message')}"[:300],
                )
    return run


def _kinds(issue: dict[str, object], own: str | None) -> set[str | None]:
    """Asset types an unattributed issue can come from (`onnx_check` -> onnx; else any)."""
    kind = str(issue.get("type", "")).removesuffix("_check")
    return {kind} if kind else {own}


def _relative(path: str, base: Path) -> str:
    resolved = str(base.resolve()) + "/"
    return path[len(resolved) :] if path.startswith(resolved) else path


def _dist(name: str) -> str:
    proc = subprocess.run(
        [
            str(PEERS_BIN / "python"),
            "-c",
            f"import importlib.metadata as m; print(m.version({name!r}))",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    return proc.stdout.strip() or "?"


# --- tools run through peer_api.py -----------------------------------------------------------


def _api_runner(tool: str) -> Callable[[Path, Path], ToolRun]:
    def run_api(target: Path, work: Path) -> ToolRun:
        out = work / f"{tool}.json"
        seconds, code, text = _timed(
            [str(PEERS_BIN / "python"), str(PEER_API), tool, str(target), str(out)], cwd=work
        )
        run = ToolRun(tool, seconds=seconds, exit_code=code)
        if not out.exists():
            run.failure = f"exit {code}: {text[-500:]}"
            return run
        report = json.loads(out.read_text())
        run.version = report["version"]
        run.verdicts = {rel: (v[0], v[1]) for rel, v in report["verdicts"].items()}
        return run

    return run_api


def _has(binary: Path) -> Callable[[], bool]:
    return binary.exists


TOOLS = [
    Tool(
        "modelward",
        "a finding at or above medium (the default `--fail-on`, CLI exit 1)",
        _modelward(1),
        _has(MODELWARD_BIN / "modelward"),
    ),
    Tool(
        "modelward -j2",
        "as modelward, scanning two files at a time (`--jobs 2`, both cores)",
        _modelward(2),
        _has(MODELWARD_BIN / "modelward"),
    ),
    Tool(
        "modelscan",
        "any issue reported on the file or a member of it (CLI exit 1); `skipped` = unsupported",
        run_modelscan,
        _has(PEERS_BIN / "modelscan"),
    ),
    Tool(
        "picklescan",
        "`scan_file_path` per file: dangerous globals (CLI exit 1); `scan_err` = error",
        _api_runner("picklescan"),
        _has(PEERS_BIN / "picklescan"),
    ),
    Tool(
        "fickling",
        "`scan_file` / `scan_zip_archive` per file: not `is_safe`; files its sniffers do not"
        " take for pickles = unsupported",
        _api_runner("fickling"),
        _has(PEERS_BIN / "fickling"),
    ),
    Tool(
        "modelaudit",
        "an issue of severity warning or worse (CLI exit 1); info notes do not count",
        run_modelaudit,
        _has(PEERS_BIN / "modelaudit"),
    ),
]


def work_dir() -> Path:
    return Path(tempfile.mkdtemp(prefix="mw-bench-"))
