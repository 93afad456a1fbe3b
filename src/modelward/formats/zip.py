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
from dataclasses import dataclass, field
from types import TracebackType
from typing import BinaryIO, cast

from modelward.config import Limits
from modelward.findings import Severity
from modelward.formats._magic import ZIP_END_MAGIC, ZIP_LOCAL_MAGIC
from modelward.formats._streams import ByteWindow, CountingReader, ReportingReader
from modelward.formats.interface import Blob, ScanAborted, ScanContext

_CENTRAL_MAGIC = b"PK\x01\x02"
_EOCD = struct.Struct("<4sHHHHIIH")
_ZIP64_LOCATOR = struct.Struct("<4sIQI")
_ZIP64_EOCD = struct.Struct("<4sQHHIIQQQQ")
_CENTRAL = struct.Struct("<4sHHHHHHIIIHHHHHII")
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
    #: The name's bytes as stored (miniz compares these, case-insensitively).
    raw_name: bytes = b""
    #: The name `zipfile` files it under (cut at the first NUL); "" when only miniz sees it.
    lookup: str = ""

    @property
    def key(self) -> tuple[bytes, int, int, int, int]:
        """What makes two readings' entries the same member."""
        return (
            self.raw_name,
            self.header_offset,
            self.compressed_size,
            self.uncompressed_size,
            self.compress_type,
        )

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
    #: Every member any loader's reader sees (see `ZipReadings.union`).
    members: list[ZipMember] = field(default_factory=list)
    #: Bytes before the zip proper (0 for an ordinary zip).
    prefix: int = 0
    readings: ZipReadings | None = None

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
        """Nothing stays open between member reads; kept for the context manager."""

    def reading(self, reader: str) -> list[ZipMember] | None:
        """The members as `reader` (ZIPFILE or MINIZ) sees them; None if it cannot open it."""
        return None if self.readings is None else self.readings.members(reader)

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
        """The member's data, found the way both readers find it: from its local header.

        miniz and `zipfile` both skip the local header by ITS name and extra lengths and
        then read the central directory's compressed size. Neither name nor CRC is checked
        here: torch's miniz checks neither, so a member `zipfile` rejects is still read.
        """
        where = f"member {member.name!r}"
        with self.blob.open() as stream:
            header = _read_at(stream, max(member.header_offset, 0), 30)
        if member.header_offset < 0:
            raise ScanAborted("MW-ZIP-CORRUPT", f"{where}: local header before the file start")
        if len(header) != 30 or not header.startswith(ZIP_LOCAL_MAGIC):
            raise ScanAborted("MW-ZIP-CORRUPT", f"{where}: no local header where it is said to be")
        name_len, extra_len = struct.unpack_from("<HH", header, 26)
        start = member.header_offset + 30 + name_len + extra_len
        if start + member.compressed_size > self.blob.size:
            raise ScanAborted("MW-ZIP-CORRUPT", f"{where}: data runs past the end of the file")
        info = zipfile.ZipInfo(member.name)
        # CRC None: ZipExtFile then checks none (torch's miniz checks none either).
        info.CRC = None  # type: ignore[assignment]
        info.compress_type = member.compress_type
        info.compress_size = member.compressed_size
        info.file_size = member.uncompressed_size
        info.flag_bits = member.flags & ~_FLAG_ENCRYPTED
        window = io.BufferedReader(ByteWindow(self.blob.open, start, member.compressed_size))
        try:
            inner = zipfile.ZipExtFile(window, "r", info, None, True)
        except (*_MEMBER_ERRORS, RuntimeError, ValueError) as exc:
            window.close()
            raise ScanAborted("MW-ZIP-CORRUPT", f"{where}: {exc}") from exc
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
    """A local header or empty-archive record at offset 0, or an end record either reader finds."""
    if head.startswith((ZIP_LOCAL_MAGIC, ZIP_END_MAGIC)):
        return True
    if blob.size < _EOCD.size:
        return False
    readings = _sniffed_readings(blob)
    # An empty "zip" at the end of other bytes is too weak a sign: four bytes and zeros.
    return any(d is not None and d.declared_entries > 0 for d in readings.directories.values())


def _sniffed_readings(blob: Blob) -> ZipReadings:
    """Both readers' directories under the default limits, parsed once per blob for detection."""
    if "zip-readings" not in blob.sniffed:
        try:
            with blob.open() as stream:
                readings = read_directories(stream, blob.size, Limits())
        except OSError as exc:
            readings = ZipReadings({r: None for r in READERS}, {r: str(exc) for r in READERS})
        blob.sniffed["zip-readings"] = readings
    found: ZipReadings = blob.sniffed["zip-readings"]
    return found


