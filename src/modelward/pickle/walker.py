"""Read pickle opcodes from a byte stream without trusting a single length field.

Unlike `pickletools.genops`, the walker checks every length against the bytes
left (or the decompression limit when the size is unknown) before reading,
skips large payloads (tensor data, array bytes) in chunks instead of holding
them, and turns every kind of damage into `PickleDamage` at an offset.
"""

from __future__ import annotations

import codecs
import math
import re
import struct
import warnings
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


class LargePayload:
    """A byte or text argument longer than the walker keeps, about to be skipped.

    A `iter_opcodes` hook may `peek` at its first bytes, or `read` it whole (it is then
    not skipped); it starts at the source's position, after its length field.
    """

    def __init__(
        self, source: ByteSource, opcode: Opcode, offset: int, length: int, text: bool
    ) -> None:
        self.opcode = opcode
        self.offset = offset
        self.length = length
        self.text = text
        self._source = source
        self.consumed = False

    def peek(self, n: int) -> bytes:
        return b"" if self.consumed else self._source.peek(min(n, self.length))

    def read(self) -> bytes:
        data = self._source.read_exact(self.length, f"the argument of {self.opcode.name}")
        self.consumed = True
        return data


PayloadHook = Callable[[LargePayload], None]


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

    @property
    def end_bound(self) -> int:
        """The offset no length field may reach past: the stream's end when seekable, else
        the decompression cap."""
        return self._end if self._end is not None else self._max_size

    def bytes_left_bound(self) -> int:
        """Bytes left at most: exact when seekable, else bounded by the decompression cap."""
        return max(self.end_bound - self._base - self._pos, 0)

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
        pos = self._pos
        if pos + n > len(self._buf):
            if not self._fill(n):
                raise PickleDamage(
                    self.offset, f"stream ends inside {what} (truncated)", truncated=True
                )
            pos = self._pos
        self._pos = pos + n
        return self._buf[pos : pos + n]

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

    def _line_pieces(self, what: str) -> Iterator[bytes]:
        """The bytes up to the next newline, buffer by buffer (the newline is consumed)."""
        start = self.offset
        while True:
            self._tick()
            if not self._fill(1):
                raise PickleDamage(start, f"stream ends inside {what} (no newline)", truncated=True)
            newline = self._buf.find(b"\n", self._pos)
            stop = len(self._buf) if newline < 0 else newline
            piece = self._buf[self._pos : stop]
            self._pos = stop if newline < 0 else newline + 1
            yield piece
            if newline >= 0:
                return

    def read_number_line(self, keep: int, what: str) -> NumberLine:
        """Read up to a newline as C's number parsers see it (see `NumberLine`)."""
        kept: list[bytes] = []
        size = 0
        length = 0
        cut = False
        for piece in self._line_pieces(what):
            length += len(piece)
            if cut:
                continue
            nul = piece.find(b"\0")
            if nul >= 0:
                piece, cut = piece[:nul], True
            piece = _SPACE_RUN.sub(b" ", piece)
            if kept and kept[-1].endswith(b" ") and piece.startswith(b" "):
                piece = piece[1:]
            size += len(piece)
            if size <= keep:
                kept.append(piece)
        return NumberLine(b"".join(kept) if size <= keep else None, length, cut)

    def read_line(self, keep: int, what: str) -> bytes | None:
        """Read up to a newline; return it without the newline, or None when longer than `keep`."""
        kept: list[bytes] = []
        size = 0
        for piece in self._line_pieces(what):
            size += len(piece)
            if size <= keep:
                kept.append(piece)
        return b"".join(kept) if size <= keep else None


_SPACE_RUN = re.compile(rb"[ \t\v\f\r]+")


@dataclass(frozen=True)
class NumberLine:
    """A number argument line as a C string: cut at its first NUL, whitespace runs as one
    space (no parser here tells one run from another), `core` None when that is still
    longer than the caller keeps; `length` counts the raw bytes before the newline."""

    core: bytes | None
    length: int
    cut_at_nul: bool


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
    source: ByteSource,
    limits: Limits,
    tick: Callable[[], None],
    large: PayloadHook | None = None,
) -> Iterator[tuple[int, Opcode, ArgValue]]:
    """Yield `(offset, opcode, argument)` until STOP (included) or damage (raised).

    `large`, when given, sees each counted byte/text argument too long to keep before it
    is skipped (`LargePayload`): embedded pickles are found that way.
    """
    max_opcodes = limits.max_pickle_opcodes
    count = 0
    check_at = min(TICK_EVERY, max_opcodes + 1)
    fixed = FIXED_ARGS
    while True:
        count += 1
        if count >= check_at:
            check_at = opcode_checkpoint(source, count, max_opcodes, tick)
        # The opcode and a fixed-size argument straight from the buffer when they are
        # there (what `read_byte` and `read_exact` would return); anything else the slow way.
        buf = source._buf
        pos = source._pos
        offset = source._base + pos
        if pos + 9 <= len(buf):
            code = buf[pos]
            opcode = OPCODES.get(code)
            if opcode is None:
                source._pos = pos + 1
                raise PickleDamage(offset, f"byte 0x{code:02x} is not a pickle opcode")
            how = fixed.get(code)
            if how is not None:
                source._pos = pos + 1 + how.size
                arg: ArgValue = how.unpack_from(buf, pos + 1)[0] if how.size else None
                yield offset, opcode, arg
                if code == STOP:
                    return
                continue
            source._pos = pos + 1
        else:
            code = source.read_byte()
            if code < 0:
                raise PickleDamage(offset, "stream ends before STOP (truncated)", truncated=True)
            opcode = OPCODES.get(code)
            if opcode is None:
                raise PickleDamage(offset, f"byte 0x{code:02x} is not a pickle opcode")
        yield (
            offset,
            opcode,
            None if opcode.arg is Arg.NONE else read_arg(source, opcode, offset, large),
        )
        if code == STOP:
            return


