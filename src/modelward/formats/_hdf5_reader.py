"""A bounded, pure-Python reader of the root-group attributes of an HDF5 file.

Only what the `hdf5` scanner needs is read: the superblock (versions 0-3), the root
group's object header (version 1 or 2, with its continuation chunks) and, in it, the
attributes the caller asks for by name, stored compactly in the header or densely
(fractal heap + version 2 B-tree name index, what HDF5 uses for many or large
attributes), shared through a committed datatype or the shared-message table.
Values are decoded as h5py hands them to Keras: a scalar fixed-length string is bytes,
a scalar variable-length string (global heap) is str, anything else is "not text".

Hostile input is bounded: every address and length is checked against the file size,
every read is charged to a byte budget, chunk chains, B-tree nodes and heap blocks are
counted and visited once, and `tick` (the scan deadline) runs before every read. A file
the HDF5 library would refuse (bad checksum, truncated, unknown versions) raises
`Hdf5Error`, whose message is the evidence of a finding. Nothing here imports numpy
or h5py, and datasets are never read.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from typing import BinaryIO

SIGNATURE = b"\x89HDF\r\n\x1a\n"

#: Object header chunks (first chunk and continuations) one header may have.
MAX_CHUNKS = 4096
#: Messages one object header may hold, over all its chunks.
MAX_MESSAGES = 65536
#: Structures (headers, B-tree nodes, heap blocks, global heap objects) one file may cost.
MAX_STRUCTURES = 200_000
#: Deepest B-tree or fractal heap indirect block nesting accepted.
MAX_DEPTH = 16
#: Largest B-tree node or heap block read in one piece (HDF5's own are 512 B to 64 KiB).
MAX_BLOCK = 16 * 1024 * 1024
#: Bytes read on top of twice the value limit before the reader gives up.
EXTRA_BUDGET = 64 * 1024 * 1024

# Object header message types.
_DATASPACE = 0x01
_DATATYPE = 0x03
_ATTRIBUTE = 0x0C
_SHARED_TABLE = 0x0F
_CONTINUATION = 0x10
_ATTRIBUTE_INFO = 0x15
# Datatype classes.
_STRING = 3
_VLEN = 9


class Hdf5Error(Exception):
    """The file is not HDF5 the library would read, or it breaks a bound; the message says why."""


@dataclass
class RootAttributes:
    """The wanted root attributes: text values, sizes over the limit, and those not text."""

    texts: dict[str, str] = field(default_factory=dict)
    #: Attribute name to its size in bytes (storage size, or the string's length).
    oversize: dict[str, int] = field(default_factory=dict)
    not_text: list[str] = field(default_factory=list)


def read_root_attributes(
    stream: BinaryIO,
    size: int,
    base: int,
    wanted: Collection[str],
    limit: int,
    tick: Callable[[], None],
) -> RootAttributes:
    """Read the `wanted` root attributes of the HDF5 file in `stream` (`size` bytes, the
    superblock at `base`). Values over `limit` bytes are reported by size, not read.

    Raises `Hdf5Error` for a file the HDF5 library would not open or read.
    """
    reader = _Reader(stream, size, base, limit, tick)
    try:
        return reader.root_attributes(wanted)
    except (struct.error, IndexError, ValueError, OverflowError, RecursionError) as exc:
        # Every decoder above checks its bounds; this net keeps a missed one a finding.
        raise Hdf5Error(f"unreadable structure ({type(exc).__name__}: {exc})") from exc


# --- checksums --------------------------------------------------------------------------------

_M = 0xFFFFFFFF


def lookup3(data: bytes, initval: int = 0) -> int:
    """Bob Jenkins' lookup3 `hashlittle`, the checksum of HDF5 metadata (and attribute names)."""
    length = len(data)
    a = b = c = (0xDEADBEEF + length + initval) & _M
    blocks = (length - 1) // 12 if length else 0
    words: tuple[int, ...] = struct.unpack_from(f"<{3 * blocks}I", data)
    for i in range(0, 3 * blocks, 3):
        a = (a + words[i]) & _M
        b = (b + words[i + 1]) & _M
        c = (c + words[i + 2]) & _M
        a = (a - c) & _M
        a ^= ((c << 4) | (c >> 28)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 6) | (a >> 26)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 8) | (b >> 24)) & _M
        b = (b + a) & _M
        a = (a - c) & _M
        a ^= ((c << 16) | (c >> 16)) & _M
        c = (c + b) & _M
        b = (b - a) & _M
        b ^= ((a << 19) | (a >> 13)) & _M
        a = (a + c) & _M
        c = (c - b) & _M
        c ^= ((b << 4) | (b >> 28)) & _M
        b = (b + a) & _M
    tail = data[12 * blocks :]
    if not tail:
        return c
    padded = tail + bytes(12 - len(tail))
    ta, tb, tc = (int.from_bytes(padded[i : i + 4], "little") for i in (0, 4, 8))
    a = (a + ta) & _M
    b = (b + tb) & _M
    c = (c + tc) & _M
    c ^= b
    c = (c - (((b << 14) | (b >> 18)) & _M)) & _M
    a ^= c
    a = (a - (((c << 11) | (c >> 21)) & _M)) & _M
    b ^= a
    b = (b - (((a << 25) | (a >> 7)) & _M)) & _M
    c ^= b
    c = (c - (((b << 16) | (b >> 16)) & _M)) & _M
    a ^= c
    a = (a - (((c << 4) | (c >> 28)) & _M)) & _M
    b ^= a
    b = (b - (((a << 14) | (a >> 18)) & _M)) & _M
    c ^= b
    c = (c - (((b << 24) | (b >> 8)) & _M)) & _M
    return c


