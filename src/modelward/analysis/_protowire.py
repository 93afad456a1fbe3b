"""A minimal, bounded reader for the protobuf wire format.

Scanners for protobuf-based formats (TensorFlow SavedModel, Keras metadata)
read only the few fields they need without a compiled schema or a TensorFlow
install. Every length is checked against the bytes actually present, and
nesting is bounded by the callers (they walk a fixed schema), so crafted input
can only raise `ProtoError`, never allocate more than it holds.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from functools import cache
from typing import Any

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


# --- Decoding a message the way protobuf's own parser does --------------------------------
#
# The ONNX scanner decodes nodes, functions and training graphs without the `onnx` package
# (its import costs more than most scans), yet must refuse exactly the bytes protobuf's parser
# (upb) refuses, so a model `onnx.load` rejects is still reported as malformed. These rules were
# checked against upb: a tag is at most 5 bytes and fits 32 bits (field number 0 is refused,
# except inside a group), a length at most 5 bytes, other varints at most 10 (bits past 64
# dropped); groups (wire types 3 and 4) of unknown fields are skipped when they close with
# their own number; a field whose wire type differs from its declaration is an unknown field,
# except that repeated numbers may also come packed; and messages and groups together nest at
# most `MAX_DEPTH` levels below the outermost message.

#: protobuf's default recursion limit: levels of messages and groups below the outermost one.
MAX_DEPTH = 100
_TAG_BYTES = 5
_LENGTH_BYTES = 5
_UINT32 = 1 << 32
_UINT64 = (1 << 64) - 1
#: Ten bytes in a row with the continuation bit set: a varint longer than protobuf allows.
_OVERLONG_VARINT = rb"[\x80-\xff]{10}"


class MessageSchema:
    """What a parser needs to know of one message type to check it: its nested fields.

    (A plain class, not a dataclass: the decorator would cost every scan's start-up.)
    """

    __slots__ = ("messages", "packed")

    def __init__(self, messages: Mapping[int, str], packed: Mapping[int, int]) -> None:
        #: Field number → message type, for fields holding messages (checked recursively).
        self.messages = messages
        #: Field number → element wire type (VARINT, FIXED32, FIXED64) of repeated numbers,
        #: which may also arrive packed in one length-delimited field.
        self.packed = packed


#: A decoded message: the kept fields, each with its values in order (protobuf's rules apply:
#: the last value of a singular field wins, the occurrences of a singular message merge).
#: Values are `bytes` (strings), `int` (varints, all bits kept) or nested `Decoded`. Read-only.
Decoded = dict[int, list[Any]]
#: What an empty message (or one with no kept field) decodes to: one shared, never-changed
#: dict, so a crafted message of millions of empty ones costs a reference each.
_EMPTY: Decoded = {}
#: Which fields to keep, per message type: field number → the wire type it is declared with.
Keep = Mapping[str, Mapping[int, int]]


def _short_varint(data: memoryview, pos: int, limit: int, what: str) -> tuple[int, int]:
    result = 0
    for i in range(limit):
        if pos + i >= len(data):
            raise ProtoError(f"truncated {what} at offset {pos}")
        byte = data[pos + i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result, pos + i + 1
    raise ProtoError(f"{what} longer than {limit} bytes at offset {pos}")


def _scalar(data: memoryview, pos: int, wire_type: int, start: int) -> tuple[int, int]:
    """The value of a varint or fixed field whose tag ended at `pos`, and the next position."""
    if wire_type == VARINT:
        if pos < len(data) and data[pos] < 0x80:
            return data[pos], pos + 1
        return read_varint(data, pos)
    if wire_type in (FIXED64, FIXED32):
        width = 8 if wire_type == FIXED64 else 4
        if pos + width > len(data):
            raise ProtoError(f"truncated fixed field at offset {start}")
        return int.from_bytes(data[pos : pos + width], "little"), pos + width
    if wire_type == END_GROUP:
        raise ProtoError(f"end of a group that was not opened at offset {start}")
    raise ProtoError(f"invalid wire type {wire_type} at offset {start}")


def _skip_group(data: memoryview, pos: int, number: int, depth: int) -> int:
    """The position after the group opened with field `number` just before `pos`."""
    if depth < 1:
        raise ProtoError(f"messages nested deeper than {MAX_DEPTH} levels")
    open_groups = [number]
    while open_groups:
        start = pos
        key, pos = _short_varint(data, pos, _TAG_BYTES, "tag")
        inner, wire_type = key >> 3, key & 7
        if key >= _UINT32:  # inside a group, upb takes field number 0
            raise ProtoError(f"invalid tag {key} at offset {start}")
        if wire_type == START_GROUP:
            if len(open_groups) >= depth:
                raise ProtoError(f"messages nested deeper than {MAX_DEPTH} levels")
            open_groups.append(inner)
        elif wire_type == END_GROUP:
            if open_groups.pop() != inner:
                raise ProtoError(f"group closed with the wrong field number at offset {start}")
        elif wire_type == LEN:
            length, pos = _short_varint(data, pos, _LENGTH_BYTES, "length")
            if length > len(data) - pos:
                raise ProtoError(f"field at offset {start} claims {length} bytes past the end")
            pos += length
        else:
            _, pos = _scalar(data, pos, wire_type, start)
    return pos


def decode_message(
    data: memoryview,
    schemas: Mapping[str, MessageSchema],
    name: str,
    keep: Keep | None = None,
    depth: int = MAX_DEPTH,
    tick: Callable[[], None] | None = None,
) -> Decoded:
    """Check `data` as message `name` the way protobuf's parser does, keeping the fields `keep`
    names (and, inside kept message fields, theirs).

    Raises `ProtoError` where protobuf's parser would refuse the message: every nested message
    is checked, kept or not, to `depth` levels. `tick` (a deadline check) is called once per
    message.
    """
    if tick is not None:
        tick()
    schema = schemas[name]
    wanted = keep.get(name, {}) if keep is not None else {}
    found: Decoded = {}
    pos = 0
    end = len(data)
    while pos < end:
        start = pos
        key = data[pos]
        if key < 0x80:  # one-byte tags: fields 1-15, nearly all of them
            pos += 1
        else:
            key, pos = _short_varint(data, pos, _TAG_BYTES, "tag")
            if key >= _UINT32:
                raise ProtoError(f"invalid tag {key} at offset {start}")
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtoError(f"field number 0 at offset {start}")
        value: Any
        if wire_type == LEN:
            if pos < end and data[pos] < 0x80:
                length = data[pos]
                pos += 1
            else:
                length, pos = _short_varint(data, pos, _LENGTH_BYTES, "length")
            if length > end - pos:
                raise ProtoError(
                    f"field {number} at offset {start} claims {length} bytes, {end - pos} remain"
                )
            payload = data[pos : pos + length]
            pos += length
            nested = schema.messages.get(number)
            if nested is not None:
                if depth < 1:
                    raise ProtoError(f"messages nested deeper than {MAX_DEPTH} levels")
                if not length:
                    value = _EMPTY
                else:
                    inner_keep = keep if number in wanted else None
                    value = decode_message(payload, schemas, nested, inner_keep, depth - 1, tick)
            elif number in schema.packed:
                _check_packed(payload, schema.packed[number], number)
                continue
            elif number in wanted:
                value = bytes(payload)
            else:
                continue
        elif wire_type == START_GROUP:
            pos = _skip_group(data, pos, number, depth)
            continue
        elif wanted.get(number) != wire_type and key < 0x80 and wire_type in _RUN_ELEMENTS:
            # A field nobody reads, often the first of thousands (a tree ensemble's unpacked
            # ints): skip the run of them in one regular-expression match.
            match = _run_of(key).match(data, start)
            pos = match.end() if match else _scalar(data, pos, wire_type, start)[1]
            continue
        else:
            value, pos = _scalar(data, pos, wire_type, start)
        if wanted.get(number) == wire_type:
            found.setdefault(number, []).append(value)
    return found or _EMPTY


#: What follows the tag of one varint, fixed64 or fixed32 field.
_RUN_ELEMENTS = {
    VARINT: rb"[\x80-\xff]{0,9}[\x00-\x7f]",
    FIXED64: rb"[\x00-\xff]{8}",
    FIXED32: rb"[\x00-\xff]{4}",
}


@cache
def _run_of(key: int) -> re.Pattern[bytes]:
    """Consecutive well-formed fields with the one-byte tag `key`."""
    return _pattern(rb"(?:" + re.escape(bytes([key])) + _RUN_ELEMENTS[key & 7] + rb")+")


@cache
def _pattern(source: bytes) -> re.Pattern[bytes]:
    """Compiled on first use, not at import: most scans decode no protobuf at all."""
    return re.compile(source)


def _check_packed(data: memoryview, element: int, number: int) -> None:
    if element == VARINT:
        if (len(data) and data[-1] & 0x80) or _pattern(_OVERLONG_VARINT).search(data):
            raise ProtoError(f"packed field {number} holds a broken varint")
    elif len(data) % (8 if element == FIXED64 else 4):
        raise ProtoError(f"packed field {number} is not a whole number of values")


def int64(value: int) -> int:
    """A varint as protobuf's int64: the low 64 bits, two's complement."""
    value &= _UINT64
    return value - (1 << 64) if value >> 63 else value


def int32(value: int) -> int:
    """A varint as protobuf's int32 (and enums): the low 32 bits, two's complement."""
    value &= _UINT32 - 1
    return value - _UINT32 if value >> 31 else value
