"""`models.lock`: the manifest digest of every model a project uses, checked in CI.

```toml
version = 1

[[model]]
source = "models/bert"              # a path relative to the lock file, or "org/name@commit"
algorithm = "sha256"
digest = "sha256:9f2c..."           # `Manifest.digest()`: names, sizes and digests

[model.files]
"config.json" = { size = 571, digest = "e3b0c4..." }
```

Hub ids are resolved in the local Hugging Face cache (offline), a branch or tag
name to the commit it points at, and locked as `org/name@<commit>`.
"""

from __future__ import annotations

import json
import os
import re
import tomllib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from modelward.integrity.cache import DigestCache
from modelward.integrity.comparison import VerificationResult, compare
from modelward.integrity.errors import IntegrityError, ModelPathError
from modelward.integrity.manifest import Manifest, ManifestEntry, Serialization, hash_model
from modelward.integrity.signing import default_signature_path, with_signature_ignored
from modelward.integrity.walk import DEFAULT_IGNORE, name_key

LOCK_VERSION = 1
DEFAULT_LOCK_FILE = "models.lock"
_HUB_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[\w.-]+(@[\w./-]+)?")


class LockError(IntegrityError):
    """The lock file is malformed, or a model in it cannot be found."""


@dataclass
class LockedModel:
    """One model pinned by the lock: where it is and what it must contain."""

    source: str
    algorithm: str
    digest: str
    files: dict[str, tuple[int, str]] = field(default_factory=dict)  # name -> (size, hex)

    def manifest(
        self, *, allow_symlinks: bool = False, ignore_paths: tuple[str, ...] = DEFAULT_IGNORE
    ) -> Manifest:
        ser = Serialization(
            hash_type=self.algorithm, allow_symlinks=allow_symlinks, ignore_paths=ignore_paths
        )
        entries = [
            ManifestEntry(name, size, 0, size, bytes.fromhex(digest))
            for name, (size, digest) in sorted(self.files.items(), key=lambda i: name_key(i[0]))
        ]
        return Manifest(self.source, ser, entries)


