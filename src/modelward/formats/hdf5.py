"""HDF5 files, chiefly legacy Keras `.h5` models.

A legacy Keras `.h5` keeps the model's JSON config in the root attribute
`model_config` (and losses/metrics in `training_config`): the config, not the
weights, decides what code runs on load. Only those attributes are read, with
`h5py` (imported lazily) — never a dataset. Other HDF5 files are an INFO note.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from typing import Any

from modelward.findings import Severity
from modelward.formats.base import Blob, ScanContext
from modelward.formats.keras import analyse_keras_json

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: HDF5 looks for its superblock at 0, 512, 1024, 2048... (after a user block).
_FIRST_USERBLOCK = 512
#: Largest user block checked when sniffing; a bigger prefix is another format's problem.
_MAX_USERBLOCK = 1024 * 1024
#: Address space and seconds the h5py child may use.
_CHILD_MEMORY = 4 * 1024**3
_CHILD_SECONDS = 60.0


def signature_offset(blob: Blob, head: bytes) -> int | None:
    """Where the HDF5 superblock signature is, or None: 0 or a power of two from 512."""
    offset = 0
    while offset <= min(blob.size - len(HDF5_SIGNATURE), _MAX_USERBLOCK):
        if offset + len(HDF5_SIGNATURE) <= len(head):
            found = head[offset : offset + len(HDF5_SIGNATURE)]
        else:
            with blob.open() as stream:
                stream.seek(offset)
                found = stream.read(len(HDF5_SIGNATURE))
        if found == HDF5_SIGNATURE:
            return offset
        offset = _FIRST_USERBLOCK if offset == 0 else offset * 2
    return None


def h5py_available() -> bool:
    """Whether the child can import h5py (checked without importing it here)."""
    try:
        return importlib.util.find_spec("h5py") is not None
    except (ImportError, ValueError):
        return False


def _limit_child_memory() -> None:
    import resource

    resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY, _CHILD_MEMORY))


def read_keras_attributes(blob: Blob, ctx: ScanContext) -> dict[str, Any] | None:
    """Run `_h5attrs` in a child process; None when the blob is too large to hand over."""
    limit = ctx.config.limits.max_header_bytes
    command = [sys.executable, "-I", "-m", "modelward.formats._h5attrs", str(limit)]
    data: bytes | None = None
    if blob.fs_path is not None:
        command.append(str(blob.fs_path))
    elif blob.size > limit:
        ctx.report(
            "MW-HDF5-TOO-LARGE",
            Severity.MEDIUM,
            blob.location,
            f"HDF5 member of {blob.size} bytes is over the {limit}-byte limit for"
            " reading a member into memory; its attributes were not checked",
        )
        return None
    else:
        with ctx.open(blob, limit=limit + 1) as stream:
            data = stream.read(limit + 1)
    timeout = max(1.0, min(_CHILD_SECONDS, ctx.deadline - time.monotonic()))
    try:
        done = subprocess.run(
            command,
            input=data,
            capture_output=True,
            timeout=timeout,
            check=False,
            preexec_fn=_limit_child_memory if os.name == "posix" else None,
        )
    except subprocess.TimeoutExpired:
        return {"status": "error", "error": f"h5py took over {timeout:.0f} s on this file"}
    if done.returncode != 0:
        tail = done.stderr.decode("utf-8", errors="replace").strip()[-200:]
        return {
            "status": "error",
            "error": f"h5py child exited with status {done.returncode} (crafted file?) {tail}",
        }
    try:
        result: dict[str, Any] = json.loads(done.stdout)
    except ValueError:
        return {"status": "error", "error": "h5py child gave no readable answer"}
    return result


class Hdf5Scanner:
    """HDF5 by its superblock signature; Keras configs in the root attributes analysed.

    h5py runs in a child process (bounded in memory and time) so that a crafted file
    that crashes the HDF5 library becomes a finding rather than the end of the scan.
    """

    name = "hdf5"

    def detect(self, blob: Blob, head: bytes) -> bool:
        if head.startswith(HDF5_SIGNATURE):
            return True
        # Past the head, looking for a user block means seeking: files on disk only.
        if blob.fs_path is None and blob.size > len(head):
            head_only = Blob.from_bytes(blob.location, head)
            return signature_offset(head_only, head) is not None
        return signature_offset(blob, head) is not None

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        if not h5py_available():
            ctx.report(
                "MW-HDF5-NO-H5PY",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file not scanned: h5py is not installed (pip install h5py)",
            )
            return
        answer = read_keras_attributes(blob, ctx)
        if answer is None:
            return
        status = answer.get("status")
        if status == "no-h5py":
            ctx.report(
                "MW-HDF5-NO-H5PY",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file not scanned: h5py cannot be imported",
            )
            return
        if status != "ok":
            ctx.report(
                "MW-HDF5-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file could not be opened or its attributes read; not scanned",
                evidence=str(answer.get("error", "no answer"))[:400],
            )
            return
        self._report(answer, blob, ctx)

    def _report(self, answer: dict[str, Any], blob: Blob, ctx: ScanContext) -> None:
        limit = ctx.config.limits.max_header_bytes
        attributes: dict[str, str] = answer.get("attributes", {})
        oversize: dict[str, int] = answer.get("oversize", {})
        not_text: list[str] = answer.get("not_text", [])
        for key, size in oversize.items():
            ctx.report(
                "MW-KERAS-CONFIG-TOO-LARGE",
                Severity.MEDIUM,
                blob.location,
                f"{key} attribute of {size} bytes over the {limit}-byte limit; not analysed",
            )
        for key in not_text:
            ctx.report(
                "MW-KERAS-CONFIG-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                f"{key} attribute is not text; not analysed",
            )
        if not (attributes or oversize or not_text):
            ctx.report(
                "MW-HDF5-NO-KERAS-CONFIG",
                Severity.INFO,
                blob.location,
                "HDF5 without a Keras model config (weights or data only); datasets not read",
            )
        for key, text in attributes.items():
            analyse_keras_json(text, blob.location, ctx, source=f"{key} attribute")


HDF5 = Hdf5Scanner()
