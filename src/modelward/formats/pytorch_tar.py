"""PyTorch's legacy tar checkpoints, read without torch (zip and legacy ones: `pytorch`).

The torch < 0.4 era format (`_legacy_load`'s `legacy_load`, `weights_only=False` only) is
  a tar whose `storages`, `tensors` and `pickle` members `tarfile.getmember` finds (the LAST
  member of each name). `storages` is a pickled count, then per storage a pickled
  `(key, location, storage_type)` followed by raw bytes (an int64 element count and the
  elements, sized by the storage type), then a pickled list of views; `tensors` is a pickled
  count, then per tensor a pickled `(key, storage_key, type)` followed by ndim (int32), 4
  unused bytes, ndim sizes, ndim strides and an offset (int64 each); `pickle` holds the
  object. Every one of those pickles, those after raw bytes included, is scanned.
"""

from __future__ import annotations

import io
import pickletools
import struct
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from typing import BinaryIO, cast

from modelward.findings import Location, Severity
from modelward.formats._spliced import scan_pickle_ranges
from modelward.formats._streams import ByteWindow
from modelward.formats.interface import IN_MEMORY_BYTES, Blob, ScanAborted, ScanContext
from modelward.formats.pickle import scan_pickle_stream
from modelward.formats.tar import TAR, BoundedTarInfo

#: Element sizes of the storage classes `legacy_load` reads raw bytes for (`_dtype`).
_STORAGE_ELEMENT_SIZES = {
    "DoubleStorage": 8, "FloatStorage": 4, "HalfStorage": 2, "BFloat16Storage": 2,
    "LongStorage": 8, "IntStorage": 4, "ShortStorage": 2, "CharStorage": 1,
    "ByteStorage": 1, "BoolStorage": 1, "ComplexDoubleStorage": 16,
    "ComplexFloatStorage": 8, "QUInt8Storage": 1, "QInt8Storage": 1, "QInt32Storage": 4,
    "QUInt4x2Storage": 1, "QUInt2x4Storage": 1,
}  # fmt: skip
#: The members `legacy_load` reads, in order.
_TAR_RECORDS = ("storages", "tensors", "pickle")
#: Opcodes one framing pass reads before giving up (the scan itself is bounded on its own).
_MAX_FRAMING_OPS = 1_000_000
_INT_OPS = frozenset({"INT", "BININT", "BININT1", "BININT2", "LONG", "LONG1", "LONG4"})
_STRING_OPS = frozenset(
    {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "STRING", "BINSTRING",
     "SHORT_BINSTRING"}
)  # fmt: skip


class _Unfollowable(Exception):
    """The records after this point cannot be located the way torch reads them."""


class PyTorchTarScanner:
    """The legacy tar checkpoint: a tar holding `storages` (what `legacy_load` opens first).

    The tar is first scanned as any tar (every member checked and scanned by content), then
    the three records are read as `legacy_load` reads them, so the pickles that follow raw
    storage or tensor bytes are scanned too.
    """

    name = "pytorch-tar"

    def detect(self, blob: Blob, head: bytes) -> bool:
        if not TAR.detect(blob, head):
            return False
        if "torch-tar" not in blob.sniffed:
            blob.sniffed["torch-tar"] = _tar_has_storages(blob)
        found: bool = blob.sniffed["torch-tar"]
        return found

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        before = len(ctx.result.findings)
        TAR.scan(blob, ctx)
        try:
            with ctx.open(blob) as stream:
                archive = tarfile.TarFile(fileobj=stream, tarinfo=BoundedTarInfo)
                records = [
                    m
                    for m in archive.getmembers()[: ctx.config.limits.max_members]
                    if m.name in _TAR_RECORDS and m.isreg()
                ]
        except (tarfile.TarError, EOFError, ScanAborted):
            return  # reported by the tar scan
        for member in records:
            with _record_stream(blob, member, ctx) as stream:
                if stream is None:
                    ctx.report(
                        "MW-TORCH-MALFORMED",
                        Severity.MEDIUM,
                        blob.location.member(member.name),
                        "legacy tar record too large to follow in memory; pickles after its"
                        " raw bytes are not scanned",
                    )
                    continue
                location = blob.location.member(member.name)
                try:
                    _follow_record(member.name, stream, member.size, location, ctx)
                except _Unfollowable as exc:
                    ctx.report(
                        "MW-TORCH-MALFORMED",
                        Severity.MEDIUM,
                        location,
                        f"cannot follow this legacy tar record the way torch.load reads it:"
                        f" {exc}; the pickles after this point are not scanned",
                    )
        _drop_repeats(ctx, before)


def _tar_has_storages(blob: Blob) -> bool:
    try:
        with blob.open() as stream:
            archive = tarfile.TarFile(fileobj=stream, tarinfo=BoundedTarInfo)
            for count, member in enumerate(archive):
                if member.name == "storages":
                    return True
                if count > 10_000:
                    return False
    except (tarfile.TarError, EOFError, ScanAborted, OSError):
        return False
    return False


