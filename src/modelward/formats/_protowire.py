"""A minimal, bounded reader for the protobuf wire format.

Scanners for protobuf-based formats (TensorFlow SavedModel, Keras metadata)
read only the few fields they need without a compiled schema or a TensorFlow
install. Every length is checked against the bytes actually present, and
nesting is bounded by the callers (they walk a fixed schema), so crafted input
can only raise `ProtoError`, never allocate more than it holds.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

VARINT = 0
FIXED64 = 1
LEN = 2
START_GROUP = 3
END_GROUP = 4
FIXED32 = 5

#: A varint never needs more than ten bytes for 64 bits.
_MAX_VARINT_BYTES = 10


class ProtoError(ValueError):
    """The bytes are not a well-formed protobuf message."""


@dataclass(frozen=True)
class Field:
    """One field occurrence: its number, wire type and value.

    `value` is an int for varint/fixed fields and a `memoryview` slice (no copy)
    for length-delimited ones; `offset` is where the field's tag starts.
    """

    number: int
    wire_type: int
    value: int | memoryview
    offset: int

    @property
    def data(self) -> memoryview:
        """The payload of a length-delimited field."""
        if not isinstance(self.value, memoryview):
            raise ProtoError(f"field {self.number} is not length-delimited")
        return self.value

    def text(self, limit: int = 4096) -> str:
        """A length-delimited field as (truncated, lossily decoded) UTF-8 text."""
        return bytes(self.data[:limit]).decode("utf-8", errors="replace")


def read_varint(data: memoryview, pos: int) -> tuple[int, int]:
    """Decode the varint at `pos`; return (value, next position)."""
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(data):
            raise ProtoError(f"truncated varint at offset {pos}")
        byte = data[pos + i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos + i + 1
    raise ProtoError(f"varint longer than {_MAX_VARINT_BYTES} bytes at offset {pos}")


def iter_fields(data: bytes | memoryview) -> Iterator[Field]:
    """Yield the top-level fields of one message, in order; raise `ProtoError` if malformed.

    Groups (wire types 3/4, deprecated) are rejected: no format we read uses them.
    """
    view = data if isinstance(data, memoryview) else memoryview(data)
    pos = 0
    end = len(view)
    while pos < end:
        start = pos
        key, pos = read_varint(view, pos)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtoError(f"field number 0 at offset {start}")
        value: int | memoryview
        if wire_type == VARINT:
            value, pos = read_varint(view, pos)
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise ProtoError(f"truncated fixed64 at offset {start}")
            value = int.from_bytes(view[pos : pos + 8], "little")
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise ProtoError(f"truncated fixed32 at offset {start}")
            value = int.from_bytes(view[pos : pos + 4], "little")
            pos += 4
        elif wire_type == LEN:
            length, pos = read_varint(view, pos)
            if length > end - pos:
                raise ProtoError(
                    f"field {number} at offset {start} claims {length} bytes, {end - pos} remain"
                )
            value = view[pos : pos + length]
            pos += length
        else:
            raise ProtoError(f"unsupported wire type {wire_type} at offset {start}")
        yield Field(number, wire_type, value, start)


def fields_of(data: bytes | memoryview, number: int) -> Iterator[Field]:
    """The occurrences of field `number` in one message."""
    return (f for f in iter_fields(data) if f.number == number)


def string_field(data: bytes | memoryview, number: int, default: str = "") -> str:
    """The last occurrence of string field `number` (protobuf's merge rule), or `default`."""
    found = default
    for f in fields_of(data, number):
        found = f.text()
    return found
