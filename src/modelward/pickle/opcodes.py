"""Pickle opcodes of protocols 0 to 5 and how each one's argument is encoded.

Our own table (not `pickletools.genops`) so the walker decides how much of an
argument to read, checks lengths before allocating, and survives damage.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Arg(enum.Enum):
    """How an opcode's inline argument is laid out in the stream."""

    NONE = enum.auto()
    U1 = enum.auto()
    U2 = enum.auto()
    I4 = enum.auto()
    U4 = enum.auto()
    U8 = enum.auto()
    F8 = enum.auto()
    DECIMAL_LINE = enum.auto()  # INT, LONG, GET, PUT: ASCII number up to a newline
    FLOAT_LINE = enum.auto()
    QUOTED_LINE = enum.auto()  # STRING: a Python-quoted byte string
    UNICODE_LINE = enum.auto()  # UNICODE: raw-unicode-escape text
    ASCII_LINE = enum.auto()  # PERSID
    TWO_LINES = enum.auto()  # GLOBAL, INST: module and name
    BYTES_U1 = enum.auto()
    BYTES_I4 = enum.auto()
    BYTES_U4 = enum.auto()
    BYTES_U8 = enum.auto()
    TEXT_U1 = enum.auto()
    TEXT_U4 = enum.auto()
    TEXT_U8 = enum.auto()
    LONG_U1 = enum.auto()  # LONG1: little-endian two's complement integer
    LONG_I4 = enum.auto()  # LONG4


@dataclass(frozen=True)
class Opcode:
    name: str
    code: int
    arg: Arg


_TABLE = (
    # protocol 0 and 1
    ("MARK", b"(", Arg.NONE),
    ("STOP", b".", Arg.NONE),
    ("POP", b"0", Arg.NONE),
    ("POP_MARK", b"1", Arg.NONE),
    ("DUP", b"2", Arg.NONE),
    ("FLOAT", b"F", Arg.FLOAT_LINE),
    ("INT", b"I", Arg.DECIMAL_LINE),
    ("BININT", b"J", Arg.I4),
    ("BININT1", b"K", Arg.U1),
    ("LONG", b"L", Arg.DECIMAL_LINE),
    ("BININT2", b"M", Arg.U2),
    ("NONE", b"N", Arg.NONE),
    ("PERSID", b"P", Arg.ASCII_LINE),
    ("BINPERSID", b"Q", Arg.NONE),
    ("REDUCE", b"R", Arg.NONE),
    ("STRING", b"S", Arg.QUOTED_LINE),
    ("BINSTRING", b"T", Arg.BYTES_I4),
    ("SHORT_BINSTRING", b"U", Arg.BYTES_U1),
    ("UNICODE", b"V", Arg.UNICODE_LINE),
    ("BINUNICODE", b"X", Arg.TEXT_U4),
    ("APPEND", b"a", Arg.NONE),
    ("BUILD", b"b", Arg.NONE),
    ("GLOBAL", b"c", Arg.TWO_LINES),
    ("DICT", b"d", Arg.NONE),
    ("EMPTY_DICT", b"}", Arg.NONE),
    ("APPENDS", b"e", Arg.NONE),
    ("GET", b"g", Arg.DECIMAL_LINE),
    ("BINGET", b"h", Arg.U1),
    ("INST", b"i", Arg.TWO_LINES),
    ("LONG_BINGET", b"j", Arg.U4),
    ("LIST", b"l", Arg.NONE),
    ("EMPTY_LIST", b"]", Arg.NONE),
    ("OBJ", b"o", Arg.NONE),
    ("PUT", b"p", Arg.DECIMAL_LINE),
    ("BINPUT", b"q", Arg.U1),
    ("LONG_BINPUT", b"r", Arg.U4),
    ("SETITEM", b"s", Arg.NONE),
    ("TUPLE", b"t", Arg.NONE),
    ("EMPTY_TUPLE", b")", Arg.NONE),
    ("SETITEMS", b"u", Arg.NONE),
    ("BINFLOAT", b"G", Arg.F8),
    # protocol 2
    ("PROTO", b"\x80", Arg.U1),
    ("NEWOBJ", b"\x81", Arg.NONE),
    ("EXT1", b"\x82", Arg.U1),
    ("EXT2", b"\x83", Arg.U2),
    ("EXT4", b"\x84", Arg.I4),
    ("TUPLE1", b"\x85", Arg.NONE),
    ("TUPLE2", b"\x86", Arg.NONE),
    ("TUPLE3", b"\x87", Arg.NONE),
    ("NEWTRUE", b"\x88", Arg.NONE),
    ("NEWFALSE", b"\x89", Arg.NONE),
    ("LONG1", b"\x8a", Arg.LONG_U1),
    ("LONG4", b"\x8b", Arg.LONG_I4),
    # protocol 3
    ("BINBYTES", b"B", Arg.BYTES_U4),
    ("SHORT_BINBYTES", b"C", Arg.BYTES_U1),
    # protocol 4
    ("SHORT_BINUNICODE", b"\x8c", Arg.TEXT_U1),
    ("BINUNICODE8", b"\x8d", Arg.TEXT_U8),
    ("BINBYTES8", b"\x8e", Arg.BYTES_U8),
    ("EMPTY_SET", b"\x8f", Arg.NONE),
    ("ADDITEMS", b"\x90", Arg.NONE),
    ("FROZENSET", b"\x91", Arg.NONE),
    ("NEWOBJ_EX", b"\x92", Arg.NONE),
    ("STACK_GLOBAL", b"\x93", Arg.NONE),
    ("MEMOIZE", b"\x94", Arg.NONE),
    ("FRAME", b"\x95", Arg.U8),
    # protocol 5
    ("BYTEARRAY8", b"\x96", Arg.BYTES_U8),
    ("NEXT_BUFFER", b"\x97", Arg.NONE),
    ("READONLY_BUFFER", b"\x98", Arg.NONE),
)

#: Opcode by its byte value; a byte missing here is not a pickle opcode.
OPCODES: dict[int, Opcode] = {code[0]: Opcode(name, code[0], arg) for name, code, arg in _TABLE}

#: Highest protocol we know; `PROTO` above it is reported, not guessed at.
HIGHEST_PROTOCOL = 5