def member_names(blob: Blob, limits: Limits) -> list[str] | None:
    """Member names any reader sees, for `detect` methods; None if no reader can open it.

    Bounded like `read_zip` but reports nothing (detection must not produce findings).
    """
    try:
        with blob.open() as stream:
            readings = read_directories(stream, blob.size, limits)
    except OSError:
        return None
    if all(d is None for d in readings.directories.values()):
        return None
    return [m.name for m in readings.union()]


def zip_member_names(blob: Blob, head: bytes) -> list[str] | None:
    """The member names (every reader's) when `blob` is a readable zip, else None; parsed
    once per blob for all the zip-based detectors (TorchScript, Keras, PyTorch, npz)."""
    if not looks_like_zip(blob, head):
        return None
    readings = _sniffed_readings(blob)
    if all(d is None for d in readings.directories.values()):
        return None
    return [m.name for m in readings.union()]


def zip_reading(blob: Blob, head: bytes, reader: str) -> list[ZipMember] | None:
    """The members `reader` sees in `blob` (for detectors that mirror one loader), or None."""
    if not looks_like_zip(blob, head):
        return None
    return _sniffed_readings(blob).members(reader)


def read_zip(blob: Blob, ctx: ScanContext) -> ZipArchive:
    """Parse `blob`'s central directory as every loader's reader does; report what is suspicious.

    The archive's members are the union of the readings, so a member only one loader sees
    is scanned too. A directory no reader can open (or one over the limits) is reported and
    yields an archive with no members.
    """
    archive = ZipArchive(blob, ctx)
    limits = ctx.config.limits
    with ctx.open(blob) as stream:
        readings = read_directories(stream, blob.size, limits)
    archive.readings = readings
    if readings.too_many is not None:
        ctx.report(
            "MW-ZIP-TOO-MANY-MEMBERS",
            Severity.MEDIUM,
            blob.location,
            f"zip declares {readings.too_many} members, over the limit of {limits.max_members};"
            " not scanned",
        )
        return archive
    if all(d is None for d in readings.directories.values()):
        ctx.report(
            "MW-ZIP-CORRUPT",
            Severity.MEDIUM,
            blob.location,
            "corrupt zip central directory; members not scanned (readers may disagree on"
            " what this file holds)",
            evidence="; ".join(f"{r}: {e}" for r, e in readings.errors.items())[:500],
        )
        return archive
    archive.members = readings.union()
    zipfile_dir = readings.directories.get(ZIPFILE)
    archive.prefix = zipfile_dir.prefix if zipfile_dir is not None else 0
    # One reader failing is no finding by itself: its loader cannot load the file, and the
    # other reader's members are scanned (a junk prefix, which miniz cannot read past, is
    # MW-ZIP-PREFIX; encrypted stored members written by Info-ZIP fail miniz's size check).
    if readings.disagree():
        ctx.report(
            "MW-ZIP-READERS-DISAGREE",
            Severity.HIGH,
            blob.location,
            "Python's zipfile (numpy, keras) and torch's miniz read different central"
            " directories from this file (a second end record, a ZIP64 locator pointing"
            " elsewhere, or offsets that only one reader adjusts): crafted to show a scanner"
            " other members than a loader; the members of both readings are scanned",
        )
    _check_members(archive, ctx)
    return archive


class _TooManyMembers(ZipFormatError):
    def __init__(self, count: int) -> None:
        super().__init__(f"{count} members")
        self.count = count


