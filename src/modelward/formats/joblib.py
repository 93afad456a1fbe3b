"""joblib files (`joblib.dump`), plain or compressed, read without joblib or NumPy.

joblib is not a plain pickle: after each `joblib.numpy_pickle.NumpyArrayWrapper` object
(its BUILD opcode) it writes the array's bytes straight into the file, outside any pickle
frame: a padding-length byte, the padding, then the raw data; or, for object arrays, a
whole nested pickle. A linear opcode walker would read those bytes as opcodes.

So a scan takes two passes over the (decompressed) stream:

1. a layout pass evaluates just enough of the pickle (constants, tuples, dicts, memo,
   imports, calls) to read each wrapper's shape and dtype, and so learns where the raw
   bytes are (skipped) and where nested pickles are;
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
from typing import BinaryIO, cast

from modelward.findings import Severity
from modelward.formats._spliced import scan_pickle_ranges
from modelward.formats.base import Blob, CountingReader, ReportingReader, ScanAborted, ScanContext
from modelward.formats.numpy import itemsize
from modelward.formats.pickle import looks_like_pickle
from modelward.pickle.opcodes import Opcode
from modelward.pickle.walker import ArgValue, ByteSource, PickleDamage, Skipped, iter_opcodes

#: Where plain detection looks for a wrapper import: sklearn models have one early on.
DETECT_BYTES = 1024 * 1024
#: Compressed bytes detection may read to see the first decompressed bytes (one bz2 block).
DETECT_COMPRESSED_BYTES = 1024 * 1024
#: Items kept per list or dict in the layout pass (wrapper states are tiny).
_MAX_ITEMS = 1024
#: Values the layout pass keeps (in containers, memo, stack) before it gives up: bounds memory.
_MAX_KEPT = 2_000_000
_CHUNK = 64 * 1024
_WRAPPER = b"NumpyArrayWrapper"
#: joblib < 0.10 `ZF` files: the prefix and `hex(length)` padded to `len(hex(2**64))`.
_ZFILE_HEADER = 2 + 19
_DECOMPRESS_ERRORS = (zlib.error, lzma.LZMAError, EOFError, OSError, ValueError)


# -- compression --------------------------------------------------------------------------


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
    if head.startswith(b"ZF") and len(head) >= _ZFILE_HEADER:
        return "zfile"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] << 8 | head[1]) % 31 == 0:
        return "zlib"
    return None


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
        raw.read(_ZFILE_HEADER)
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


# -- the layout pass ------------------------------------------------------------------------


class _Unknown:
    """A value the layout pass does not follow."""


_UNKNOWN = _Unknown()


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(eq=False)
class _Obj:
    """The result of a call or class instantiation, with its BUILD state."""

    func: object
    args: object
    state: object = None


@dataclass
class Layout:
    """Where the pickle pieces of a joblib stream are (offsets in the decompressed stream)."""

    outer: list[tuple[int, int]] = field(default_factory=list)
    nested: list[tuple[int, int]] = field(default_factory=list)
    arrays: int = 0
    #: Why the layout pass stopped before the end of the pickle: offset, message, rule id.
    problem: tuple[int, str, str] | None = None


class _Values:
    """Just enough of an unpickler to read wrapper states: values, never objects or calls."""

    def __init__(self) -> None:
        self.stack: list[object] = []
        self.marks: list[int] = []
        self.memo: dict[int, object] = {}
        self.kept = 0

    def keep(self, count: int, offset: int) -> None:
        """Account for `count` more values held; a crafted pickle cannot exhaust memory."""
        self.kept += count
        if self.kept + len(self.stack) > _MAX_KEPT:
            raise PickleDamage(offset, f"more than {_MAX_KEPT} values to follow", "MW-PICKLE-LIMIT")

    def pop(self, offset: int) -> object:
        if not self.stack:
            raise PickleDamage(offset, "stack underflow")
        return self.stack.pop()

    def pop_mark(self, offset: int) -> list[object]:
        if not self.marks:
            raise PickleDamage(offset, "no MARK")
        start = self.marks.pop()
        items = self.stack[start:]
        del self.stack[start:]
        return items

    def feed(self, offset: int, opcode: Opcode, arg: ArgValue) -> _Obj | None:
        """Apply one opcode; return the wrapper object when it is a wrapper's BUILD."""
        name = opcode.name
        self.keep(0, offset)
        handler = _OPS.get(name)
        if handler is not None:
            return handler(self, offset, arg)
        if name in _NO_EFFECT:
            return None
        # Every other opcode pushes its constant argument.
        self.stack.append(_UNKNOWN if isinstance(arg, Skipped | tuple) else arg)
        return None


