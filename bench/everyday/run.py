"""Scan the everyday corpus with modelward and the peer scanners; tabulate alarms per package.

Reuses the per-tool adapters of bench/scan/tools.py: each tool runs once over the whole corpus
folder (its own process, peers from bench/.venv-peers), and its per-file verdicts are grouped
by the corpus' first path component, the package that wrote the file. An alarm is what each
tool calls one: modelward a finding of medium or worse (its default --fail-on); the peers the
rule in the "Scanner" section of docs/benchmarks.md.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import platform
import re
import shutil
import tempfile
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from scan import tools as scan_tools
from scan.tools import TOOLS, Tool, ToolRun, work_dir

ALARM = ("medium", "high", "critical")
#: "pickle calls pathlib.PosixPath, which ..." -> pathlib.PosixPath
GLOBAL_RE = re.compile(
    r"\b(?:constructs|calls|references|imports|builds|reaches|uses)\s+`?([\w.]+\.[\w.]+)"
)
DEFAULT_TOOLS = ("modelward", "modelscan", "picklescan", "fickling", "modelaudit")


@dataclass
class Alarm:
    file: str
    severity: str
    rule: str
    message: str
    evidence: str

    @property
    def subject(self) -> str:
        match = GLOBAL_RE.search(self.message) or GLOBAL_RE.search(self.evidence)
        return match.group(1) if match else self.message.split(";")[0][:90]


#: Variants that differ only in pickle protocol or compression: one of each is sampled.
VARIANT = re.compile(r"\.p[0-5](?=\.)|\.(z|gz|bz2|xz|lzma|zlib|gzip)$")


def sample(corpus: Path, per_package: int) -> list[str]:
    """Up to `per_package` files of each package (and of each wheel's files), one per kind:
    protocol and compression variants of the same object count once."""
    chosen: list[str] = []
    groups: dict[str, dict[str, str]] = defaultdict(dict)
    for path in sorted(p for p in corpus.rglob("*") if p.is_file()):
        rel = path.relative_to(corpus).as_posix()
        parts = rel.split("/")
        if len(parts) < 2:
            continue
        unit = "/".join(parts[:2]) if parts[0] == "wheels" else parts[0]
        groups[unit].setdefault(VARIANT.sub("", rel), rel)
    for unit, kinds in groups.items():
        size = max(1, per_package // 3) if unit.startswith("wheels/") else per_package
        picks = list(kinds.values())
        step = max(1, len(picks) // size)
        chosen += picks[::step][:size]
    return sorted(chosen)


def run_sampled(tool: Tool, corpus: Path, per_package: int) -> ToolRun:
    """Run a slow tool once over a sample of the corpus (hard links, same relative paths):
    modelaudit needs over 30 minutes for the whole corpus on two shared cores. Files left
    out of the sample get the verdict `unsampled`."""
    files = sample(corpus, per_package)
    mirror = Path(tempfile.mkdtemp(prefix="mw-everyday-sample-", dir=corpus.parent))
    for rel in files:
        (mirror / rel).parent.mkdir(parents=True, exist_ok=True)
        os.link(corpus / rel, mirror / rel)
    old_timeout = scan_tools.TIMEOUT_S
    scan_tools.TIMEOUT_S = 3 * 3600
    try:
        run = tool.run(mirror, work_dir())
    finally:
        scan_tools.TIMEOUT_S = old_timeout
        shutil.rmtree(mirror, ignore_errors=True)
    for path in corpus.rglob("*"):
        rel = path.relative_to(corpus).as_posix()
        if path.is_file() and rel not in run.verdicts:
            run.verdicts[rel] = ("unsampled", "")
    return run


def run_tools(
    corpus: Path,
    names: list[str],
    saved: Path | None = None,
    reuse: frozenset[str] = frozenset(),
    sampled: frozenset[str] = frozenset({"modelaudit"}),
    per_package: int = 8,
) -> tuple[dict[str, ToolRun], list[Alarm]]:
    """Run each chosen tool over the corpus; with `saved`, each run is also written there as
    `<tool>.json`, and the tools named in `reuse` are read back from it instead of run (the
    peers do not change while modelward is being tuned; modelaudit takes many minutes)."""
    runs: dict[str, ToolRun] = {}
    alarms: list[Alarm] = []
    for tool in _chosen(names):
        if saved is not None and tool.name in reuse:
            runs[tool.name] = load_run(saved / f"{tool.name}.json")
            print(f"  {tool.name}: reused {saved / f'{tool.name}.json'}")
            if tool.name == "modelward" and (saved / "modelward-report.json").exists():
                alarms = modelward_alarms(saved / "modelward-report.json", corpus)
            continue
        if not tool.available():
            print(f"  {tool.name}: not installed, skipped")
            continue
        work = work_dir()
        if tool.name in sampled:
            run = run_sampled(tool, corpus, per_package)
        else:
            try:
                run = tool.run(corpus, work)
            except Exception as exc:  # a tool past its time limit: report it, go on
                run = ToolRun(tool.name, failure=f"{type(exc).__name__}: {exc}"[:300])
        print(f"  {tool.name}: {run.seconds:.1f} s {run.failure[:300]}", flush=True)
        runs[tool.name] = run
        if tool.name == "modelward" and (work / "modelward.json").exists():
            alarms = modelward_alarms(work / "modelward.json", corpus)
        if saved is not None and not run.failure:
            saved.mkdir(parents=True, exist_ok=True)
            save_run(run, saved / f"{tool.name}.json")
            if tool.name == "modelward" and (work / "modelward.json").exists():
                shutil.copyfile(work / "modelward.json", saved / "modelward-report.json")
    return runs, alarms


def save_run(run: ToolRun, path: Path) -> None:
    data = {
        "tool": run.tool,
        "version": run.version,
        "seconds": run.seconds,
        "exit_code": run.exit_code,
        "verdicts": run.verdicts,
    }
    path.write_text(json.dumps(data), encoding="utf-8")


def load_run(path: Path) -> ToolRun:
    data = json.loads(path.read_text())
    run = ToolRun(data["tool"], data["version"], data["seconds"], data["exit_code"])
    run.verdicts = {k: (v[0], v[1]) for k, v in data["verdicts"].items()}
    return run


def _chosen(names: list[str]) -> list[Tool]:
    return [t for t in TOOLS if t.name in names]


def modelward_alarms(report_path: Path, corpus: Path) -> list[Alarm]:
    report = json.loads(report_path.read_text())
    out = []
    for result in report["results"]:
        rel = Path(result["path"]).resolve().relative_to(corpus.resolve()).as_posix()
        for f in result.get("findings", []):
            if f["severity"] in ALARM:
                out.append(
                    Alarm(rel, f["severity"], f["rule_id"], f["message"], f.get("evidence", ""))
                )
    return out


def package_of(rel: str) -> str | None:
    return rel.split("/", 1)[0] if "/" in rel else None


def tabulate(corpus: Path, runs: dict[str, ToolRun], alarms: list[Alarm]) -> str:
    manifest = json.loads((corpus / "manifest.json").read_text())
    files = sorted(p.relative_to(corpus).as_posix() for p in corpus.rglob("*") if p.is_file())
    per_pkg: dict[str, list[str]] = defaultdict(list)
    for rel in files:
        pkg = package_of(rel)
        if pkg is not None:
            per_pkg[pkg].append(rel)
    names = list(runs)
    header = ["package", "version", "files", *names]
    rows = []
    totals: Counter[str] = Counter()
    for pkg in sorted(per_pkg, key=lambda p: (p == "wheels", p)):
        rels = per_pkg[pkg]
        cells: list[object] = [pkg, manifest["packages"].get(pkg, {}).get("version", ""), len(rels)]
        totals["files"] += len(rels)
        for name in names:
            verdicts = [runs[name].verdicts.get(r, ("unsupported", ""))[0] for r in rels]
            flagged = verdicts.count("flagged")
            errors = verdicts.count("error")
            scanned = len(verdicts) - verdicts.count("unsampled")
            totals[name] += flagged
            totals[name + " err"] += errors
            totals[name + " scanned"] += scanned
            of = f" of {scanned}" if scanned != len(rels) else ""
            cells.append(f"{flagged}{of}" + (f" ({errors} err)" if errors else ""))
        rows.append(cells)
    total_row: list[object] = ["**all**", "", totals["files"]]
    for name in names:
        err = totals[name + " err"]
        scanned = totals[name + " scanned"]
        of = f" of {scanned}" if scanned != totals["files"] else ""
        total_row.append(f"**{totals[name]}**{of}" + (f" ({err} err)" if err else ""))
    rows.append(total_row)
    built = [k for k, v in manifest["packages"].items() if v["status"] == "built"]
    skipped = {k: v["reason"] for k, v in manifest["packages"].items() if v["status"] != "built"}
    load = os.getloadavg()
    lines = [
        f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {platform.system()}"
        f" {platform.machine()}, {os.cpu_count()} cores, load {load[0]:.2f}; corpus built"
        f" {manifest['built']}: {totals['files']} files, {len(built)} writers (packages"
        f" plus `wheels`).",
        "",
        "Files with an alarm per package and tool (`n of m`: the tool scanned a sample of m"
        " files, one per kind; `err`: the tool failed on the file):",
        "",
        *_table(header, rows),
        "",
        "Tool versions: " + ", ".join(f"{n} {r.version}" for n, r in runs.items()) + ".",
    ]
    if skipped:
        lines += ["", "Writers skipped: " + "; ".join(f"{k} ({v})" for k, v in skipped.items())]
    lines += ["", *alarm_sections(alarms)]
    return "\n".join(lines) + "\n"


def alarm_sections(alarms: list[Alarm]) -> list[str]:
    if not alarms:
        return ["modelward: no finding of medium or worse on any file."]
    files = {a.file for a in alarms}
    groups: dict[tuple[str, str, str], list[Alarm]] = defaultdict(list)
    for a in alarms:
        groups[(a.rule, a.severity, a.subject)].append(a)
    order = sorted(groups, key=lambda k: (-len({a.file for a in groups[k]}), k))
    lines = [
        f"modelward's medium-or-worse findings: {len(alarms)} on {len(files)} files,"
        " grouped by rule, severity and the global (or message) they name:",
        "",
        *_table(
            ["rule", "severity", "global / subject", "files", "packages", "example file"],
            [
                [
                    k[0],
                    k[1],
                    f"`{k[2]}`",
                    len({a.file for a in groups[k]}),
                    ", ".join(sorted({a.file.split("/")[0] for a in groups[k]}))[:80],
                    f"`{groups[k][0].file}`",
                ]
                for k in order
            ],
        ),
        "",
        "<details><summary>Every finding (file, severity, rule, message)</summary>",
        "",
    ]
    for a in sorted(alarms, key=lambda a: (a.file, a.rule)):
        lines.append(f"- `{a.file}` {a.severity} {a.rule}: {a.message[:240]}")
    lines += ["", "</details>"]
    return lines


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    def row(cells: list[object]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return [row(header), row(["---"] * len(header)), *(row(r) for r in rows)]
