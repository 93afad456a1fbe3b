"""Everyday-files benchmark: do the scanners stay quiet on files popular libraries write?

    python3 -m venv bench/.venv-everyday
    bench/.venv-everyday/bin/pip install -r bench/requirements-everyday.txt
    python3 -m venv bench/.venv-peers
    bench/.venv-peers/bin/pip install -r bench/requirements-peers.txt
    .venv/bin/python bench/everyday.py --build --run    # build bench/corpus/everyday, scan it

`--build` runs the corpus writers inside bench/.venv-everyday (the libraries live there, not in
modelward's venv): at least 500 files from 30+ packages, one folder per package under
bench/corpus/everyday/, plus the model and test-data files the installed wheels ship
(`wheels/<dist>/`), and manifest.json (file, package, how it was written). `--only torch,numpy`
rebuilds some packages. `--run` scans the corpus with modelward and the peers (bench/scan/tools.py)
and writes a table per package to bench/out/everyday.md. Not a test and not run in CI;
docs/benchmarks.md ("Everyday files") has a recorded run.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

EVERYDAY_PYTHON = BENCH / ".venv-everyday" / "bin" / "python"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="(re)build the corpus")
    parser.add_argument("--run", action="store_true", help="scan it with every tool")
    parser.add_argument("--corpus", type=Path, default=BENCH / "corpus" / "everyday")
    parser.add_argument("--only", default="", help="--build: only these packages (comma list)")
    parser.add_argument("--no-wheels", action="store_true", help="--build: skip wheel files")
    parser.add_argument("--tools", default="modelward,modelscan,picklescan,fickling,modelaudit")
    parser.add_argument("--markdown", type=Path, default=BENCH / "out" / "everyday.md")
    parser.add_argument(
        "--reuse",
        default="",
        help="--run: read these tools' verdicts from the last run (bench/out/everyday/) instead"
        " of running them again, e.g. --reuse modelscan,picklescan,fickling,modelaudit",
    )
    parser.add_argument(
        "--sample",
        default="modelaudit",
        help="--run: tools that scan only a sample (one file per kind, --per-package files of"
        " each package): modelaudit needs hours for the whole corpus on two cores",
    )
    parser.add_argument("--per-package", type=int, default=8)
    args = parser.parse_args(argv)
    if not (args.build or args.run):
        parser.error("nothing to do: give --build, --run or both")
    if args.build:
        if not EVERYDAY_PYTHON.exists():
            parser.error(f"{EVERYDAY_PYTHON} missing: create bench/.venv-everyday first")
        command = [str(EVERYDAY_PYTHON), "-m", "everyday.corpus", str(args.corpus)]
        command += ["--only", args.only] if args.only else []
        command += ["--no-wheels"] if args.no_wheels else []
        code = subprocess.run(command, cwd=BENCH, check=False).returncode
        if code:
            return code
    if args.run:
        from everyday import run

        print(f"scanning {args.corpus} ...")
        saved = BENCH / "out" / "everyday"
        reuse = frozenset(filter(None, args.reuse.split(",")))
        sampled = frozenset(filter(None, args.sample.split(",")))
        runs, alarms = run.run_tools(
            args.corpus, args.tools.split(","), saved, reuse, sampled, args.per_package
        )
        text = run.tabulate(args.corpus, runs, alarms)
        print(text)
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
        print(f"(written to {args.markdown})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
