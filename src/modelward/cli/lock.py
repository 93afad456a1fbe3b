"""`modelward lock`: pin models (paths or hub ids) by digest in `models.lock`; `--check` in CI."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._store import add_store_arguments, open_cli_store, record_verdicts
from modelward.store.errors import StoreError

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache
    from modelward.integrity.comparison import VerificationResult
    from modelward.provenance.lock import LockedModel
    from modelward.store import ResultStore


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "lock",
        help="write models.lock (model digests) or, with --check, fail when a model drifted",
        description="Hash each model (a local path, or a Hugging Face hub id org/name[@rev]"
        " found in the local HF cache) and record its manifest digest and per-file digests"
        " in a TOML lock file. Without MODEL arguments every model already in the lock is"
        " re-locked. With --check nothing is written: exit 1 when any model differs.",
    )
    parser.add_argument("models", nargs="*", metavar="MODEL", help="path or org/name[@rev]")
    parser.add_argument("--lock-file", "-l", type=Path, default=Path("models.lock"), metavar="FILE")
    parser.add_argument("--check", action="store_true", help="verify instead of writing")
    parser.add_argument(
        "--hf-cache", type=Path, metavar="DIR", help="Hugging Face hub cache (default: HF's)"
    )
    parser.add_argument("--no-cache", action="store_true", help="ignore the digest cache")
    parser.add_argument("--jobs", "-j", type=int, default=None, metavar="N")
    add_store_arguments(parser, "record each file's lock verdict in (with --check)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from modelward.integrity.cache import open_cache
    from modelward.integrity.errors import IntegrityError
    from modelward.provenance.lock import check_model, lock_model, read_lock, write_lock

    base = args.lock_file.resolve().parent
    store = None
    cache = open_cache(not args.no_cache)
    try:
        existing = read_lock(args.lock_file) if args.lock_file.exists() else []
        if args.check:
            if not existing:
                print(
                    f"modelward: {args.lock_file}: no lock file (run `modelward lock MODEL`)",
                    file=sys.stderr,
                )
                return 2
            store = open_cli_store(args)
            wanted = set(args.models)
            drifted = 0
            recorded = True
            for locked in existing:
                if wanted and locked.source not in wanted:
                    continue
                result = check_model(
                    locked, base_dir=base, hf_cache=args.hf_cache, cache=cache, jobs=args.jobs
                )
                if result.ok:
                    print(f"ok      {locked.source}")
                else:
                    drifted += 1
                    print(f"DRIFTED {locked.source}")
                    for line in result.lines():
                        print(f"  {line}")
                if store is not None:
                    recorded &= _record(store, locked, result, args, base, cache)
            if not recorded:
                return 2
            return 1 if drifted else 0
        # Paths given on the command line are relative to the current folder, not the lock's.
        sources = [str(Path(s).resolve()) if Path(s).exists() else s for s in args.models]
        sources = sources or [m.source for m in existing]
        if not sources:
            print("modelward: nothing to lock: give MODEL paths or hub ids", file=sys.stderr)
            return 2
        by_source = {m.source: m for m in existing}
        for source in sources:
            entry = lock_model(
                source, base_dir=base, hf_cache=args.hf_cache, cache=cache, jobs=args.jobs
            )
            by_source[entry.source] = entry
            print(f"locked  {entry.source}  {entry.digest}  ({len(entry.files)} files)")
        write_lock(args.lock_file, list(by_source.values()))
    except (IntegrityError, OSError, StoreError) as exc:
        print(f"modelward: {exc}", file=sys.stderr)
        return 2
    finally:
        if cache is not None:
            cache.close()
        if store is not None:
            store.close()
    return 0


def _record(
    store: ResultStore,
    locked: LockedModel,
    result: VerificationResult,
    args: argparse.Namespace,
    base: Path,
    cache: DigestCache | None,
) -> bool:
    """Each file's lock verdict, listed with the same ignores as the check."""
    from modelward.provenance.lock import default_hf_cache, lock_ignore, model_path
    from modelward.store.verdicts import culprits_of

    path, links = model_path(locked.source, base, args.hf_cache or default_hf_cache())
    return record_verdicts(
        store,
        path,
        "lock",
        passed=result.ok,
        detail=f"{'matches' if result.ok else 'drifted from'} {args.lock_file}",
        culprits=culprits_of(result, "lock"),
        ignore_paths=lock_ignore(path),
        allow_symlinks=links,
        cache=cache,
    )
