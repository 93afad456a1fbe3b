"""Single-stream gzip, bzip2 and xz files, decompressed as a stream into one member.

Nothing is extracted to disk. The file is decompressed as a stream into one member
(`model.tar.gz!model.tar`) that the dispatcher scans by content, so `.tar.gz` is simply gzip
around tar (`formats/tar.py`).

A decompressed stream is first decompressed once to learn its true size (and to catch bombs
before anything else reads it). When it is small (`IN_MEMORY_BYTES`) those bytes are kept; when
it is larger, every later `open()` decompresses again from the start. Python's decompressing
files can seek (backwards by re-decompressing), so nested scanners that seek work, at a cost in
time bounded by the per-file deadline, and never in memory.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from pathlib import PurePosixPath
from typing import BinaryIO, cast

from modelward.config import Limits
from modelward.findings import Location, Severity
from modelward.formats._magic import bzip2_magic, gzip_magic, xz_magic
from modelward.formats.interface import IN_MEMORY_BYTES, Blob, ScanContext

#: Expansion only counts as a bomb past this size, so a tiny file of zeros is not a finding.
BOMB_MIN_BYTES = 1024**2
#: Last bytes of large decompressed content kept, so that sniffing a file's end is free.
TAIL_BYTES = 128 * 1024
_CHUNK = 1024**2


class _Decompressed(io.RawIOBase):
    """A decompressing file that also closes the compressed stream it reads.

    When the content's `size` and last bytes (`tail`) are already known, seeks are
    lazy and reads inside the tail are served from it: format sniffers that look
    at the end of a file (a zip's central directory) then cost no decompression.
    Everything it decompresses, seeks included, is charged to the file's budget (`charge`).
    """

    def __init__(
        self,
        raw: BinaryIO,
        wrap: Callable[[BinaryIO], BinaryIO],
        charge: Callable[[int], None],
        size: int | None = None,
        tail: bytes = b"",
    ) -> None:
        self._raw = raw
        self._inner = wrap(raw)
        self._charge = charge
        self._size = size
        self._tail = tail
        self._tail_start = (size or 0) - len(tail)
        self._pos = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if whence == io.SEEK_END and self._size is None:
            self._pos = self._inner.seek(offset, whence)
        else:
            base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size or 0}[whence]
            self._pos = max(0, base + offset)
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        if self._tail and self._pos >= self._tail_start:
            at = self._pos - self._tail_start
            data = self._tail[at : at + len(buffer)]
        else:
            here = self._inner.tell()
            if here != self._pos:
                # A decompressing file seeks by decompressing: on from here, or again from 0.
                self._charge(self._pos - here if self._pos > here else self._pos)
                self._inner.seek(self._pos)
            data = self._inner.read(len(buffer))
            self._charge(len(data))
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        self._raw.close()
        super().close()


def count_zeros(stream: BinaryIO, ctx: ScanContext) -> int:
    """Zero bytes from the stream's position up to the first other byte (or the end)."""
    zeros = 0
    while chunk := stream.read(_CHUNK):
        ctx.check_deadline()
        rest = chunk.lstrip(b"\x00")
        zeros += len(chunk) - len(rest)
        if rest:
            break
    return zeros


def _basename(blob: Blob) -> str:
    return PurePosixPath(blob.name.replace("\\", "/")).name


class CompressedScanner:
    """One single-stream compression format: decompress, check for a bomb, scan the content."""

    def __init__(
        self,
        name: str,
        magic: Callable[[bytes], bool],
        wrap: Callable[[BinaryIO], BinaryIO],
        suffixes: dict[str, str],
        errors: tuple[type[Exception], ...],
    ) -> None:
        self.name = name
        self._magic = magic
        self._wrap = wrap
        self._suffixes = suffixes
        self._errors: tuple[type[Exception], ...] = (*errors, EOFError)

    def detect(self, blob: Blob, head: bytes) -> bool:
        return self._magic(head)

    def inner_name(self, outer: str) -> str:
        """`x.tar.gz` -> `x.tar`, `x.tgz` -> `x.tar`; otherwise a name saying what was done."""
        lower = outer.lower()
        for suffix, replacement in self._suffixes.items():
            if lower.endswith(suffix) and len(outer) > len(suffix):
                return outer[: -len(suffix)] + replacement
        return f"{outer}[{self.name}]"

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        limits = ctx.config.limits
        ratio_cap = max(BOMB_MIN_BYTES, int(limits.max_compression_ratio * max(blob.size, 1)))
        kept: io.BytesIO | None = io.BytesIO()  # dropped once the content is too big to keep
        total = 0
        previous = last = b""  # the last two chunks, for the tail
        try:
            with (
                ctx.open(blob) as raw,
                _Decompressed(raw, self._wrap, ctx.charge_decompressed) as stream,
            ):
                while chunk := stream.read(_CHUNK):
                    ctx.check_deadline()
                    previous, last = last, chunk
                    total += len(chunk)
                    if total > limits.max_decompressed_bytes or total > ratio_cap:
                        report_bomb(ctx, blob.location, blob.size, total, limits)
                        return
                    if kept is not None and total > IN_MEMORY_BYTES:
                        kept = None
                    elif kept is not None:
                        kept.write(chunk)
        except self._errors as exc:
            scanned = kept is not None and total > 0
            ctx.report(
                "MW-ARCHIVE-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                f"{self.name} stream is corrupt or truncated after {total} decompressed bytes;"
                + (" what came before is scanned" if scanned else " its content is not scanned"),
                evidence=f"{type(exc).__name__}: {exc}"[:300],
            )
            if not scanned:
                return
        location = blob.location.member(self.inner_name(_basename(blob)))
        if kept is not None:
            member = Blob.from_bytes(location, kept.getvalue())
            kept = None  # the blob holds its own copy; free this one before nested scans
        else:
            wrap, tail = self._wrap, (previous + last)[-TAIL_BYTES:]
            charge = ctx.charge_decompressed
            member = Blob(
                location,
                total,
                lambda: cast(BinaryIO, _Decompressed(blob.open(), wrap, charge, total, tail)),
            )
        ctx.scan_member(member)


def report_bomb(
    ctx: ScanContext, location: Location, compressed: int, seen: int, limits: Limits
) -> None:
    ctx.report(
        "MW-ARCHIVE-BOMB",
        Severity.MEDIUM,
        location,
        f"decompression bomb: {compressed} compressed bytes expanded past {seen} bytes (limits:"
        f" {limits.max_decompressed_bytes} bytes, ratio {limits.max_compression_ratio:g});"
        " content not scanned",
    )


def _gzip(raw: BinaryIO) -> BinaryIO:
    return gzip.GzipFile(fileobj=raw, mode="rb")  # type: ignore[return-value]


def _bzip2(raw: BinaryIO) -> BinaryIO:
    return bz2.BZ2File(raw, mode="rb")  # type: ignore[return-value]


def _xz(raw: BinaryIO) -> BinaryIO:
    return lzma.LZMAFile(raw, mode="rb", format=lzma.FORMAT_XZ)  # type: ignore[return-value]


GZIP = CompressedScanner(
    "gzip",
    gzip_magic,
    _gzip,
    {".tgz": ".tar", ".gz": ""},
    (gzip.BadGzipFile, zlib.error),
)
BZIP2 = CompressedScanner(
    "bzip2", bzip2_magic, _bzip2, {".tbz2": ".tar", ".tbz": ".tar", ".bz2": ""}, (OSError,)
)
XZ = CompressedScanner("xz", xz_magic, _xz, {".txz": ".tar", ".xz": ""}, (lzma.LZMAError,))
