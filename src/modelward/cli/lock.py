"""`modelward lock`: pin models (paths or hub ids) by digest in `models.lock`; `--check` in CI."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, Any

from modelward.cli._common import EXIT_CLEAN, EXIT_ERROR, EXIT_FINDINGS, fail
from modelward.cli._store import add_store_arguments, open_cli_store, record_verdicts

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
    from modelward.provenance.lock import check_lock, lock_models

    store = None
    cache = open_cache(not args.no_cache)
    try:  # an IntegrityError (LockError) or a StoreError goes to main
        if args.check:
            checks = check_lock(
                args.lock_file, args.models, hf_cache=args.hf_cache, cache=cache, jobs=args.jobs
            )
            store = open_cli_store(args)
            base = args.lock_file.resolve().parent
            drifted = 0
            recorded = True
            for locked, result in checks:
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
                return EXIT_ERROR
            return EXIT_FINDINGS if drifted else EXIT_CLEAN
        lock_models(
            args.lock_file,
            args.models,
            hf_cache=args.hf_cache,
            cache=cache,
            jobs=args.jobs,
            on_locked=_say_locked,
        )
    except OSError as exc:
        return fail(str(exc))
    finally:
        if cache is not None:
            cache.close()
        if store is not None:
            store.close()
    return EXIT_CLEAN


def _say_locked(entry: LockedModel) -> None:
    print(f"locked  {entry.source}  {entry.digest}  ({len(entry.files)} files)")


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
