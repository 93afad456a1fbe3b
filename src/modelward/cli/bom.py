"""`modelward bom`: a CycloneDX 1.6 AI-BOM of the models under a path and their Python packages."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, fail, write_output


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "bom",
        help="write a CycloneDX 1.6 AI-BOM: models, model cards, datasets, Python packages",
        description="Inventory the models under PATH (a model file, a Hugging Face model folder,"
        " or a folder of models) as CycloneDX 1.6 JSON: one machine-learning-model component"
        " per model with its files' SHA-256 and formats, a modelCard from config.json and the"
        " README front matter, its datasets as data components and its base model as a pedigree"
        " ancestor; plus the Python packages of a requirements file or of this environment.",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model file or folder")
    packages = parser.add_mutually_exclusive_group()
    packages.add_argument(
        "--requirements",
        "-r",
        type=Path,
        metavar="FILE",
        help="add the packages of a requirements.txt or pylock.toml as library components",
    )
    packages.add_argument(
        "--environment",
        action="store_true",
        help="add every package installed in the running Python environment",
    )
    parser.add_argument(
        "--scan", action="store_true", help="scan each file and add its verdict as properties"
    )
    parser.add_argument("--format", "-f", default="cyclonedx-json", choices=("cyclonedx-json",))
    parser.add_argument("--spec-version", default="1.6", choices=("1.6",))
    parser.add_argument("--output", "-o", type=Path, metavar="FILE", help="write the BOM to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.provenance.bom import (
        PythonPackage,
        build_bom,
        installed_packages,
        read_requirements,
    )

    try:  # a BomError or an IntegrityError goes to main
        packages: list[PythonPackage] = []
        if args.requirements:
            packages = read_requirements(args.requirements)
        elif args.environment:
            packages = installed_packages()
        doc = build_bom(args.path, packages=packages, scan=args.scan)
    except OSError as exc:
        return fail(str(exc))
    write_output(json.dumps(doc, indent=2) + "\n", args.output)
    return EXIT_CLEAN
