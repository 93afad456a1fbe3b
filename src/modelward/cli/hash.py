"""`modelward hash`: a manifest (name, size, digest) of every file of a model."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from modelward.cli._common import EXIT_CLEAN, write_output

#: Kept in sync with `modelward.integrity.walk.DEFAULT_IGNORE` (not imported: start-up time).
_DEFAULT_IGNORE = (".git", ".gitattributes", ".github", ".gitignore")


def add_hashing_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by `hash`, `sign` and `lock`: what to hash and how."""
    parser.add_argument(
        "--algorithm",
        "-a",
        default="sha256",
        choices=("sha256", "blake2b", "blake3"),
        help="digest algorithm (default: sha256; blake3 needs modelward[blake3])",
    )
    parser.add_argument(
        "--method",
        default="files",
        choices=("files", "shards"),
        help="one digest per file (default), or per shard so one large file uses every core",
    )
    parser.add_argument(
        "--shard-size",
        type=int,
        default=1_000_000_000,
        metavar="BYTES",
        help="shard size for --method shards (default: 1000000000, model-signing's)",
    )
    parser.add_argument(
        "--ignore",
        action="append",
        default=[],
        metavar="PATH",
        help="path relative to the model to leave out (repeatable); .git, .gitattributes,"
        " .github and .gitignore are always left out",
    )
    add_common_arguments(parser)


def add_common_arguments(parser: argparse.ArgumentParser) -> None:
    """Options shared by every command that reads model files."""
    parser.add_argument(
        "--allow-symlinks",
        action="store_true",
        help="follow symlinks that resolve inside the model (or its HF cache repository);"
        " links that leave it are always refused",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="re-read every file; ignore the digest cache"
    )
    parser.add_argument(
        "--jobs",
        "-j",
        type=int,
        default=None,
        metavar="N",
        help="hash with N threads (default: one per file or shard, up to 32)",
    )


def hashing_options(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "algorithm": args.algorithm,
        "method": args.method,
        "shard_size": args.shard_size,
        "ignore_paths": (*_DEFAULT_IGNORE, *args.ignore),
        "allow_symlinks": args.allow_symlinks,
        "cache": not args.no_cache,
        "jobs": args.jobs,
    }


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "hash",
        help="list every file of a model with its size and digest",
        description="Hash every file of a model (a file or a folder) in parallel and print a"
        " manifest: digest, size and path per file, then a manifest digest over all of them."
        " Unchanged files are served from the digest cache (keyed by device, inode, size,"
        " mtime and ctime).",
    )
    parser.add_argument("path", type=Path, metavar="PATH", help="model file or folder")
    add_hashing_arguments(parser)
    parser.add_argument("--format", "-f", default="text", choices=("text", "json"))
    parser.add_argument("--output", "-o", type=Path, help="write the manifest to FILE")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.integrity import hash_model
    from modelward.integrity.cache import open_cache

    options = hashing_options(args)
    cache = open_cache(options.pop("cache"))
    try:  # an IntegrityError goes to main
        manifest = hash_model(args.path, cache=cache, **options)
    finally:
        if cache is not None:
            cache.close()
    if args.format == "json":
        text = json.dumps(manifest.to_dict(), indent=2) + "\n"
    else:
        method = manifest.serialization.method
        lines = [
            f"{e.digest.hex()}  {e.size:>14}  {e.resource_name(method)}" for e in manifest.entries
        ]
        total = sum(manifest.files.values())
        lines.append(
            f"{manifest.digest()}  {len(manifest.files)} files, {total} bytes"
            f" ({manifest.serialization.resource_algorithm})"
        )
        text = "\n".join(lines) + "\n"
    write_output(text, args.output)
    return EXIT_CLEAN