# --- How each loader finds the central directory -------------------------------------------
#
# Two zip readers load models, and they do not read the same bytes of a crafted file:
#
# * `zipfile` (CPython 3.11 `Lib/zipfile.py`; numpy `.npz`, keras `.keras`): `_EndRecData`
#   takes the last 22 bytes when they are an end record with an empty comment, else the LAST
#   `PK\x05\x06` in the last 64 KiB + 22 bytes (a record with fewer than 22 bytes after it
#   fails the open; the comment length is ignored). `_EndRecData64` reads a ZIP64 locator
#   right before it and the ZIP64 record right before the locator (the locator's offset is
#   ignored). The directory is read at `end record - its size` (a junk prefix shifts every
#   offset by `concat`), entries are parsed until `size` bytes are used (the entry count is
#   ignored), names are cut at the first NUL, and the LAST entry of a name wins.
# * miniz (torch's `PyTorchStreamReader`: `torch.load`, `torch.jit.load`, both
#   `weights_only` modes): `mz_zip_reader_locate_header_sig` takes the last `PK\x05\x06`
#   with at least 22 bytes after it, up to 69584 bytes from the end (4 KiB chunks stepping
#   back 4093 bytes until 64 KiB + 22 are covered). A ZIP64 locator right before it is
#   followed to the record at the locator's ABSOLUTE offset. The directory is read at its
#   absolute offset (no prefix), exactly `entries` entries; lookups are case-insensitive
#   binary searches over a heap sort (`mz_zip_locate_file_binary_search`). CRCs are not
#   checked (torch builds miniz with MINIZ_DISABLE_ZIP_READER_CRC32_CHECKS) and the local
#   header's name is never compared with the directory's.
#
# `read_zip` parses the file both ways and scans the members of every reading.

ZIPFILE = "zipfile"
MINIZ = "miniz"
READERS = (ZIPFILE, MINIZ)
#: `zipfile._EndRecData`'s search window: the record and the longest comment.
_ZIPFILE_TAIL = _EOCD.size + (1 << 16)
#: How far from the end miniz looks for the record: 4096 + 16 * 4093 bytes (see above).
_MINIZ_TAIL = 4096 + 16 * 4093
#: `zipfile.MAX_EXTRACT_VERSION`: entries needing a later version make `ZipFile()` fail.
_MAX_EXTRACT_VERSION = 63
_U32 = 0xFFFFFFFF


@dataclass
class ZipReadings:
    """Each reader's directory of one file (None where that reader cannot open it)."""

    directories: dict[str, _Directory | None]
    errors: dict[str, str]
    too_many: int | None = None

    def members(self, reader: str) -> list[ZipMember] | None:
        directory = self.directories.get(reader)
        return None if directory is None else directory.members

    def union(self) -> list[ZipMember]:
        """Every member any reader sees, once (zipfile's reading first)."""
        seen: set[tuple[bytes, int, int, int, int]] = set()
        out: list[ZipMember] = []
        for reader in READERS:
            for member in self.members(reader) or []:
                if member.key not in seen:
                    seen.add(member.key)
                    out.append(member)
        return out

    def disagree(self) -> bool:
        found = [d for d in self.directories.values() if d is not None]
        return len(found) == 2 and {m.key for m in found[0].members} != {
            m.key for m in found[1].members
        }


def read_directories(stream: BinaryIO, size: int, limits: Limits) -> ZipReadings:
    """The central directory as `zipfile` and as miniz read it, bounded by `limits`."""
    readings = ZipReadings({}, {})
    for reader, parse in ((ZIPFILE, _zipfile_directory), (MINIZ, _miniz_directory)):
        try:
            readings.directories[reader] = parse(stream, size, limits)
        except _TooManyMembers as exc:
            readings.directories[reader] = None
            readings.errors[reader] = str(exc)
            readings.too_many = exc.count
        except ZipFormatError as exc:
            readings.directories[reader] = None
            readings.errors[reader] = str(exc)
    return readings


def _read_at(stream: BinaryIO, offset: int, count: int) -> bytes:
    stream.seek(offset)
    return stream.read(count)


#: The first tail read: most end records are in the last 4 KiB (miniz's first chunk too).
_FIRST_TAIL = 4096


def _tail(stream: BinaryIO, size: int, window: int) -> tuple[int, bytes]:
    start = max(size - window, 0)
    return start, _read_at(stream, start, size - start)


def _zipfile_end_record(stream: BinaryIO, size: int) -> int:
    """Where `zipfile._EndRecData` finds the end record."""
    if size < _EOCD.size:
        raise ZipFormatError("file too small for an End Of Central Directory record")
    last = _read_at(stream, size - _EOCD.size, _EOCD.size)
    if last.startswith(ZIP_END_MAGIC) and last.endswith(b"\x00\x00"):
        return size - _EOCD.size
    for window in (_FIRST_TAIL, _ZIPFILE_TAIL):
        # The last signature in the small tail is the last one in the whole window too.
        start, tail = _tail(stream, size, min(window, _ZIPFILE_TAIL))
        pos = tail.rfind(ZIP_END_MAGIC)
        if pos >= 0:
            if len(tail) - pos < _EOCD.size:
                raise ZipFormatError("End Of Central Directory record cut short (zipfile)")
            return start + pos
        if start == 0:
            break
    raise ZipFormatError("no End Of Central Directory record (zipfile)")


