#!/usr/bin/env python3
"""Refresh the popular-name lists behind `modelward names` (src/modelward/data/popular_*.txt).

Not run in CI: the lists are data, committed and reviewed like code. Each source is
either a local file (offline) or, with --online, fetched:

  PyPI packages   --pypi FILE: a TSV with `name` and `rank_among_15000_most_downloaded`
                  columns (as in the workplace package list), or the JSON of
                  https://hugovk.github.io/top-pypi-packages/ (`rows[].project`);
                  --online fetches that JSON.
  Hub models      --hf-models FILE: a JSON list of the hub API's model objects
                  (`[{"id": "org/name", ...}]`, from /api/models?sort=downloads) or a text
                  file of ids, one per line; --online fetches the top --top-models by downloads.

Hub lists are merged with the curated lists already in data/ (curated entries stay); the
PyPI list is replaced by the top --top-packages. Organisations are the curated ones plus
the organisations of every listed model.

    python scripts/refresh_popular_names.py --pypi pypi.tsv --top-packages 3000
    python scripts/refresh_popular_names.py --online --top-models 1000
"""

from __future__ import annotations

import argparse
import csv
import json
import re
import sys
import urllib.request
from pathlib import Path
from typing import Any

DATA = Path(__file__).resolve().parent.parent / "src" / "modelward" / "data"
PYPI_URL = "https://hugovk.github.io/top-pypi-packages/top-pypi-packages.min.json"
HF_URL = "https://huggingface.co/api/models?sort=downloads&direction=-1&limit={limit}"
PACKAGES_HEADER = """\
# The most downloaded PyPI projects (PEP 503 names), most downloaded first. A requirement
# close to one of these (edit distance, look-alike characters, separators) is a typosquat
# finding. Refresh: scripts/refresh_popular_names.py (see docs/names.md).
"""
_SEPARATORS = re.compile(r"[-_.]+")
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+")


def fetch_json(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=60) as response:
        return json.load(response)


def top_packages(source: Path | None, top: int) -> list[str]:
    """PEP 503 names of the `top` most downloaded projects, best first."""
    if source is not None and source.suffix in (".tsv", ".txt"):
        ranked: list[tuple[int, str]] = []
        with source.open(encoding="utf-8", newline="") as f:
            for row in csv.DictReader(f, delimiter="\t"):
                rank = (row.get("rank_among_15000_most_downloaded") or "").strip()
                if rank.isdigit():
                    ranked.append((int(rank), row["name"]))
        names = [name for _, name in sorted(ranked)]
    else:
        doc = json.loads(source.read_text(encoding="utf-8")) if source else fetch_json(PYPI_URL)
        names = [row["project"] for row in doc["rows"]]
    seen: dict[str, None] = {}
    for name in names:
        seen.setdefault(_SEPARATORS.sub("-", name).lower(), None)
    return list(seen)[:top]


def top_models(source: Path | None, top: int) -> list[str]:
    """Hub model ids (`org/name`) from a hub API JSON list, a text list, or the hub."""
    if source is None:
        items: list[Any] = fetch_json(HF_URL.format(limit=top))
    elif source.suffix == ".json":
        items = json.loads(source.read_text(encoding="utf-8"))
    else:
        items = source.read_text(encoding="utf-8").split()
    ids = [item["id"] if isinstance(item, dict) else str(item) for item in items]
    return [i for i in ids if _HUB_ID.fullmatch(i)][:top]


def read_list(path: Path) -> tuple[list[str], list[str]]:
    """(header comment lines, entries) of a data list."""
    lines = path.read_text(encoding="utf-8").splitlines() if path.exists() else []
    header = [line for line in lines if line.startswith("#")]
    return header, [line.strip() for line in lines if line.strip() and not line.startswith("#")]


def write_list(path: Path, header: list[str], entries: list[str]) -> None:
    path.write_text("\n".join([*header, *entries]) + "\n", encoding="utf-8")
    print(f"{path}: {len(entries)} entries")


def merged(current: list[str], new: list[str]) -> list[str]:
    """Union, case-insensitive, sorted for small diffs."""
    by_key = {name.lower(): name for name in [*new, *current]}
    return sorted(by_key.values(), key=str.lower)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pypi", type=Path, metavar="FILE", help="PyPI ranking (TSV or JSON)")
    parser.add_argument("--hf-models", type=Path, metavar="FILE", help="hub models (JSON or text)")
    parser.add_argument("--online", action="store_true", help="fetch sources not given as files")
    parser.add_argument("--top-packages", type=int, default=3000, metavar="N")
    parser.add_argument("--top-models", type=int, default=1000, metavar="N")
    parser.add_argument("--data", type=Path, default=DATA, help="folder of the lists")
    args = parser.parse_args(argv)
    if not (args.pypi or args.hf_models or args.online):
        parser.error("give --pypi FILE, --hf-models FILE, or --online")
    if args.pypi or args.online:
        packages = top_packages(args.pypi, args.top_packages)
        write_list(args.data / "popular_packages.txt", PACKAGES_HEADER.splitlines(), packages)
    if args.hf_models or args.online:
        ids = top_models(args.hf_models, args.top_models)
        header, current = read_list(args.data / "popular_models.txt")
        models = merged(current, ids)
        write_list(args.data / "popular_models.txt", header, models)
        header, current_orgs = read_list(args.data / "popular_orgs.txt")
        write_list(
            args.data / "popular_orgs.txt",
            header,
            merged(current_orgs, [m.split("/")[0] for m in ids]),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
