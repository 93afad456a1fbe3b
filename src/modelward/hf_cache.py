"""The snapshots of a local Hugging Face cache, by repository and revision.

`modelward scan --hf-cache [DIR]` scans every snapshot folder `huggingface_hub` keeps
(`models--org--name/snapshots/<commit>/`, files linked into `blobs/`), in order of repository
and revision, so a report reads repository by repository. The folders are scanned like any
other: the folder checks know the cache's layout (a link into `blobs/` is not an escape).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from modelward.errors import ModelwardError


class HfCacheError(ModelwardError):
    """The cache folder is missing, unreadable or holds no snapshot."""


@dataclass(frozen=True)
class CachedSnapshot:
    """One revision of one repository in the cache."""

    repo_type: str  # model, dataset or space
    repo_id: str
    commit: str
    refs: tuple[str, ...]  # branch or tag names pointing at it (`main`), if any
    path: Path


def default_cache_dir() -> Path:
    """Where `huggingface_hub` caches: `HF_HUB_CACHE`, else `HF_HOME/hub`, else
    `~/.cache/huggingface/hub` (read now, not when huggingface_hub was imported)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "huggingface"
    )
    return Path(home).expanduser() / "hub"


def cached_snapshots(cache_dir: Path | None = None) -> tuple[list[CachedSnapshot], list[str]]:
    """Every snapshot in the cache, sorted by repository type, id and commit, and what in the
    cache could not be read as a repository (those folders are not scanned: report them).

    Raises `HfCacheError` when the folder is not a readable cache or holds no snapshot: an
    empty scan must not look like a clean one.
    """
    from huggingface_hub import scan_cache_dir
    from huggingface_hub.errors import CacheNotFound

    folder = cache_dir if cache_dir is not None else default_cache_dir()
    try:
        info = scan_cache_dir(folder)
    except (CacheNotFound, OSError, ValueError) as exc:
        raise HfCacheError(f"no Hugging Face cache at {folder}: {exc}") from exc
    snapshots = [
        CachedSnapshot(
            repo.repo_type,
            repo.repo_id,
            revision.commit_hash,
            tuple(sorted(revision.refs)),
            revision.snapshot_path,
        )
        for repo in info.repos
        for revision in repo.revisions
    ]
    if not snapshots:
        seen = "; ".join(str(w) for w in info.warnings[:3])
        raise HfCacheError(
            f"no snapshot in the Hugging Face cache at {folder}" + (f" ({seen})" if seen else "")
        )
    problems = [f"Hugging Face cache entry not scanned: {w}" for w in info.warnings]
    return sorted(snapshots, key=lambda s: (s.repo_type, s.repo_id, s.commit)), problems
