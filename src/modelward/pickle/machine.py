"""A symbolic unpickler: runs the opcodes against a stack of descriptions, never objects.

Each import (GLOBAL, STACK_GLOBAL, INST, EXT*) becomes an `ImportedGlobal`
that records what the stream does with it: call it (REDUCE, NEWOBJ, OBJ,
INST, or via a trampoline such as `copyreg._reconstructor`), mutate it
(BUILD or SETITEM on the imported object), or only reference it. BUILD state
keys that are dunders are recorded as `AttributeWrite`s. Whatever a real
loader would reject (stack underflow, missing memo key) is `PickleDamage`.
"""

from __future__ import annotations

import _compat_pickle
from collections.abc import Callable
from dataclasses import dataclass, field

from modelward.pickle.opcodes import HIGHEST_PROTOCOL, Opcode
from modelward.pickle.policy import DUNDER, GlobalPolicy
from modelward.pickle.walker import ArgValue, PickleDamage, Skipped

#: MARKs open at once beyond which the stream is reported (real pickles nest far less).
MAX_MARK_DEPTH = 1000
#: Bytes charged per stack slot / memo entry against `max_pickle_bytes`: about what a
#: small Python object and its pointer really cost, so the limit bounds real memory.
SLOT_COST = 64
#: A MARK also starts a new list for the items above it.
MARK_COST = 128
#: Calls of one import whose arguments are kept for evidence.
KEPT_CALLS = 3


class Value:
    """Something on the symbolic stack."""

    __slots__ = ()


class Const(Value):
    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


