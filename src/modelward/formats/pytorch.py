"""PyTorch checkpoints written by `torch.save`, in both serialisations, read without torch.

* Zip (the default since 1.6): `<top>/data.pkl` is the pickle `torch.load` runs; tensor
  storages are `<top>/data/<n>` members that are listed, never read. Anything a checkpoint
  does not hold (code, another pickle, a binary) is reported and scanned by content.
  Archives with a `code/` folder or `constants.pkl` are TorchScript, for its own scanner.
* Legacy (`_use_new_zipfile_serialization=False`): five pickles back to back (magic number,
  protocol version, sys info, the object, storage keys), then raw storage bytes, not read.
"""

from __future__ import annotations

import re

from modelward.findings import Severity
from modelward.formats.base import Blob, ScanAborted, ScanContext
from modelward.formats.pickle import scan_pickle_stream
from modelward.formats.zip import (
    ZipArchive,
    ZipMember,
    read_zip,
    scan_members,
    zip_member_names,
)

#: `torch.serialization.MAGIC_NUMBER` as the LONG1 opcode pickles it (little-endian, 10 bytes).
LEGACY_MAGIC = b"\x8a\x0a" + (0x1950A86A20F9469CFC6C).to_bytes(10, "little")
#: Pickles at the start of a legacy file; the raw storages after them are not pickle.
LEGACY_PICKLES = 5
#: What a zip checkpoint holds next to `data.pkl`, relative to its top folder.
_EXPECTED = re.compile(
    r"data\.pkl|byteorder|version|\.format_version|\.storage_alignment"
    r"|\.data/serialization_id|\.data/version|data/\d+"
)
_TORCHSCRIPT = re.compile(r"[^/]+/(code/.*|constants\.pkl)")
_DATA_PKL = re.compile(r"[^/]+/data\.pkl")


def _is_checkpoint(names: list[str]) -> bool:
    return any(_DATA_PKL.fullmatch(n) for n in names) and not any(
        _TORCHSCRIPT.fullmatch(n) for n in names
    )


class PyTorchZipScanner:
    """`torch.save` zip checkpoints (any top folder name)."""

    name = "pytorch-zip"

    def detect(self, blob: Blob, head: bytes) -> bool:
        names = zip_member_names(blob, head)
        return names is not None and _is_checkpoint(names)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            top = next(
                (m.name.split("/", 1)[0] for m in archive.members if _DATA_PKL.fullmatch(m.name)),
                None,
            )
            pickles = sorted(
                (m for m in archive.members if m.name.endswith(".pkl")),
                key=lambda m: m.name != f"{top}/data.pkl",
            )
            for member in pickles:
                _scan_pickle_member(archive, member, ctx)
            unexpected = [m for m in archive.members if not _expected(m, top)]
            for member in unexpected:
                ctx.report(
                    "MW-TORCH-UNEXPECTED-MEMBER",
                    Severity.MEDIUM,
                    blob.location.member(member.name),
                    "a torch.save checkpoint does not hold this member (code, extra pickle or"
                    " binary smuggled next to the weights)",
                )
            scan_members(archive, ctx, [m for m in unexpected if not m.name.endswith(".pkl")])


def _expected(member: ZipMember, top: str | None) -> bool:
    folder, _, rest = member.name.partition("/")
    return folder == top and _EXPECTED.fullmatch(rest) is not None


def _scan_pickle_member(archive: ZipArchive, member: ZipMember, ctx: ScanContext) -> None:
    """Scan a pickle member as the pickle `torch.load` runs, whatever its bytes look like."""
    if member.is_encrypted or member.is_symlink:
        return  # already reported by read_zip; nothing can be read
    blob = archive.member_blob(member)
    try:
        with ctx.open(blob) as stream:
            walked = scan_pickle_stream(stream, blob.location, ctx, max_streams=1)
    except ScanAborted as exc:
        if exc.rule_id == "MW-LIMIT-TIME":
            raise
        ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)
        return
    if walked == 0:
        ctx.report(
            "MW-TORCH-MALFORMED",
            Severity.MEDIUM,
            blob.location,
            "pickle member holds no pickle stream",
        )


class PyTorchLegacyScanner:
    """Pre-1.6 (`_use_new_zipfile_serialization=False`) checkpoints: pickles, then raw bytes."""

    name = "pytorch-legacy"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return LEGACY_MAGIC in head[:32] and head.startswith(b"\x80")

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with ctx.open(blob) as stream:
            walked = scan_pickle_stream(stream, blob.location, ctx, max_streams=LEGACY_PICKLES)
        if walked < LEGACY_PICKLES:
            ctx.report(
                "MW-TORCH-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                f"legacy checkpoint holds {walked} of the {LEGACY_PICKLES} pickles torch.load"
                " expects",
            )


PYTORCH_ZIP = PyTorchZipScanner()
PYTORCH_LEGACY = PyTorchLegacyScanner()

__all__ = [
    "LEGACY_MAGIC",
    "PYTORCH_LEGACY",
    "PYTORCH_ZIP",
    "PyTorchLegacyScanner",
    "PyTorchZipScanner",
]