def opcode_checkpoint(
    source: ByteSource, count: int, max_opcodes: int, tick: Callable[[], None]
) -> int:
    """Before the `count`th opcode: the deadline every `TICK_EVERY` opcodes, and the opcode
    limit; returns the count at which to call this again."""
    if count % TICK_EVERY == 0:
        tick()
    if count > max_opcodes:
        raise PickleDamage(
            source.offset,
            f"more than {max_opcodes} opcodes in one stream; rest not scanned",
            "MW-PICKLE-LIMIT",
        )
    return min(count - count % TICK_EVERY + TICK_EVERY, max_opcodes + 1)


class _Fixed:
    """An argument of a fixed size that needs no check: read with `unpack_from`."""

    __slots__ = ("size", "unpack_from")

    def __init__(self, layout: str) -> None:
        unpacker = struct.Struct(layout)
        self.size = unpacker.size
        self.unpack_from = unpacker.unpack_from


#: Opcodes whose argument `iter_opcodes` reads without `read_arg` (FRAME, whose length is
#: checked, is not one): by argument layout.
_FIXED_LAYOUTS = {
    Arg.NONE: "<0s",
    Arg.U1: "<B",
    Arg.U2: "<H",
    Arg.I4: "<i",
    Arg.U4: "<I",
    Arg.F8: ">d",
}
FIXED_ARGS: dict[int, _Fixed] = {
    code: _Fixed(_FIXED_LAYOUTS[op.arg]) for code, op in OPCODES.items() if op.arg in _FIXED_LAYOUTS
}
STOP = b"."[0]
_WHAT = {code: f"the argument of {op.name}" for code, op in OPCODES.items()}


def read_arg(
    source: ByteSource, opcode: Opcode, offset: int, large: PayloadHook | None = None
) -> ArgValue:
    arg = opcode.arg
    what = _WHAT[opcode.code]
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
    return _counted_arg(source, opcode, offset, what, large)


_LINE_ARGS = frozenset(
    {Arg.DECIMAL_LINE, Arg.FLOAT_LINE, Arg.QUOTED_LINE, Arg.UNICODE_LINE, Arg.ASCII_LINE}
)


def _line_arg(source: ByteSource, opcode: Opcode, offset: int, what: str) -> ArgValue:
    if opcode.arg is Arg.DECIMAL_LINE or opcode.arg is Arg.FLOAT_LINE:
        return _number_arg(source, opcode, offset, what)
    line = source.read_line(KEEP_TEXT, what)
    if line is None:
        if opcode.arg in (Arg.QUOTED_LINE, Arg.UNICODE_LINE):
            return Skipped("text", KEEP_TEXT)
        raise PickleDamage(offset, f"{what} is longer than {KEEP_TEXT} bytes")
    try:
        if opcode.arg is Arg.QUOTED_LINE:
            # load_string: outermost quotes stripped, then PyBytes_DecodeEscape.
            if len(line) < 2 or line[0] != line[-1] or line[:1] not in (b"'", b'"'):
                raise ValueError("the STRING argument is not quoted")
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)  # "\\q" is kept as is
                return codecs.escape_decode(line[1:-1])[0].decode("latin-1")
        if opcode.arg is Arg.UNICODE_LINE:
            return line.decode("raw-unicode-escape")
        return line.decode("ascii")
    except (ValueError, UnicodeDecodeError) as exc:
        raise PickleDamage(offset, f"{what} is not valid: {exc}") from None


