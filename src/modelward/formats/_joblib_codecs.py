"""joblib's compressed containers, decompressed as a stream: zlib, joblib's old `ZF` files,
gzip, bz2, xz and lzma. Also what NumPy's scanner uses for joblib's `*.npy.z` arrays."""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import zlib
from collections.abc import Callable
from typing import BinaryIO, cast

from modelward.formats._magic import ZFILE_HEADER, compression
from modelward.formats._streams import CountingReader, ReportingReader

_CHUNK = 64 * 1024
DECOMPRESS_ERRORS = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


class _ZlibReader(io.RawIOBase):
    """A zlib stream decompressed as it is read, never more than the caller asks for."""

    def __init__(self, raw: BinaryIO, pending: bytes = b"") -> None:
        self._raw = raw
        self._pending = pending
        self._decompressor = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._decompressor.eof:
            chunk = self._decompressor.unconsumed_tail or self._pending or self._raw.read(_CHUNK)
            self._pending = b""
            if not chunk:
                raise EOFError("zlib stream ends before its end marker")
            out = self._decompressor.decompress(chunk, len(buffer))
            if out:
                buffer[: len(out)] = out
                return len(out)
        return 0


def _decompressor(codec: str, raw: BinaryIO) -> io.BufferedIOBase:
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bz2":
        return bz2.BZ2File(raw)
    if codec == "xz":
        return lzma.LZMAFile(raw, format=lzma.FORMAT_XZ)
    if codec == "lzma":
        return lzma.LZMAFile(raw, format=lzma.FORMAT_ALONE)
    if codec == "zfile":
        # "ZF", the length as "0x..." padded to 19 characters, sometimes a space, then zlib.
        raw.read(ZFILE_HEADER)
        first = raw.read(1)
        return io.BufferedReader(_ZlibReader(raw, b"" if first == b" " else first))
    return io.BufferedReader(_ZlibReader(raw))


def open_decompressed(
    codec: str, raw: BinaryIO, limit: int, charge: Callable[[int], None] | None = None
) -> BinaryIO:
    """The decompressed stream, capped at `limit`; its output is `charge`d to the file."""
    capped = CountingReader(
        cast(
            BinaryIO,
            ReportingReader(
                _decompressor(codec, raw),
                DECOMPRESS_ERRORS,
                "MW-JOBLIB-CORRUPT",
                "compressed stream is corrupt",
                charge,
            ),
        ),
        [0],
        limit,
    )
    return cast(BinaryIO, io.BufferedReader(capped, buffer_size=_CHUNK))


def zfile_length(head: bytes) -> int | None:
    """The decompressed length a joblib < 0.10 `ZF` header declares, or None if it has none.

    `read_zfile` (joblib's `numpy_pickle_compat`) decompresses to exactly this many bytes and
    asserts it; old joblib wrote both its main pickle and its `*.npy.z` arrays this way.
    """
    if compression(head) != "zfile":
        return None
    try:
        length = int(head[2:ZFILE_HEADER].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        return None
    return length if length >= 0 else None


def open_zfile(raw: BinaryIO, limit: int, charge: Callable[[int], None] | None) -> BinaryIO:
    """The content of a `ZF` file read from its start, decompressed as it is read, capped at
    `limit` and `charge`d to the scanned file's decompression budget."""
    return open_decompressed("zfile", raw, limit, charge)
