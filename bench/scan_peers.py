"""Benchmark `modelward scan` against peer scanners on one labelled corpus.

    python bench/scan_peers.py --build --run          # build bench/corpus, then compare

The corpus includes the evasion classes of issue 14 and the published bypasses of the peers
(bench/scan/evasions.py); the output has a table per evasion class and per bypass, and the time
per file ("Evasions and published bypasses" in docs/benchmarks.md).

Not a test and not run in CI. Peers live in their own venv (see bench/requirements-peers.txt);
the corpus is generated, never committed. docs/benchmarks.md ("Scanner") has a recorded run.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from scan import corpus, results, tools

BENCH = Path(__file__).resolve().parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--build", action="store_true", help="(re)build the corpus")
    parser.add_argument("--run", action="store_true", help="run every tool on the corpus")
    parser.add_argument(
        "--corpus", type=Path, default=BENCH / "corpus" / "scan", help="corpus folder"
    )
    parser.add_argument(
        "--large-gb", type=float, default=1.0, help="size of the benign big checkpoint (0: none)"
    )
    parser.add_argument(
        "--tools",
        default=",".join(t.name for t in tools.TOOLS),
        help="comma-separated tools to run (default: all)",
    )
    parser.add_argument(
        "--repeat", type=int, default=1, help="runs per tool; the fastest is reported"
    )
    parser.add_argument(
        "--markdown", type=Path, default=BENCH / "out" / "scan_peers.md", help="write tables here"
    )
    args = parser.parse_args(argv)
    if not (args.build or args.run):
        parser.error("nothing to do: give --build, --run or both")

    if args.build:
        print(f"building corpus in {args.corpus} ...")
        start = time.monotonic()
        cases = corpus.build(args.corpus, args.large_gb)
        bad = sum(c.malicious for c in cases)
        print(
            f"{len(cases)} cases ({bad} malicious, {len(cases) - bad} benign)"
            f" in {time.monotonic() - start:.1f} s"
        )
    if args.run:
        chosen = [t for t in tools.TOOLS if t.name in args.tools.split(",")]
        outcome = results.compare(args.corpus, chosen, args.repeat)
        text = results.markdown(outcome, machine())
        print(text)
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(text, encoding="utf-8")
        print(f"(written to {args.markdown})")
    return 0


def machine() -> str:
    load = os.getloadavg()
    return (
        f"{platform.system()} {platform.machine()}, {os.cpu_count()} cores,"
        f" Python {platform.python_version()}, load average before the run"
        f" {load[0]:.2f}/{load[1]:.2f}/{load[2]:.2f}"
    )


if __name__ == "__main__":
    sys.exit(main())
