"""NumPy `.npy` arrays and `.npz` archives, read without NumPy.

A `.npy` file is a magic string, a version, a length-prefixed header holding a Python dict
literal (`descr`, `fortran_order`, `shape`), then the data. Numeric data is never read: we
only check that it fits in the file. An object dtype means the data is a pickle that
`np.load(allow_pickle=True)` runs, so it is scanned as one. A `.npz` is a zip of `.npy`.
"""

from __future__ import annotations

import ast
import io
import math
import re
import struct
from typing import Any, BinaryIO

from modelward.findings import Severity
from modelward.formats._spliced import scan_pickle_ranges
from modelward.formats.interface import IN_MEMORY_BYTES, Blob, ScanAborted, ScanContext

MAGIC = b"\x93NUMPY"
#: Header length field width for each supported major version.
_LENGTH_FIELD = {1: struct.Struct("<H"), 2: struct.Struct("<I"), 3: struct.Struct("<I")}
_KEYS = frozenset({"descr", "fortran_order", "shape"})
_SIMPLE_DESCR = re.compile(r"[<>|=]?([a-zA-Z?])(\d*)(\[\w+\])?")


class NpyError(ValueError):
    """The header is not one `np.load` would accept."""


def looks_like_npy(head: bytes) -> bool:
    return head.startswith(MAGIC) and len(head) >= 8 and head[6] in _LENGTH_FIELD


def read_header(stream: BinaryIO, size: int, max_header: int) -> tuple[dict[str, Any], int]:
    """Parse the header dict, reading exactly up to the data; return it and where data starts."""
    prefix = stream.read(8)
    if not looks_like_npy(prefix):
        raise NpyError("not an .npy magic and version")
    field = _LENGTH_FIELD[prefix[6]]
    length_bytes = stream.read(field.size)
    if len(length_bytes) != field.size:
        raise NpyError("file ends inside the header length")
    (length,) = field.unpack(length_bytes)
    start = 8 + field.size
    if length > min(max_header, size - start):
        raise NpyError(f"header length {length} exceeds the file or the header limit")
    raw = stream.read(length)
    if len(raw) != length:
        raise NpyError("file ends inside the header")
    try:
        text = raw.decode("utf-8" if prefix[6] == 3 else "latin-1").strip()
    except UnicodeDecodeError as exc:
        raise NpyError(f"header is not text: {exc}") from exc
    if not (text.startswith("{") and text.endswith("}")):
        raise NpyError("header is not a dict literal")
    try:
        header = _literal(text, python2=prefix[6] < 3)
    except (ValueError, SyntaxError, MemoryError, RecursionError) as exc:
        raise NpyError(f"header dict does not parse: {exc}") from exc
    if not isinstance(header, dict) or set(header) != _KEYS:
        raise NpyError(f"header keys must be exactly {sorted(_KEYS)}")
    shape = header["shape"]
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise NpyError(f"shape {shape!r} is not a tuple of non-negative ints")
    if not isinstance(header["fortran_order"], bool):
        raise NpyError("fortran_order is not a bool")
    return header, start + length


#: A Python 2 long literal (`2L`) outside a string, which `np.load` strips from 1.0/2.0 headers.
_PY2_LONG = re.compile(r"""('[^']*'|"[^"]*")|\b(\d+)[lL]\b""")


def _literal(text: str, *, python2: bool) -> Any:
    """The header's dict, as `np.load` reads it: literals only (never a call), and for
    versions 1.0 and 2.0, Python 2 longs (`(2L,)`) once plain parsing fails
    (`numpy.lib.format._filter_header`)."""
    try:
        return ast.literal_eval(text)
    except SyntaxError:
        if not python2:
            raise
    return ast.literal_eval(_PY2_LONG.sub(lambda m: m.group(1) or m.group(2), text))


def has_object(descr: Any) -> bool:
    """True when the dtype holds Python objects anywhere (plain, structured or nested)."""
    if isinstance(descr, str):
        match = _SIMPLE_DESCR.fullmatch(descr)
        return match is not None and match.group(1) == "O"
    if isinstance(descr, list):
        return any(isinstance(f, tuple) and len(f) >= 2 and has_object(f[1]) for f in descr)
    return False


def itemsize(descr: Any) -> int | None:
    """Bytes per element of a `descr`, or None when we cannot tell."""
    if isinstance(descr, str):
        match = _SIMPLE_DESCR.fullmatch(descr)
        if match is None:
            return None
        kind, digits = match.group(1), match.group(2)
        if kind == "?":
            return 1
        if not digits:
            return None
        return int(digits) * (4 if kind == "U" else 1)
    if isinstance(descr, list):
        total = 0
        for field in descr:
            if not isinstance(field, tuple) or len(field) not in (2, 3):
                return None
            size = itemsize(field[1])
            shape = field[2] if len(field) == 3 else ()
            if isinstance(shape, int):
                shape = (shape,)
            if size is None or not isinstance(shape, tuple):
                return None
            if not all(isinstance(d, int) and d >= 0 for d in shape):
                return None
            total += size * math.prod(shape)
        return total
    return None


