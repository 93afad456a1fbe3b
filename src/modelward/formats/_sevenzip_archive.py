"""7z archives, opened with py7zr and scanned member by member, by content.

`formats/sevenzip.py` imports this module only when a file is a 7z archive: py7zr and its
codecs cost about 90 ms to import, on every run, for a format most scans never meet.

7z is how the nullifAI models found on the Hub were shipped (a pickle inside a 7z, which
`torch.load` cannot open, so scanners that only knew zip passed them). Nothing is extracted
to disk under the member's name and no archive is decompressed as a whole:

* the header is bounded first (`_check_start_header`: the next-header record must lie in
  the file and under `max_header_bytes`), then parsed by py7zr, whose own header limits
  (file count, decoded header size) hold too;
* the listing is checked before anything is decompressed: member count (`max_members`),
  names that climb out of the extraction folder, links, and the declared sizes (a member or
  the whole over `max_decompressed_bytes`, or a ratio over `max_compression_ratio` once
  past 1 MiB is a bomb, and nothing is decompressed);
* members are then decompressed in one pass (`extract` with a writer factory: a solid
  block is decoded once, not once per member) into a spool that holds one member at a
  time, in memory when small and in a temporary file otherwise; each member is scanned by
  content when py7zr closes it, and dropped before the next one is decoded. Every byte
  decoded is charged to the file's decompression budget (`ctx.charge_decompressed`,
  `MW-LIMIT-DECOMPRESSED`) and each member is capped at `max_decompressed_bytes`
  (`MW-LIMIT-SIZE`), so a member lying about its size still stops.

Encrypted archives cannot be scanned, and nothing can load what they hold without the
password: low (`MW-ARCHIVE-ENCRYPTED`). A corrupt archive, or one using a method py7zr
lacks, is medium (`MW-ARCHIVE-MALFORMED`): 7-Zip may still extract what was not scanned.
"""

from __future__ import annotations

import io
import lzma
import struct
import tempfile
import zlib
from pathlib import Path
from typing import IO, BinaryIO, cast

import py7zr
import py7zr.exceptions
from py7zr.io import Py7zIO, WriterFactory

from modelward.findings import Location, Severity
from modelward.formats.compressed import BOMB_MIN_BYTES
from modelward.formats.interface import IN_MEMORY_BYTES, Blob, ScanAborted, ScanContext
from modelward.formats.tar import member_path_escapes

#: Signature header: magic, version (2 bytes), start header CRC, next header offset, size, CRC.
_START_HEADER = struct.Struct("<6sBBIQQI")
#: Errors py7zr and its decoders raise on corrupt or crafted archives (struct/index errors
#: come from header parsing, `OSError` from the bz2 decoder).
_ERRORS: tuple[type[BaseException], ...] = (
    py7zr.exceptions.ArchiveError,
    py7zr.exceptions.AbsolutePathError,
    lzma.LZMAError,
    zlib.error,
    EOFError,
    OSError,
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    AttributeError,
    AssertionError,
    struct.error,
    NotImplementedError,
)


def scan_7z(blob: Blob, ctx: ScanContext) -> None:
    """The signature header checked, then the listing, then every member scanned by content."""
    with ctx.open(blob) as stream:
        problem = _check_start_header(stream.read(_START_HEADER.size), blob.size, ctx)
    if problem is not None:
        _malformed(ctx, blob.location, problem)
        return
    factory = _MemberFactory(blob, ctx)
    try:
        with (
            ctx.open(blob) as stream,
            py7zr.SevenZipFile(cast(IO[bytes], stream), mode="r") as archive,
        ):
            targets = _check_listing(archive, blob, ctx)
            if targets:
                # An extra guard in py7zr itself, on top of our budget and per-member cap.
                archive.max_extract_size = ctx.config.limits.max_decompressed_bytes
                archive.extract(targets=targets, factory=factory)
    except py7zr.exceptions.PasswordRequired:
        _encrypted(ctx, blob.location)
    except ScanAborted:
        raise
    except _ERRORS as exc:
        _malformed(ctx, blob.location, f"{type(exc).__name__}: {exc}")
    finally:
        factory.discard()


def _check_listing(archive: py7zr.SevenZipFile, blob: Blob, ctx: ScanContext) -> list[str]:
    """Report what the listing shows; the names of the members to decompress and scan."""
    limits = ctx.config.limits
    infos = archive.list()
    if len(infos) > limits.max_members:
        ctx.report(
            "MW-ARCHIVE-TOO-MANY-MEMBERS",
            Severity.MEDIUM,
            blob.location,
            f"7z archive holds {len(infos)} members, more than {limits.max_members}; not scanned",
        )
        return []
    if archive.needs_password():
        _encrypted(ctx, blob.location)
        return []
    targets: list[str] = []
    declared = 0
    for info in infos:
        ctx.check_deadline()
        location = blob.location.member(info.filename)
        if member_path_escapes(info.filename):
            ctx.report(
                "MW-ARCHIVE-PATH-TRAVERSAL",
                Severity.HIGH,
                location,
                "member path is absolute or climbs out of the extraction folder with '..';"
                " extracting it writes outside the target folder (not scanned)",
                evidence=info.filename[:300],
            )
            continue
        if info.is_symlink:
            ctx.report(
                "MW-ARCHIVE-LINK",
                Severity.LOW,
                location,
                "symbolic link inside the 7z archive (its target is not scanned through it)",
            )
            continue
        if info.is_directory:
            continue
        size = max(info.uncompressed or 0, 0)
        declared += size
        if size > limits.max_decompressed_bytes:
            _report_bomb(ctx, location, blob.size, size, "this member declares")
            return []
        targets.append(info.filename)
    ratio_cap = max(BOMB_MIN_BYTES, int(limits.max_compression_ratio * max(blob.size, 1)))
    if declared > limits.max_decompressed_bytes or declared > ratio_cap:
        _report_bomb(ctx, blob.location, blob.size, declared, "its members declare")
        return []
    return targets


