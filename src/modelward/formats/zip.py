"""A bounded zip reader for every zip-based model format, plus the generic `zip` scanner.

Public API (used by pytorch, numpy `.npz`, keras, torchscript and archive scanners):

- `looks_like_zip(blob, head) -> bool`: content sniff; a zip with a junk prefix (a
  polyglot, a self-extracting stub) is still a zip, found from its End Of Central Directory.
- `read_zip(blob, ctx) -> ZipArchive`: parses the central directory by hand, after checking
  its entry count and size against `ctx.config.limits` and the file size; reports bombs,
  traversal and duplicate names, encrypted members and corruption as findings. Use it as a
  context manager: `with read_zip(blob, ctx) as archive: ...`.
- `ZipArchive.members` (`ZipMember`: name, sizes, offset, flags, is_symlink, ...),
  `ZipArchive.member_blob(member) -> Blob`: the member's decompressed bytes, streamed
  through `zipfile` and capped at `max_decompressed_bytes` (so a bomb is a finding), and
  `ZipArchive.prefix_blob()`: the bytes before the zip, if any, to scan as their own file.
- `scan_members(archive, ctx, members)`: dispatch members (and the prefix) by content.
- `member_names(blob, limits) -> list[str] | None`: names only, for `detect` methods that
  tell zip-based formats apart (reports nothing).

Nothing is extracted to disk and no member is read unless a scanner asks for its blob.
"""

from __future__ import annotations

import io
import itertools
import lzma
import struct
import zipfile
import zlib
from collections import Counter
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, cast

from modelward.config import Limits
from modelward.findings import Severity
from modelward.formats.base import (
    Blob,
    ByteWindow,
    CountingReader,
    ReportingReader,
    ScanAborted,
    ScanContext,
)

_LOCAL_MAGIC = b"PK\x03\x04"
_EMPTY_MAGIC = b"PK\x05\x06"
_CENTRAL_MAGIC = b"PK\x01\x02"
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
#: First EOCD search window: the record, a ZIP64 locator and a short comment.
_SMALL_TAIL = 1024
#: Largest EOCD search window: the record plus the longest possible comment.
_TAIL_WINDOW = _EOCD.size + 0xFFFF
#: Compression methods `zipfile` can stream: stored, deflate, bzip2, lzma.
_SUPPORTED_METHODS = frozenset({0, 8, 12, 14})
_FLAG_ENCRYPTED = 0x1
_FLAG_UTF8 = 0x800
_S_IFMT = 0o170000
_S_IFLNK = 0o120000
#: Compressed members up to this (declared) size may seek, so a zip or checkpoint inside them
#: can be read; a seek decompresses up to its target, so larger ones stay forward-only (a zip
#: in a bigger compressed member is reported unreadable, never passed).
SEEKABLE_COMPRESSED_BYTES = 64 * 1024**2
#: Errors the stdlib decompressors raise on corrupt member data.
_MEMBER_ERRORS = (zipfile.BadZipFile, zlib.error, lzma.LZMAError, EOFError, NotImplementedError)


class ZipFormatError(ValueError):
    """The bytes are not a readable zip (bad or inconsistent central directory)."""


@dataclass(frozen=True)
class ZipMember:
    """One central directory entry; `header_offset` is absolute in the file (prefix included)."""

    name: str
    compressed_size: int
    uncompressed_size: int
    header_offset: int
    flags: int
    compress_type: int
    crc: int
    external_attr: int

    @property
    def is_dir(self) -> bool:
        return self.name.endswith("/")

    @property
    def is_symlink(self) -> bool:
        return (self.external_attr >> 16) & _S_IFMT == _S_IFLNK

    @property
    def is_encrypted(self) -> bool:
        return bool(self.flags & _FLAG_ENCRYPTED)


@dataclass
class _Directory:
    """What the EOCD and central directory say, before any policy is applied."""

    members: list[ZipMember]
    prefix: int
    declared_entries: int