def _miniz_end_record(stream: BinaryIO, size: int) -> int:
    """Where miniz's `mz_zip_reader_locate_header_sig` finds the end record."""
    if size < _EOCD.size:
        raise ZipFormatError("file too small for an End Of Central Directory record")
    for window in (_FIRST_TAIL, _MINIZ_TAIL):
        start, tail = _tail(stream, size, window)
        pos = tail.rfind(ZIP_END_MAGIC, 0, len(tail) - _EOCD.size + 4)
        if pos >= 0:
            return start + pos
        if start == 0:
            break
    raise ZipFormatError("no End Of Central Directory record (miniz)")


def _zipfile_directory(stream: BinaryIO, size: int, limits: Limits) -> _Directory:
    """The directory as CPython 3.11's `ZipFile._RealGetContents` reads it."""
    eocd_at = _zipfile_end_record(stream, size)
    record = _read_at(stream, eocd_at, _EOCD.size)
    (_, _, _, _, entries, cd_size, cd_offset, _) = _EOCD.unpack(record)
    concat = eocd_at - cd_size - cd_offset
    if eocd_at >= _ZIP64_LOCATOR.size:
        locator = _read_at(stream, eocd_at - _ZIP64_LOCATOR.size, _ZIP64_LOCATOR.size)
        if locator.startswith(b"PK\x06\x07"):
            _, disk, _, disks = _ZIP64_LOCATOR.unpack(locator)
            if disk != 0 or disks > 1:
                raise ZipFormatError("zipfiles that span multiple disks are not supported")
            at = eocd_at - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
            big = _read_at(stream, at, _ZIP64_EOCD.size) if at >= 0 else b""
            if len(big) == _ZIP64_EOCD.size and big.startswith(b"PK\x06\x06"):
                fields = _ZIP64_EOCD.unpack(big)
                entries, cd_size, cd_offset = fields[7], fields[8], fields[9]
                concat = eocd_at - cd_size - cd_offset - _ZIP64_LOCATOR.size - _ZIP64_EOCD.size
    start = cd_offset + concat
    if start < 0:
        raise ZipFormatError("bad offset for central directory")
    if cd_size > limits.max_header_bytes:
        raise ZipFormatError(f"central directory of {cd_size} bytes is over the header limit")
    if entries > limits.max_members:
        raise _TooManyMembers(entries)
    data = _read_at(stream, start, cd_size)
    members: list[ZipMember] = []
    pos = 0
    while pos < cd_size:
        if len(members) >= limits.max_members:
            raise _TooManyMembers(len(members) + 1)
        if pos + _CENTRAL.size > len(data):
            raise ZipFormatError("truncated central directory")
        fields = _CENTRAL.unpack_from(data, pos)
        if fields[0] != _CENTRAL_MAGIC:
            raise ZipFormatError("bad magic number for central directory")
        flags, method, crc, csize, usize = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        if fields[2] > _MAX_EXTRACT_VERSION:
            raise ZipFormatError(f"zip file version {fields[2] / 10:.1f}")
        start_name = pos + _CENTRAL.size
        raw_name = data[start_name : start_name + name_len]
        extra = data[start_name + name_len : start_name + name_len + extra_len]
        try:
            name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437")
        except UnicodeDecodeError as exc:
            raise ZipFormatError(f"member name is not UTF-8: {exc}") from exc
        offset = fields[16]
        usize, csize, offset = _zipfile_extra(extra, usize, csize, offset)
        members.append(
            ZipMember(
                name,
                csize,
                usize,
                offset + concat,
                flags,
                method,
                crc,
                fields[15],
                raw_name,
                lookup=name.split("\x00", 1)[0],
            )
        )
        pos = start_name + name_len + extra_len + comment_len
    return _Directory(members, max(concat, 0), len(members))


def _zipfile_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """`ZipInfo._decodeExtra`: ZIP64 sizes, in spec order; a torn field fails the open."""
    while len(extra) >= 4:
        tag, length = struct.unpack_from("<HH", extra)
        if length + 4 > len(extra):
            raise ZipFormatError(f"corrupt extra field {tag:04x} (size={length})")
        if tag == 0x0001:
            body = extra[4 : length + 4]
            try:
                if usize in (0xFFFF_FFFF_FFFF_FFFF, _U32):
                    (usize,) = struct.unpack_from("<Q", body)
                    body = body[8:]
                if csize == _U32:
                    (csize,) = struct.unpack_from("<Q", body)
                    body = body[8:]
                if offset == _U32:
                    (offset,) = struct.unpack_from("<Q", body)
            except struct.error as exc:
                raise ZipFormatError("corrupt zip64 extra field") from exc
        extra = extra[length + 4 :]
    return usize, csize, offset


