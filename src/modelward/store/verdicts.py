"""Record a check of a whole model (signature, lock, gate) as one verdict per file.

The store keys everything by a file's SHA-256, so a model folder's verdict is written
against each of its files: the web index and `modelward history` then show, for any
file, whether its model last verified. A file the check names as the culprit (digest
differs, not in the manifest) gets its own detail.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from modelward.integrity.hashing import HashTask, digest_tasks
from modelward.integrity.walk import DEFAULT_IGNORE, SINGLE_FILE_NAME, list_files
from modelward.store.records import CheckVerdict

if TYPE_CHECKING:
    from modelward.integrity.cache import DigestCache
    from modelward.integrity.comparison import VerificationResult
    from modelward.store.sql import ResultStore


def record_model_verdicts(
    store: ResultStore,
    model: Path,
    kind: str,
    passed: bool,
    detail: str,
    *,
    culprits: Mapping[str, str] | None = None,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE,
    allow_symlinks: bool = False,
    cache: DigestCache | None = None,
    sha256: Mapping[str, bytes] | None = None,
) -> list[CheckVerdict]:
    """Write `kind`'s verdict against every file of `model`, in one transaction.

    `culprits` maps a file's name inside the model (as the integrity checks name it) to
    why that file failed. `sha256` maps names to the whole-file SHA-256 the check itself
    computed (`VerificationResult.file_sha256`), so the model is not read again; any
    other file's digest comes from `cache`, or the file is hashed here.
    """
    files = list_files(model, ignore_paths=ignore_paths, allow_symlinks=allow_symlinks)
    known = sha256 or {}
    todo = [f for f in files if f.name not in known]
    hashed = dict(
        zip(
            (f.name for f in todo),
            digest_tasks([HashTask(f, 0, f.size) for f in todo], "sha256", cache=cache),
            strict=True,
        )
    )
    named = culprits or {}
    rows = []
    for entry in files:
        digest = known[entry.name] if entry.name in known else hashed[entry.name]
        path = model if entry.name == SINGLE_FILE_NAME else model / entry.name
        why = named.get(entry.name)
        rows.append(
            (digest.hex(), os.path.abspath(path), kind, passed and why is None, why or detail)
        )
    return store.record_verdicts(rows)


def culprits_of(result: VerificationResult, reference: str) -> dict[str, str]:
    """The files a signature or lock comparison blames, each with why."""
    blamed = {name: f"not in the {reference}" for name in result.extra}
    for m in result.mismatch:
        if m.actual is None:
            blamed[m.name] = (
                f"size {m.actual_size} differs from the {reference} ({m.expected_size})"
            )
        else:
            blamed[m.name] = f"digest differs from the {reference}"
    return blamed
