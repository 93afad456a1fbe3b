"""Run every Hypothesis fuzz target in the test suite for much longer than CI does.

    python bench/fuzz.py                        # all targets, `long` profile (5000 examples each)
    python bench/fuzz.py --rounds 10            # ten runs, each with fresh random inputs
    python bench/fuzz.py -k tar                 # only tests whose name matches
    python bench/fuzz.py --list                 # the test files it would run

A fuzz target is any test in a file under `tests/` that uses Hypothesis's `@given`.
Failures print the smallest reproducing input; Hypothesis stores it in `.hypothesis/`
and replays it first next time. See docs/fuzzing.md.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"


def fuzz_files() -> list[Path]:
    """Test files that hold at least one Hypothesis `@given` test."""
    return sorted(
        path
        for path in TESTS.rglob("test_*.py")
        if "@given" in path.read_text(encoding="utf-8", errors="replace")
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1, help="runs, each with new random inputs")
    parser.add_argument("-k", dest="keyword", help="only tests matching this pytest -k expression")
    parser.add_argument("--list", action="store_true", help="print the fuzz test files and exit")
    args = parser.parse_args(argv)
    files = fuzz_files()
    if args.list:
        print("\n".join(str(p.relative_to(ROOT)) for p in files))
        return 0
    env = dict(os.environ, HYPOTHESIS_PROFILE="long")
    command = [sys.executable, "-m", "pytest", "-q", *map(str, files)]
    if args.keyword:
        command += ["-k", args.keyword]
    for round_number in range(1, args.rounds + 1):
        print(f"fuzz round {round_number}/{args.rounds}: {len(files)} files", flush=True)
        status = subprocess.call(command, cwd=ROOT, env=env)
        if status != 0:
            return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