def _check_sum(image: bytes, what: str) -> None:
    """The last 4 bytes of `image` are the lookup3 checksum of the rest."""
    if len(image) < 4:
        raise Hdf5Error(f"{what}: too short for its checksum")
    stored = int.from_bytes(image[-4:], "little")
    if lookup3(image[:-4]) != stored:
        raise Hdf5Error(f"{what}: incorrect metadata checksum")


# --- small decoders ---------------------------------------------------------------------------


class _Cursor:
    """Reads little-endian fields from bytes; running past the end is an `Hdf5Error`."""

    def __init__(self, data: bytes, what: str, offset_size: int, length_size: int) -> None:
        self.data = data
        self.pos = 0
        self.what = what
        self.offset_size = offset_size
        self.length_size = length_size

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise Hdf5Error(f"{self.what}: truncated")
        piece = self.data[self.pos : self.pos + n]
        self.pos += n
        return piece

    def uint(self, n: int) -> int:
        return int.from_bytes(self.take(n), "little")

    def address(self) -> int | None:
        """A file address, or None for the undefined address (all bits set)."""
        raw = self.take(self.offset_size)
        return None if raw == b"\xff" * self.offset_size else int.from_bytes(raw, "little")

    def length(self) -> int:
        return self.uint(self.length_size)


def _enc_size(value: int) -> int:
    """Bytes HDF5 uses to encode numbers up to `value` (H5VM_limit_enc_size)."""
    return max(value.bit_length() - 1, 0) // 8 + 1


@dataclass
class _Message:
    type: int
    flags: int
    data: bytes


@dataclass
class _Header:
    version: int
    messages: list[_Message]

    def first(self, kind: int) -> _Message | None:
        return next((m for m in self.messages if m.type == kind), None)


class _View:
    """Bytes of one stored object (attribute message): in memory or a region of the file."""

    def __init__(self, length: int, fetch: Callable[[int, int], bytes]) -> None:
        self.length = length
        self._fetch = fetch

    @classmethod
    def of(cls, data: bytes) -> _View:
        return cls(len(data), lambda offset, n: data[offset : offset + n])

    def get(self, offset: int, n: int, what: str) -> bytes:
        if offset < 0 or n < 0 or offset + n > self.length:
            raise Hdf5Error(f"{what}: runs past the end of its message")
        return self._fetch(offset, n)


@dataclass
class _Attribute:
    """An attribute message, decoded up to its name; the rest is read only when wanted."""

    name: bytes
    view: _View
    flags: int
    datatype: tuple[int, int]  # offset, size
    dataspace: tuple[int, int]
    data_offset: int


# --- the reader -------------------------------------------------------------------------------