@dataclass
class ZipArchive:
    """An opened zip: its members, and a way to stream any one of them."""

    blob: Blob
    ctx: ScanContext
    members: list[ZipMember] = field(default_factory=list)
    #: Bytes before the zip proper (0 for an ordinary zip).
    prefix: int = 0
    _zipfile: zipfile.ZipFile | None = None

    def __enter__(self) -> ZipArchive:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._zipfile is not None:
            self._zipfile.close()
            self._zipfile = None

    def names(self) -> list[str]:
        return [m.name for m in self.members]

    def member_blob(self, member: ZipMember) -> Blob:
        """The member's decompressed content, read lazily and capped at the size limit."""
        limit = self.ctx.config.limits.max_decompressed_bytes
        return Blob(
            location=self.blob.location.member(member.name),
            size=member.uncompressed_size,
            # Capped but not counted here: whoever reads it counts it (`ctx.open`).
            opener=lambda: io.BufferedReader(CountingReader(self._open_member(member), [0], limit)),
        )

    def prefix_blob(self) -> Blob | None:
        """The bytes in front of the zip, which other readers may take for the real file."""
        if self.prefix == 0:
            return None
        return Blob(
            location=self.blob.location.member("<zip-prefix>"),
            size=self.prefix,
            opener=lambda: cast(
                BinaryIO, io.BufferedReader(ByteWindow(self.blob.open, 0, self.prefix))
            ),
        )

    def _open_member(self, member: ZipMember) -> BinaryIO:
        if self._zipfile is None:
            try:
                self._zipfile = zipfile.ZipFile(self.blob.open())
            except (*_MEMBER_ERRORS, OSError, ValueError) as exc:
                raise ScanAborted("MW-ZIP-CORRUPT", f"zip cannot be opened: {exc}") from exc
        info = zipfile.ZipInfo(member.name)
        info.orig_filename = member.name
        info.header_offset = member.header_offset
        info.compress_type = member.compress_type
        info.compress_size = member.compressed_size
        info.file_size = member.uncompressed_size
        info.flag_bits = member.flags
        info.CRC = member.crc
        try:
            inner = self._zipfile.open(info)
        except (*_MEMBER_ERRORS, RuntimeError, ValueError) as exc:
            raise ScanAborted("MW-ZIP-CORRUPT", f"member {member.name!r}: {exc}") from exc
        where = f"member {member.name!r}"
        # Stored members are not decompressed here: what they come from was charged already.
        charge = (
            None if member.compress_type == zipfile.ZIP_STORED else self.ctx.charge_decompressed
        )
        seekable = charge is None or member.uncompressed_size <= SEEKABLE_COMPRESSED_BYTES
        reader = ReportingReader(
            inner, _MEMBER_ERRORS, "MW-ZIP-CORRUPT", where, charge, seekable=seekable
        )
        return cast(BinaryIO, io.BufferedReader(reader))


def looks_like_zip(blob: Blob, head: bytes) -> bool:
    """A local header or empty-archive record at offset 0, or a consistent EOCD at the end."""
    if head.startswith((_LOCAL_MAGIC, _EMPTY_MAGIC)):
        return True
    if blob.size < _EOCD.size:
        return False
    try:
        with blob.open() as stream:
            directory = _parse_directory(stream, blob.size, Limits(), members=False)
    except (ZipFormatError, OSError):
        return False
    # An empty "zip" at the end of other bytes is too weak a sign: four bytes and zeros.
    return directory.declared_entries > 0


def member_names(blob: Blob, limits: Limits) -> list[str] | None:
    """Member names, for `detect` methods that tell zip-based formats apart; None if unreadable.

    Bounded like `read_zip` but reports nothing (detection must not produce findings).
    """
    try:
        with blob.open() as stream:
            directory = _parse_directory(stream, blob.size, limits, members=True)
    except (ZipFormatError, OSError):
        return None
    return [m.name for m in directory.members]


