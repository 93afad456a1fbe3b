"""HDF5 files, chiefly legacy Keras `.h5` models.

A legacy Keras `.h5` keeps the model's JSON config in the root attribute
`model_config` (and losses/metrics in `training_config`): the config, not the
weights, decides what code runs on load. Only those attributes are read, with
`h5py` (imported lazily) — never a dataset. Other HDF5 files are an INFO note.
"""

from __future__ import annotations

import importlib.util
import io
import json
import multiprocessing
import multiprocessing.context
import time
from multiprocessing.connection import Connection
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


def _h5py_context() -> multiprocessing.context.ForkServerContext:
    """A fork server with h5py already imported: each file still gets its own child
    (crash isolation) at the cost of a fork, not of a fresh interpreter importing h5py."""
    context = multiprocessing.get_context("forkserver")
    assert isinstance(context, multiprocessing.context.ForkServerContext)
    context.set_forkserver_preload(["modelward.formats._h5attrs", "h5py"])
    return context


def _child(conn: Connection, source: str | bytes, limit: int) -> None:
    import resource

    from modelward.formats._h5attrs import read_attributes

    resource.setrlimit(resource.RLIMIT_AS, (_CHILD_MEMORY, _CHILD_MEMORY))
    answer = read_attributes(source if isinstance(source, str) else io.BytesIO(source), limit)
    conn.send_bytes(json.dumps(answer).encode())
    conn.close()


def read_keras_attributes(blob: Blob, ctx: ScanContext) -> dict[str, Any] | None:
    """Read the Keras attributes in a child process; None when the blob is too large to hand
    over. The child answers in JSON, never pickle: it has parsed hostile bytes."""
    limit = ctx.config.limits.max_header_bytes
    source: str | bytes
    if blob.fs_path is not None:
        source = str(blob.fs_path)
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
            source = stream.read(limit + 1)
    timeout = max(1.0, min(_CHILD_SECONDS, ctx.deadline - time.monotonic()))
    context = _h5py_context()
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=_child, args=(sender, source, limit), daemon=True)
    child.start()
    sender.close()
    try:
        if not receiver.poll(timeout):
            return {"status": "error", "error": f"h5py took over {timeout:.0f} s on this file"}
        try:
            answer: dict[str, Any] = json.loads(receiver.recv_bytes())
        except (EOFError, OSError, ValueError):
            child.join(5)
            return {
                "status": "error",
                "error": f"h5py child exited with status {child.exitcode} (crafted file?)",
            }
        return answer
    finally:
        receiver.close()
        child.join(1)
        if child.is_alive():
            child.kill()
            child.join()


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
