"""HDF5 files, chiefly legacy Keras `.h5` models.

A legacy Keras `.h5` keeps the model's JSON config in the root attribute
`model_config` (and losses/metrics in `training_config`): the config, not the
weights, decides what code runs on load. Only those attributes are read, by our
own bounded reader (`_hdf5_reader`, pure Python, in process) — never a dataset.
Other HDF5 files are an INFO note.
"""

from __future__ import annotations

import io
from typing import BinaryIO

from modelward.analysis.keras_config import analyse_keras_json
from modelward.findings import Severity
from modelward.formats._hdf5_reader import Hdf5Error, RootAttributes, read_root_attributes
from modelward.formats._magic import hdf5_signature_offset
from modelward.formats.interface import HEAD_SIZE, Blob, ScanContext

#: The root attributes Keras reads when it loads a legacy `.h5`.
KERAS_CONFIG_ATTRIBUTES = ("model_config", "training_config")


def read_keras_attributes(blob: Blob, ctx: ScanContext) -> RootAttributes | None:
    """Read the Keras config attributes; None when the blob is too large to hold in memory
    (a member that cannot be read in place) and was reported as such.

    Raises `Hdf5Error` for a file the HDF5 library would not open or read.
    """
    limit = ctx.config.limits.max_header_bytes
    if blob.fs_path is not None:
        with ctx.open(blob) as stream:
            return _read(blob, stream, blob.size, ctx)
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
        data = stream.read(limit + 1)
    return _read(Blob.from_bytes(blob.location, data), io.BytesIO(data), len(data), ctx)


def _read(blob: Blob, stream: BinaryIO, size: int, ctx: ScanContext) -> RootAttributes:
    base = hdf5_signature_offset(blob, stream.read(HEAD_SIZE))
    if base is None:
        raise Hdf5Error("no HDF5 superblock signature")
    limit = ctx.config.limits.max_header_bytes
    return read_root_attributes(
        stream, size, base, KERAS_CONFIG_ATTRIBUTES, limit, ctx.check_deadline
    )


class Hdf5Scanner:
    """HDF5 by its superblock signature; Keras configs in the root attributes analysed.

    The attributes are read by a bounded pure-Python reader: a crafted file that breaks a
    bound or would not open in the HDF5 library is a finding, never an exception.
    """

    name = "hdf5"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return hdf5_signature_offset(blob, head) is not None

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        try:
            answer = read_keras_attributes(blob, ctx)
        except Hdf5Error as exc:
            ctx.report(
                "MW-HDF5-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                "HDF5 file could not be opened or its attributes read; not scanned",
                evidence=str(exc)[:400],
            )
            return
        if answer is not None:
            self._report(answer, blob, ctx)

    def _report(self, answer: RootAttributes, blob: Blob, ctx: ScanContext) -> None:
        limit = ctx.config.limits.max_header_bytes
        attributes, oversize, not_text = answer.texts, answer.oversize, answer.not_text
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