def default_hf_cache() -> Path:
    """The Hugging Face hub cache: $HF_HUB_CACHE, $HF_HOME/hub, or ~/.cache/huggingface/hub."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or Path.home() / ".cache" / "huggingface"
    return Path(home) / "hub"


def is_hub_id(source: str, base_dir: Path) -> bool:
    return not (base_dir / source).exists() and _HUB_ID.fullmatch(source) is not None


def resolve_hub_id(source: str, hf_cache: Path) -> tuple[str, Path]:
    """`(org/name@commit, snapshot folder)` for a hub id, from the local cache only."""
    repo_id, _, revision = source.partition("@")
    repo = hf_cache / ("models--" + repo_id.replace("/", "--"))
    revision = revision or "main"
    ref = repo / "refs" / revision
    if ref.is_file():
        revision = ref.read_text().strip()
    snapshot = repo / "snapshots" / revision
    if not snapshot.is_dir():
        raise LockError(f"{source}: not in the Hugging Face cache {hf_cache} (download it first)")
    return f"{repo_id}@{revision}", snapshot


def model_path(source: str, base_dir: Path, hf_cache: Path) -> tuple[Path, bool]:
    """Where a locked model is on disk, and whether it is an HF snapshot (symlinks allowed)."""
    if is_hub_id(source, base_dir):
        return resolve_hub_id(source, hf_cache)[1], True
    path = base_dir / source
    if not path.exists():
        raise LockError(f"{source}: no such model (relative to {base_dir})")
    return path, False


def lock_model(
    source: str,
    *,
    base_dir: Path,
    hf_cache: Path | None = None,
    algorithm: str = "sha256",
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> LockedModel:
    """Hash a model (path or hub id) and return its lock entry."""
    hub = hf_cache or default_hf_cache()
    if is_hub_id(source, base_dir):
        source, path = resolve_hub_id(source, hub)
        links = True
    else:
        path = base_dir / source
        links = False
        source = Path(os.path.relpath(path.resolve(), base_dir.resolve())).as_posix()
    manifest = hash_model(
        path,
        algorithm=algorithm,
        allow_symlinks=links,
        ignore_paths=lock_ignore(path),
        cache=cache,
        jobs=jobs,
    )
    files = {e.path: (e.size, e.digest.hex()) for e in manifest.entries}
    return LockedModel(source, manifest.serialization.hash_type, manifest.digest(), files)


def lock_ignore(path: Path) -> tuple[str, ...]:
    """What a lock never pins: the usual ignores and the model's own signature bundle, so
    that signing a locked model does not make its lock drift."""
    return with_signature_ignored(path, default_signature_path(path), DEFAULT_IGNORE)


def check_model(
    locked: LockedModel,
    *,
    base_dir: Path,
    hf_cache: Path | None = None,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> VerificationResult:
    """Compare a locked model with what is on disk now (names and sizes first)."""
    path, links = model_path(locked.source, base_dir, hf_cache or default_hf_cache())
    expected = locked.manifest(allow_symlinks=links, ignore_paths=lock_ignore(path))
    if expected.digest() != locked.digest:
        raise LockError(f"{locked.source}: lock entry is inconsistent (digest vs files)")
    result = compare(path, expected, cache=cache, jobs=jobs)
    result.model = locked.source
    return result


def lock_models(
    lock_file: Path,
    sources: Iterable[str] = (),
    *,
    hf_cache: Path | None = None,
    cache: DigestCache | None = None,
    jobs: int | None = None,
    on_locked: Callable[[LockedModel], None] | None = None,
) -> list[LockedModel]:
    """Lock `sources` (paths or hub ids) into `lock_file` and write it; the entries written.

    Paths are relative to the current folder, not the lock's. Without sources every model
    already in the lock is locked again. A source already locked is replaced, the others
    kept. `on_locked` is told each new entry as soon as it is hashed. Raises `LockError`
    when there is nothing to lock.
    """
    existing = read_lock(lock_file) if lock_file.exists() else []
    base = lock_file.resolve().parent
    wanted = [str(Path(s).resolve()) if Path(s).exists() else s for s in sources]
    wanted = wanted or [m.source for m in existing]
    if not wanted:
        raise LockError("nothing to lock: give MODEL paths or hub ids")
    by_source = {m.source: m for m in existing}
    for source in wanted:
        entry = lock_model(source, base_dir=base, hf_cache=hf_cache, cache=cache, jobs=jobs)
        by_source[entry.source] = entry
        if on_locked is not None:
            on_locked(entry)
    models = list(by_source.values())
    write_lock(lock_file, models)
    return models


def check_lock(
    lock_file: Path,
    sources: Iterable[str] = (),
    *,
    hf_cache: Path | None = None,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> Iterator[tuple[LockedModel, VerificationResult]]:
    """Each locked model (only `sources`, when given) with its comparison to what is on disk.

    The lock is read now, and a missing or empty one raises `LockError`; each model is
    then checked as the iterator reaches it, so a caller can report one before the next.
    """
    existing = read_lock(lock_file) if lock_file.exists() else []
    if not existing:
        raise LockError(f"{lock_file}: no lock file (run `modelward lock MODEL`)")
    wanted = set(sources)
    base = lock_file.resolve().parent
    return (
        (locked, check_model(locked, base_dir=base, hf_cache=hf_cache, cache=cache, jobs=jobs))
        for locked in existing
        if not wanted or locked.source in wanted
    )


def read_lock(path: Path) -> list[LockedModel]:
    try:
        with path.open("rb") as f:
            doc = tomllib.load(f)
    except OSError as exc:
        raise LockError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise LockError(f"{path}: not valid TOML: {exc}") from None
    if doc.get("version") != LOCK_VERSION:
        raise LockError(f"{path}: unsupported lock version {doc.get('version')!r}")
    models = []
    for i, item in enumerate(doc.get("model", [])):
        try:
            files = {
                str(name): (int(v["size"]), str(v["digest"])) for name, v in item["files"].items()
            }
            models.append(
                LockedModel(str(item["source"]), str(item["algorithm"]), str(item["digest"]), files)
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise LockError(f"{path}: model #{i + 1} is malformed ({exc!r})") from None
    return models


def write_lock(path: Path, models: list[LockedModel]) -> None:
    """Write the lock, models sorted by source so diffs stay small."""
    lines = [
        "# Written by `modelward lock`; `modelward lock --check` fails when a model drifts.",
        f"version = {LOCK_VERSION}",
    ]
    for m in sorted(models, key=lambda m: m.source):
        lines += ["", "[[model]]", f"source = {_q(m.source)}", f"algorithm = {_q(m.algorithm)}"]
        lines += [f"digest = {_q(m.digest)}", "", "[model.files]"]
        lines += [
            f"{_q(name)} = {{ size = {size}, digest = {_q(digest)} }}"
            for name, (size, digest) in sorted(m.files.items())
        ]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def _q(text: str) -> str:
    """A TOML basic string (JSON string escapes are valid TOML)."""
    return json.dumps(text, ensure_ascii=True)


def find_locked_file(
    file: Path, models: list[LockedModel], *, base_dir: Path, hf_cache: Path | None = None
) -> tuple[LockedModel, str] | None:
    """The lock entry covering `file`, and the file's name inside that model."""
    target = file.resolve() if not file.is_symlink() else file.absolute()
    for m in models:
        try:
            root, _ = model_path(m.source, base_dir, hf_cache or default_hf_cache())
        except (LockError, ModelPathError):
            continue
        root = root.absolute() if is_hub_id(m.source, base_dir) else root.resolve()
        if target == root and "." in m.files:
            return m, "."
        if target.is_relative_to(root):
            name = target.relative_to(root).as_posix()
            if name in m.files:
                return m, name
    return None


__all__ = [
    "DEFAULT_LOCK_FILE",
    "LockError",
    "LockedModel",
    "check_lock",
    "check_model",
    "find_locked_file",
    "lock_model",
    "lock_models",
    "read_lock",
    "write_lock",
]