def _miniz_directory(stream: BinaryIO, size: int, limits: Limits) -> _Directory:
    """The directory as miniz's `mz_zip_reader_read_central_dir` reads it (flags 0)."""
    eocd_at = _miniz_end_record(stream, size)
    record = _read_at(stream, eocd_at, _EOCD.size)
    (_, this_disk, cd_disk, on_disk, entries, cd_size, cd_offset, _) = _EOCD.unpack(record)
    if eocd_at >= _ZIP64_LOCATOR.size + _ZIP64_EOCD.size:
        locator = _read_at(stream, eocd_at - _ZIP64_LOCATOR.size, _ZIP64_LOCATOR.size)
        if locator.startswith(b"PK\x06\x07"):
            _, _, record_at, disks = _ZIP64_LOCATOR.unpack(locator)
            if record_at > size - _ZIP64_EOCD.size:
                raise ZipFormatError("ZIP64 locator points past the file")
            big = _read_at(stream, record_at, _ZIP64_EOCD.size)
            if len(big) == _ZIP64_EOCD.size and big.startswith(b"PK\x06\x06"):
                fields = _ZIP64_EOCD.unpack(big)
                if fields[1] < _ZIP64_EOCD.size - 12:
                    raise ZipFormatError("ZIP64 end record too small")
                if disks != 1:
                    raise ZipFormatError("multi-disk archive")
                if fields[7] > _U32 or fields[6] > _U32 or fields[8] > _U32:
                    raise ZipFormatError("ZIP64 counts beyond miniz's limits")
                this_disk, cd_disk = fields[4], fields[5]
                on_disk, entries, cd_size, cd_offset = fields[6], fields[7], fields[8], fields[9]
    if entries != on_disk:
        raise ZipFormatError("entry counts differ (multi-disk archive)")
    if (this_disk | cd_disk) != 0 and (this_disk != 1 or cd_disk != 1):
        raise ZipFormatError("multi-disk archive")
    if cd_size < entries * _CENTRAL.size or cd_offset + cd_size > size:
        raise ZipFormatError(
            f"central directory ({cd_size} bytes at {cd_offset}) does not fit its"
            f" {entries} entries or the file"
        )
    if entries > limits.max_members:
        raise _TooManyMembers(entries)
    if cd_size > limits.max_header_bytes:
        raise ZipFormatError(f"central directory of {cd_size} bytes is over the header limit")
    data = _read_at(stream, cd_offset, cd_size) if entries else b""
    if len(data) != (cd_size if entries else 0):
        raise ZipFormatError("central directory truncated")
    members: list[ZipMember] = []
    pos = 0
    for _ in range(entries):
        left = cd_size - pos
        if left < _CENTRAL.size or data[pos : pos + 4] != _CENTRAL_MAGIC:
            raise ZipFormatError(f"bad central directory entry at {pos}")
        fields = _CENTRAL.unpack_from(data, pos)
        flags, method, crc, csize, usize = fields[3], fields[4], fields[7], fields[8], fields[9]
        name_len, extra_len, comment_len = fields[10], fields[11], fields[12]
        disk_index, external, offset = fields[13], fields[15], fields[16]
        start = pos + _CENTRAL.size
        raw_name = data[start : start + name_len]
        if extra_len and max(csize, usize, offset) == _U32:
            extra = data[start + name_len : start + name_len + extra_len]
            usize, csize, offset = _miniz_extra(extra, usize, csize, offset)
        sized = csize != _U32 and usize != _U32
        if sized and ((method == 0 and usize != csize) or (usize and not csize)):
            raise ZipFormatError(f"entry {raw_name!r}: sizes inconsistent with its method")
        if disk_index == 0xFFFF or (disk_index not in (this_disk, 1)):
            raise ZipFormatError("multi-disk archive")
        if csize != _U32 and offset + 30 + csize > size:
            raise ZipFormatError(f"member {raw_name!r} data lies outside the file")
        if flags & 0x2000:
            raise ZipFormatError("masked local headers (central directory encryption)")
        total = _CENTRAL.size + name_len + extra_len + comment_len
        if total > left:
            raise ZipFormatError("central directory entry runs past the directory")
        name = raw_name.decode("utf-8" if flags & _FLAG_UTF8 else "cp437", errors="replace")
        members.append(
            ZipMember(name, csize, usize, offset, flags, method, crc, external, raw_name)
        )
        pos += total
    return _Directory(members, 0, entries)


