"""joblib files (`joblib.dump`), plain or compressed, read without joblib or NumPy.

joblib is not a plain pickle: after each `joblib.numpy_pickle.NumpyArrayWrapper` object
(its BUILD opcode) it writes the array's bytes straight into the file, outside any pickle
frame: a padding-length byte, the padding, then the raw data; or, for object arrays, a
whole nested pickle. A linear opcode walker would read those bytes as opcodes.

So a scan takes two passes over the (decompressed) stream:

1. a layout pass runs the pickle machine (`modelward.pickle.machine`) with a hook on BUILD
   to read each wrapper's shape and dtype, and so learns where the raw bytes are (skipped)
   and where nested pickles are;
2. the pickle scanner then walks the outer pickle with the raw bytes spliced out (a valid
   pickle again), and each nested pickle on its own.

Compressed files (zlib, joblib's old `ZF` files, gzip, bz2, xz, lzma) are decompressed as a
stream, never as a whole, and capped at `max_decompressed_bytes`: a bomb is a finding.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import math
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import BinaryIO, cast

from modelward.findings import Finding, Severity
from modelward.formats._magic import ZFILE_HEADER, compression
from modelward.formats._spliced import scan_pickle_ranges
from modelward.formats._streams import CountingReader, ReportingReader
from modelward.formats.interface import Blob, ScanAborted, ScanContext
from modelward.formats.numpy import itemsize
from modelward.formats.pickle import looks_like_pickle
from modelward.pickle.machine import (
    Const,
    DictValue,
    Hooks,
    ImportedGlobal,
    Instance,
    PickleMachine,
    TupleValue,
    Value,
)
from modelward.pickle.policy import default_policy, wrapper_kind
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes

#: Where plain detection looks for a wrapper import: sklearn models have one early on.
DETECT_BYTES = 1024 * 1024
#: Compressed bytes detection may read to see the first decompressed bytes (one bz2 block).
DETECT_COMPRESSED_BYTES = 1024 * 1024
_CHUNK = 64 * 1024
#: In every wrapper class name: `NumpyArrayWrapper`, `NDArrayWrapper`, `ZNDArrayWrapper`.
_WRAPPER = b"ArrayWrapper"
_DECOMPRESS_ERRORS = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


class _ZlibReader(io.RawIOBase):
    """A zlib stream decompressed as it is read, never more than the caller asks for."""

    def __init__(self, raw: BinaryIO, pending: bytes = b"") -> None:
        self._raw = raw
        self._pending = pending
        self._decompressor = zlib.decompressobj()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: memoryview) -> int:  # type: ignore[override]
        while not self._decompressor.eof:
            chunk = self._decompressor.unconsumed_tail or self._pending or self._raw.read(_CHUNK)
            self._pending = b""
            if not chunk:
                raise EOFError("zlib stream ends before its end marker")
            out = self._decompressor.decompress(chunk, len(buffer))
            if out:
                buffer[: len(out)] = out
                return len(out)
        return 0


def _decompressor(codec: str, raw: BinaryIO) -> io.BufferedIOBase:
    if codec == "gzip":
        return gzip.GzipFile(fileobj=raw, mode="rb")
    if codec == "bz2":
        return bz2.BZ2File(raw)
    if codec == "xz":
        return lzma.LZMAFile(raw, format=lzma.FORMAT_XZ)
    if codec == "lzma":
        return lzma.LZMAFile(raw, format=lzma.FORMAT_ALONE)
    if codec == "zfile":
        # "ZF", the length as "0x..." padded to 19 characters, sometimes a space, then zlib.
        raw.read(ZFILE_HEADER)
        first = raw.read(1)
        return io.BufferedReader(_ZlibReader(raw, b"" if first == b" " else first))
    return io.BufferedReader(_ZlibReader(raw))


def _open_decompressed(
    codec: str, raw: BinaryIO, limit: int, charge: Callable[[int], None] | None = None
) -> BinaryIO:
    """The decompressed stream, capped at `limit`; its output is `charge`d to the file."""
    capped = CountingReader(
        cast(
            BinaryIO,
            ReportingReader(
                _decompressor(codec, raw),
                _DECOMPRESS_ERRORS,
                "MW-JOBLIB-CORRUPT",
                "compressed stream is corrupt",
                charge,
            ),
        ),
        [0],
        limit,
    )
    return cast(BinaryIO, io.BufferedReader(capped, buffer_size=_CHUNK))


def zfile_length(head: bytes) -> int | None:
    """The decompressed length a joblib < 0.10 `ZF` header declares, or None if it has none.

    `read_zfile` (joblib's `numpy_pickle_compat`) decompresses to exactly this many bytes and
    asserts it; old joblib wrote both its main pickle and its `*.npy.z` arrays this way.
    """
    if compression(head) != "zfile":
        return None
    try:
        length = int(head[2:ZFILE_HEADER].decode("ascii"), 16)
    except (UnicodeDecodeError, ValueError):
        return None
    return length if length >= 0 else None


def open_zfile(raw: BinaryIO, limit: int, charge: Callable[[int], None] | None) -> BinaryIO:
    """The content of a `ZF` file read from its start, decompressed as it is read, capped at
    `limit` and `charge`d to the scanned file's decompression budget."""
    return _open_decompressed("zfile", raw, limit, charge)


# -- the layout pass ------------------------------------------------------------------------


@dataclass(frozen=True)
class ExternalArray:
    """A legacy wrapper whose array `joblib.load` reads from another file the pickle names."""

    offset: int
    wrapper: str
    #: The file name as the pickle gives it; None when it is not a constant string.
    filename: str | None


@dataclass
class Layout:
    """Where the pickle pieces of a joblib stream are (offsets in the decompressed stream)."""

    outer: list[tuple[int, int]] = field(default_factory=list)
    nested: list[tuple[int, int]] = field(default_factory=list)
    arrays: int = 0
    external: list[ExternalArray] = field(default_factory=list)
    #: Why the layout pass stopped before the end of the pickle: offset, message, rule id.
    problem: tuple[int, str, str] | None = None


def is_wrapper(module: str, name: str) -> bool:
    """joblib's inline array wrapper (`NumpyArrayWrapper`), under any import path to it."""
    return wrapper_kind(f"{module}.{name}") == "inline"


class _WrapperHooks(Hooks):
    """Notes each wrapper's BUILD: joblib reads the array right after it, or from a file."""

    def __init__(self) -> None:
        self.wrapper: Instance | None = None
        self.external: list[ExternalArray] = []

    def built(self, target: Value, state: Value, offset: int) -> None:
        cls = target.cls if isinstance(target, Instance) else None
        kind = wrapper_kind(cls.path) if cls is not None else None
        if kind == "inline":
            assert isinstance(target, Instance)
            self.wrapper = target
        elif kind == "file":
            assert cls is not None
            name = state.get("filename") if isinstance(state, DictValue) else None
            filename = _const(name) if name is not None else None
            text = filename if isinstance(filename, str) else None
            self.external.append(ExternalArray(offset, cls.name.rpartition(".")[2], text))

    def take_wrapper(self) -> Instance | None:
        wrapper, self.wrapper = self.wrapper, None
        return wrapper


@dataclass(frozen=True)
class _ArrayData:
    """What follows a wrapper: a nested pickle, or `size` raw bytes (after padding if any)."""

    pickled: bool
    padded: bool = False
    size: int = 0


def _array_data(wrapper: Instance) -> _ArrayData | None:
    """Read the wrapper state the way `NumpyArrayWrapper.read_array` does; None if unknowable."""
    state = wrapper.state
    if not isinstance(state, DictValue):
        return None
    shape, dtype = state.get("shape"), state.get("dtype")
    dims = [_const(d) for d in shape.items] if isinstance(shape, TupleValue) else None
    if dims is None or not all(_is_count(d) for d in dims):
        return None
    if not isinstance(dtype, Instance) or not isinstance(dtype.args, TupleValue):
        return None
    if not (isinstance(dtype.func, ImportedGlobal) and dtype.func.name == "dtype"):
        return None
    descr = _const(dtype.args.items[0]) if dtype.args.items else None
    dstate = [_const(v) for v in dtype.state.items] if isinstance(dtype.state, TupleValue) else []
    flags = dstate[7] if len(dstate) > 7 and _is_count(dstate[7]) else 0
    if not isinstance(descr, str):
        return None
    assert isinstance(flags, int)
    if _object_descr(descr) or flags & 1:  # NPY_ITEM_HASOBJECT
        return _ArrayData(pickled=True)
    elsize = dstate[5] if len(dstate) > 5 and _is_count(dstate[5]) else -1
    assert isinstance(elsize, int)
    size = elsize if elsize > 0 else itemsize(descr)
    if size is None:
        return None
    alignment = state.get("numpy_array_alignment_bytes")
    padded = alignment is not None and _const(alignment) is not None
    return _ArrayData(pickled=False, padded=padded, size=size * math.prod(dims))  # type: ignore[arg-type]


def _object_descr(descr: str) -> bool:
    """An object dtype however it is spelled: `O`, `|O`, `O8`, `=O8`, `object`..."""
    bare = descr.lstrip("|<>=!")
    return bare.startswith("O") or bare in ("object", "object_", "object0")


def _const(value: Value) -> object:
    return value.value if isinstance(value, Const) else None


def _is_count(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def read_layout(stream: BinaryIO, ctx: ScanContext) -> Layout:
    """The layout pass: where the pickle pieces are; raw array bytes are skipped unread.

    joblib's unpickler is `pickle._Unpickler`, which reads a FRAME's bytes ahead while
    `read_array` reads the array from the file itself: a wrapper whose BUILD lies inside a
    frame has its array right after the frame's end, and the opcodes left in the frame are
    read before it. Several such wrappers' arrays follow one another, in BUILD order.
    """
    limits = ctx.config.limits
    source = ByteSource(stream, ctx.check_deadline, limits)
    layout = Layout()
    hooks = _WrapperHooks()
    machine = PickleMachine(default_policy(), limits.max_pickle_bytes, hooks)
    start = 0
    frame_end: int | None = None
    pending: list[tuple[int, Instance]] = []
    try:
        for offset, opcode, arg in iter_opcodes(source, limits, ctx.check_deadline):
            if frame_end is not None and source.offset > frame_end:
                raise PickleDamage(offset, f"{opcode.name} runs past the end of its FRAME")
            if opcode.name == "FRAME":
                if frame_end is not None:
                    raise PickleDamage(offset, "FRAME before the end of the current frame")
                assert isinstance(arg, int)
                frame_end = source.offset + arg
            machine.feed(offset, opcode, arg)
            wrapper = hooks.take_wrapper()
            if wrapper is not None:
                pending.append((offset, wrapper))
            if frame_end is not None and source.offset >= frame_end:
                frame_end = None
            if pending and frame_end is None:
                layout.outer.append((start, source.offset))
                for at, built in pending:
                    if not _read_array(source, built, at, layout, ctx):
                        return layout
                pending.clear()
                start = source.offset
    except (PickleDamage, ScanAborted) as exc:
        if isinstance(exc, ScanAborted) and exc.rule_id == "MW-LIMIT-TIME":
            raise
        if not layout.outer or layout.outer[-1][1] <= start:
            # Let the pickle scanner meet the damage itself and report it in its words.
            layout.outer.append((start, limits.max_decompressed_bytes))
        if isinstance(exc, PickleDamage):
            layout.problem = (exc.offset, exc.message, "MW-JOBLIB-LAYOUT")
        else:
            layout.problem = (source.offset, exc.message, exc.rule_id)
        return layout
    finally:
        layout.external = hooks.external
    layout.outer.append((start, source.offset))
    return layout


def _read_array(
    source: ByteSource, wrapper: Instance, offset: int, layout: Layout, ctx: ScanContext
) -> bool:
    """Skip (raw) or locate (object: a nested pickle) one array; False if it is unreadable."""
    data = _array_data(wrapper)
    if data is None:
        layout.problem = (
            offset,
            "array wrapper with a shape or dtype we cannot read",
            "MW-JOBLIB-LAYOUT",
        )
        return False
    layout.arrays += 1
    if data.pickled:
        nested_start = source.offset
        for _ in iter_opcodes(source, ctx.config.limits, ctx.check_deadline):
            pass
        layout.nested.append((nested_start, source.offset))
    else:
        if data.padded:
            source.skip(source.read_exact(1, "array padding length")[0], "padding")
        source.skip(data.size, "array data")
    return True


# -- the scanner ------------------------------------------------------------------------


class JoblibScanner:
    """`joblib.dump` output: a pickle with inline NumPy arrays, possibly compressed."""

    name = "joblib"

    def detect(self, blob: Blob, head: bytes) -> bool:
        codec = compression(head)
        if codec is not None:
            return looks_like_pickle(_first_decompressed(blob, codec))
        if not looks_like_pickle(head):
            return False
        if _WRAPPER in head:
            return True
        with blob.open() as stream:
            window = stream.read(DETECT_BYTES)
        return _WRAPPER in window

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        with ctx.open(blob) as stream:
            codec = compression(stream.read(32))
        try:
            self._scan(blob, ctx, self._opener(blob, ctx, codec), plain=codec is None)
        except ScanAborted as exc:
            # A bomb or a corrupt compressed stream: a finding on this file, which stays joblib.
            if exc.rule_id == "MW-LIMIT-TIME":
                raise
            ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)

    def _scan(
        self, blob: Blob, ctx: ScanContext, opener: Callable[[], BinaryIO], plain: bool
    ) -> None:
        with opener() as stream:
            layout = read_layout(stream, ctx)
        if layout.problem is not None:
            offset, message, rule_id = layout.problem
            ctx.report(
                rule_id,
                Severity.MEDIUM,
                blob.location.at(offset),
                f"joblib file not read to its end ({message}); the rest is not scanned",
            )
        for external in layout.external:
            _report_external(external, blob, ctx)
        with opener() as stream:
            scan_pickle_ranges(stream, layout.outer, 0, blob.location, ctx)
        for piece in layout.nested:
            with opener() as stream:
                scan_pickle_ranges(stream, [piece], 0, blob.location, ctx)
        if plain and layout.arrays:
            self._scan_linear(blob, ctx, opener, layout.outer[0][1])

    @staticmethod
    def _scan_linear(
        blob: Blob, ctx: ScanContext, opener: Callable[[], BinaryIO], arrays_start: int
    ) -> None:
        """The same bytes as `pickle.load` or `torch.load` read them: straight on through the
        array bytes, which are opcodes to them. Up to the first array the two readings are
        the same (already reported). Past it, array bytes and nested pickles read on the outer
        stack and memo are mostly damage, computed names and names that fail to import, so
        only a dangerous name run there (critical) is kept: a payload hidden from joblib's
        reading in the bytes it takes for array data."""

        def runs_past_arrays(finding: Finding) -> bool:
            offset = finding.location.offset
            past = offset is not None and offset >= arrays_start
            dangerous = finding.rule_id == "MW-PICKLE-DANGEROUS-GLOBAL"
            return past and dangerous and finding.severity is Severity.CRITICAL

        with opener() as stream:
            scan_pickle_ranges(
                stream,
                [(0, ctx.config.limits.max_decompressed_bytes)],
                0,
                blob.location,
                ctx,
                runs_past_arrays,
            )

    @staticmethod
    def _opener(blob: Blob, ctx: ScanContext, codec: str | None) -> Callable[[], BinaryIO]:
        def plain() -> BinaryIO:
            return ctx.counted(blob.open())

        def decompressed() -> BinaryIO:
            assert codec is not None
            raw = ctx.counted(blob.open())
            limit = ctx.config.limits.max_decompressed_bytes
            return _open_decompressed(codec, raw, limit, ctx.charge_decompressed)

        return plain if codec is None else decompressed


def _report_external(external: ExternalArray, blob: Blob, ctx: ScanContext) -> None:
    """A legacy wrapper: `joblib.load` opens the file it names, next to the dump or anywhere."""
    name = external.filename
    loads = (
        "np.load(..., allow_pickle=True)"
        if external.wrapper == "NDArrayWrapper"
        else "a zlib read into an array"
    )
    outside = name is None or PurePath(name).is_absolute() or ".." in PurePath(name).parts
    if outside:
        severity = Severity.CRITICAL if external.wrapper == "NDArrayWrapper" else Severity.HIGH
        where = "a path the pickle computes" if name is None else f"{name!r}"
        ctx.report(
            "MW-JOBLIB-EXTERNAL-ARRAY",
            severity,
            blob.location.at(external.offset),
            f"joblib.load reads this {external.wrapper}'s array from {where}, outside the"
            f" dump's folder, with {loads}: the pickle chooses which file is deserialised;"
            " do not load this file",
            evidence=f"{external.wrapper} filename={name!r}",
        )
    else:
        ctx.report(
            "MW-JOBLIB-EXTERNAL-ARRAY",
            Severity.LOW,
            blob.location.at(external.offset),
            f"joblib.load reads this {external.wrapper}'s array from the sibling file {name!r}"
            f" (a joblib < 0.10 multi-file dump) with {loads}; scan that file too",
            evidence=f"{external.wrapper} filename={name!r}",
        )


def _first_decompressed(blob: Blob, codec: str) -> bytes:
    """The first bytes a compressed blob decompresses to; empty if it does not decompress."""
    try:
        with blob.open() as raw:
            capped = CountingReader(raw, [0], DETECT_COMPRESSED_BYTES)
            with _open_decompressed(codec, cast(BinaryIO, capped), 1024**2) as stream:
                return stream.read(64)
    except (ScanAborted, *_DECOMPRESS_ERRORS):
        return b""


JOBLIB = JoblibScanner()

__all__ = ["JOBLIB", "JoblibScanner", "Layout", "compression", "is_wrapper", "read_layout"]
