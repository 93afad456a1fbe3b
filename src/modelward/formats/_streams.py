"""Stream wrappers the scanners read through: counted and capped, windowed, and decoding
streams whose errors become findings. Private to `formats` (and the analysers beside it)."""

from __future__ import annotations

import io
from collections.abc import Callable
from typing import IO, BinaryIO

from modelward.formats.interface import ScanAborted


class CountingReader(io.RawIOBase):
    """A read-only view of a stream that counts what is read and caps it.

    Used so a scan can report how many bytes it really read, and so that a
    decompressing stream cannot be read past `limit` (a bomb becomes a finding).
    """

    def __init__(self, inner: BinaryIO, counter: list[int], limit: int | None = None) -> None:
        self._inner = inner
        self._counter = counter
        self._limit = limit
        self._consumed = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._inner.seekable()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        return self._inner.seek(offset, whence)

    def tell(self) -> int:
        return self._inner.tell()

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = len(buffer)
        if self._limit is not None and self._consumed + want > self._limit:
            want = self._limit - self._consumed
            if want <= 0:
                raise ScanAborted(
                    "MW-LIMIT-SIZE",
                    f"stream exceeds the {self._limit}-byte read limit (decompression bomb?)",
                )
        data = self._inner.read(want)
        n = len(data)
        buffer[:n] = data
        self._consumed += n
        self._counter[0] += n
        return n

    def close(self) -> None:
        self._inner.close()
        super().close()


class ByteWindow(io.RawIOBase):
    """`size` bytes starting at `start` of a stream opened by `opener`, seekable within them.

    Each open gets its own underlying stream, so nested scanners may hold several at once.
    """

    def __init__(self, opener: Callable[[], BinaryIO], start: int, size: int) -> None:
        self._inner = opener()
        self._start = start
        self._size = size
        self._pos = 0
        self._seekable = self._inner.seekable()
        if self._seekable:
            self._inner.seek(start)
        else:
            discard(self._inner, start)

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            raise io.UnsupportedOperation("seek")
        base = {io.SEEK_SET: 0, io.SEEK_CUR: self._pos, io.SEEK_END: self._size}[whence]
        self._pos = max(0, base + offset)
        self._inner.seek(self._start + min(self._pos, self._size))
        return self._pos

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        want = min(len(buffer), self._size - self._pos)
        if want <= 0:
            return 0
        data = self._inner.read(want)
        buffer[: len(data)] = data
        self._pos += len(data)
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()


def discard(stream: BinaryIO, count: int) -> None:
    """Read and drop `count` bytes of a stream that cannot seek."""
    while count > 0:
        data = stream.read(min(count, 1024 * 1024))
        if not data:
            return
        count -= len(data)


class ReportingReader(io.RawIOBase):
    """A read-only view of a decoding stream whose decoder errors become `ScanAborted`
    findings (`rule_id`, `message` + the error) instead of exceptions.

    `charge`, when given, is told how many bytes each read produced: a decompressing
    stream passes `ScanContext.charge_decompressed` so its output counts against the file's
    decompression budget. `seekable=True` passes seeks through to a decoder that can seek
    (a zip member, so that a zip or PyTorch checkpoint inside a zip can be scanned); the
    bytes a seek decompresses unseen are charged too: the distance forward, or everything
    up to the target when seeking back restarts the decoder.
    """

    def __init__(
        self,
        inner: IO[bytes] | io.BufferedIOBase,
        errors: tuple[type[BaseException], ...],
        rule_id: str,
        message: str,
        charge: Callable[[int], None] | None = None,
        *,
        seekable: bool = False,
    ) -> None:
        self._inner = inner
        self._errors = errors
        self._rule_id = rule_id
        self._message = message
        self._charge = charge
        self._seekable = seekable and inner.seekable()

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return self._seekable

    def tell(self) -> int:
        if not self._seekable:
            return super().tell()
        return self._inner.tell()

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        if not self._seekable:
            return super().seek(offset, whence)
        before = self._inner.tell()
        try:
            after = self._inner.seek(offset, whence)
        except self._errors as exc:
            raise ScanAborted(self._rule_id, f"{self._message}: {exc}") from exc
        if self._charge is not None:
            self._charge(after - before if after >= before else after)
        return after

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        try:
            # read1 where there is one: what is there now, so a truncated stream still
            # yields its first part.
            read = getattr(self._inner, "read1", self._inner.read)
            data = read(len(buffer))
        except self._errors as exc:
            raise ScanAborted(self._rule_id, f"{self._message}: {exc}") from exc
        if self._charge is not None:
            self._charge(len(data))
        buffer[: len(data)] = data
        return len(data)

    def close(self) -> None:
        self._inner.close()
        super().close()