def _miniz_extra(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    """The ZIP64 extended information field, as `mz_zip_reader_read_central_dir` reads it."""
    left = len(extra)
    pos = 0
    while True:
        if left < 4:
            raise ZipFormatError("corrupt extra field")
        tag, length = struct.unpack_from("<HH", extra, pos)
        if length + 4 > left:
            raise ZipFormatError("corrupt extra field")
        if tag == 0x0001:
            break
        pos += 4 + length
        left -= 4 + length
        if not left:
            return usize, csize, offset
    pos += 4
    left -= 4
    for which in ("u", "c", "o"):
        value = {"u": usize, "c": csize, "o": offset}[which]
        if value == _U32 and left >= 8:
            (value,) = struct.unpack_from("<Q", extra, pos)
            pos += 8
            left -= 8
            if which == "u":
                usize = value
            elif which == "c":
                csize = value
            else:
                offset = value
    return usize, csize, offset


def _miniz_key(raw: bytes) -> bytes:
    """`MZ_TOLOWER` on every byte: miniz compares names ASCII-case-insensitively."""
    return raw.translate(_ASCII_LOWER)


_ASCII_LOWER = bytes(range(256)).translate(
    bytes.maketrans(bytes(range(65, 91)), bytes(range(97, 123)))
)


def miniz_sorted(members: list[ZipMember]) -> list[int]:
    """The index order `mz_zip_reader_sort_central_dir_offsets_by_filename` leaves (heap sort)."""
    keys = [_miniz_key(m.raw_name) for m in members]
    size = len(keys)
    order = list(range(size))
    if size <= 1:
        return order

    def sift(root: int, end: int) -> None:
        while True:
            child = root * 2 + 1
            if child >= end:
                return
            if child + 1 < end and keys[order[child]] < keys[order[child + 1]]:
                child += 1
            if not keys[order[root]] < keys[order[child]]:
                return
            order[root], order[child] = order[child], order[root]
            root = child

    for start in range((size - 2) >> 1, -1, -1):
        sift(start, size)
    for end in range(size - 1, 0, -1):
        order[end], order[0] = order[0], order[end]
        sift(0, end)
    return order


def miniz_locate(members: list[ZipMember], name: bytes) -> ZipMember | None:
    """The member `mz_zip_reader_locate_file(archive, name, NULL, 0)` returns, or None.

    `name` is a C string: it ends at its first NUL.
    """
    query = _miniz_key(name.split(b"\x00", 1)[0])
    order = miniz_sorted(members)
    low, high = 0, len(order) - 1
    while low <= high:
        middle = low + ((high - low) >> 1)
        key = _miniz_key(members[order[middle]].raw_name)
        if key == query:
            return members[order[middle]]
        if key < query:
            low = middle + 1
        else:
            high = middle - 1
    return None


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
    _check_duplicates(archive, ctx)
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


def _check_duplicates(archive: ZipArchive, ctx: ScanContext) -> None:
    """Names a loader cannot tell apart: zipfile cuts names at NUL and keeps the LAST entry;
    miniz folds ASCII case and binary-searches its heap-sorted list. Every copy is scanned
    (they are all members), so this is a warning that the copies may differ, not a verdict."""
    reported: set[str] = set()
    for reader in READERS:
        members = archive.reading(reader) or []
        groups: dict[object, list[ZipMember]] = {}
        for member in members:
            key: object = member.lookup if reader == ZIPFILE else _miniz_key(member.raw_name)
            groups.setdefault(key, []).append(member)
        for group in groups.values():
            if len(group) < 2 or group[0].name in reported:
                continue
            reported.add(group[0].name)
            if reader == ZIPFILE:
                used: ZipMember | None = group[-1]
            else:
                used = miniz_locate(members, group[0].raw_name)
            ctx.report(
                "MW-ZIP-DUPLICATE-NAME",
                Severity.MEDIUM,
                archive.blob.location.member(group[0].name),
                f"{len(group)} members share this name for {reader} (names: "
                f"{', '.join(repr(m.name) for m in group)}); readers may load different copies;"
                " every copy is scanned",
                evidence=f"{reader} reads the entry at offset"
                f" {used.header_offset if used is not None else '?'}",
            )


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
