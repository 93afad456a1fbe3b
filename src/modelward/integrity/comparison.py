"""Comparing a model on disk with a signed (or locked) manifest.

Cheap checks first: the file list and sizes come from one walk of `stat`
calls, so an added, missing or resized file fails at once without reading a
byte. Only then is the model hashed, with the method and algorithm the
manifest records, and each differing file is named with both digests.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from modelward.integrity.cache import DigestCache
from modelward.integrity.manifest import Manifest, hash_files, model_name
from modelward.integrity.walk import list_files


@dataclass(frozen=True)
class Mismatch:
    """A file whose content (or size) differs from the manifest."""

    name: str
    expected: str
    actual: str | None  # None when it was not hashed because its size already differs
    expected_size: int | None = None
    actual_size: int | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name, "expected": self.expected, "actual": self.actual}
        if self.actual is None:
            out["expected_size"] = self.expected_size
            out["actual_size"] = self.actual_size
        return out


@dataclass
class VerificationResult:
    """What differs between the model and its manifest; `ok` only when nothing does."""

    model: str
    extra: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatch: list[Mismatch] = field(default_factory=list)
    hashed: bool = False
    signer: str | None = None
    #: Whole-file SHA-256 of the files hashed, by name (see `compare`'s `whole_sha256`);
    #: not part of the verdict, so left out of `to_dict`.
    file_sha256: dict[str, bytes] = field(default_factory=dict, repr=False)

    @property
    def ok(self) -> bool:
        return not (self.extra or self.missing or self.mismatch)

    def to_dict(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "ok": self.ok,
            "signer": self.signer,
            "extra": self.extra,
            "missing": self.missing,
            "mismatch": [m.to_dict() for m in self.mismatch],
        }

    def lines(self) -> list[str]:
        """Human-readable differences, one per line."""
        out = [f"added (not signed): {n}" for n in self.extra]
        out += [f"missing: {n}" for n in self.missing]
        for m in self.mismatch:
            if m.actual is None:
                out.append(
                    f"resized: {m.name} (expected {m.expected_size} bytes, found {m.actual_size})"
                )
            else:
                out.append(f"changed: {m.name}\n  expected {m.expected}\n  actual   {m.actual}")
        return out


def compare(
    model: Path,
    expected: Manifest,
    *,
    allow_symlinks: bool = False,
    cache: DigestCache | None = None,
    jobs: int | None = None,
    whole_sha256: bool = False,
) -> VerificationResult:
    """Check `model` against `expected`; sizes and names first, then content.

    Once the model is hashed, `file_sha256` of the result holds each file's whole-file
    SHA-256: free with the `files` method and SHA-256, else (with `whole_sha256`)
    computed in the same read as the manifest's digests, so that a caller recording
    the verdict by SHA-256 need not read the model again.
    """
    ser = expected.serialization
    files = list_files(
        model,
        ignore_paths=ser.ignore_paths,
        allow_symlinks=allow_symlinks or ser.allow_symlinks,
    )
    if ser.method == "shards":  # model-signing leaves empty files out of shard manifests
        files = [f for f in files if f.size > 0]
    result = VerificationResult(model=str(model))
    local = {f.name: f for f in files}
    want_sizes = _expected_sizes(expected)
    result.extra = [n for n in local if n not in want_sizes]
    result.missing = [n for n in want_sizes if n not in local]
    digests = _expected_digests(expected)
    for name, size in want_sizes.items():
        if name in local and size >= 0 and local[name].size != size:
            result.mismatch.append(
                Mismatch(name, digests[name][0][1], None, size, local[name].size)
            )
    if not result.ok:
        return result
    actual, result.file_sha256 = hash_files(
        model_name(model), files, ser, cache=cache, jobs=jobs, whole_sha256=whole_sha256
    )
    got = _expected_digests(actual)
    for name, want in digests.items():
        have = got.get(name, [])
        if have != want:
            diff = next(
                ((w, h) for w, h in zip(want, have, strict=False) if w != h),
                (want[0], have[0] if have else ("", "")),
            )
            result.mismatch.append(Mismatch(name, diff[0][1], diff[1][1] or None))
    result.hashed = True
    return result


def _expected_sizes(manifest: Manifest) -> dict[str, int]:
    """File name to size; -1 where the manifest does not say (model-signing `files`)."""
    sizes: dict[str, int] = {}
    for e in manifest.entries:
        if manifest.serialization.method == "shards":
            sizes[e.path] = max(sizes.get(e.path, 0), e.end)
        else:
            sizes[e.path] = e.size
    return sizes


def _expected_digests(manifest: Manifest) -> dict[str, list[tuple[tuple[int, int], str]]]:
    """File name to its (range, hex digest) list; one element for whole files."""
    out: dict[str, list[tuple[tuple[int, int], str]]] = defaultdict(list)
    method = manifest.serialization.method
    for e in manifest.entries:
        rng = (e.start, e.end) if method == "shards" else (0, 0)
        out[e.path].append((rng, e.digest.hex()))
    return dict(out)