class _Reader:
    def __init__(
        self, stream: BinaryIO, size: int, base: int, limit: int, tick: Callable[[], None]
    ) -> None:
        self.stream = stream
        self.size = size
        self.base = base
        self.limit = limit
        self.tick = tick
        self.budget = 2 * limit + EXTRA_BUDGET
        self.used = 0
        self.structures = 0
        self.offset_size = 8
        self.length_size = 8
        self.extension: int | None = None
        self.heaps: dict[int, _FractalHeap] = {}
        self.shared_heaps: dict[int, int] | None = None

    # Raw access.

    def read(self, address: int, n: int, what: str) -> bytes:
        """`n` bytes at `address` (relative to the superblock), inside the file."""
        start = self.base + address
        if address < 0 or n < 0 or start + n > self.size:
            raise Hdf5Error(f"{what} at address {address} (+{n} bytes) is past the end of the file")
        self.used += n
        if self.used > self.budget:
            raise Hdf5Error(f"more than {self.budget} bytes of metadata read; not a sane file")
        self.tick()
        self.stream.seek(start)
        data = self.stream.read(n)
        if len(data) != n:
            raise Hdf5Error(f"{what}: short read at address {address}")
        return data

    def count(self, what: str) -> None:
        self.structures += 1
        if self.structures > MAX_STRUCTURES:
            raise Hdf5Error(f"more than {MAX_STRUCTURES} structures visited (at a {what})")

    def cursor(self, data: bytes, what: str) -> _Cursor:
        return _Cursor(data, what, self.offset_size, self.length_size)

    # Superblock.

    def root_attributes(self, wanted: Collection[str]) -> RootAttributes:
        root = self.superblock()
        if self.extension is not None:
            extension = self.object_header(self.extension, "superblock extension")
            table = extension.first(_SHARED_TABLE)
            if table is not None:
                self.shared_heaps = self.shared_message_table(table.data)
        header = self.object_header(root, "root group object header")
        return self.attributes(header, wanted)

    def superblock(self) -> int:
        """Parse the superblock; returns the root group's object header address."""
        fixed = self.read(0, min(self.size - self.base, 256), "superblock")
        if not fixed.startswith(SIGNATURE) or len(fixed) < 16:
            raise Hdf5Error("no HDF5 superblock signature")
        version = fixed[8]
        if version in (0, 1):
            self.offset_size, self.length_size = fixed[13], fixed[14]
            start = 24 if version == 0 else 28
        elif version in (2, 3):
            self.offset_size, self.length_size = fixed[9], fixed[10]
            start = 12
        else:
            raise Hdf5Error(f"superblock version {version} is unknown")
        if self.offset_size not in (2, 4, 8) or self.length_size not in (2, 4, 8):
            raise Hdf5Error(
                f"superblock: sizes of offsets ({self.offset_size}) and lengths"
                f" ({self.length_size}) not supported"
            )
        cur = self.cursor(fixed, "superblock")
        cur.pos = start
        cur.address()  # base address: HDF5 uses where the superblock is
        if version in (0, 1):
            cur.address()  # free-space info
            eof = cur.address()
            driver = cur.address()
            cur.address()  # root symbol table entry: link name offset
            root = cur.address()
            cur.take(4 + 4 + 16)  # cache type, reserved, scratch pad
            if driver is not None:
                self.check_driver(driver)
        else:
            self.extension = cur.address()
            eof = cur.address()
            root = cur.address()
            _check_sum(fixed[: cur.pos + 4], "superblock")
            flags = fixed[11]
            if version == 3 and flags & 0x05:
                raise Hdf5Error(
                    "file is already open for write (may use <h5clear file> to clear file"
                    " consistency flags)"
                )
        # HDF5 compares the stored end of file with the whole file's size (H5F__super_read).
        if eof is None or eof > self.size:
            raise Hdf5Error(
                f"truncated file: eof = {self.size - self.base}, sblock->base_addr = {self.base},"
                f" stored_eof = {eof}"
            )
        if root is None:
            raise Hdf5Error("superblock: the root group has no address")
        return root

    def check_driver(self, address: int) -> None:
        """A driver info block names a multi-file driver h5py's default driver refuses."""
        block = self.read(address, 16, "driver info block")
        name = block[8:16]
        if name in (b"NCSAmult", b"NCSAfami"):
            kind = "multi" if name == b"NCSAmult" else "family"
            raise Hdf5Error(f"{kind} driver should be used (file is part of a {kind} file set)")

    # Object headers.

    def object_header(self, address: int, what: str) -> _Header:
        self.count(what)
        if self.read(address, 4, what) == b"OHDR":
            return self.header_v2(address, what)
        prefix = self.read(address, 16, what)
        if prefix[0] != 1:
            raise Hdf5Error(f"{what}: bad object header version {prefix[0]}")
        first = int.from_bytes(prefix[8:12], "little")
        header = _Header(1, [])
        self.chunks(header, [(address + 16, first)], what)
        return header

    def header_v2(self, address: int, what: str) -> _Header:
        start = self.read(address, 6, what)
        if start[4] != 2:
            raise Hdf5Error(f"{what}: bad object header version {start[4]}")
        flags = start[5]
        if flags & 0xC0:
            raise Hdf5Error(f"{what}: unknown object header status flag(s)")
        size_bytes = 1 << (flags & 0x03)
        prefix = 6 + (16 if flags & 0x20 else 0) + (4 if flags & 0x10 else 0)
        raw = self.read(address + prefix, size_bytes, what)
        first = int.from_bytes(raw, "little")
        if first > MAX_BLOCK:
            raise Hdf5Error(f"{what}: first chunk of {first} bytes is over {MAX_BLOCK}")
        image = self.read(address, prefix + size_bytes + first + 4, what)
        _check_sum(image, what)
        header = _Header(2, [])
        body = image[prefix + size_bytes : -4]
        self.messages(header, body, bool(flags & 0x04), what)
        pending: list[tuple[int, int]] = []
        for message in header.messages:
            if message.type == _CONTINUATION:
                pending.append(self.continuation(message.data, what))
        self.chunks(header, pending, what, flags=flags, already=len(header.messages))
        return header

    def continuation(self, data: bytes, what: str) -> tuple[int, int]:
        cur = self.cursor(data, f"{what} continuation message")
        address = cur.address()
        length = cur.length()
        if address is None:
            raise Hdf5Error(f"{what}: continuation to an undefined address")
        return address, length

    def chunks(
        self,
        header: _Header,
        pending: list[tuple[int, int]],
        what: str,
        flags: int = 0,
        already: int = 0,
    ) -> None:
        """Read the chunks in `pending` and those their continuation messages name, once each."""
        seen: set[int] = set()
        done = already
        count = 0
        while pending:
            address, length = pending.pop(0)
            if address in seen:
                raise Hdf5Error(f"{what}: continuation chunks form a cycle")
            seen.add(address)
            count += 1
            if count > MAX_CHUNKS:
                raise Hdf5Error(f"{what}: more than {MAX_CHUNKS} chunks")
            if length > MAX_BLOCK:
                raise Hdf5Error(f"{what}: chunk of {length} bytes is over {MAX_BLOCK}")
            self.count(what)
            image = self.read(address, length, f"{what} chunk")
            if header.version == 2:
                if not image.startswith(b"OCHK"):
                    raise Hdf5Error(f"{what}: continuation chunk without its signature")
                _check_sum(image, f"{what} continuation chunk")
                body = image[4:-4]
            else:
                body = image
            self.messages(header, body, bool(flags & 0x04), what)
            for message in header.messages[done:]:
                if message.type == _CONTINUATION:
                    pending.append(self.continuation(message.data, what))
            done = len(header.messages)

    def messages(
        self,
        header: _Header,
        body: bytes,
        creation_order: bool,
        what: str,
    ) -> None:
        size = 8 if header.version == 1 else (6 if creation_order else 4)
        pos = 0
        while pos + size <= len(body):
            if header.version == 1:
                kind = int.from_bytes(body[pos : pos + 2], "little")
                length = int.from_bytes(body[pos + 2 : pos + 4], "little")
                flags = body[pos + 4]
            else:
                kind = body[pos]
                length = int.from_bytes(body[pos + 1 : pos + 3], "little")
                flags = body[pos + 3]
            pos += size
            if pos + length > len(body):
                raise Hdf5Error(f"{what}: message of {length} bytes runs past its chunk")
            header.messages.append(_Message(kind, flags, body[pos : pos + length]))
            if len(header.messages) > MAX_MESSAGES:
                raise Hdf5Error(f"{what}: more than {MAX_MESSAGES} messages")
            pos += length

    # Shared messages.

    def shared_message_table(self, data: bytes) -> dict[int, int]:
        """Message type flags -> fractal heap address, from the shared message table."""
        cur = self.cursor(data, "shared message table message")
        cur.take(1)
        address = cur.address()
        count = cur.uint(1)
        if address is None:
            return {}
        entry = 1 + 1 + 2 + 4 + 2 + 2 + 2 + 2 * self.offset_size
        image = self.read(address, 4 + count * entry + 4, "shared message table")
        if not image.startswith(b"SMTB"):
            raise Hdf5Error("shared message table without its signature")
        _check_sum(image, "shared message table")
        heaps: dict[int, int] = {}
        table = self.cursor(image[4:-4], "shared message table")
        for _ in range(count):
            table.take(2)
            kinds = table.uint(2)
            table.take(4 + 2 + 2 + 2)
            table.address()
            heap = table.address()
            if heap is not None:
                heaps[kinds] = heap
        return heaps

    def unshare(self, kind: int, data: bytes, what: str) -> bytes:
        """The message a shared-message encoding points to (committed or in the SOHM heap)."""
        cur = self.cursor(data, f"shared {what}")
        version = cur.uint(1)
        if version not in (1, 2, 3):
            raise Hdf5Error(f"shared {what}: bad version {version}")
        share = cur.uint(1)
        if version == 1:
            cur.take(6 + self.length_size)
        if version == 3 and share == 1:
            view = self.shared_heap(kind, what).object(cur.take(8))
            return view.get(0, view.length, f"shared {what}")
        if version == 3 and share != 2:
            raise Hdf5Error(f"shared {what}: unknown sharing type {share}")
        address = cur.address()
        if address is None:
            raise Hdf5Error(f"shared {what}: undefined address")
        message = self.object_header(address, f"committed {what}").first(kind)
        if message is None:
            raise Hdf5Error(f"committed {what} has no such message")
        return message.data

    def shared_heap(self, kind: int, what: str) -> _FractalHeap:
        """The shared-message (SOHM) heap that holds messages of type `kind`."""
        heaps = self.shared_heaps or {}
        address = next((a for k, a in heaps.items() if k & (1 << kind)), None)
        if address is None:
            raise Hdf5Error(f"shared {what}: no shared-message heap for it")
        return self.heap(address)

    def heap(self, address: int) -> _FractalHeap:
        if address not in self.heaps:
            self.heaps[address] = _FractalHeap(self, address)
        return self.heaps[address]

    # Attributes.

    def attributes(self, header: _Header, wanted: Collection[str]) -> RootAttributes:
        names = {name.encode(): name for name in wanted}
        found: dict[bytes, _Attribute] = {}
        info = header.first(_ATTRIBUTE_INFO) if header.version > 1 else None
        heap_address, index = self.attribute_info(info.data) if info is not None else (None, None)
        if heap_address is not None:
            if index is None:
                raise Hdf5Error("attribute info: dense storage without a name index")
            heap = self.heap(heap_address)
            tree = _BTree(self, index, 8, 17)
            for name in names:
                # Records are ordered by the lookup3 hash of the name, as HDF5 searches them.
                for record in tree.search(lookup3(name), _name_hash):
                    # A shared attribute's heap ID is in the shared-message heap (H5A dense).
                    shared = record[8] & 0x02
                    where = self.shared_heap(_ATTRIBUTE, "attribute") if shared else heap
                    view = where.object(record[:8])
                    attribute = self.attribute(view)
                    if attribute.name == name:
                        found[name] = attribute
                        break
        else:
            for message in header.messages:
                if message.type != _ATTRIBUTE:
                    continue
                data = message.data
                if message.flags & 0x02:
                    data = self.unshare(_ATTRIBUTE, data, "attribute")
                attribute = self.attribute(_View.of(data))
                if attribute.name in names and attribute.name not in found:
                    found[attribute.name] = attribute
        result = RootAttributes()
        for raw, attribute in found.items():
            self.value(names[raw], attribute, result)
        return result

    def attribute_info(self, data: bytes) -> tuple[int | None, int | None]:
        cur = self.cursor(data, "attribute info message")
        version = cur.uint(1)
        if version != 0:
            raise Hdf5Error(f"attribute info message: bad version {version}")
        flags = cur.uint(1)
        if flags & 0x01:
            cur.take(2)
        return cur.address(), cur.address()

    def attribute(self, view: _View) -> _Attribute:
        what = "attribute message"
        head = view.get(0, min(view.length, 9), what)
        if len(head) < 8 or head[0] not in (1, 2, 3):
            raise Hdf5Error(f"{what}: truncated or of an unknown version")
        version = head[0]
        flags = head[1] if version > 1 else 0
        name_size, type_size, space_size = struct.unpack_from("<3H", head, 2)
        pos = 9 if version == 3 else 8

        def step(n: int) -> int:
            return (n + 7) & ~7 if version == 1 else n

        # As H5O_attr_decode: strndup of name_len - 1 bytes (the terminator is not checked).
        raw_name = view.get(pos, name_size, f"{what} name")[: max(name_size - 1, 0)]
        name = raw_name.split(b"\0", 1)[0]
        pos += step(name_size)
        datatype = (pos, type_size)
        pos += step(type_size)
        dataspace = (pos, space_size)
        pos += step(space_size)
        if pos > view.length:
            raise Hdf5Error(f"{what}: runs past the end of its message")
        return _Attribute(name, view, flags, datatype, dataspace, pos)

    def value(self, key: str, attribute: _Attribute, result: RootAttributes) -> None:
        view = attribute.view
        datatype = view.get(*attribute.datatype, "attribute datatype")
        dataspace = view.get(*attribute.dataspace, "attribute dataspace")
        if attribute.flags & 0x01:
            datatype = self.unshare(_DATATYPE, datatype, "datatype")
        if attribute.flags & 0x02:
            dataspace = self.unshare(_DATASPACE, dataspace, "dataspace")
        if len(datatype) < 8:
            raise Hdf5Error(f"{key} attribute: truncated datatype")
        kind, bits = datatype[0] & 0x0F, int.from_bytes(datatype[1:4], "little")
        size = int.from_bytes(datatype[4:8], "little")
        if kind == _VLEN:
            size = 4 + self.offset_size + 4  # what a variable-length element takes on disk
        elements, scalar = self.elements(dataspace)
        storage = size * elements
        if storage == 0:  # h5py: "Unspecified error in H5Aget_storage_size (return value ==0)"
            raise Hdf5Error(f"{key} attribute has no storage (empty dataspace or datatype)")
        if storage > self.limit:
            result.oversize[key] = storage
            return
        data = view.get(attribute.data_offset, storage, f"{key} attribute data")
        if not scalar or not (kind == _STRING or (kind == _VLEN and bits & 0x0F == 1)):
            result.not_text.append(key)
            return
        if kind == _STRING:
            text = _fixed_string(data, bits & 0x0F)
            result.texts[key] = text.decode("utf-8", errors="replace")
            return
        cur = self.cursor(data, f"{key} attribute variable-length string")
        length = cur.uint(4)
        collection = cur.address()
        index = cur.uint(4)
        if length > self.limit:
            result.oversize[key] = length
            return
        raw = b"" if length == 0 else self.global_object(collection, index, length)
        result.texts[key] = raw.split(b"\0", 1)[0].decode("utf-8", errors="surrogateescape")

    def elements(self, data: bytes) -> tuple[int, bool]:
        """(number of elements, scalar?) of a dataspace message."""
        cur = self.cursor(data, "dataspace message")
        version = cur.uint(1)
        rank = cur.uint(1)
        flags = cur.uint(1)
        if version == 1:
            cur.take(5)
            kind = 1 if rank else 0
        elif version == 2:
            kind = cur.uint(1)
        else:
            raise Hdf5Error(f"dataspace message: bad version {version}")
        if kind == 0:
            return 1, True
        if kind == 2:
            return 0, False
        if kind != 1 or rank > 32:
            raise Hdf5Error(f"dataspace message: bad type {kind} or rank {rank}")
        count = 1
        for _ in range(rank):
            count *= cur.length()
        if flags & 0x01:
            cur.take(rank * self.length_size)
        return count, rank == 0

    def global_object(self, collection: int | None, index: int, length: int) -> bytes:
        """`length` bytes of object `index` of the global heap collection at `collection`."""
        if collection is None:
            raise Hdf5Error("variable-length string in an undefined global heap collection")
        what = "global heap collection"
        self.count(what)
        head = self.read(collection, 8 + self.length_size, what)
        if not head.startswith(b"GCOL") or head[4] != 1:
            raise Hdf5Error(f"{what}: bad signature or version")
        total = int.from_bytes(head[8:], "little")
        object_head = 8 + self.length_size
        pos = (object_head + 7) & ~7
        while pos + object_head <= total:
            self.count(what)
            raw = self.read(collection + pos, object_head, f"{what} object")
            number = int.from_bytes(raw[:2], "little")
            size = int.from_bytes(raw[8:], "little")
            if number == 0:
                break
            if number == index:
                if length > size:
                    raise Hdf5Error(f"{what}: string of {length} bytes in a {size}-byte object")
                return self.read(collection + pos + object_head, length, f"{what} object")
            pos += object_head + ((size + 7) & ~7)
        raise Hdf5Error(f"{what}: object {index} not found")


