"""`safe_load`: verify, scan, then load weights with a loader that cannot run code.

Use it in place of `torch.load` / `safetensors.torch.load_file`:

    state = modelward.safe_load("model.safetensors", lock="models.lock")
    state = modelward.safe_load("pytorch_model.bin", signature="model.sig", key="pub.pem")

Order: (1) the file must match a lock entry or a signed manifest, (2) the static
scan must find nothing at or above `fail_on`, (3) only then is it loaded, by
safetensors or by `torch.load(weights_only=True)`; anything else is refused with
`UnsafeModelError` saying why. The file's identity (device, inode, size, mtime,
ctime) is checked again after loading, so a file swapped in between is refused.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable
from os import PathLike
from pathlib import Path
from typing import Any

from modelward.errors import ModelwardError
from modelward.findings import Finding, Severity

StrPath = str | PathLike[str]


class UnsafeModelError(ModelwardError):
    """`safe_load` refused a file; `reason` says why, `findings` holds scan findings if any."""

    def __init__(self, reason: str, findings: Iterable[Finding] = ()):
        super().__init__(reason)
        self.reason = reason
        self.findings = list(findings)


def safe_load(
    path: StrPath,
    *,
    lock: StrPath | None = None,
    signature: StrPath | None = None,
    key: StrPath | None = None,
    certificate_chain: Iterable[StrPath] = (),
    fail_on: Severity = Severity.MEDIUM,
    framework: str = "pt",
    map_location: Any = "cpu",
    allow_unverified: bool = False,
    hf_cache: StrPath | None = None,
) -> Any:
    """Load a safetensors or PyTorch weights file after verifying and scanning it.

    `framework` is `"pt"` (torch tensors) or `"np"` (NumPy arrays, safetensors only).
    Returns what the loader returns (a dict of tensors, or the unpickled state dict).
    """
    file = Path(path)
    if not file.is_file():
        raise UnsafeModelError(f"{file}: not a file")
    identity = _identity(os.stat(file))
    if lock is not None:
        _check_lock(file, Path(lock), Path(hf_cache) if hf_cache else None)
    elif signature is not None:
        _check_signature(file, Path(signature), key, certificate_chain)
    elif not allow_unverified:
        raise UnsafeModelError(
            f"{file}: no lock file or signature to verify against (pass lock= or signature=,"
            " or allow_unverified=True to rely on the scan alone)"
        )
    _check_scan(file, fail_on)
    loaded = _load(file, framework, map_location)
    if _identity(os.stat(file)) != identity:
        raise UnsafeModelError(f"{file}: changed on disk while it was verified and loaded")
    return loaded


def _identity(st: os.stat_result) -> tuple[int, ...]:
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _check_lock(file: Path, lock: Path, hf_cache: Path | None) -> None:
    from modelward.integrity.cache import open_cache
    from modelward.integrity.hashing import HashTask, digest_tasks
    from modelward.integrity.walk import FileEntry
    from modelward.provenance.lock import LockError, find_locked_file, read_lock

    try:
        found = find_locked_file(
            file, read_lock(lock), base_dir=lock.resolve().parent, hf_cache=hf_cache
        )
    except LockError as exc:
        raise UnsafeModelError(str(exc)) from None
    if found is None:
        raise UnsafeModelError(f"{file}: not listed in {lock}; lock it first (`modelward lock`)")
    model, name = found
    size, expected = model.files[name]
    entry = FileEntry.from_stat(name, os.path.realpath(file), os.stat(file))
    if entry.size != size:
        raise UnsafeModelError(f"{file}: size {entry.size} differs from the lock ({size})")
    cache = open_cache(True)
    try:
        actual = digest_tasks([HashTask(entry, 0, size)], model.algorithm, cache=cache)[0].hex()
    finally:
        if cache is not None:
            cache.close()
    if actual != expected:
        raise UnsafeModelError(
            f"{file}: digest differs from {lock}: expected {expected}, actual {actual}"
        )


def _check_signature(
    file: Path, signature: Path, key: StrPath | None, chain: Iterable[StrPath]
) -> None:
    from modelward.integrity.cache import open_cache
    from modelward.integrity.errors import IntegrityError
    from modelward.integrity.signing import compare_signed, verified_manifest

    cache = open_cache(True)
    try:
        manifest, _ = verified_manifest(signature, key=key, certificate_chain=chain)
        root = _signed_root(file, set(manifest.files), signature)
        result = compare_signed(root, signature, manifest, cache=cache)
    except IntegrityError as exc:
        raise UnsafeModelError(f"{file}: signature check failed: {exc}") from None
    finally:
        if cache is not None:
            cache.close()
    if not result.ok:
        raise UnsafeModelError(
            f"{file}: model differs from its signature: " + "; ".join(result.lines())
        )


def _signed_root(file: Path, names: set[str], signature: Path) -> Path:
    """What the signature covers: `file` itself, or the nearest folder naming it as signed."""
    if names == {"."}:
        return file
    absolute = file.absolute()
    for root in absolute.parents:
        if absolute.relative_to(root).as_posix() in names:
            return root
    raise UnsafeModelError(f"{file}: not covered by the signature {signature}")


def _check_scan(file: Path, fail_on: Severity) -> None:
    import modelward

    report = modelward.scan(file)
    bad = [f for f in report.findings if f.severity >= fail_on]
    if bad:
        worst = max(bad, key=lambda f: f.severity)
        raise UnsafeModelError(
            f"{file}: scan found {len(bad)} finding(s) at or above {fail_on.label}; worst:"
            f" {worst.rule_id} ({worst.severity.label}) {worst.message}",
            bad,
        )
    if report.errors:
        raise UnsafeModelError(f"{file}: scan could not read it: {'; '.join(report.errors)}")


def _load(file: Path, framework: str, map_location: Any) -> Any:
    with file.open("rb") as f:
        head = f.read(9)
    if _is_safetensors(head, file.stat().st_size):
        if framework == "np":
            from safetensors.numpy import load_file as load_np

            return load_np(str(file))
        from safetensors.torch import load_file as load_pt

        device = map_location if isinstance(map_location, str) else "cpu"
        return load_pt(str(file), device=device)
    if framework != "pt":
        raise UnsafeModelError(f"{file}: only safetensors files load as framework={framework!r}")
    if head.startswith(b"PK\x03\x04") or head[:1] == b"\x80":
        try:
            import torch
        except ImportError:
            raise UnsafeModelError(
                f"{file}: is a PyTorch file; install torch (pip install 'modelward[torch]')"
            ) from None
        return torch.load(file, map_location=map_location, weights_only=True)
    raise UnsafeModelError(f"{file}: not a safetensors or PyTorch weights file; not loaded")


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (header_len,) = struct.unpack("<Q", head[:8])
    return 8 + header_len <= size and head[8:9] == b"{"
