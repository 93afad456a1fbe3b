"""Manifests: every file (or shard) of a model paired with its digest.

The layout mirrors OpenSSF model-signing so that a manifest maps one-to-one to
the signed predicate: method `files` (one digest per file) or `shards` (one per
`shard_size` bytes, named `path:start:end`, empty files left out, which lets a
single large file be hashed on every core).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path
from typing import Any

from modelward.integrity.cache import DigestCache
from modelward.integrity.errors import BundleError
from modelward.integrity.hashing import HashTask, canonical_algorithm, hash_tasks
from modelward.integrity.walk import DEFAULT_IGNORE, FileEntry, list_files, name_key

#: model-signing's default shard size (1 GB).
DEFAULT_SHARD_SIZE = 1_000_000_000


@dataclass(frozen=True)
class Serialization:
    """How a manifest was made; recorded in the predicate so a verifier can redo it."""

    method: str = "files"
    hash_type: str = "sha256"
    shard_size: int | None = None
    allow_symlinks: bool = False
    ignore_paths: tuple[str, ...] = DEFAULT_IGNORE

    def __post_init__(self) -> None:
        if self.method not in ("files", "shards"):
            raise BundleError(f"unknown serialization method {self.method!r}")
        if self.method == "shards" and (self.shard_size is None or self.shard_size <= 0):
            raise BundleError("serialization 'shards' needs a positive shard_size")

    @property
    def resource_algorithm(self) -> str:
        """The `algorithm` of each resource: `sha256`, or `sha256-sharded-<size>`."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def to_predicate(self) -> dict[str, Any]:
        out: dict[str, Any] = {"method": self.method, "hash_type": self.hash_type}
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out

    @classmethod
    def from_predicate(cls, data: Any) -> Serialization:
        if not isinstance(data, dict):
            raise BundleError("predicate.serialization is not an object")
        try:
            allow = data.get("allow_symlinks", False)
            if isinstance(allow, str):  # early model-signing wrote "false"/"true"
                allow = allow.lower() == "true"
            ignore = data.get("ignore_paths", [])
            shard_size = data.get("shard_size")
            if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
                raise BundleError("predicate.serialization.ignore_paths is not a list of strings")
            if isinstance(shard_size, float) and shard_size.is_integer():
                shard_size = int(
                    shard_size
                )  # model-signing's protobuf JSON writes 1e9 as 1000000000.0
            if shard_size is not None and not isinstance(shard_size, int):
                raise BundleError("predicate.serialization.shard_size is not an integer")
            return cls(
                method=str(data["method"]),
                hash_type=canonical_algorithm(str(data["hash_type"])),
                shard_size=shard_size,
                allow_symlinks=bool(allow),
                ignore_paths=tuple(ignore),
            )
        except KeyError as exc:
            raise BundleError(f"predicate.serialization lacks {exc}") from None


@dataclass(frozen=True)
class ManifestEntry:
    """One resource: a whole file, or the byte range [start, end) of it for shards."""

    path: str
    size: int
    start: int
    end: int
    digest: bytes

    def resource_name(self, method: str) -> str:
        return f"{self.path}:{self.start}:{self.end}" if method == "shards" else self.path


@dataclass
class Manifest:
    """The digests of a model's files, sorted as model-signing sorts its resources."""

    name: str
    serialization: Serialization
    entries: list[ManifestEntry] = field(default_factory=list)

    @property
    def files(self) -> dict[str, int]:
        """File name to size."""
        return {e.path: e.size for e in self.entries}

    def resources(self) -> list[dict[str, str]]:
        algo = self.serialization.resource_algorithm
        method = self.serialization.method
        return [
            {"name": e.resource_name(method), "algorithm": algo, "digest": e.digest.hex()}
            for e in self.entries
        ]

    def subject_digest(self) -> str:
        """model-signing's subject digest: SHA-256 over the sorted raw resource digests.

        It binds digests but not names; `digest()` binds both and is what lock files use.
        """
        h = hashlib.sha256()
        for e in self.entries:
            h.update(e.digest)
        return h.hexdigest()

    def digest(self) -> str:
        """`<algo>:<hex>` over the canonical JSON of names, sizes and digests."""
        canon = json.dumps(
            [[r["name"], r["algorithm"], r["digest"]] for r in self.resources()]
            + [["sizes", sorted(self.files.items())]],
            separators=(",", ":"),
        )
        return "sha256:" + hashlib.sha256(canon.encode()).hexdigest()

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "serialization": self.serialization.to_predicate(),
            "digest": self.digest(),
            "files": [
                {
                    "name": e.resource_name(self.serialization.method),
                    "size": e.size,
                    "digest": e.digest.hex(),
                }
                for e in self.entries
            ],
        }


def shard_ranges(size: int, shard_size: int) -> list[tuple[int, int]]:
    """model-signing's shards: [0, s), [s, 2s), ..., up to `size`; none for an empty file."""
    return [(start, min(start + shard_size, size)) for start in range(0, size, shard_size)]


def model_name(path: Path) -> str:
    return path.name or Path(path).resolve().name


def tasks_for(files: Sequence[FileEntry], serialization: Serialization) -> list[HashTask]:
    if serialization.method == "files":
        return [HashTask(f, 0, f.size) for f in files]
    assert serialization.shard_size is not None
    return [
        HashTask(f, start, end)
        for f in files
        for start, end in shard_ranges(f.size, serialization.shard_size)
    ]


def build_manifest(
    name: str,
    files: Sequence[FileEntry],
    serialization: Serialization,
    *,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> Manifest:
    return hash_files(name, files, serialization, cache=cache, jobs=jobs)[0]


def hash_files(
    name: str,
    files: Sequence[FileEntry],
    serialization: Serialization,
    *,
    cache: DigestCache | None = None,
    jobs: int | None = None,
    whole_sha256: bool = False,
) -> tuple[Manifest, dict[str, bytes]]:
    """The manifest of `files`, and each file's whole-file SHA-256 by name.

    The SHA-256s are free with the `files` method and SHA-256 (they are the manifest's
    digests); otherwise they are computed, with `whole_sha256`, in the same read of each
    file as its manifest digests. Without it, only the free ones are returned.
    """
    tasks = tasks_for(files, serialization)
    hashed = hash_tasks(
        tasks, serialization.hash_type, cache=cache, jobs=jobs, whole_sha256=whole_sha256
    )
    entries = [
        ManifestEntry(t.entry.name, t.entry.size, t.start, t.end, d)
        for t, d in zip(tasks, hashed.digests, strict=True)
    ]
    entries.sort(key=lambda e: (name_key(e.path), e.start, e.end))
    return Manifest(name, serialization, entries), hashed.sha256


def hash_model(
    path: str | PathLike[str],
    *,
    algorithm: str = "sha256",
    method: str = "files",
    shard_size: int = DEFAULT_SHARD_SIZE,
    ignore_paths: Iterable[str] = DEFAULT_IGNORE,
    allow_symlinks: bool = False,
    cache: DigestCache | None = None,
    jobs: int | None = None,
) -> Manifest:
    """Hash every file of a model (a file or a folder) and return its manifest."""
    model = Path(path)
    serialization = Serialization(
        method=method,
        hash_type=canonical_algorithm(algorithm),
        shard_size=shard_size if method == "shards" else None,
        allow_symlinks=allow_symlinks,
        ignore_paths=tuple(ignore_paths),
    )
    files = list_files(
        model, ignore_paths=serialization.ignore_paths, allow_symlinks=allow_symlinks
    )
    return build_manifest(model_name(model), files, serialization, cache=cache, jobs=jobs)