def zip_member_names(blob: Blob, head: bytes) -> list[str] | None:
    """The member names when `blob` is a readable zip, else None; parsed once per blob for
    all the zip-based detectors (TorchScript, Keras, PyTorch, npz)."""
    if "zip-names" not in blob.sniffed:
        names = member_names(blob, Limits()) if looks_like_zip(blob, head) else None
        blob.sniffed["zip-names"] = names
    names_or_none: list[str] | None = blob.sniffed["zip-names"]
    return names_or_none


def read_zip(blob: Blob, ctx: ScanContext) -> ZipArchive:
    """Parse `blob`'s central directory and report everything suspicious about it.

    A corrupt or over-limit directory is reported and yields an archive with no members.
    """
    archive = ZipArchive(blob, ctx)
    limits = ctx.config.limits
    try:
        with ctx.open(blob) as stream:
            directory = _parse_directory(stream, blob.size, limits, members=True)
    except _TooManyMembers as exc:
        ctx.report(
            "MW-ZIP-TOO-MANY-MEMBERS",
            Severity.MEDIUM,
            blob.location,
            f"zip declares {exc.count} members, over the limit of {limits.max_members};"
            " not scanned",
        )
        return archive
    except ZipFormatError as exc:
        ctx.report(
            "MW-ZIP-CORRUPT",
            Severity.MEDIUM,
            blob.location,
            "corrupt zip central directory; members not scanned (readers may disagree on"
            " what this file holds)",
            evidence=str(exc),
        )
        return archive
    archive.members = directory.members
    archive.prefix = directory.prefix
    _check_members(archive, ctx)
    return archive


class _TooManyMembers(ZipFormatError):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} members")
        self.count = count


def _parse_directory(stream: BinaryIO, size: int, limits: Limits, *, members: bool) -> _Directory:
    """Locate the EOCD (ZIP64 aware) and parse the central directory, bounded by `limits`."""
    # Most zips have no comment: try a small tail before the largest possible one.
    for window in (min(size, _SMALL_TAIL), min(size, _TAIL_WINDOW)):
        stream.seek(size - window)
        tail = stream.read(window)
        pos = _find_eocd(tail, strict=window < size and window == _SMALL_TAIL)
        if pos >= 0:
            break
    else:
        raise ZipFormatError("no End Of Central Directory record")
    eocd_at = size - window + pos
    (_, disk, cd_disk, _, entries, cd_size, cd_offset, _) = _EOCD.unpack_from(tail, pos)
    directory_end = eocd_at
    # Some writers (torch) add ZIP64 records even when no field overflows: look for them always.
    locator = b""
    if pos >= _ZIP64_LOCATOR.size:
        locator = tail[pos - _ZIP64_LOCATOR.size : pos]
    if locator.startswith(b"PK\x06\x07"):
        _, _, record_at, _ = _ZIP64_LOCATOR.unpack(locator)
        directory_end = eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
        if directory_end < 0:
            raise ZipFormatError("ZIP64 end record outside the file")
        stream.seek(directory_end)
        record = stream.read(_ZIP64_EOCD.size)
        if len(record) != _ZIP64_EOCD.size or not record.startswith(b"PK\x06\x06"):
            raise ZipFormatError("ZIP64 end record not where its locator says")
        fields = _ZIP64_EOCD.unpack(record)
        entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
        # A junk prefix shifts every absolute offset; the locator's own offset tells by how much.
        if record_at > directory_end:
            raise ZipFormatError("ZIP64 locator points past its record")
    elif 0xFFFF in (disk, cd_disk, entries) or 0xFFFFFFFF in (cd_size, cd_offset):
        raise ZipFormatError("ZIP64 fields without a ZIP64 locator")
    prefix = directory_end - cd_size - cd_offset
    if cd_size > directory_end or prefix < 0:
        raise ZipFormatError(
            f"central directory ({cd_size} bytes at {cd_offset}) does not fit before its end"
            f" record at {directory_end}"
        )
    if entries > limits.max_members:
        raise _TooManyMembers(entries)
    if cd_size > limits.max_header_bytes:
        raise ZipFormatError(f"central directory of {cd_size} bytes is over the header limit")
    if entries and cd_size < _CENTRAL.size * entries:
        raise ZipFormatError(f"{entries} entries cannot fit in a {cd_size}-byte directory")
    stream.seek(prefix + cd_offset)
    if not members:
        if entries and stream.read(4) != _CENTRAL_MAGIC:
            raise ZipFormatError("no central directory where the end record points")
        return _Directory([], prefix, entries)
    data = stream.read(cd_size)
    if len(data) != cd_size:
        raise ZipFormatError("central directory truncated")
    return _Directory(_parse_entries(data, entries, prefix, size), prefix, entries)


