"""A bounded reader for CPython's `marshal` format, enough to list what a code object uses.

Keras stores a `Lambda` layer's function as marshalled bytecode. `marshal.loads`
must never see untrusted bytes (crafted input can crash the interpreter), so this
reads the format itself: every length is checked against the bytes present, nesting
and object counts are capped, and nothing is executed or turned into a real code object.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field

_FLAG_REF = 0x80
_MAX_DEPTH = 64
_MAX_OBJECTS = 200_000
#: Digits of a marshalled long beyond which the value is not built (only skipped).
_MAX_LONG_DIGITS = 64


class MarshalError(ValueError):
    """The bytes are not a marshalled object this reader understands."""


@dataclass
class CodeInfo:
    """The parts of a code object that say what it does: names it looks up and its constants."""

    name: str = ""
    names: list[str] = field(default_factory=list)
    constants: list[object] = field(default_factory=list)
    layout: str = ""

    def walk(self) -> list[CodeInfo]:
        """This code object and every code object nested in its constants."""
        found: list[CodeInfo] = []
        stack: list[CodeInfo] = [self]
        seen: set[int] = set()
        while stack:
            code = stack.pop()
            if id(code) in seen:
                continue
            seen.add(id(code))
            found.append(code)
            stack.extend(_nested_codes(code.constants))
        return found

    def all_names(self) -> list[str]:
        """Names looked up anywhere in this code (globals, attributes, imports), in order."""
        return [n for code in self.walk() for n in code.names]

    def all_strings(self) -> list[str]:
        """String constants anywhere in this code."""
        return [c for code in self.walk() for c in _flat(code.constants) if isinstance(c, str)]


def _flat(values: list[object]) -> list[object]:
    out: list[object] = []
    stack = list(values)
    while stack and len(out) < _MAX_OBJECTS:
        value = stack.pop()
        if isinstance(value, tuple | list | frozenset | set):
            stack.extend(value)
        else:
            out.append(value)
    return out


def _nested_codes(values: list[object]) -> list[CodeInfo]:
    return [v for v in _flat(values) if isinstance(v, CodeInfo)]


# Code object header: the number of int32 fields before the first object, and the
# positions (among the objects that follow) of co_names, co_consts and co_name.
# Tried newest first; the layout that consumes the input exactly is the one used.
_LAYOUTS: tuple[tuple[str, int, tuple[str, ...]], ...] = (
    # 3.11+: code, consts, names, localsplusnames, localspluskinds, filename, name, qualname,
    # firstlineno (int32), linetable, exceptiontable
    (
        "3.11+",
        5,
        ("code", "consts", "names", "lp", "lpk", "filename", "name", "qualname", "#", "lt", "et"),
    ),
    # 3.8-3.10: code, consts, names, varnames, freevars, cellvars, filename, name,
    # firstlineno (int32), lnotab
    ("3.8-3.10", 6, ("code", "consts", "names", "vn", "fv", "cv", "filename", "name", "#", "lt")),
    # 3.0-3.7: like 3.8 without posonlyargcount
    ("3.0-3.7", 5, ("code", "consts", "names", "vn", "fv", "cv", "filename", "name", "#", "lt")),
)


class _Reader:
    def __init__(self, data: bytes, layout: tuple[str, int, tuple[str, ...]]) -> None:
        self.data = data
        self.pos = 0
        self.refs: list[object] = []
        self.objects = 0
        self.layout = layout

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise MarshalError(f"needs {n} bytes at offset {self.pos}, input ends first")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def int32(self) -> int:
        value: int = struct.unpack("<i", self.take(4))[0]
        return value

    def count(self) -> int:
        n = self.int32()
        if n < 0 or n > len(self.data) - self.pos:
            raise MarshalError(f"count {n} at offset {self.pos - 4} exceeds the input")
        return n

    def read(self, depth: int) -> object:
        if depth > _MAX_DEPTH:
            raise MarshalError(f"objects nested deeper than {_MAX_DEPTH}")
        self.objects += 1
        if self.objects > _MAX_OBJECTS:
            raise MarshalError(f"more than {_MAX_OBJECTS} objects")
        code = self.take(1)[0]
        flag, kind = code & _FLAG_REF, chr(code & ~_FLAG_REF)
        slot = -1
        if flag:
            slot = len(self.refs)
            self.refs.append(None)
        value = self._value(kind, depth)
        if flag:
            self.refs[slot] = value
        return value

    def _value(self, kind: str, depth: int) -> object:
        if kind in "0NFTS.":
            return {"0": None, "N": None, "F": False, "T": True, "S": "StopIteration"}.get(
                kind, "..."
            )
        if kind == "i":
            return self.int32()
        if kind == "I":
            return int.from_bytes(self.take(8), "little", signed=True)
        if kind == "g":
            return float(struct.unpack("<d", self.take(8))[0])
        if kind == "y":
            return complex(*struct.unpack("<dd", self.take(16)))
        if kind in "fx":
            parts = [self.take(self.take(1)[0]) for _ in range(1 if kind == "f" else 2)]
            return b" ".join(parts).decode("ascii", errors="replace")
        if kind == "l":
            n = self.int32()
            digits = self.take(2 * min(abs(n), len(self.data)))
            if abs(n) > _MAX_LONG_DIGITS:
                return "<long>"
            value: int = sum(
                d << (15 * i) for i, (d,) in enumerate(struct.iter_unpack("<H", digits))
            )
            return -value if n < 0 else value
        if kind in "stuaA":
            raw = self.take(self.count())
            return raw if kind == "s" else raw.decode("utf-8", errors="replace")
        if kind in "zZ":
            return self.take(self.take(1)[0]).decode("latin-1")
        if kind == "r":
            index = self.int32()
            if not 0 <= index < len(self.refs):
                raise MarshalError(f"reference {index} to an object not yet read")
            return self.refs[index]
        if kind in "([<>":
            n = self.count()
            items = [self.read(depth + 1) for _ in range(n)]
            return items if kind == "[" else tuple(items)
        if kind == ")":
            return tuple(self.read(depth + 1) for _ in range(self.take(1)[0]))
        if kind == "{":
            pairs: list[object] = []
            while self.data[self.pos : self.pos + 1] != b"0":
                pairs.append((self.read(depth + 1), self.read(depth + 1)))
            self.take(1)
            return pairs
        if kind == ":":  # slice (3.14+)
            return tuple(self.read(depth + 1) for _ in range(3))
        if kind == "c":
            return self._code(depth)
        raise MarshalError(f"unknown marshal type {kind!r} at offset {self.pos - 1}")

    def _code(self, depth: int) -> CodeInfo:
        label, header_ints, fields = self.layout
        for _ in range(header_ints):
            self.int32()
        info = CodeInfo(layout=label)
        for name in fields:
            if name == "#":
                self.int32()
                continue
            value = self.read(depth + 1)
            if name == "consts":
                info.constants = list(value) if isinstance(value, tuple | list) else [value]
            elif name == "names" and isinstance(value, tuple | list):
                info.names = [n for n in value if isinstance(n, str)]
            elif name == "name" and isinstance(value, str):
                info.name = value
        return info


def read_code(data: bytes) -> CodeInfo:
    """Parse marshalled bytes holding a code object; raise `MarshalError` if none fits.

    The Python version that wrote the bytes is unknown, so each known code layout is
    tried and the first that reads a code object covering the whole input wins.
    """
    errors: list[str] = []
    for layout in _LAYOUTS:
        reader = _Reader(data, layout)
        try:
            value = reader.read(0)
        except MarshalError as exc:
            errors.append(f"{layout[0]}: {exc}")
            continue
        if isinstance(value, CodeInfo) and reader.pos == len(data):
            return value
        errors.append(f"{layout[0]}: not a code object spanning the input")
    raise MarshalError("; ".join(errors))