def _check_start_header(header: bytes, size: int, ctx: ScanContext) -> str | None:
    """Why the signature header cannot be right, or None; checked before py7zr reads it."""
    if len(header) < _START_HEADER.size:
        return "file ends inside the 32-byte signature header"
    _, major, _, _, offset, length, _ = _START_HEADER.unpack(header)
    if major != 0:
        return f"unknown 7z major version {major}"
    if _START_HEADER.size + offset + length > size:
        return f"next header ({length} bytes at {offset}) lies past the end of the file"
    if length > ctx.config.limits.max_header_bytes:
        return f"next header of {length} bytes is over the header limit"
    return None


def _malformed(ctx: ScanContext, location: Location, evidence: str) -> None:
    ctx.report(
        "MW-ARCHIVE-MALFORMED",
        Severity.MEDIUM,
        location,
        "7z archive is corrupt, truncated or uses a method py7zr cannot decode; members"
        " after this point are not scanned (7-Zip may still extract them)",
        evidence=evidence[:300],
    )


def _encrypted(ctx: ScanContext, location: Location) -> None:
    ctx.report(
        "MW-ARCHIVE-ENCRYPTED",
        Severity.LOW,
        location,
        "encrypted 7z archive: its members cannot be scanned, and no loader opens them"
        " without the password (scan the extracted files)",
    )


def _report_bomb(
    ctx: ScanContext, location: Location, compressed: int, seen: int, who: str
) -> None:
    limits = ctx.config.limits
    ctx.report(
        "MW-ARCHIVE-BOMB",
        Severity.MEDIUM,
        location,
        f"decompression bomb: {who} {seen} bytes from a {compressed}-byte 7z archive (limits:"
        f" {limits.max_decompressed_bytes} bytes, ratio {limits.max_compression_ratio:g});"
        " content not scanned",
    )


class _Spool(Py7zIO):
    """One member's decompressed bytes as py7zr writes them; scanned when py7zr closes it.

    Held in memory up to `IN_MEMORY_BYTES`, then in a temporary file deleted after the scan.
    """

    def __init__(self, name: str, blob: Blob, ctx: ScanContext) -> None:
        self._name = name
        self._blob = blob
        self._ctx = ctx
        self._memory: io.BytesIO | None = io.BytesIO()
        self._file: IO[bytes] | None = None
        self._size = 0

    def write(self, s: bytes | bytearray) -> int:
        ctx = self._ctx
        ctx.check_deadline()
        ctx.charge_decompressed(len(s))
        self._size += len(s)
        limit = ctx.config.limits.max_decompressed_bytes
        if self._size > limit:
            raise ScanAborted(
                "MW-LIMIT-SIZE",
                f"7z member {self._name!r} decompresses past the {limit}-byte limit"
                " (decompression bomb?)",
            )
        if self._memory is not None and self._size > IN_MEMORY_BYTES:
            # Closed (and so deleted) by `discard`, after the scan or when extraction fails.
            self._file = tempfile.NamedTemporaryFile(prefix="modelward-", suffix=".member")  # noqa: SIM115
            self._file.write(self._memory.getvalue())
            self._memory = None
        target = self._memory if self._memory is not None else self._file
        assert target is not None
        target.write(s)
        return len(s)

    def read(self, size: int | None = None) -> bytes:
        target = self._memory if self._memory is not None else self._file
        if target is None:
            return b""
        return target.read(-1 if size is None else size)

    def seek(self, offset: int, whence: int = 0) -> int:
        target = self._memory if self._memory is not None else self._file
        return 0 if target is None else target.seek(offset, whence)

    def flush(self) -> None:
        if self._file is not None:
            self._file.flush()

    def size(self) -> int:
        return self._size

    def close(self) -> None:
        """py7zr is done with this member: scan it now, then drop its bytes."""
        try:
            location = self._blob.location.member(self._name)
            if self._memory is not None:
                member = Blob.from_bytes(location, self._memory.getvalue())
                self._memory = None
                self._ctx.scan_member(member)
            elif self._file is not None:
                self._file.flush()
                path = Path(self._file.name)
                self._ctx.scan_member(
                    Blob(location, self._size, lambda: cast(BinaryIO, path.open("rb")))
                )
        finally:
            self.discard()

    def discard(self) -> None:
        self._memory = None
        if self._file is not None:
            self._file.close()
            self._file = None


class _MemberFactory(WriterFactory):
    """Hands py7zr one `_Spool` per member and remembers them, so none outlives the scan."""

    def __init__(self, blob: Blob, ctx: ScanContext) -> None:
        self._blob = blob
        self._ctx = ctx
        self._spools: list[_Spool] = []

    def create(self, filename: str) -> Py7zIO:
        spool = _Spool(filename, self._blob, self._ctx)
        self._spools.append(spool)
        return spool

    def discard(self) -> None:
        for spool in self._spools:
            spool.discard()
        self._spools.clear()


__all__ = ["scan_7z"]