def _find_eocd(tail: bytes, strict: bool) -> int:
    """The last EOCD record whose comment fits in `tail` (ends it exactly when `strict`); -1."""
    pos = len(tail)
    while True:
        pos = tail.rfind(_EMPTY_MAGIC, 0, pos)
        if pos < 0:
            return -1
        if pos + _EOCD.size <= len(tail):
            end = pos + _EOCD.size + _EOCD.unpack_from(tail, pos)[7]
            if end == len(tail) or (not strict and end <= len(tail)):
                return pos


def _parse_entries(data: bytes, entries: int, prefix: int, size: int) -> list[ZipMember]:
    members: list[ZipMember] = []
    pos = 0
    for _ in range(entries):
        if pos + _CENTRAL.size > len(data):
            raise ZipFormatError(f"central directory ends after {len(members)} of {entries}")
        fields = _CENTRAL.unpack_from(data, pos)
        if fields[0] != _CENTRAL_MAGIC:
            raise ZipFormatError(f"bad central directory entry signature at {pos}")
        flags, method, crc, csize, usize = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        external, offset = fields[15], fields[16]
        start = pos + _CENTRAL.size
        raw_name = data[start : start + name_len]
        extra = data[start + name_len : start + name_len + extra_len]
        pos = start + name_len + extra_len + comment_len
        if pos > len(data):
            raise ZipFormatError("central directory entry runs past the directory")
        usize, csize, offset = _zip64_sizes(extra, usize, csize, offset)
        name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", errors="replace")
        if prefix + offset + csize > size:
            raise ZipFormatError(f"member {name!r} data lies outside the file")
        members.append(ZipMember(name, csize, usize, prefix + offset, flags, method, crc, external))
    return members