class Opaque(Value):
    """A value whose content we do not track (a skipped payload, a buffer, a persistent id)."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label


class TupleValue(Value):
    __slots__ = ("items",)

    def __init__(self, items: list[Value]) -> None:
        self.items = items


class ListValue(Value):
    __slots__ = ()


class SetValue(Value):
    __slots__ = ()


class DictValue(Value):
    """A dict; only its dunder string keys are kept (they matter as BUILD state)."""

    __slots__ = ("dunder_keys",)

    def __init__(self) -> None:
        self.dunder_keys: list[str] = []


class CallResult(Value):
    __slots__ = ("args", "func")

    def __init__(self, func: Value, args: Value) -> None:
        self.func = func
        self.args = args


@dataclass(eq=False)
class ImportedGlobal(Value):
    """One import site in the stream and what the stream does with what it imports."""

    module: str
    name: str
    offset: int
    opcode: str
    #: The operands were not constant strings (computed, or skipped): the target is unknowable.
    dynamic: bool = False
    #: EXT1/2/4 code: resolved by the loading process's copyreg registry, not by the stream.
    extension_code: int | None = None
    call_offsets: list[int] = field(default_factory=list)
    call_args: list[str] = field(default_factory=list)
    mutation_offsets: list[int] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def called(self) -> bool:
        return bool(self.call_offsets)


@dataclass(frozen=True)
class AttributeWrite:
    """A BUILD/SETITEM that sets dunder attributes or keys on an object."""

    offset: int
    opcode: str
    keys: tuple[str, ...]
    target: str


class SymbolicMachine:
    """Feed it opcodes in order; read `imports`, `writes` and `protocol` afterwards."""

    def __init__(self, policy: GlobalPolicy, max_bytes: int) -> None:
        self._policy = policy
        self._max_bytes = max_bytes
        self._held = 0
        self.stack: list[Value] = []
        self._marks: list[list[Value]] = []
        self._memo: dict[int, Value] = {}
        self.protocol = 0
        self.imports: list[ImportedGlobal] = []
        self.writes: list[AttributeWrite] = []
        self.deepest_marks = 0
        #: Offset of the MARK that first went deeper than `MAX_MARK_DEPTH`.
        self.too_deep_at: int | None = None
        self.result: Value | None = None

    # -- stack helpers -------------------------------------------------------------

    def _push(self, value: Value, offset: int) -> None:
        self._charge(SLOT_COST, offset)
        self.stack.append(value)

    def _charge(self, cost: int, offset: int) -> None:
        self._held += cost
        if self._held > self._max_bytes:
            raise PickleDamage(
                offset,
                f"analysis would hold more than {self._max_bytes} bytes (max_pickle_bytes);"
                " rest not scanned",
                "MW-PICKLE-LIMIT",
            )

    def _pop(self, offset: int, opcode: Opcode) -> Value:
        if not self.stack:
            raise PickleDamage(offset, f"{opcode.name} on an empty stack (a loader rejects this)")
        return self.stack.pop()

    def _top(self, offset: int, opcode: Opcode) -> Value:
        if not self.stack:
            raise PickleDamage(offset, f"{opcode.name} on an empty stack (a loader rejects this)")
        return self.stack[-1]

    def _pop_mark(self, offset: int, opcode: Opcode) -> list[Value]:
        if not self._marks:
            raise PickleDamage(offset, f"{opcode.name} without a MARK (a loader rejects this)")
        items = self.stack
        self.stack = self._marks.pop()
        return items

    # -- the interpreter -------------------------------------------------------------

    def feed(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        handler = _HANDLERS.get(opcode.name)
        if handler is not None:
            handler(self, offset, opcode, arg)
        elif isinstance(arg, Skipped):
            self._push(Opaque(f"<{arg.length} bytes of {arg.kind}>"), offset)
        else:
            # Every remaining opcode pushes its (constant) argument.
            if isinstance(arg, str):
                self._charge(len(arg), offset)
            self._push(Const(arg), offset)

    def _mark(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._charge(MARK_COST, offset)
        self._marks.append(self.stack)
        self.stack = []
        self.deepest_marks = max(self.deepest_marks, len(self._marks))
        if self.too_deep_at is None and len(self._marks) > MAX_MARK_DEPTH:
            self.too_deep_at = offset

    def _stop(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self.result = self._pop(offset, opcode)

    def _pop_op(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if self.stack:
            self.stack.pop()
        else:
            self._pop_mark(offset, opcode)

    def _pop_mark_op(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._pop_mark(offset, opcode)

    def _dup(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._push(self._top(offset, opcode), offset)

    def _proto(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, int)
        if arg > HIGHEST_PROTOCOL:
            raise PickleDamage(offset, f"unsupported pickle protocol {arg}")
        self.protocol = arg

    def _persid(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "BINPERSID":
            self._pop(offset, opcode)
        self._push(Opaque("<persistent id>"), offset)

    def _next_buffer(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._push(Opaque("<out-of-band buffer>"), offset)

    def _readonly_buffer(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._top(offset, opcode)

    # -- imports and calls -------------------------------------------------------------

    def _import(self, module: str, name: str, offset: int, opcode: Opcode) -> ImportedGlobal:
        if self.protocol < 3:
            # What Unpickler(fix_imports=True) does for Python 2 names.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        imported = ImportedGlobal(module, name, offset, opcode.name)
        self._charge(len(module) + len(name) + SLOT_COST, offset)
        self.imports.append(imported)
        return imported

    def _global(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, tuple)
        self._push(self._import(arg[0], arg[1], offset, opcode), offset)

    def _stack_global(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        name = self._pop(offset, opcode)
        module = self._pop(offset, opcode)
        operands = (module, name)
        if all(isinstance(v, Const) and isinstance(v.value, str) for v in operands):
            imported = self._import(_text(module), _text(name), offset, opcode)
        elif any(isinstance(v, Const) and not isinstance(v.value, str) for v in operands):
            raise PickleDamage(
                offset, "STACK_GLOBAL operands are not strings (a loader rejects this)"
            )
        else:
            imported = self._import(describe(module), describe(name), offset, opcode)
            imported.dynamic = True
        self._push(imported, offset)

    def _ext(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, int)
        if arg <= 0:
            raise PickleDamage(offset, f"{opcode.name} code {arg} is not positive")
        imported = self._import("<extension registry>", f"code {arg}", offset, opcode)
        imported.extension_code = arg
        self._push(imported, offset)

    def _call(self, func: Value, args: Value, offset: int) -> CallResult:
        """Record that `func(*args)` runs at `offset`; follow trampolines to their arguments."""
        if isinstance(func, ImportedGlobal):
            func.call_offsets.append(offset)
            if len(func.call_args) < KEPT_CALLS:
                func.call_args.append(describe(args))
            if self._policy.is_trampoline(func.path) and isinstance(args, TupleValue):
                for item in args.items:
                    if isinstance(item, ImportedGlobal):
                        self._call(item, Opaque("<arguments chosen by a trampoline>"), offset)
        return CallResult(func, args)

    def _reduce(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        args = self._pop(offset, opcode)
        func = self._pop(offset, opcode)
        self._push(self._call(func, args, offset), offset)

    def _newobj(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "NEWOBJ_EX":
            self._pop(offset, opcode)  # kwargs
        args = self._pop(offset, opcode)
        cls = self._pop(offset, opcode)
        self._push(self._call(cls, args, offset), offset)

    def _obj(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        items = self._pop_mark(offset, opcode)
        if not items:
            raise PickleDamage(offset, "OBJ without a class (a loader rejects this)")
        self._push(self._call(items[0], TupleValue(items[1:]), offset), offset)

    def _inst(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, tuple)
        items = self._pop_mark(offset, opcode)
        imported = self._import(arg[0], arg[1], offset, opcode)
        self._push(self._call(imported, TupleValue(items), offset), offset)

    # -- containers and mutation ---------------------------------------------------------

    def _build(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        state = self._pop(offset, opcode)
        target = self._top(offset, opcode)
        keys: list[str] = []
        parts = state.items if isinstance(state, TupleValue) else [state]
        for part in parts:
            if isinstance(part, DictValue):
                keys.extend(part.dunder_keys)
        self._mutate(target, state, keys, offset, opcode)

    def _mutate(
        self, target: Value, state: Value, dunder_keys: list[str], offset: int, opcode: Opcode
    ) -> None:
        if isinstance(target, ImportedGlobal) and not (
            isinstance(state, Const) and state.value is None
        ):
            target.mutation_offsets.append(offset)
        if dunder_keys:
            self.writes.append(
                AttributeWrite(offset, opcode.name, tuple(dunder_keys[:5]), describe(target))
            )

    def _setitems(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "SETITEM":
            value = self._pop(offset, opcode)
            items = [self._pop(offset, opcode), value]
        else:
            items = self._pop_mark(offset, opcode)
        target = self._top(offset, opcode)
        keys = _dunder_keys(items[0::2])
        if isinstance(target, DictValue):
            target.dunder_keys.extend(keys[: 5 - len(target.dunder_keys)])
        elif isinstance(target, ImportedGlobal):
            self._mutate(target, TupleValue(items), keys, offset, opcode)

    def _appends(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "APPEND":
            items = [self._pop(offset, opcode)]
        else:
            items = self._pop_mark(offset, opcode)
        target = self._top(offset, opcode)
        if isinstance(target, ImportedGlobal):
            self._mutate(target, TupleValue(items), [], offset, opcode)

    def _additems(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._pop_mark(offset, opcode)
        self._top(offset, opcode)

    def _from_mark(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        items = self._pop_mark(offset, opcode)
        value: Value
        if opcode.name == "TUPLE":
            value = TupleValue(items)
        elif opcode.name == "DICT":
            value = DictValue()
            value.dunder_keys.extend(_dunder_keys(items[0::2])[:5])
        elif opcode.name == "LIST":
            value = ListValue()
        else:  # FROZENSET
            value = SetValue()
        self._push(value, offset)

    def _small_tuple(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        size = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}[opcode.name]
        if len(self.stack) < size:
            raise PickleDamage(offset, f"{opcode.name} on a stack holding fewer than {size} items")
        items = self.stack[len(self.stack) - size :]
        del self.stack[len(self.stack) - size :]
        self._push(TupleValue(items), offset)

    # -- memo ----------------------------------------------------------------------

    def _get(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, int)
        if arg not in self._memo:
            raise PickleDamage(
                offset, f"{opcode.name} {arg}: memo key missing (a loader rejects this)"
            )
        self._push(self._memo[arg], offset)

    def _put(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        key = len(self._memo) if opcode.name == "MEMOIZE" else arg
        assert isinstance(key, int)
        if key < 0:
            raise PickleDamage(offset, f"{opcode.name} with negative memo key {key}")
        self._charge(SLOT_COST, offset)
        self._memo[key] = self._top(offset, opcode)


_Handler = Callable[[SymbolicMachine, int, Opcode, ArgValue], None]


def _pushes(make: Callable[[], Value]) -> _Handler:
    """A handler for an opcode that pushes a fresh value and reads nothing."""

    def push(machine: SymbolicMachine, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        machine._push(make(), offset)

    return push


def _ignore(machine: SymbolicMachine, offset: int, opcode: Opcode, arg: ArgValue) -> None:
    """FRAME only announces how many bytes follow; the walker already checked it fits."""


def _text(value: Value) -> str:
    assert isinstance(value, Const) and isinstance(value.value, str)
    return value.value


def _dunder_keys(keys: list[Value]) -> list[str]:
    return [
        k.value
        for k in keys
        if isinstance(k, Const) and isinstance(k.value, str) and DUNDER.match(k.value)
    ]


def describe(value: Value, depth: int = 0) -> str:
    """A short, bounded rendering of a symbolic value for evidence strings."""
    if isinstance(value, Const):
        text = repr(value.value)
        return text if len(text) <= 80 else text[:77] + "..."
    if isinstance(value, ImportedGlobal):
        return value.path
    if isinstance(value, Opaque):
        return value.label
    if depth >= 2:
        return "..."
    if isinstance(value, TupleValue):
        inner = ", ".join(describe(v, depth + 1) for v in value.items[:6])
        more = ", ..." if len(value.items) > 6 else ""
        comma = "," if len(value.items) == 1 else ""
        return f"({inner}{comma}{more})"
    if isinstance(value, CallResult):
        return f"{describe(value.func, depth + 1)}{describe(value.args, depth + 1)}"
    if isinstance(value, ListValue):
        return "[...]"
    if isinstance(value, DictValue):
        return "{...}"
    return "{...}" if isinstance(value, SetValue) else "<value>"


_M = SymbolicMachine
_HANDLERS: dict[str, _Handler] = {
    "MARK": _M._mark,
    "STOP": _M._stop,
    "POP": _M._pop_op,
    "POP_MARK": _M._pop_mark_op,
    "DUP": _M._dup,
    "NONE": _pushes(lambda: Const(None)),
    "NEWTRUE": _pushes(lambda: Const(True)),
    "NEWFALSE": _pushes(lambda: Const(False)),
    "PROTO": _M._proto,
    "FRAME": _ignore,
    "PERSID": _M._persid,
    "BINPERSID": _M._persid,
    "NEXT_BUFFER": _M._next_buffer,
    "READONLY_BUFFER": _M._readonly_buffer,
    "GLOBAL": _M._global,
    "STACK_GLOBAL": _M._stack_global,
    "INST": _M._inst,
    "EXT1": _M._ext,
    "EXT2": _M._ext,
    "EXT4": _M._ext,
    "REDUCE": _M._reduce,
    "NEWOBJ": _M._newobj,
    "NEWOBJ_EX": _M._newobj,
    "OBJ": _M._obj,
    "BUILD": _M._build,
    "SETITEM": _M._setitems,
    "SETITEMS": _M._setitems,
    "APPEND": _M._appends,
    "APPENDS": _M._appends,
    "ADDITEMS": _M._additems,
    "EMPTY_LIST": _pushes(ListValue),
    "EMPTY_DICT": _pushes(DictValue),
    "EMPTY_SET": _pushes(SetValue),
    "TUPLE": _M._from_mark,
    "DICT": _M._from_mark,
    "LIST": _M._from_mark,
    "FROZENSET": _M._from_mark,
    "EMPTY_TUPLE": _M._small_tuple,
    "TUPLE1": _M._small_tuple,
    "TUPLE2": _M._small_tuple,
    "TUPLE3": _M._small_tuple,
    "GET": _M._get,
    "BINGET": _M._get,
    "LONG_BINGET": _M._get,
    "PUT": _M._put,
    "BINPUT": _M._put,
    "LONG_BINPUT": _M._put,
    "MEMOIZE": _M._put,
}
