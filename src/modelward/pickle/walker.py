"""Read pickle opcodes from a byte stream without trusting a single length field.

Unlike `pickletools.genops`, the walker checks every length against the bytes
left (or the decompression limit when the size is unknown) before reading,
skips large payloads (tensor data, array bytes) in chunks instead of holding
them, and turns every kind of damage into `PickleDamage` at an offset.
"""

from __future__ import annotations

import codecs
import struct
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import BinaryIO

from modelward.config import Limits
from modelward.pickle.opcodes import OPCODES, Arg, Opcode

#: Text arguments longer than this are skipped, not kept: no import name or attribute is this long.
KEEP_TEXT = 64 * 1024
#: Byte-string arguments are kept only this far (for evidence); the rest is skipped.
KEEP_BYTES = 256
#: Integers wider than this many bytes are skipped (Python would build them; we need no value).
KEEP_LONG = 64
#: Chunk size for skipping payloads and reading lines.
CHUNK = 1024 * 1024
#: Opcodes between two deadline checks.
TICK_EVERY = 4096


class PickleDamage(Exception):
    """The stream stops being a pickle a loader would accept, at `offset`."""

    def __init__(
        self,
        offset: int,
        message: str,
        rule_id: str = "MW-PICKLE-MALFORMED",
        *,
        truncated: bool = False,
    ) -> None:
        super().__init__(message)
        self.offset = offset
        self.message = message
        self.rule_id = rule_id
        #: The bytes simply ran out (as opposed to bytes no loader accepts).
        self.truncated = truncated


@dataclass(frozen=True)
class Skipped:
    """An argument that was skipped, not read: only its kind and length are known."""

    kind: str
    length: int


class ByteSource:
    """A forward-only reader over a stream that knows its offset and can peek and skip.

    Offsets are relative to where the stream was when the source was made.
    """

    def __init__(self, stream: BinaryIO, tick: Callable[[], None], limits: Limits) -> None:
        self._stream = stream
        self._tick = tick
        self._buf = b""
        self._pos = 0
        self._base = 0  # offset of self._buf[0]
        self._end = _stream_end(stream)
        self._max_size = limits.max_decompressed_bytes

    @property
    def offset(self) -> int:
        return self._base + self._pos

    def bytes_left_bound(self) -> int:
        """Bytes left at most: exact when seekable, else bounded by the decompression cap."""
        if self._end is not None:
            return max(self._end - self.offset, 0)
        return max(self._max_size - self.offset, 0)

    def _fill(self, want: int) -> bool:
        """Have at least `want` unread bytes buffered; False at end of stream."""
        while len(self._buf) - self._pos < want:
            chunk = self._stream.read(max(CHUNK, want - (len(self._buf) - self._pos)))
            if not chunk:
                return False
            self._base += self._pos
            self._buf = self._buf[self._pos :] + chunk
            self._pos = 0
        return True

    def peek(self, n: int) -> bytes:
        self._fill(n)
        return self._buf[self._pos : self._pos + n]

    def at_eof(self) -> bool:
        return not self._fill(1)

    def read_byte(self) -> int:
        """The next byte, or -1 at end of stream (the hot path: one call per opcode)."""
        if self._pos >= len(self._buf) and not self._fill(1):
            return -1
        byte = self._buf[self._pos]
        self._pos += 1
        return byte

    def read_exact(self, n: int, what: str) -> bytes:
        start = self.offset
        if not self._fill(n):
            raise PickleDamage(start, f"stream ends inside {what} (truncated)", truncated=True)
        data = self._buf[self._pos : self._pos + n]
        self._pos += n
        return data

    def skip(self, n: int, what: str) -> None:
        """Skip `n` bytes in chunks, never holding them."""
        start = self.offset
        left = n
        while left:
            self._tick()
            if not self._fill(1):
                raise PickleDamage(start, f"stream ends inside {what} (truncated)", truncated=True)
            step = min(left, len(self._buf) - self._pos)
            self._pos += step
            left -= step

    def read_line(self, keep: int, what: str) -> bytes | None:
        """Read up to a newline; return it without the newline, or None when longer than `keep`."""
        start = self.offset
        kept: list[bytes] = []
        size = 0
        while True:
            self._tick()
            if not self._fill(1):
                raise PickleDamage(start, f"stream ends inside {what} (no newline)", truncated=True)
            newline = self._buf.find(b"\n", self._pos)
            stop = len(self._buf) if newline < 0 else newline
            piece = self._buf[self._pos : stop]
            size += len(piece)
            if size <= keep:
                kept.append(piece)
            self._pos = stop if newline < 0 else newline + 1
            if newline >= 0:
                return b"".join(kept) if size <= keep else None


def _stream_end(stream: BinaryIO) -> int | None:
    """Absolute end of a seekable stream, relative to its current position; None if unknown."""
    try:
        if not stream.seekable():
            return None
        here = stream.tell()
        end = stream.seek(0, 2)
        stream.seek(here)
    except (OSError, ValueError):
        return None
    return end - here


_U2 = struct.Struct("<H")
_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_U8 = struct.Struct("<Q")
_F8 = struct.Struct(">d")

ArgValue = int | float | str | bytes | tuple[str, str] | Skipped | None