def _zip64_sizes(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """Replace 0xFFFFFFFF sizes/offset with the ZIP64 extra field values, in spec order."""
    pos = 0
    while pos + 4 <= len(extra):
        tag, length = struct.unpack_from("<HH", extra, pos)
        body = extra[pos + 4 : pos + 4 + length]
        pos += 4 + length
        if tag != 0x0001:
            continue
        values = [v for (v,) in struct.iter_unpack("<Q", body[: len(body) // 8 * 8])]
        if usize == 0xFFFFFFFF and values:
            usize = values.pop(0)
        if csize == 0xFFFFFFFF and values:
            csize = values.pop(0)
        if offset == 0xFFFFFFFF and values:
            offset = values.pop(0)
    return usize, csize, offset


def _check_members(archive: ZipArchive, ctx: ScanContext) -> None:
    """Findings that need only the directory: names, sizes, ratios, overlaps, encryption."""
    limits = ctx.config.limits
    where = archive.blob.location
    if archive.prefix:
        ctx.report(
            "MW-ZIP-PREFIX",
            Severity.MEDIUM,
            where,
            f"{archive.prefix} bytes precede the zip; other readers may load them instead"
            " (polyglot file); the prefix is scanned on its own",
        )
    for name, count in Counter(archive.names()).items():
        if count > 1:
            ctx.report(
                "MW-ZIP-DUPLICATE-NAME",
                Severity.HIGH,
                where.member(name),
                f"{count} members share this name; zip readers disagree on which one is used"
                " (scanner evasion)",
            )
    declared_total = 0
    for member in archive.members:
        ctx.check_deadline()
        at = where.member(member.name)
        if _is_unsafe_name(member.name):
            ctx.report(
                "MW-ZIP-PATH-TRAVERSAL",
                Severity.HIGH,
                at,
                "absolute or parent-relative member name; extraction writes outside the target",
            )
        if member.is_symlink:
            ctx.report(
                "MW-ZIP-SYMLINK",
                Severity.MEDIUM,
                at,
                "member is a symbolic link; extraction may point outside the target",
            )
        if member.is_encrypted:
            ctx.report(
                "MW-ZIP-ENCRYPTED",
                # Low: no model loader opens it (torch.load, np.load, keras, zipfile without a
                # password all fail), so what it holds never runs by loading this file.
                Severity.LOW,
                at,
                "encrypted member cannot be scanned; no model loader opens it without the"
                " password (scan the extracted file)",
            )
        elif member.compress_type not in _SUPPORTED_METHODS:
            ctx.report(
                "MW-ZIP-UNSUPPORTED",
                Severity.MEDIUM,
                at,
                f"compression method {member.compress_type} not supported; member not scanned",
            )
        if member.compress_type != zipfile.ZIP_STORED:
            declared_total += member.uncompressed_size
            ratio = member.uncompressed_size / max(member.compressed_size, 1)
            if ratio > limits.max_compression_ratio:
                ctx.report(
                    "MW-ZIP-BOMB",
                    Severity.MEDIUM,
                    at,
                    f"declared compression ratio {ratio:.0f} exceeds"
                    f" {limits.max_compression_ratio:g} (decompression bomb)",
                    evidence=f"{member.compressed_size} -> {member.uncompressed_size} bytes",
                )
        elif member.compressed_size != member.uncompressed_size and not member.is_encrypted:
            ctx.report(
                "MW-ZIP-CORRUPT",
                Severity.MEDIUM,
                at,
                "stored member whose compressed and uncompressed sizes differ",
            )
    if declared_total > limits.max_decompressed_bytes:
        ctx.report(
            "MW-ZIP-BOMB",
            Severity.MEDIUM,
            where,
            f"members declare {declared_total} decompressed bytes, over the"
            f" {limits.max_decompressed_bytes}-byte limit",
        )
    _check_overlaps(archive, ctx)


def _check_overlaps(archive: ZipArchive, ctx: ScanContext) -> None:
    """Members whose data overlap (the trick behind non-recursive zip bombs and evasions)."""
    ordered = sorted(archive.members, key=lambda m: m.header_offset)
    for before, after in itertools.pairwise(ordered):
        if before.header_offset + 30 + before.compressed_size > after.header_offset:
            ctx.report(
                "MW-ZIP-OVERLAP",
                Severity.HIGH,
                archive.blob.location.member(after.name),
                f"member data overlaps member {before.name!r}; crafted zip (bomb or evasion)",
            )
            return


def _is_unsafe_name(name: str) -> bool:
    normal = name.replace("\\", "/")
    return (
        normal.startswith("/")
        or (len(normal) > 1 and normal[1] == ":")
        or ".." in normal.split("/")
        or "\x00" in normal
    )


def scan_members(archive: ZipArchive, ctx: ScanContext, members: list[ZipMember]) -> None:
    """Dispatch each scannable member (and the prefix) to whichever scanner recognises it."""
    prefix = archive.prefix_blob()
    if prefix is not None:
        ctx.scan_member(prefix)
    for member in members:
        ctx.check_deadline()
        if member.is_dir or member.is_symlink or member.is_encrypted:
            continue
        if member.compress_type not in _SUPPORTED_METHODS:
            continue
        ctx.scan_member(archive.member_blob(member))


class ZipScanner:
    """Any zip not claimed by a more specific zip-based format: every member is scanned."""

    name = "zip"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return looks_like_zip(blob, head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with read_zip(blob, ctx) as archive:
            scan_members(archive, ctx, archive.members)


#: The generic zip scanner instance for `SCANNERS`.
ZIP = ZipScanner()

__all__ = [
    "ZIP",
    "ZipArchive",
    "ZipFormatError",
    "ZipMember",
    "ZipScanner",
    "looks_like_zip",
    "member_names",
    "read_zip",
    "scan_members",
]
