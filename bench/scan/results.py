"""Run the tools over the corpus, score them against the labels, and write the tables."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from scan.corpus import LARGE_CASE, PAYLOAD, Case, case_files, load_manifest
from scan.tools import Tool, ToolRun, modelward_bytes_read, work_dir

#: Case verdict for a tool, from the verdicts of the files in it: any flagged file flags the
#: case; otherwise an error wins, then clean; only all-unsupported is unsupported.
PRIORITY = ("flagged", "error", "clean", "unsupported")
SHORT = {"flagged": "flag", "clean": "-", "error": "err", "unsupported": "n/a"}
#: A tool slower than this over the corpus runs once: its spread does not change the ratio.
SLOW_S = 60.0


@dataclass
class Outcome:
    cases: list[Case]
    tools: list[Tool]
    runs: dict[str, ToolRun]
    verdicts: dict[str, dict[str, tuple[str, str]]]
    n_files: int
    n_bytes: int
    repeat: int
    started: str
    large: dict[str, tuple[float, str]] = field(default_factory=dict)
    large_size: int = 0
    large_read: int | None = None


def _warm(paths: list[Path]) -> None:
    """Read every file once so no tool pays for a cold page cache the others do not."""
    for path in paths:
        with path.open("rb") as stream:
            while stream.read(1 << 24):
                pass


def case_verdict(case: Case, corpus: Path, run: ToolRun) -> tuple[str, str]:
    files = corpus / "files"
    # A folder case also counts results a tool gives the folder itself (model-folder checks).
    names = [case.path, *(p.relative_to(files).as_posix() for p in case_files(corpus, case))]
    seen = [run.verdicts[name] for name in dict.fromkeys(names) if name in run.verdicts]
    if run.failure:
        return "error", run.failure[:200]
    if not seen:
        return "unsupported", "not reported"
    for status in PRIORITY:
        details = [detail for s, detail in seen if s == status]
        if details:
            return status, "; ".join(d for d in details if d)[:300]
    raise ValueError(f"unknown verdicts {seen}")


def compare(corpus: Path, chosen: list[Tool], repeat: int) -> Outcome:
    cases = load_manifest(corpus)
    files = corpus / "files"
    every = sorted(p for p in files.rglob("*") if p.is_file())
    _warm(every)
    started = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    runs: dict[str, ToolRun] = {}
    available = [t for t in chosen if t.available()]
    for tool in chosen:
        if tool not in available:
            print(f"  {tool.name}: not installed, skipped")
    for round_ in range(max(1, repeat)):
        for tool in available:
            if round_ and runs[tool.name].seconds > SLOW_S:
                continue
            run = tool.run(files, work_dir())
            print(f"  round {round_ + 1} {tool.name}: {run.seconds:.2f} s {run.failure[:200]}")
            best = runs.get(tool.name)
            if best is None:
                runs[tool.name] = run
            elif run.seconds < best.seconds:
                best.seconds = run.seconds
    outcome = Outcome(
        cases=cases,
        tools=available,
        runs=runs,
        verdicts={
            name: {c.path: case_verdict(c, corpus, run) for c in cases}
            for name, run in runs.items()
        },
        n_files=len(every),
        n_bytes=sum(p.stat().st_size for p in every),
        repeat=max(1, repeat),
        started=started,
    )
    large = files / LARGE_CASE
    if large.exists():
        outcome.large_size = large.stat().st_size
        for tool in available:
            if tool.name.startswith("modelward -j"):
                continue  # one file: parallelism changes nothing
            work = work_dir()
            run = tool.run(large, work)
            status = run.verdicts.get(large.name, ("unsupported", "not reported"))[0]
            outcome.large[tool.name] = (run.seconds, (run.failure and "error") or status)
            if tool.name == "modelward" and not run.failure:
                outcome.large_read = next(iter(modelward_bytes_read(work).values()))[1]
            print(f"  large file {tool.name}: {run.seconds:.2f} s")
    return outcome


# --- markdown ------------------------------------------------------------------------------


def _row(cells: list[object]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _table(header: list[str], rows: list[list[object]]) -> list[str]:
    return [_row(header), _row(["---"] * len(header)), *(_row(r) for r in rows)]


def scores(outcome: Outcome, tool: str, cases: list[Case] | None = None) -> Counter[str]:
    tally: Counter[str] = Counter()
    for case in outcome.cases if cases is None else cases:
        status = outcome.verdicts[tool][case.path][0]
        if case.malicious:
            tally["malicious"] += 1
            tally["detected" if status == "flagged" else "missed"] += 1
            if case.kind == PAYLOAD:
                tally["payloads"] += 1
                tally["payloads detected"] += status == "flagged"
        else:
            tally["benign"] += 1
            tally["fp"] += status == "flagged"
        tally["error"] += status == "error"
        tally["unsupported"] += status == "unsupported"
    return tally


def markdown(outcome: Outcome, machine: str) -> str:
    names = [t.name for t in outcome.tools]
    mb = outcome.n_bytes / 1e6
    n_bad = sum(c.malicious for c in outcome.cases)
    n_payload = sum(c.kind == PAYLOAD for c in outcome.cases)
    lines = [
        f"Run {outcome.started} on {machine}.",
        f"Corpus: {len(outcome.cases)} cases ({n_bad} malicious: {n_payload} payloads and"
        f" {n_bad - n_payload} malformed; {len(outcome.cases) - n_bad} benign),"
        f" {outcome.n_files} files, {mb:,.0f} MB. Wall time is the fastest of"
        f" {outcome.repeat} run(s) of the whole process over the corpus folder, page cache warm.",
        "",
        "Versions: "
        + ", ".join(f"{n} {outcome.runs[n].version}" for n in names if n in outcome.runs)
        + ".",
        "",
    ]
    base = outcome.runs.get("modelward")
    rows: list[list[object]] = []
    for name in names:
        run = outcome.runs[name]
        s = scores(outcome, name)
        speed = f"{run.seconds / base.seconds:.1f}x" if base and base.seconds else "?"
        rows.append(
            [
                name,
                f"{s['detected']}/{s['malicious']}",
                f"{s['payloads detected']}/{s['payloads']}",
                s["missed"],
                f"{s['fp']}/{s['benign']}",
                f"{s['error']} / {s['unsupported']}",
                f"{run.seconds:.2f}",
                f"{outcome.n_files / run.seconds:.1f}" if run.seconds else "?",
                f"{mb / run.seconds:,.0f}" if run.seconds else "?",
                "1.0x" if name == "modelward" else speed,
            ]
        )
    lines += _table(
        [
            "tool",
            "detected",
            "of which payloads",
            "missed",
            "false positives",
            "errors / unsupported",
            "wall s",
            "files/s",
            "MB/s",
            "its time / modelward's",
        ],
        rows,
    )

    lines += ["", "Detected / malicious and false positives / benign, per format:", ""]
    formats = sorted({c.format for c in outcome.cases})
    fmt_rows = []
    for fmt in formats:
        subset = [c for c in outcome.cases if c.format == fmt]
        cells: list[object] = [fmt, f"{sum(c.malicious for c in subset)}/{len(subset)}"]
        for name in names:
            s = scores(outcome, name, subset)
            cells.append(f"{s['detected']}/{s['malicious']} · {s['fp']}/{s['benign']}")
        fmt_rows.append(cells)
    lines += _table(["format", "malicious/cases", *names], fmt_rows)

    if outcome.large:
        read = (
            f"; modelward read {outcome.large_read:,} bytes of it"
            f" ({outcome.large_read / outcome.large_size:.4%})"
            if outcome.large_read is not None
            else ""
        )
        lines += [
            "",
            f"The benign {outcome.large_size / 2**30:.2f} GiB checkpoint (`{LARGE_CASE}`)"
            f" alone{read}:",
            "",
        ]
        lines += _table(
            ["tool", "wall s", "verdict"],
            [[n, f"{s:.2f}", v] for n, (s, v) in outcome.large.items()],
        )

    if base is not None and base.formats:
        lines += [
            "",
            "Where modelward's time goes (its own per-file timings, by detected format):",
            "",
        ]
        lines += _table(
            ["format", "files", "seconds"],
            [
                [fmt, n, f"{sec:.3f}"]
                for fmt, (n, sec) in sorted(base.formats.items(), key=lambda kv: -kv[1][1])
            ],
        )
    if any(c.evasion for c in outcome.cases):
        lines += ["", *evasion_tables(outcome, names)]
    if "modelward" in outcome.verdicts:
        lines += ["", *_shortfalls(outcome, names)]

    lines += ["", "Every case (flag = flagged, - = clean, err = error, n/a = unsupported):", ""]
    case_rows = []
    for case in outcome.cases:
        cells = [f"`{case.path}`", case.kind, case.technique]
        cells += [SHORT[outcome.verdicts[n][case.path][0]] for n in names]
        case_rows.append(cells)
    lines += _table(["case", "label", "technique", *names], case_rows)
    lines += ["", "Decision rule per tool:", ""]
    lines += [f"- **{t.name}**: {t.rule}." for t in outcome.tools]
    return "\n".join(lines) + "\n"


def evasion_tables(outcome: Outcome, names: list[str]) -> list[str]:
    """Caught/total per evasion class and per published bypass (bench/scan/evasions.py),
    with false positives on the benign twins of a class."""
    tools = [n for n in names if n != "modelward -j2"]
    classes = sorted({c.evasion for c in outcome.cases if c.evasion.startswith("evasion:")})
    per_file = ", ".join(
        f"{n} {outcome.runs[n].seconds / outcome.n_files * 1000:.0f} ms"
        for n in tools
        if outcome.n_files and n in outcome.runs
    )
    lines = [
        f"Time per file over the whole corpus (wall time / {outcome.n_files} files): {per_file}.",
        "",
        "Evasion classes (issue 14): malicious cases caught / total, then benign twins"
        " flagged / total where the class has them:",
        "",
    ]
    rows = []
    for label in classes:
        subset = [c for c in outcome.cases if c.evasion == label]
        cells: list[object] = [label.removeprefix("evasion:")]
        for name in tools:
            s = scores(outcome, name, subset)
            cell = f"{s['detected']}/{s['malicious']}"
            if s["benign"]:
                cell += f" · fp {s['fp']}/{s['benign']}"
            cells.append(cell)
        rows.append(cells)
    every = [c for c in outcome.cases if c.evasion.startswith("evasion:")]
    total: list[object] = ["**all classes**"]
    for name in tools:
        s = scores(outcome, name, every)
        total.append(f"{s['detected']}/{s['malicious']} · fp {s['fp']}/{s['benign']}")
    lines += _table(["class", *tools], [*rows, total])
    bypass = [c for c in outcome.cases if c.evasion.startswith("bypass:")]
    if bypass:
        lines += ["", "Published bypasses of the peers (one case each; flag = caught):", ""]
        rows = []
        for case in sorted(bypass, key=lambda c: c.evasion):
            cells = [case.evasion.removeprefix("bypass:")]
            cells += [SHORT[outcome.verdicts[n][case.path][0]] for n in tools]
            detail = outcome.verdicts.get("modelward", {}).get(case.path, ("", ""))[1]
            cells.append(detail.split(";")[0][:60])
            rows.append(cells)
        caught: list[object] = ["**caught**"]
        for name in tools:
            caught.append(f"{scores(outcome, name, bypass)['detected']}/{len(bypass)}")
        caught.append("")
        lines += _table(["bypass", *tools, "modelward's top finding"], [*rows, caught])
    return lines


def _shortfalls(outcome: Outcome, names: list[str]) -> list[str]:
    """Where modelward misses what a peer catches, or flags what is benign, file by file."""
    ours = outcome.verdicts["modelward"]
    lines = []
    for case in outcome.cases:
        status, detail = ours[case.path]
        if case.malicious and status != "flagged":
            peers = [n for n in names if not n.startswith("modelward")]
            caught = [n for n in peers if outcome.verdicts[n][case.path][0] == "flagged"]
            lines.append(
                f"- missed `{case.path}` ({case.technique}): modelward {status}"
                + (f" ({detail})" if detail else "")
                + (f"; flagged by {', '.join(caught)}" if caught else "; no peer flags it")
            )
        elif not case.malicious and status == "flagged":
            lines.append(f"- false positive `{case.path}` ({case.technique}): {detail}")
    if not lines:
        return ["modelward flags every malicious case and no benign one."]
    return ["Where modelward falls short:", "", *lines]
