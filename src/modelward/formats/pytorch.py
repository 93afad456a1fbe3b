"""PyTorch checkpoints written by `torch.save`, zip and legacy, read without torch (the legacy
tar in `pytorch_tar`).

* Zip (the default since 1.6). `torch.load` reads it as torch's miniz reader does
  (`caffe2/serialize/inline_container.cc`, `PyTorchStreamReader`): the top folder is the
  part before the first `/` of the FIRST central directory entry, and every record is
  looked up as `<top>/<name>` with `mz_zip_reader_locate_file(..., flags=0)`: an
  ASCII-case-insensitive binary search (`<top>/DATA.PKL` is `data.pkl`; among duplicates,
  the one the search lands on). A zip holding exactly `<top>/constants.pkl` goes to
  `torch.jit.load` (`_is_torchscript_zip`); anything else is a checkpoint whatever else it
  holds (a `code/` folder, a README): its `data.pkl` is unpickled, by `weights_only=True`
  too. So the checkpoint decision mirrors that, on every reading of the directory
  (`zip.read_directories`), and every `.pkl` member, whatever its case, is scanned as a
  pickle. Tensor storages are `<top>/data/<n>` members that are listed, never read.
* Legacy (`_use_new_zipfile_serialization=False`): five pickles back to back (magic number,
  protocol version, sys info, the object, storage keys), then raw storage bytes, not read.
"""

from __future__ import annotations

import re

from modelward.findings import Severity
from modelward.formats.interface import Blob, ScanAborted, ScanContext
from modelward.formats.pickle import scan_pickle_stream
from modelward.formats.zip import (
    READERS,
    ZipArchive,
    ZipMember,
    miniz_locate,
    read_zip,
    scan_members,
    zip_reading,
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


def checkpoint_top(members: list[ZipMember]) -> tuple[bytes, ZipMember | None] | None:
    """The top folder `PyTorchStreamReader` takes and the `data.pkl` it would read.

    None when torch cannot take it for a checkpoint: no entry, a first entry outside any
    folder, or exactly `<top>/constants.pkl` (then `torch.load` calls `torch.jit.load`).
    """
    if not members or b"/" not in members[0].raw_name:
        return None
    top = members[0].raw_name.split(b"/", 1)[0]
    if any(m.raw_name == top + b"/constants.pkl" for m in members):
        return None
    return top, miniz_locate(members, top + b"/data.pkl")


def _checkpoint_readings(archive_members: dict[str, list[ZipMember] | None]) -> bool:
    for reader in READERS:
        members = archive_members.get(reader)
        found = checkpoint_top(members) if members else None
        if found is not None and found[1] is not None:
            return True
    return False


class PyTorchZipScanner:
    """`torch.save` zip checkpoints, decided as `torch.load` decides (see the module doc)."""

    name = "pytorch-zip"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return _checkpoint_readings({r: zip_reading(blob, head, r) for r in READERS})

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            data_members: dict[tuple[bytes, int, int, int, int], ZipMember] = {}
            tops: set[bytes] = set()
            for reader in READERS:
                members = archive.reading(reader)
                found = checkpoint_top(members) if members else None
                if found is None:
                    continue
                tops.add(found[0])
                if found[1] is not None:
                    data_members[found[1].key] = found[1]
            pickles = list(data_members.values()) + [
                m
                for m in archive.members
                if m.key not in data_members and m.raw_name.lower().endswith(b".pkl")
            ]
            for member in pickles:
                _scan_pickle_member(archive, member, ctx)
            unexpected = [
                m for m in archive.members if m.key not in data_members and not _expected(m, tops)
            ]
            for member in unexpected:
                ctx.report(
                    "MW-TORCH-UNEXPECTED-MEMBER",
                    Severity.MEDIUM,
                    blob.location.member(member.name),
                    "a torch.save checkpoint does not hold this member (code, extra pickle or"
                    " binary smuggled next to the weights)",
                )
            scan_members(
                archive,
                ctx,
                [m for m in unexpected if not m.raw_name.lower().endswith(b".pkl")],
            )


def _expected(member: ZipMember, tops: set[bytes]) -> bool:
    folder, _, rest = member.raw_name.partition(b"/")
    return folder in tops and _EXPECTED.fullmatch(rest.decode("utf-8", "replace")) is not None


def scan_pickle_blob(blob: Blob, ctx: ScanContext, *, max_streams: int) -> int | None:
    """Walk up to `max_streams` pickles of a member as a loader reads them; how many were
    walked, or None when a limit stopped the member (reported here; the deadline is raised)."""
    try:
        with ctx.open(blob) as stream:
            return scan_pickle_stream(stream, blob.location, ctx, max_streams=max_streams)
    except ScanAborted as exc:
        if exc.rule_id == "MW-LIMIT-TIME":
            raise
        ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)
        return None


def _scan_pickle_member(archive: ZipArchive, member: ZipMember, ctx: ScanContext) -> None:
    """Scan a pickle member as the pickle `torch.load` runs, whatever its bytes look like."""
    if member.is_encrypted or member.is_symlink:
        return  # already reported by read_zip; nothing can be read
    blob = archive.member_blob(member)
    walked = scan_pickle_blob(blob, ctx, max_streams=1)
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
    "checkpoint_top",
]