@contextmanager
def _record_stream(
    blob: Blob, member: tarfile.TarInfo, ctx: ScanContext
) -> Iterator[BinaryIO | None]:
    start, size = member.offset_data, member.size
    if blob.fs_path is None and size > IN_MEMORY_BYTES:
        yield None
        return
    with ctx.counted(cast(BinaryIO, ByteWindow(blob.open, start, size))) as stream:
        if blob.fs_path is not None:
            yield stream
        else:
            yield cast(BinaryIO, io.BytesIO(stream.read()))


def _follow_record(
    name: str, stream: BinaryIO, size: int, location: Location, ctx: ScanContext
) -> None:
    """Scan every pickle `legacy_load` unpickles from record `name`."""
    if name == "pickle":
        stream.seek(0)
        scan_pickle_stream(stream, location, ctx, max_streams=1)
        return
    count, pos = _scan_framed(stream, 0, size, location, ctx)
    if count is None:
        raise _Unfollowable("its count is not a plain integer pickle")
    if count > ctx.config.limits.max_pickle_streams:
        raise _Unfollowable(f"it declares {count} entries")
    for index in range(max(count, 0)):
        ctx.check_deadline()
        start = pos
        ops, pos = _frame(stream, start, size, location, ctx)
        if name == "storages":
            storage = _global_name(ops)
            element = _STORAGE_ELEMENT_SIZES.get(storage.rpartition(".")[2] if storage else "")
            if storage is None or not storage.startswith("torch") or element is None:
                raise _Unfollowable(f"storage {index} has an unknown type {storage!r}")
            numel = _read_int(stream, pos, "<q", size)
            if numel < 0 or pos + 8 + numel * element > size:
                raise _Unfollowable(f"storage {index} runs past the record")
            pos += 8 + numel * element
        else:
            ndim = _read_int(stream, pos, "<i", size)
            if ndim < 0 or pos + 8 + 16 * ndim + 8 > size:
                raise _Unfollowable(f"tensor {index} runs past the record")
            pos += 8 + 16 * ndim + 8
    if name == "storages":
        _scan_framed(stream, pos, size, location, ctx)


def _read_int(stream: BinaryIO, pos: int, fmt: str, size: int) -> int:
    width = struct.calcsize(fmt)
    if pos + width > size:
        raise _Unfollowable("raw bytes end early")
    stream.seek(pos)
    (value,) = struct.unpack(fmt, stream.read(width))
    return int(value)


def _scan_framed(
    stream: BinaryIO, start: int, size: int, location: Location, ctx: ScanContext
) -> tuple[int | None, int]:
    """Scan the pickle at `start`; return its value when it is a plain int, and its end."""
    ops, end = _frame(stream, start, size, location, ctx)
    body = [
        (op, arg)
        for op, arg in ops
        if op not in {"PROTO", "FRAME", "MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT", "STOP"}
    ]
    if len(body) == 1 and body[0][0] in _INT_OPS and isinstance(body[0][1], int):
        return int(body[0][1]), end
    return None, end


def _frame(
    stream: BinaryIO, start: int, size: int, location: Location, ctx: ScanContext
) -> tuple[list[tuple[str, object]], int]:
    """Scan the pickle at `start` and find where it ends (pickletools only frames it)."""
    stream.seek(start)
    ops: list[tuple[str, object]] = []
    end: int | None = None
    try:
        for opcode, arg, _ in pickletools.genops(stream):
            ops.append((opcode.name, arg))
            if len(ops) > _MAX_FRAMING_OPS:
                break
            if opcode.name == "STOP":
                end = stream.tell()
                break
    except (ValueError, EOFError, struct.error, UnicodeDecodeError, MemoryError):
        end = None
    scan_end = end if end is not None else size
    stream.seek(start)
    scan_pickle_ranges(stream, [(start, scan_end)], start, location, ctx)
    if end is None:
        # torch.load fails on this pickle: what it ran before failing was scanned above.
        raise _Unfollowable(f"the pickle at offset {start} does not end")
    return ops, end


def _global_name(ops: list[tuple[str, object]]) -> str | None:
    """The class the `(key, location, storage_type)` pickle imports (GLOBAL / STACK_GLOBAL)."""
    strings: list[str] = []
    found: str | None = None
    for op, arg in ops:
        if op == "GLOBAL" and isinstance(arg, str):
            found = arg.replace(" ", ".", 1)
        elif op in _STRING_OPS and isinstance(arg, str | bytes):
            strings.append(arg if isinstance(arg, str) else arg.decode("latin-1"))
        elif op == "STACK_GLOBAL" and len(strings) >= 2:
            found = f"{strings[-2]}.{strings[-1]}"
    return found


def _drop_repeats(ctx: ScanContext, before: int) -> None:
    """Pickles scanned by content and again as records report twice: keep one of each."""
    seen: set[tuple[str, str, str, str | None]] = set()
    kept = ctx.result.findings[:before]
    for finding in ctx.result.findings[before:]:
        key = (finding.rule_id, repr(finding.location), finding.message, finding.evidence)
        if key not in seen:
            seen.add(key)
            kept.append(finding)
    ctx.result.findings[:] = kept


PYTORCH_TAR = PyTorchTarScanner()

__all__ = ["PYTORCH_TAR", "PyTorchTarScanner"]
