"""The layout pass over a joblib pickle: where each array's raw bytes and nested pickles are.

The pickle machine (`modelward.pickle.machine`) runs with a hook on BUILD that reads each
array wrapper's shape and dtype, so the scanner can splice the raw bytes out of the outer
pickle and scan each nested pickle on its own.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import BinaryIO

from modelward.formats.interface import ScanAborted, ScanContext
from modelward.formats.numpy import itemsize
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