def _number_arg(source: ByteSource, opcode: Opcode, offset: int, what: str) -> ArgValue:
    """INT, LONG, GET, PUT and FLOAT lines, read as `Modules/_pickle.c` reads them.

    - INT (`load_int`): C `strtol(s, &end, 0)` (leading whitespace, sign, `0x` hex and C
      octal `010` == 8), accepted when it ends at the newline or a NUL; otherwise
      `PyLong_FromString(s, NULL, 0)` (Python spellings: `0o17`, `0b11`, `1_000`,
      surrounding whitespace). A 2-character line that strtol reads as 0 or 1 (`01`,
      ` 1`, `+0`) is a bool, as protocol 0 writes True/False.
    - LONG: one trailing `L` dropped, then `PyLong_FromString(s, NULL, 0)`.
    - GET/PUT: `PyLong_FromString(s, NULL, 10)` (`010` == 10, `1_0`, whitespace).
    - FLOAT: `PyOS_string_to_double`: no whitespace or underscores, `inf`/`nan` words,
      overflow rejected, accepted up to the newline or a NUL.

    The line is a C string for all of them: whatever follows a NUL is ignored.
    """
    line = source.read_number_line(KEEP_TEXT, what)
    name = opcode.name
    if line.length < 1:
        raise PickleDamage(offset, f"{what} is empty (a loader rejects this)")
    if line.core is None:
        # More than KEEP_TEXT significant characters: an integer we need no value of
        # (GET/PUT keys and floats never are this long in anything a loader accepts).
        if name in ("INT", "LONG"):
            return Skipped("int", line.length)
        raise PickleDamage(offset, f"{what} is longer than {KEEP_TEXT} bytes")
    text = line.core
    try:
        if name == "INT":
            return c_load_int(text, line.length)
        if name == "LONG":
            if not line.cut_at_nul and text.endswith(b"L"):
                text = text[:-1]
            return int(text, 0)
        if name == "FLOAT":
            return c_load_float(text)
        return int(text, 10)  # GET, PUT
    except ValueError as exc:
        raise PickleDamage(offset, f"{what} is not valid: {exc}") from None


_SPACE = b" \t\n\v\f\r"
_C_LONG_MIN = -(2**63)
_C_LONG_MAX = 2**63 - 1


def c_strtol(text: bytes) -> tuple[int, int]:
    """C `strtol(text, &end, 0)` in the C locale: `(value, end)`, `end` 0 when no digits."""
    i = 0
    while i < len(text) and text[i] in _SPACE:
        i += 1
    negative = text[i : i + 1] == b"-"
    if text[i : i + 1] in (b"-", b"+"):
        i += 1
    base = 10
    if text[i : i + 1] == b"0":
        base = 8
        if text[i + 1 : i + 2] in (b"x", b"X") and text[i + 2 : i + 3] in _HEX_BYTES:
            base = 16
            i += 2
    digits = _DIGITS[base]
    start = i
    while i < len(text) and text[i] in digits:
        i += 1
    if i == start:
        return 0, 0
    value = int(text[start:i], base)
    return (-value if negative else value), i


_HEX = frozenset(b"0123456789abcdefABCDEF")
_HEX_BYTES = frozenset(bytes([c]) for c in _HEX)
_DIGITS = {8: frozenset(b"01234567"), 10: frozenset(b"0123456789"), 16: _HEX}


def c_load_int(text: bytes, length: int) -> int:
    """The value `load_int` pushes for a line whose C string is `text` (`length` raw bytes)."""
    value, end = c_strtol(text)
    ends_cleanly = end == len(text) if end else not text
    if ends_cleanly and _C_LONG_MIN <= value <= _C_LONG_MAX:
        if length == 2 and value in (0, 1):
            return bool(value)
        return value
    return int(text, 0)


_C_FLOAT = re.compile(
    rb"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf(?:inity)?|nan))"
)


def c_load_float(text: bytes) -> float:
    """The value `load_float` pushes for a line whose C string is `text`."""
    if not _C_FLOAT.fullmatch(text):
        raise ValueError("could not convert string to float")
    value = float(text)
    if math.isinf(value) and not text.lstrip(b"+-")[:1].isalpha():
        raise ValueError("value too large to convert to float")
    return value


def _name_line(source: ByteSource, opcode: Opcode, offset: int) -> str:
    line = source.read_line(1024, f"the module/name line of {opcode.name}")
    if line is None:
        raise PickleDamage(offset, f"{opcode.name} module or name is longer than 1024 bytes")
    if not line:
        raise PickleDamage(offset, f"{opcode.name} module or name is empty (a loader rejects this)")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError:
        raise PickleDamage(offset, f"{opcode.name} module or name is not UTF-8") from None


def _counted_arg(
    source: ByteSource, opcode: Opcode, offset: int, what: str, large: PayloadHook | None
) -> ArgValue:
    arg = opcode.arg
    if arg in (Arg.BYTES_U1, Arg.TEXT_U1, Arg.LONG_U1):
        length = source.read_exact(1, what)[0]
    elif arg is Arg.LONG_I4:
        length = int(_I4.unpack(source.read_exact(4, what))[0])
        if length < 0:
            raise PickleDamage(offset, f"{opcode.name} has a negative length ({length})")
    elif arg in (Arg.BYTES_I4, Arg.BYTES_U4, Arg.TEXT_U4):
        # BINSTRING's length is signed in pickletools but unsigned in _pickle.c
        # (calc_binsize): 0xffffffff is 4 GiB, not -1.
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
        payload = None
        if large is not None:
            payload = LargePayload(source, opcode, offset, length, as_text)
            large(payload)
        if payload is None or not payload.consumed:
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
