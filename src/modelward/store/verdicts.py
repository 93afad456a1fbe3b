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
from modelward.store.records import Verdict

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
) -> list[Verdict]:
    """Write `kind`'s verdict against every file of `model`, in one transaction.

    `culprits` maps a file's name inside the model (as the integrity checks name it) to
    why that file failed. Digests come from `cache` when the check just hashed the file
    with SHA-256; otherwise the file is hashed here.
    """
    files = list_files(model, ignore_paths=ignore_paths, allow_symlinks=allow_symlinks)
    digests = digest_tasks([HashTask(f, 0, f.size) for f in files], "sha256", cache=cache)
    named = culprits or {}
    rows = []
    for entry, digest in zip(files, digests, strict=True):
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