def scan_npy(blob: Blob, ctx: ScanContext) -> None:
    """Scan one `.npy` (a file or an `.npz` member)."""
    with ctx.open(blob) as stream:
        try:
            header, data_start = read_header(stream, blob.size, ctx.config.limits.max_header_bytes)
        except NpyError as exc:
            ctx.report(
                "MW-NUMPY-HEADER",
                Severity.MEDIUM,
                blob.location,
                "malformed .npy header; array not scanned",
                evidence=str(exc)[:300],
            )
            return
        descr = header["descr"]
        if has_object(descr):
            ctx.report(
                "MW-NUMPY-OBJECT",
                Severity.LOW,
                blob.location,
                "object array: loading it needs allow_pickle=True (its pickle is scanned)",
            )
            ranges = [(data_start, blob.size)]
            if scan_pickle_ranges(stream, ranges, data_start, blob.location, ctx) == 0:
                ctx.report(
                    "MW-NUMPY-OBJECT",
                    Severity.MEDIUM,
                    blob.location.at(data_start),
                    "object array without a pickle after its header",
                )
            return
    size = itemsize(descr)
    if size is None:
        ctx.report(
            "MW-NUMPY-HEADER",
            Severity.MEDIUM,
            blob.location,
            "unsupported dtype description; array not checked",
            evidence=repr(descr)[:300],
        )
        return
    needed = size * math.prod(header["shape"])
    if data_start + needed > blob.size:
        ctx.report(
            "MW-NUMPY-TRUNCATED",
            Severity.MEDIUM,
            blob.location,
            f"header declares {needed} data bytes but only {blob.size - data_start} follow",
        )
    elif data_start + needed < blob.size:
        ctx.report(
            "MW-NUMPY-TRAILING",
            Severity.LOW,
            blob.location.at(data_start + needed),
            f"{blob.size - data_start - needed} bytes follow the array data; np.load ignores them",
        )


class NpyScanner:
    """`.npy` arrays, found by the `\\x93NUMPY` magic."""

    name = "numpy"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return looks_like_npy(head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        scan_npy(blob, ctx)


class ZFileArrayScanner:
    """joblib < 0.10 compressed array files (`model.pkl_01.npy.z`): `ZF`, the length, zlib.

    Old `joblib.dump(..., compress=n)` wrote each array's raw buffer (`ndarray.__reduce__`'s
    data) this way next to the main pickle, whose `ZNDArrayWrapper` holds dtype and shape;
    `read_zfile` decompresses it and `ndarray.__setstate__` takes the bytes as array memory,
    so nothing in it is unpickled. The stream is decompressed once, bounded and charged like
    every other (a bomb is a finding), and its length checked against the header (joblib
    asserts it). Content that is an `.npy` (written by hand, or by other tools) is scanned as
    NumPy data, an object array's pickle included. A `ZF` file holding a pickle is joblib's
    old main file, claimed by the joblib scanner first.
    """

    name = "joblib-zfile"

    def detect(self, blob: Blob, head: bytes) -> bool:
        from modelward.formats._joblib_codecs import zfile_length

        return zfile_length(head) is not None and _zfile_head(blob) is not None

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        from modelward.formats._joblib_codecs import open_zfile, zfile_length

        limits = ctx.config.limits
        with ctx.open(blob) as stream:
            declared = zfile_length(stream.read(64))
        assert declared is not None  # detect checked it

        def opener() -> BinaryIO:
            limit = min(declared + 1, limits.max_decompressed_bytes)
            return open_zfile(ctx.counted(blob.open()), limit, ctx.charge_decompressed)

        kept = io.BytesIO()
        total = 0
        try:
            with opener() as stream:
                while chunk := stream.read(1024 * 1024):
                    ctx.check_deadline()
                    if total < IN_MEMORY_BYTES:
                        kept.write(chunk)
                    total += len(chunk)
        except ScanAborted as exc:
            if exc.rule_id == "MW-LIMIT-TIME":
                raise
            if exc.rule_id == "MW-LIMIT-SIZE" and declared < limits.max_decompressed_bytes:
                # Past the declared length: joblib's read_zfile refuses it too.
                ctx.report(
                    "MW-JOBLIB-CORRUPT",
                    Severity.LOW,
                    blob.location,
                    f"ZF stream holds more than the {declared} bytes its header declares;"
                    " joblib's read_zfile refuses it",
                )
            else:
                ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)
            return
        if total != declared:
            ctx.report(
                "MW-JOBLIB-CORRUPT",
                Severity.LOW,
                blob.location,
                f"ZF header declares {declared} bytes but the stream holds {total}; joblib's"
                " read_zfile refuses it",
            )
        location = blob.location.member("<zfile>")
        if total <= IN_MEMORY_BYTES:
            member = Blob.from_bytes(location, kept.getvalue())
        else:
            member = Blob(location, total, opener)
        del kept
        if looks_like_npy(member.head(16)):
            scan_npy(member, ctx)
        # Otherwise raw array memory: never parsed, never unpickled.


def _zfile_head(blob: Blob) -> bytes | None:
    """The first decompressed bytes of a `ZF` file; None when they do not decompress."""
    from modelward.formats._joblib_codecs import open_zfile

    try:
        with blob.open() as raw, open_zfile(raw, 1024**2, None) as stream:
            return stream.read(16)
    except ScanAborted:
        return None


NPY = NpyScanner()
ZFILE_ARRAY = ZFileArrayScanner()

__all__ = [
    "MAGIC",
    "NPY",
    "ZFILE_ARRAY",
    "NpyScanner",
    "ZFileArrayScanner",
    "has_object",
    "itemsize",
    "looks_like_npy",
]
