"""HDF5 files, chiefly legacy Keras `.h5` models.

A legacy Keras `.h5` keeps the model's JSON config in the root attribute
`model_config` (and losses/metrics in `training_config`): the config, not the
weights, decides what code runs on load. Only those attributes are read, with
`h5py` (imported lazily) — never a dataset. Other HDF5 files are an INFO note.
"""

from __future__ import annotations

import io
from typing import Any

from modelward.findings import Severity
from modelward.formats.base import Blob, ScanContext
from modelward.formats.keras import analyse_keras_json

HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
#: HDF5 looks for its superblock at 0, 512, 1024, 2048... (after a user block).
_FIRST_USERBLOCK = 512
#: Largest user block checked when sniffing; a bigger prefix is another format's problem.
_MAX_USERBLOCK = 1024 * 1024
KERAS_CONFIG_ATTRIBUTES = ("model_config", "training_config")


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


class Hdf5Scanner:
    """HDF5 by its superblock signature; Keras configs in the root attributes analysed."""

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
        try:
            import h5py
        except ImportError:
            ctx.report(
                "MW-HDF5-NO-H5PY",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file not scanned: h5py is not installed (pip install h5py)",
            )
            return
        source = self._source(blob, ctx)
        if source is None:
            return
        try:
            with h5py.File(source, "r") as f:
                attributes = self._read_attributes(h5py, f, blob, ctx)
        except (OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
            ctx.report(
                "MW-HDF5-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file could not be opened or its attributes read; not scanned",
                evidence=f"{type(exc).__name__}: {exc}"[:300],
            )
            return
        if not attributes:
            ctx.report(
                "MW-HDF5-NO-KERAS-CONFIG",
                Severity.INFO,
                blob.location,
                "HDF5 without a Keras model config (weights or data only); datasets not read",
            )
        for key, text in attributes.items():
            analyse_keras_json(text, blob.location, ctx, source=f"{key} attribute")

    def _source(self, blob: Blob, ctx: ScanContext) -> str | io.BytesIO | None:
        if blob.fs_path is not None:
            return str(blob.fs_path)
        limit = ctx.config.limits.max_header_bytes
        if blob.size > limit:
            ctx.report(
                "MW-HDF5-TOO-LARGE",
                Severity.MEDIUM,
                blob.location,
                f"HDF5 member of {blob.size} bytes is over the {limit}-byte limit for"
                " reading a member into memory; its attributes were not checked",
            )
            return None
        with ctx.open(blob, limit=limit + 1) as stream:
            return io.BytesIO(stream.read(limit + 1))

    def _read_attributes(self, h5py: Any, f: Any, blob: Blob, ctx: ScanContext) -> dict[str, str]:
        """The Keras config attributes present, size-checked before they are read."""
        limit = ctx.config.limits.max_header_bytes
        found: dict[str, str] = {}
        for key in KERAS_CONFIG_ATTRIBUTES:
            if key not in f.attrs:
                continue
            size = h5py.h5a.open(f.id, key.encode()).get_storage_size()
            if size > limit:
                ctx.report(
                    "MW-KERAS-CONFIG-TOO-LARGE",
                    Severity.MEDIUM,
                    blob.location,
                    f"{key} attribute of {size} bytes over the {limit}-byte limit; not analysed",
                )
                continue
            value = f.attrs[key]
            if isinstance(value, bytes):
                value = value.decode("utf-8", errors="replace")
            if not isinstance(value, str):
                ctx.report(
                    "MW-KERAS-CONFIG-MALFORMED",
                    Severity.MEDIUM,
                    blob.location,
                    f"{key} attribute is not text ({type(value).__name__}); not analysed",
                )
                continue
            found[key] = value
        return found


HDF5 = Hdf5Scanner()