def _name_hash(record: bytes) -> int:
    """The name hash of an attribute name index record (heap ID, flags, order, hash)."""
    return int.from_bytes(record[13:17], "little")


def _fixed_string(data: bytes, padding: int) -> bytes:
    """A fixed-length string as h5py returns it: HDF5 converts it to h5py's null-padded
    type (a null-terminated one up to its first NUL, a space-padded one without its
    trailing spaces), then numpy's `bytes_` drops trailing NULs."""
    if padding == 0:
        return data.split(b"\0", 1)[0]
    if padding == 2:
        data = data.rstrip(b" ")
    return data.rstrip(b"\0")


# --- version 2 B-trees ------------------------------------------------------------------------


class _BTree:
    """A version 2 B-tree of one record type (records at least `record_size` bytes),
    searched by key as the HDF5 library searches it."""

    def __init__(self, reader: _Reader, address: int, kind: int, record_size: int) -> None:
        self.reader = reader
        what = "v2 B-tree header"
        reader.count(what)
        size = 4 + 1 + 1 + 4 + 2 + 2 + 1 + 1 + reader.offset_size + 2 + reader.length_size + 4
        image = reader.read(address, size, what)
        if not image.startswith(b"BTHD") or image[4] != 0:
            raise Hdf5Error(f"{what}: bad signature or version")
        _check_sum(image, what)
        if image[5] != kind:
            raise Hdf5Error(f"{what}: type {image[5]}, expected {kind}")
        cur = reader.cursor(image, what)
        cur.pos = 6
        self.node_size = cur.uint(4)
        self.record_size = cur.uint(2)
        self.depth = cur.uint(2)
        cur.take(2)
        self.root = cur.address()
        self.root_records = cur.uint(2)
        if not 10 < self.node_size <= MAX_BLOCK or self.record_size < record_size:
            raise Hdf5Error(f"{what}: node size {self.node_size}, record size {self.record_size}")
        if self.depth > MAX_DEPTH:
            raise Hdf5Error(f"{what}: depth {self.depth} over {MAX_DEPTH}")
        # Field widths in internal nodes, as H5B2__hdr_init works them out.
        leaf_max = (self.node_size - 10) // self.record_size
        if leaf_max == 0:
            raise Hdf5Error(f"{what}: nodes too small for one record")
        self.count_size = _enc_size(leaf_max)
        self.total_sizes = [0]
        self.max_records = [leaf_max]
        cumulative = leaf_max
        for level in range(1, self.depth + 1):
            pointer = reader.offset_size + self.count_size + self.total_sizes[level - 1]
            most = (self.node_size - (10 + pointer)) // (self.record_size + pointer)
            if most <= 0:
                raise Hdf5Error(f"{what}: internal nodes too small")
            cumulative = (most + 1) * cumulative + most
            self.max_records.append(most)
            self.total_sizes.append(_enc_size(cumulative))

    def search(self, target: int, key: Callable[[bytes], int]) -> Iterator[bytes]:
        """The records whose `key` is `target`, reading only the nodes that may hold them
        (records are sorted by key, as the HDF5 library finds them)."""
        if self.root is None or self.root_records == 0:
            return
        seen: set[int] = set()
        stack = [(self.root, self.root_records, self.depth)]
        while stack:
            address, count, depth = stack.pop()
            if address in seen:
                raise Hdf5Error("v2 B-tree: a node is reached twice")
            seen.add(address)
            records, children = self.node(address, count, depth)
            keys = [key(record) for record in records]
            for i, record in enumerate(records):
                if keys[i] == target:
                    yield record
            for i in reversed(range(len(children))):
                if (i == 0 or keys[i - 1] <= target) and (i == len(keys) or keys[i] >= target):
                    stack.append((*children[i], depth - 1))

    def node(
        self, address: int, count: int, depth: int
    ) -> tuple[list[bytes], list[tuple[int, int]]]:
        """The records of a node and its children's (address, record count)."""
        reader = self.reader
        what = "v2 B-tree node"
        reader.count(what)
        if count > self.max_records[depth]:
            raise Hdf5Error(f"{what}: {count} records, at most {self.max_records[depth]} fit")
        pointer = reader.offset_size + self.count_size
        if depth > 1:
            pointer += self.total_sizes[depth - 1]
        size = 6 + count * self.record_size + (0 if depth == 0 else (count + 1) * pointer)
        image = reader.read(address, size + 4, what)
        signature = b"BTLF" if depth == 0 else b"BTIN"
        if not image.startswith(signature) or image[4] != 0:
            raise Hdf5Error(f"{what}: bad signature or version")
        _check_sum(image, what)
        body = image[6 : 6 + count * self.record_size]
        size = self.record_size
        records = [body[i * size : (i + 1) * size] for i in range(count)]
        children: list[tuple[int, int]] = []
        if depth:
            cur = reader.cursor(image[6 + count * self.record_size : -4], what)
            for _ in range(count + 1):
                child = cur.address()
                records_in_child = cur.uint(self.count_size)
                if depth > 1:
                    cur.uint(self.total_sizes[depth - 1])
                if child is None:
                    raise Hdf5Error(f"{what}: child at an undefined address")
                children.append((child, records_in_child))
        return records, children