def _push(value: Callable[[], object]) -> _Op:
    def op(vm: _Values, offset: int, arg: ArgValue) -> None:
        vm.stack.append(value())

    return op


def _mark(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.marks.append(len(vm.stack))


def _pop(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.pop(offset)


def _pop_mark(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.pop_mark(offset)


def _dup(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.stack.append(vm.stack[-1] if vm.stack else _UNKNOWN)


def _tuple(size: int | None) -> _Op:
    def op(vm: _Values, offset: int, arg: ArgValue) -> None:
        items = vm.pop_mark(offset) if size is None else [vm.pop(offset) for _ in range(size)]
        if len(items) > _MAX_ITEMS:
            vm.stack.append(_UNKNOWN)  # no shape or dtype state is this long
            return
        vm.keep(len(items), offset)
        vm.stack.append(tuple(items) if size is None else tuple(reversed(items)))

    return op


def _list(vm: _Values, offset: int, arg: ArgValue) -> None:
    items = vm.pop_mark(offset)[:_MAX_ITEMS]
    vm.keep(len(items), offset)
    vm.stack.append(items)


def _dict(vm: _Values, offset: int, arg: ArgValue) -> None:
    target: dict[object, object] = {}
    _set_items(vm, target, vm.pop_mark(offset), offset)
    vm.stack.append(target)


def _set_items(vm: _Values, target: object, items: list[object], offset: int) -> None:
    if not isinstance(target, dict):
        return
    for key, value in zip(items[0::2], items[1::2], strict=False):
        if len(target) < _MAX_ITEMS and isinstance(key, str | int | bytes | float | tuple):
            vm.keep(1, offset)
            target[key] = value


def _setitem(vm: _Values, offset: int, arg: ArgValue) -> None:
    value = vm.pop(offset)
    key = vm.pop(offset)
    _set_items(vm, vm.stack[-1] if vm.stack else None, [key, value], offset)


def _setitems(vm: _Values, offset: int, arg: ArgValue) -> None:
    items = vm.pop_mark(offset)
    _set_items(vm, vm.stack[-1] if vm.stack else None, items, offset)


def _append(vm: _Values, offset: int, arg: ArgValue) -> None:
    value = vm.pop(offset)
    target = vm.stack[-1] if vm.stack else None
    if isinstance(target, list) and len(target) < _MAX_ITEMS:
        vm.keep(1, offset)
        target.append(value)


def _appends(vm: _Values, offset: int, arg: ArgValue) -> None:
    items = vm.pop_mark(offset)
    target = vm.stack[-1] if vm.stack else None
    if isinstance(target, list):
        kept = items[: _MAX_ITEMS - len(target)]
        vm.keep(len(kept), offset)
        target.extend(kept)


def _global(vm: _Values, offset: int, arg: ArgValue) -> None:
    if isinstance(arg, tuple):
        vm.stack.append(_Global(arg[0], arg[1]))
    else:
        vm.stack.append(_UNKNOWN)


def _stack_global(vm: _Values, offset: int, arg: ArgValue) -> None:
    name = vm.pop(offset)
    module = vm.pop(offset)
    ok = isinstance(module, str) and isinstance(name, str)
    vm.stack.append(_Global(cast(str, module), cast(str, name)) if ok else _UNKNOWN)


def _reduce(vm: _Values, offset: int, arg: ArgValue) -> None:
    args = vm.pop(offset)
    func = vm.pop(offset)
    if func == _Global("copyreg", "_reconstructor") and isinstance(args, tuple) and args:
        func = args[0]  # protocol 0/1 object creation
    vm.stack.append(_Obj(func, args))


def _newobj(vm: _Values, offset: int, arg: ArgValue) -> None:
    args = vm.pop(offset)
    cls = vm.pop(offset)
    vm.stack.append(_Obj(cls, args))


def _newobj_ex(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.pop(offset)
    _newobj(vm, offset, arg)


def _obj(vm: _Values, offset: int, arg: ArgValue) -> None:
    items = vm.pop_mark(offset)
    vm.stack.append(_Obj(items[0] if items else _UNKNOWN, tuple(items[1:])))


def _inst(vm: _Values, offset: int, arg: ArgValue) -> None:
    args = vm.pop_mark(offset)
    cls = _Global(arg[0], arg[1]) if isinstance(arg, tuple) else _UNKNOWN
    vm.stack.append(_Obj(cls, tuple(args)))


def _build(vm: _Values, offset: int, arg: ArgValue) -> _Obj | None:
    state = vm.pop(offset)
    target = vm.stack[-1] if vm.stack else None
    if not isinstance(target, _Obj):
        return None
    target.state = state
    func = target.func
    if isinstance(func, _Global) and is_wrapper(func.module, func.name):
        return target
    return None


def _put(vm: _Values, offset: int, arg: ArgValue) -> None:
    if isinstance(arg, int):
        vm.keep(1, offset)
        vm.memo[arg] = vm.stack[-1] if vm.stack else _UNKNOWN


def _memoize(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.keep(1, offset)
    vm.memo[len(vm.memo)] = vm.stack[-1] if vm.stack else _UNKNOWN


def _get(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.stack.append(vm.memo.get(arg, _UNKNOWN) if isinstance(arg, int) else _UNKNOWN)


def _replace_top(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.pop(offset)
    vm.stack.append(_UNKNOWN)


def _frozenset(vm: _Values, offset: int, arg: ArgValue) -> None:
    vm.pop_mark(offset)
    vm.stack.append(_UNKNOWN)


_Op = Callable[[_Values, int, ArgValue], _Obj | None]
_OPS: dict[str, _Op] = {
    "MARK": _mark,
    "POP": _pop,
    "POP_MARK": _pop_mark,
    "DUP": _dup,
    "NONE": _push(lambda: None),
    "NEWTRUE": _push(lambda: True),
    "NEWFALSE": _push(lambda: False),
    "EMPTY_TUPLE": _push(tuple),
    "EMPTY_LIST": _push(list),
    "EMPTY_DICT": _push(dict),
    "EMPTY_SET": _push(lambda: _UNKNOWN),
    "PERSID": _push(lambda: _UNKNOWN),
    "EXT1": _push(lambda: _UNKNOWN),
    "EXT2": _push(lambda: _UNKNOWN),
    "EXT4": _push(lambda: _UNKNOWN),
    "NEXT_BUFFER": _push(lambda: _UNKNOWN),
    "BINPERSID": _replace_top,
    "TUPLE": _tuple(None),
    "TUPLE1": _tuple(1),
    "TUPLE2": _tuple(2),
    "TUPLE3": _tuple(3),
    "LIST": _list,
    "DICT": _dict,
    "FROZENSET": _frozenset,
    "ADDITEMS": _pop_mark,
    "APPEND": _append,
    "APPENDS": _appends,
    "SETITEM": _setitem,
    "SETITEMS": _setitems,
    "GLOBAL": _global,
    "STACK_GLOBAL": _stack_global,
    "INST": _inst,
    "OBJ": _obj,
    "REDUCE": _reduce,
    "NEWOBJ": _newobj,
    "NEWOBJ_EX": _newobj_ex,
    "BUILD": _build,
    "PUT": _put,
    "BINPUT": _put,
    "LONG_BINPUT": _put,
    "MEMOIZE": _memoize,
    "GET": _get,
    "BINGET": _get,
    "LONG_BINGET": _get,
}
_NO_EFFECT = frozenset({"PROTO", "FRAME", "STOP", "READONLY_BUFFER"})


def is_wrapper(module: str, name: str) -> bool:
    """joblib's array wrapper, under its current or its vendored-in-sklearn module."""
    return name == "NumpyArrayWrapper" and module.endswith("numpy_pickle")


@dataclass(frozen=True)
class _ArrayData:
    """What follows a wrapper: a nested pickle, or `size` raw bytes (after padding if any)."""

    pickled: bool
    padded: bool = False
    size: int = 0


def _array_data(wrapper: _Obj) -> _ArrayData | None:
    """Read the wrapper state the way `NumpyArrayWrapper.read_array` does; None if unknowable."""
    state = wrapper.state
    if not isinstance(state, dict):
        return None
    shape, dtype = state.get("shape"), state.get("dtype")
    if not isinstance(shape, tuple) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        return None
    if not isinstance(dtype, _Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        return None
    if not (isinstance(dtype.func, _Global) and dtype.func.name == "dtype"):
        return None
    descr = dtype.args[0]
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = dstate[7] if len(dstate) > 7 and isinstance(dstate[7], int) else 0
    if not isinstance(descr, str):
        return None
    if descr.startswith("O") or flags & 1:  # NPY_ITEM_HASOBJECT
        return _ArrayData(pickled=True)
    elsize = dstate[5] if len(dstate) > 5 and isinstance(dstate[5], int) else -1
    size = elsize if elsize > 0 else itemsize(descr)
    if size is None:
        return None
    padded = state.get("numpy_array_alignment_bytes") is not None
    return _ArrayData(pickled=False, padded=padded, size=size * math.prod(shape))


def read_layout(stream: BinaryIO, ctx: ScanContext) -> Layout:
    """The layout pass: where the pickle pieces are; raw array bytes are skipped unread."""
    limits = ctx.config.limits
    source = ByteSource(stream, ctx.check_deadline, limits)
    layout = Layout()
    values = _Values()
    start = 0
    try:
        for offset, opcode, arg in iter_opcodes(source, limits, ctx.check_deadline):
            wrapper = values.feed(offset, opcode, arg)
            if wrapper is None:
                continue
            layout.outer.append((start, source.offset))
            data = _array_data(wrapper)
            if data is None:
                layout.problem = (
                    offset,
                    "array wrapper with a shape or dtype we cannot read",
                    "MW-JOBLIB-LAYOUT",
                )
                return layout
            layout.arrays += 1
            if data.pickled:
                nested_start = source.offset
                for _ in iter_opcodes(source, limits, ctx.check_deadline):
                    pass
                layout.nested.append((nested_start, source.offset))
            else:
                if data.padded:
                    source.skip(source.read_exact(1, "array padding length")[0], "padding")
                source.skip(data.size, "array data")
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
    layout.outer.append((start, source.offset))
    return layout


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
            self._scan(blob, ctx, self._opener(blob, ctx, codec))
        except ScanAborted as exc:
            # A bomb or a corrupt compressed stream: a finding on this file, which stays joblib.
            if exc.rule_id == "MW-LIMIT-TIME":
                raise
            ctx.report(exc.rule_id, Severity.MEDIUM, blob.location, exc.message)

    def _scan(self, blob: Blob, ctx: ScanContext, opener: Callable[[], BinaryIO]) -> None:
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
        with opener() as stream:
            scan_pickle_ranges(stream, layout.outer, 0, blob.location, ctx)
        for piece in layout.nested:
            with opener() as stream:
                scan_pickle_ranges(stream, [piece], 0, blob.location, ctx)

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
