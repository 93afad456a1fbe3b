"""Cheap byte signatures: a format's magic numbers, shared by its scanner and the registry.

The registry (`formats/__init__`) asks these before it imports a scanner's module, so a
file is only ever charged the imports of the formats its bytes could be; the scanners
use the same functions, so the two never disagree.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from modelward.formats.interface import Blob

#: joblib < 0.10 `ZF` files: the prefix and `hex(length)` padded to `len(hex(2**64))`.
ZFILE_HEADER = 2 + 19


def tar_header_ok(block: bytes) -> bool:
    """A v7 tar has no magic; its first header's checksum is what identifies it."""
    field = block[148:156].replace(b"\x00", b" ").strip()
    if not field or not all(48 <= c <= 55 for c in field):
        return False
    return int(field, 8) == sum(block[:148]) + 256 + sum(block[156:512])


def gzip_magic(head: bytes) -> bool:
    """gzip's magic and its only method, deflate."""
    return head[:3] == b"\x1f\x8b\x08"


def bzip2_magic(head: bytes) -> bool:
    """bzip2's stream header."""
    # "BZh" + block size digit + the first block's (or end-of-stream's) 48-bit magic.
    return (
        len(head) >= 10
        and head[:3] == b"BZh"
        and head[3:4] in b"123456789"
        and head[4:10] in (b"\x31\x41\x59\x26\x53\x59", b"\x17\x72\x45\x38\x50\x90")
    )


def xz_magic(head: bytes) -> bool:
    """The xz stream header magic."""
    return head[:6] == b"\xfd7zXZ\x00"


def compression(head: bytes) -> str | None:
    """joblib's compressor for a file head (`compressor.py` prefixes), or None."""
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh"):
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"\x5d\x00\x00"):
        return "lzma"
    if head.startswith(b"ZF") and len(head) >= ZFILE_HEADER:
        return "zfile"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


#: A zip member's local header, and the End Of Central Directory record every zip reader
#: needs (an empty archive is nothing else).
ZIP_LOCAL_MAGIC = b"PK\x03\x04"
ZIP_END_MAGIC = b"PK\x05\x06"
#: How far from the end any zip reader we mirror looks for the end record (miniz's window,
#: the wider one; `formats.zip` checks it covers both).
ZIP_END_WINDOW = 4096 + 16 * 4093


def could_be_zip(blob: Blob, head: bytes) -> bool:
    """False only when no zip reader can find a zip in `blob`: no local header or end record
    at offset 0, and no end record in the last `ZIP_END_WINDOW` bytes."""
    if head.startswith((ZIP_LOCAL_MAGIC, ZIP_END_MAGIC)):
        return True
    if len(head) == blob.size:
        return ZIP_END_MAGIC in head
    if "could-be-zip" not in blob.sniffed:
        try:
            with blob.open() as stream:
                stream.seek(max(blob.size - ZIP_END_WINDOW, 0))
                blob.sniffed["could-be-zip"] = ZIP_END_MAGIC in stream.read(ZIP_END_WINDOW)
        except OSError:
            blob.sniffed["could-be-zip"] = True  # the zip scanners report what cannot be read
    found: bool = blob.sniffed["could-be-zip"]
    return found


#: The HDF5 superblock signature; HDF5 looks for it at 0, 512, 1024, 2048... (a user block).
HDF5_SIGNATURE = b"\x89HDF\r\n\x1a\n"
_HDF5_FIRST_USERBLOCK = 512
#: Largest user block checked when sniffing; a bigger prefix is another format's problem.
_HDF5_MAX_USERBLOCK = 1024 * 1024


def hdf5_signature_offset(blob: Blob, head: bytes) -> int | None:
    """Where the HDF5 superblock signature is, or None: 0 or a power of two from 512.

    Past the head, looking for a user block means seeking: only files on disk are read
    further; a member or a decompressed stream is judged by its head.
    """
    size = blob.size if blob.fs_path is not None else min(blob.size, len(head))
    offset = 0
    while offset <= min(size - len(HDF5_SIGNATURE), _HDF5_MAX_USERBLOCK):
        if offset + len(HDF5_SIGNATURE) <= len(head):
            found = head[offset : offset + len(HDF5_SIGNATURE)]
        else:
            with blob.open() as stream:
                stream.seek(offset)
                found = stream.read(len(HDF5_SIGNATURE))
        if found == HDF5_SIGNATURE:
            return offset
        offset = _HDF5_FIRST_USERBLOCK if offset == 0 else offset * 2
    return None