# --- fractal heaps ----------------------------------------------------------------------------


class _FractalHeap:
    """A fractal heap (dense attributes, shared messages): objects by heap ID."""

    def __init__(self, reader: _Reader, address: int) -> None:
        self.reader = reader
        self.address = address
        what = "fractal heap header"
        reader.count(what)
        o, n = reader.offset_size, reader.length_size
        size = 4 + 1 + 2 + 2 + 1 + 4 + n + o + n + o + 8 * n + 2 + n + n + 2 + 2 + o + 2
        head = reader.read(address, size, what)
        if not head.startswith(b"FRHP") or head[4] != 0:
            raise Hdf5Error(f"{what}: bad signature or version")
        cur = reader.cursor(head, what)
        cur.pos = 5
        self.id_length = cur.uint(2)
        self.filter_length = cur.uint(2)
        self.flags = cur.uint(1)
        self.max_managed = cur.uint(4)
        cur.length()  # next huge object ID
        self.huge_tree = cur.address()
        cur.take(n + o + 8 * n)
        self.width = cur.uint(2)
        self.start_size = cur.length()
        self.max_direct = cur.length()
        self.max_heap_bits = cur.uint(2)
        cur.take(2)
        self.root = cur.address()
        self.root_rows = cur.uint(2)
        extra = (n + 4 + self.filter_length) if self.filter_length else 0
        image = reader.read(address, size + extra + 4, what)
        _check_sum(image, what)
        if self.filter_length:
            raise Hdf5Error("fractal heap with I/O filters (not written by HDF5 for attributes)")
        if (
            not 0 < self.width <= 65536
            or self.width & (self.width - 1)
            or not 0 < self.start_size <= self.max_direct <= MAX_BLOCK
            or self.start_size & (self.start_size - 1)
            or self.max_direct & (self.max_direct - 1)
            or not 0 < self.max_heap_bits <= 64
        ):
            raise Hdf5Error(f"{what}: unusable doubling table parameters")
        self.offset_bytes = (self.max_heap_bits + 7) // 8
        direct_bits = self.max_direct.bit_length() - 1
        self.length_bytes = min((direct_bits + 7) // 8, _enc_size(self.max_managed))
        self.direct_rows = direct_bits - (self.start_size.bit_length() - 1) + 2

    def row_size(self, row: int) -> int:
        return self.start_size if row == 0 else self.start_size << (row - 1)

    def object(self, heap_id: bytes) -> _View:
        if len(heap_id) < 1:
            raise Hdf5Error("empty heap ID")
        kind = (heap_id[0] >> 4) & 0x03
        if heap_id[0] & 0xC0:
            raise Hdf5Error("heap ID of an unknown version")
        if kind == 0:
            cur = self.reader.cursor(heap_id, "heap ID")
            cur.pos = 1
            offset = cur.uint(self.offset_bytes)
            length = cur.uint(self.length_bytes)
            return self.managed(offset, length)
        if kind == 1:
            return self.huge_object(heap_id)
        if kind == 2:
            if self.id_length <= 18:
                length, start = (heap_id[0] & 0x0F) + 1, 1
            else:
                length, start = ((heap_id[0] & 0x0F) << 8 | heap_id[1]) + 1, 2
            if start + length > len(heap_id):
                raise Hdf5Error("tiny heap object longer than its ID")
            return _View.of(heap_id[start : start + length])
        raise Hdf5Error(f"heap ID of unknown type {kind}")

    def huge_object(self, heap_id: bytes) -> _View:
        reader = self.reader
        o, n = reader.offset_size, reader.length_size
        cur = reader.cursor(heap_id, "huge heap ID")
        cur.pos = 1
        if self.id_length - 1 >= o + n:  # the ID holds address and length itself
            address = cur.address()
            length = cur.length()
        else:
            o_n = o + n
            wanted = int.from_bytes(heap_id[1 : self.id_length], "little")
            if self.huge_tree is None:
                raise Hdf5Error("huge heap object in a heap without a huge-object B-tree")

            def huge_id(record: bytes) -> int:
                return int.from_bytes(record[o_n:], "little")

            match = None
            for record in _BTree(reader, self.huge_tree, 1, o_n + 1).search(wanted, huge_id):
                rec = reader.cursor(record, "huge object record")
                match = rec.address(), rec.length()
                break
            if match is None:
                raise Hdf5Error("huge heap object not in its B-tree")
            address, length = match
        if address is None:
            raise Hdf5Error("huge heap object at an undefined address")
        if reader.base + address + length > reader.size:
            raise Hdf5Error("huge heap object past the end of the file")

        def fetch(offset: int, count: int) -> bytes:
            return reader.read(address + offset, count, "huge heap object")

        return _View(length, fetch)

    def managed(self, offset: int, length: int) -> _View:
        reader = self.reader
        if self.root is None:
            raise Hdf5Error("managed heap object in an empty heap")
        block, block_offset, size = self.root, 0, self.start_size
        if self.root_rows:
            block, block_offset, size = self.find(self.root, self.root_rows, offset)
        what = "fractal heap direct block"
        reader.count(what)
        o = reader.offset_size
        header = 4 + 1 + o + self.offset_bytes + (4 if self.flags & 0x02 else 0)
        image = reader.read(block, size, what)
        if not image.startswith(b"FHDB") or image[4] != 0:
            raise Hdf5Error(f"{what}: bad signature or version")
        if self.flags & 0x02:
            at = header - 4
            stored = int.from_bytes(image[at:header], "little")
            if lookup3(image[:at] + bytes(4) + image[header:]) != stored:
                raise Hdf5Error(f"{what}: incorrect metadata checksum")
        inside = offset - block_offset
        if inside < header or inside + length > size:
            raise Hdf5Error("managed heap object outside its direct block")
        data = image[inside : inside + length]
        return _View.of(data)

    def find(self, address: int, rows: int, offset: int) -> tuple[int, int, int]:
        """(address, heap offset, size) of the direct block holding heap `offset`."""
        reader = self.reader
        o = reader.offset_size
        seen: set[int] = set()
        for _ in range(MAX_DEPTH):
            if address in seen:
                raise Hdf5Error("fractal heap: an indirect block is reached twice")
            seen.add(address)
            what = "fractal heap indirect block"
            reader.count(what)
            if rows > 64:
                raise Hdf5Error(f"{what}: {rows} rows")
            entries = rows * self.width
            size = 4 + 1 + o + self.offset_bytes + entries * o + 4
            image = reader.read(address, size, what)
            if not image.startswith(b"FHIB") or image[4] != 0:
                raise Hdf5Error(f"{what}: bad signature or version")
            _check_sum(image, what)
            cur = reader.cursor(image, what)
            cur.pos = 5 + o
            block_offset = cur.uint(self.offset_bytes)
            inside = offset - block_offset
            if inside < 0:
                raise Hdf5Error("fractal heap: object before its indirect block")
            row = 0
            row_start = 0
            while row < rows and row_start + self.width * self.row_size(row) <= inside:
                row_start += self.width * self.row_size(row)
                row += 1
            if row >= rows:
                raise Hdf5Error("fractal heap: object past its indirect block")
            column = (inside - row_start) // self.row_size(row)
            cur.pos = 5 + o + self.offset_bytes + (row * self.width + column) * o
            child = cur.address()
            if child is None:
                raise Hdf5Error("fractal heap: object in an unallocated block")
            child_offset = block_offset + row_start + column * self.row_size(row)
            child_size = self.row_size(row)
            if row < self.direct_rows:
                if child_size > MAX_BLOCK:
                    raise Hdf5Error(f"{what}: direct block of {child_size} bytes")
                return child, child_offset, child_size
            address = child
            rows = (
                (child_size.bit_length() - 1)
                - ((self.start_size * self.width).bit_length() - 1)
                + 1
            )
        raise Hdf5Error(f"fractal heap: indirect blocks nested over {MAX_DEPTH} deep")