def iter_opcodes(
    source: ByteSource, limits: Limits, tick: Callable[[], None]
) -> Iterator[tuple[int, Opcode, ArgValue]]:
    """Yield `(offset, opcode, argument)` until STOP (included) or damage (raised)."""
    count = 0
    while True:
        count += 1
        if count % TICK_EVERY == 0:
            tick()
        if count > limits.max_pickle_opcodes:
            raise PickleDamage(
                source.offset,
                f"more than {limits.max_pickle_opcodes} opcodes in one stream; rest not scanned",
                "MW-PICKLE-LIMIT",
            )
        offset = source.offset
        code = source.read_byte()
        if code < 0:
            raise PickleDamage(offset, "stream ends before STOP (truncated)", truncated=True)
        opcode = OPCODES.get(code)
        if opcode is None:
            raise PickleDamage(offset, f"byte 0x{code:02x} is not a pickle opcode")
        yield offset, opcode, None if opcode.arg is Arg.NONE else _read_arg(source, opcode, offset)
        if opcode.name == "STOP":
            return


def _read_arg(source: ByteSource, opcode: Opcode, offset: int) -> ArgValue:
    arg = opcode.arg
    what = f"the argument of {opcode.name}"
    if arg is Arg.U1:
        return source.read_exact(1, what)[0]
    if arg is Arg.U2:
        return int(_U2.unpack(source.read_exact(2, what))[0])
    if arg is Arg.I4:
        return int(_I4.unpack(source.read_exact(4, what))[0])
    if arg is Arg.U4:
        return int(_U4.unpack(source.read_exact(4, what))[0])
    if arg is Arg.U8:
        value = int(_U8.unpack(source.read_exact(8, what))[0])
        _check_length(source, value, opcode, offset)  # FRAME: the frame must fit
        return value
    if arg is Arg.F8:
        return float(_F8.unpack(source.read_exact(8, what))[0])
    if arg in _LINE_ARGS:
        return _line_arg(source, opcode, offset, what)
    if arg is Arg.TWO_LINES:
        return (_name_line(source, opcode, offset), _name_line(source, opcode, offset))
    return _counted_arg(source, opcode, offset, what)


_LINE_ARGS = frozenset(
    {Arg.DECIMAL_LINE, Arg.FLOAT_LINE, Arg.QUOTED_LINE, Arg.UNICODE_LINE, Arg.ASCII_LINE}
)


def _line_arg(source: ByteSource, opcode: Opcode, offset: int, what: str) -> ArgValue:
    line = source.read_line(KEEP_TEXT, what)
    if line is None:
        if opcode.arg in (Arg.QUOTED_LINE, Arg.UNICODE_LINE):
            return Skipped("text", KEEP_TEXT)
        raise PickleDamage(offset, f"{what} is longer than {KEEP_TEXT} bytes")
    try:
        if opcode.arg is Arg.DECIMAL_LINE:
            text = line.decode("ascii").strip()
            return int(text[:-1] if text.endswith("L") else text)
        if opcode.arg is Arg.FLOAT_LINE:
            return float(line.decode("ascii"))
        if opcode.arg is Arg.QUOTED_LINE:
            if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                raise ValueError("the STRING argument is not quoted")
            return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
        if opcode.arg is Arg.UNICODE_LINE:
            return line.decode("raw-unicode-escape")
        return line.decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PickleDamage(offset, f"{what} is not valid: {exc}") from None


def _name_line(source: ByteSource, opcode: Opcode, offset: int) -> str:
    line = source.read_line(1024, f"the module/name line of {opcode.name}")
    if line is None:
        raise PickleDamage(offset, f"{opcode.name} module or name is longer than 1024 bytes")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleDamage(offset, f"{opcode.name} module or name is not UTF-8") from None


def _counted_arg(source: ByteSource, opcode: Opcode, offset: int, what: str) -> ArgValue:
    arg = opcode.arg
    if arg in (Arg.BYTES_U1, Arg.TEXT_U1, Arg.LONG_U1):
        length = source.read_exact(1, what)[0]
    elif arg in (Arg.BYTES_I4, Arg.LONG_I4):
        length = int(_I4.unpack(source.read_exact(4, what))[0])
        if length < 0:
            raise PickleDamage(offset, f"{opcode.name} has a negative length ({length})")
    elif arg in (Arg.BYTES_U4, Arg.TEXT_U4):
        length = int(_U4.unpack(source.read_exact(4, what))[0])
    else:
        length = int(_U8.unpack(source.read_exact(8, what))[0])
    _check_length(source, length, opcode, offset)
    if arg in (Arg.LONG_U1, Arg.LONG_I4):
        if length > KEEP_LONG:
            source.skip(length, what)
            return Skipped("int", length)
        return int.from_bytes(source.read_exact(length, what), "little", signed=True)
    # Protocol 0-2 strings (BINSTRING, SHORT_BINSTRING) load as str by default.
    as_text = arg in (Arg.TEXT_U1, Arg.TEXT_U4, Arg.TEXT_U8) or opcode.name in (
        "BINSTRING",
        "SHORT_BINSTRING",
    )
    keep = KEEP_TEXT if as_text else KEEP_BYTES
    if length > keep:
        source.skip(length, what)
        return Skipped("text" if as_text else "bytes", length)
    data = source.read_exact(length, what)
    if not as_text:
        return data
    if opcode.name in ("BINSTRING", "SHORT_BINSTRING"):
        return data.decode("latin-1")
    try:
        return data.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        raise PickleDamage(offset, f"{opcode.name} text is not UTF-8") from None


def _check_length(source: ByteSource, length: int, opcode: Opcode, offset: int) -> None:
    left = source.bytes_left_bound()
    if length > left:
        raise PickleDamage(
            offset,
            f"{opcode.name} declares {length} bytes but at most {left} are left"
            " (corrupt or crafted length field)",
            truncated=True,
        )
