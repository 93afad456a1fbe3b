"""The one symbolic unpickler: runs opcodes against descriptions of values, never objects.

Every reader of pickles in modelward runs this machine: the scanner (what loading would
import and run), joblib's layout pass (where the raw array bytes are) and the diff's
checkpoint reader (which tensors a state dict holds). They differ only in their `Hooks`:
what a persistent id becomes, what a call returns, what to note on a BUILD.

Each import (GLOBAL, STACK_GLOBAL, INST, EXT*) becomes an `ImportedGlobal` that records
what the stream does with it, because that decides what code loading runs:

- referenced only (stored as a value): nothing runs;
- CONSTRUCT (NEWOBJ, `copyreg.__newobj__`, `copyreg._reconstructor`): `cls.__new__`;
- CALL (REDUCE, INST, OBJ, or handed to something that calls it later): its body;
- SETSTATE (BUILD on an instance of it): `__setstate__`, or a `__dict__` update;
- ITEMS (APPEND(S)/SETITEM(S)/ADDITEMS on an instance): `append`/`__setitem__`/...

Wrappers (`getattr`, `functools.partial`, `operator.attrgetter`/`methodcaller`/`itemgetter`,
`operator.getitem`, `type`) are resolved to what they wrap when their arguments are
constants: `getattr(numpy, 'load')` becomes an import of `numpy.load`. A wrapper whose target
cannot be resolved is an `Unresolved` record. Whatever a real loader would reject (stack
underflow, a missing memo key) is `PickleDamage`.
"""

from __future__ import annotations

import _compat_pickle
import gc
import struct
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from modelward.config import Limits
from modelward.pickle.knowledge import Use
from modelward.pickle.opcodes import HIGHEST_PROTOCOL, OPCODES, Arg, Opcode
from modelward.pickle.policy import DUNDER, GlobalPolicy, Role
from modelward.pickle.walker import (
    KEEP_TEXT,
    TICK_EVERY,
    ArgValue,
    ByteSource,
    PayloadHook,
    PickleDamage,
    Skipped,
    opcode_checkpoint,
    read_arg,
)

_I4 = struct.Struct("<i")
_U4 = struct.Struct("<I")
_F8 = struct.Struct(">d")

#: MARKs open at once beyond which the stream is reported (real pickles nest far less).
MAX_MARK_DEPTH = 1000
#: Bytes charged per stack slot / memo entry against `max_pickle_bytes`: about what a
#: small Python object and its pointer really cost, so the limit bounds real memory.
SLOT_COST = 64
#: A MARK also starts a new list for the items above it.
MARK_COST = 128
#: Calls of one import whose arguments are kept for evidence.
KEPT_CALLS = 3
#: Special names a BUILD may set to a constant string without alarm (statsmodels sets
#: `__doc__`); any other of Python's special names (`GlobalPolicy.special_dunders`) set on an
#: object stays critical. Dunder-shaped names Python gives no meaning (`__orig_class__` of
#: typing generics, `__networkx_cache__`) are a library's instance data.
ORDINARY_DUNDER_STATE = frozenset({"__doc__", "__module__", "__name__", "__qualname__"})


class Value:
    """Something on the symbolic stack."""

    __slots__ = ()


class Const(Value):
    __slots__ = ("offset", "value")

    def __init__(self, value: object, offset: int = -1) -> None:
        self.value = value
        #: Where the opcode that pushed it is (-1: made by the machine, not read).
        self.offset = offset


class Opaque(Value):
    """A value whose content we do not track (a skipped payload, a buffer, a persistent id)."""

    __slots__ = ("label",)

    def __init__(self, label: str) -> None:
        self.label = label


class Payload(Opaque):
    """A byte or text argument too long to keep (tensor data, an embedded file), by offset."""

    __slots__ = ("offset",)

    def __init__(self, label: str, offset: int) -> None:
        super().__init__(label)
        self.offset = offset


class Hidden(Opaque):
    """The result of a call whose target is already recorded as `Unresolved`."""

    __slots__ = ()


class TupleValue(Value):
    __slots__ = ("items",)

    def __init__(self, items: list[Value]) -> None:
        self.items = items


class ListValue(Value):
    __slots__ = ("items",)

    def __init__(self, items: list[Value] | None = None) -> None:
        self.items: list[Value] = items if items is not None else []


class SetValue(Value):
    __slots__ = ()


class DictValue(Value):
    """A dict; its pairs are kept (each value was charged when it was pushed), with an index
    of its constant string keys and its dunder pairs, so lookups and BUILD checks cost
    nothing per pair however often a hostile stream reuses one big dict."""

    __slots__ = ("_strings", "dunder_pairs", "pairs")

    def __init__(self) -> None:
        self.pairs: list[tuple[Value, Value]] = []
        self.dunder_pairs: list[tuple[Value, Value]] = []
        self._strings: dict[str, Value] = {}

    def add(self, pairs: Iterable[tuple[Value, Value]]) -> None:
        for key, value in pairs:
            self.add_pair(key, value)

    def add_pair(self, key: Value, value: Value) -> None:
        self.pairs.append((key, value))
        if isinstance(key, Const):
            text = key.value
            if isinstance(text, str):
                self._strings[text] = value
                if text[:2] == "__" and DUNDER.match(text):
                    self.dunder_pairs.append((key, value))

    def get(self, key: str) -> Value | None:
        """The last value set under the constant string `key`."""
        return self._strings.get(key)


@dataclass(eq=False)
class ImportedGlobal(Value):
    """One import site (or a name a wrapper resolved to) and what the stream does with it."""

    module: str
    name: str
    offset: int
    opcode: str
    #: The operands were not constant strings (computed, or skipped): the target is unknowable.
    dynamic: bool = False
    #: EXT1/2/4 code: resolved by the loading process's copyreg registry, not by the stream.
    extension_code: int | None = None
    #: How a wrapper reached this name (`getattr(numpy, 'load')`); None for a plain import.
    via: str | None = None
    uses: dict[Use, list[int]] = field(default_factory=dict)
    call_args: list[str] = field(default_factory=list)
    mutation_offsets: list[int] = field(default_factory=list)

    @property
    def path(self) -> str:
        return f"{self.module}.{self.name}"

    @property
    def called(self) -> bool:
        return Use.CALL in self.uses

    def use(self, use: Use, offset: int) -> None:
        self.uses.setdefault(use, []).append(offset)


class Instance(Value):
    """What a call or NEWOBJ returns; `cls` is the class whose methods BUILD and items run."""

    __slots__ = ("args", "cls", "func", "items", "pairs", "state")

    def __init__(self, func: Value, args: Value, cls: ImportedGlobal | None) -> None:
        self.func = func
        self.args = args
        self.cls = cls
        self.state: Value | None = None
        self.items: list[Value] = []
        self.pairs: list[tuple[Value, Value]] = []


class Wrapped(Value):
    """A callable built by a wrapper: calling it calls `target` (partial) or resolves a getter.

    `kind` is `partial`, `attrgetter`, `methodcaller` or `itemgetter`; `names` are the
    getter's constant operands (None when they are not constants).
    """

    __slots__ = ("called", "kind", "names", "offset", "target")

    def __init__(
        self, kind: str, target: Value | None, names: list[str] | None, offset: int
    ) -> None:
        self.kind = kind
        self.target = target
        self.names = names
        self.offset = offset
        self.called = False


@dataclass(frozen=True)
class AttributeWrite:
    """A BUILD/SETITEM that sets dunder attributes or keys on an object."""

    offset: int
    opcode: str
    keys: tuple[str, ...]
    target: str


@dataclass(frozen=True)
class Unresolved:
    """A call whose target the stream hides: a wrapper with computed operands, a computed callee."""

    offset: int
    what: str
    #: CRITICAL when a wrapper hides its target (the classic road to `eval`), HIGH otherwise.
    wrapper: bool


class Hooks:
    """What a reader adds to the machine; the defaults are the scanner's (nothing)."""

    def persistent(self, machine: PickleMachine, pid: Value, offset: int) -> Value:
        """torch's legacy loader resolves `('module', cls, file, source)` to `cls` itself."""
        if isinstance(pid, TupleValue) and len(pid.items) >= 2:
            kind, cls = pid.items[0], pid.items[1]
            if (
                isinstance(kind, Const)
                and kind.value == "module"
                and isinstance(cls, ImportedGlobal)
            ):
                return cls
        return Opaque("<persistent id>")

    def called(self, func: Value, args: Value, result: Value, offset: int) -> Value:
        """The value a call leaves on the stack (`result` unless the reader models it)."""
        return result

    def built(self, target: Value, state: Value, offset: int) -> None:
        """A BUILD applied `state` to `target` (already recorded on an `Instance`)."""


_NO_HOOKS = Hooks()


class PickleMachine:
    """Feed it opcodes in order; read `imports`, `writes`, `unresolved`, `result` afterwards."""

    def __init__(self, policy: GlobalPolicy, max_bytes: int, hooks: Hooks = _NO_HOOKS) -> None:
        self._policy = policy
        self._max_bytes = max_bytes
        self._hooks = hooks
        self._held = 0
        self.stack: list[Value] = []
        self._marks: list[list[Value]] = []
        self._memo: dict[int, Value] = {}
        self.protocol = 0
        self.imports: list[ImportedGlobal] = []
        self.writes: list[AttributeWrite] = []
        self.unresolved: list[Unresolved] = []
        #: Offsets of byte arguments a helper deserialises at load time (`torch.storage.
        #: _load_from_bytes`), with that helper's name: their content runs when this loads.
        self.loaded: dict[int, str] = {}
        #: `operator.methodcaller`s built by the stream; one never called here is a loaded gun.
        self.methodcallers: list[Wrapped] = []
        self.deepest_marks = 0
        #: Offset of the MARK that first went deeper than `MAX_MARK_DEPTH`.
        self.too_deep_at: int | None = None
        self.result: Value | None = None
        #: Opcodes `run` ran.
        self.opcodes = 0

    # -- stack helpers -------------------------------------------------------------

    def _push(self, value: Value, offset: int) -> None:
        self.charge(SLOT_COST, offset)
        self.stack.append(value)

    def charge(self, cost: int, offset: int) -> None:
        """Account for `cost` more bytes held; past `max_pickle_bytes` the walk stops."""
        self._held += cost
        if self._held > self._max_bytes:
            raise self._too_much(offset)

    def _too_much(self, offset: int) -> PickleDamage:
        return PickleDamage(
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
        handler = _BY_CODE[opcode.code]
        if handler is not None:
            handler(self, offset, opcode, arg)
        elif isinstance(arg, Skipped):
            self._push(Payload(f"<{arg.length} bytes of {arg.kind}>", offset), offset)
        else:
            # Every remaining opcode pushes its (constant) argument.
            if isinstance(arg, str | bytes):
                self.charge(len(arg), offset)
            self._push(Const(arg, offset), offset)

    def run(
        self,
        source: ByteSource,
        limits: Limits,
        tick: Callable[[], None],
        *,
        large: PayloadHook | None = None,
        found: Callable[[bytes | str, str, int], None] | None = None,
        found_min: int = 0,
        until: Callable[[], bool] | None = None,
    ) -> bool:
        """Run one stream from `source` to its STOP: what feeding every opcode of
        `iter_opcodes(source, limits, tick, large)` does, in one loop.

        `found` sees each byte or text argument kept whole and at least `found_min` long
        (before the opcode runs); `until` is asked after each opcode that may run a hook,
        and ends the run (False returned) when it says so. `self.opcodes` counts the opcodes
        run, damage or not. True at STOP; damage is raised.

        Python's cyclic garbage collector is paused meanwhile (as Mercurial does while
        parsing): every value the machine makes lives until the run ends, so collections
        would find nothing and cost a third of the time. Memory stays bounded by
        `max_pickle_bytes`, which is charged for every value made and never refunded.

        The opcodes of ordinary object pickles (values, memo, containers) are read from the
        source's buffer and run here inline; any other opcode, or any that might not lie
        whole in the buffer, is read by `read_arg` and run by `feed`, so every check and
        every message is theirs.
        """
        collecting = gc.isenabled()
        if collecting:
            gc.disable()
        try:
            return self._run(source, limits, tick, large, found, found_min, until)
        finally:
            if collecting:
                gc.enable()

    def _run(
        self,
        source: ByteSource,
        limits: Limits,
        tick: Callable[[], None],
        large: PayloadHook | None,
        found: Callable[[bytes | str, str, int], None] | None,
        found_min: int,
        until: Callable[[], bool] | None,
    ) -> bool:
        count = 0
        max_opcodes = limits.max_pickle_opcodes
        check_at = min(TICK_EVERY, max_opcodes + 1)
        max_bytes = self._max_bytes
        memo = self._memo
        marks = self._marks
        stack = self.stack
        plain = _PLAIN
        end_bound = source.end_bound
        buf = source._buf
        pos = source._pos
        base = source._base
        #: Bytes of `buf` that may be read without a check: some are left to the stream's end.
        limit = min(len(buf), end_bound - base)
        end = limit - 9  # the opcode and any fixed-size argument lie in `buf` up to here
        try:
            while True:
                count += 1
                if count >= check_at:
                    source._pos = pos
                    try:
                        check_at = opcode_checkpoint(source, count, max_opcodes, tick)
                    except BaseException:
                        count -= 1
                        raise
                if pos <= end:
                    code = buf[pos]
                    offset = base + pos
                    value: Value | None
                    if code == 0x94 or code == 0x71 or code == 0x72:  # MEMOIZE, (LONG_)BINPUT
                        if code == 0x94:
                            key = len(memo)
                            pos += 1
                        elif code == 0x71:
                            key = buf[pos + 1]
                            pos += 2
                        else:
                            key = _U4.unpack_from(buf, pos + 1)[0]
                            pos += 5
                        held = self._held + SLOT_COST
                        self._held = held
                        if held > max_bytes:
                            raise self._too_much(offset)
                        if not stack:
                            raise PickleDamage(offset, _EMPTY[code])
                        memo[key] = stack[-1]
                        continue
                    if code == 0x8C or code == 0x58:  # SHORT_BINUNICODE, BINUNICODE
                        if code == 0x8C:
                            start = pos + 2
                            stop = start + buf[pos + 1]
                        else:
                            start = pos + 5
                            stop = start + _U4.unpack_from(buf, pos + 1)[0]
                        if stop <= limit and stop - start <= KEEP_TEXT:
                            try:
                                text = buf[start:stop].decode("utf-8", "surrogatepass")
                            except UnicodeDecodeError:
                                pass  # the slow way reports it
                            else:
                                pos = stop
                                if found is not None and len(text) >= found_min:
                                    try:
                                        found(text, _NAMES[code], offset)
                                    except BaseException:
                                        count -= 1
                                        raise
                                held = self._held + len(text)  # charged as `feed` does
                                if held <= max_bytes:
                                    held += SLOT_COST
                                self._held = held
                                if held > max_bytes:
                                    raise self._too_much(offset)
                                stack.append(Const(text, offset))
                                continue
                    elif code == 0x68 or code == 0x6A:  # BINGET, LONG_BINGET
                        if code == 0x68:
                            key = buf[pos + 1]
                            after = pos + 2
                        else:
                            key = _U4.unpack_from(buf, pos + 1)[0]
                            after = pos + 5
                        got = memo.get(key)
                        if got is not None:
                            pos = after
                            held = self._held + SLOT_COST
                            self._held = held
                            if held > max_bytes:
                                raise self._too_much(offset)
                            stack.append(got)
                            continue
                    elif code == 0x73:  # SETITEM
                        if len(stack) >= 3:
                            target = stack[-3]
                            if isinstance(target, DictValue):
                                pos += 1
                                item = stack.pop()
                                target.add_pair(stack.pop(), item)
                                continue
                    elif code == 0x75 or code == 0x65:  # SETITEMS, APPENDS
                        if marks:
                            below = marks[-1]
                            if below:
                                target = below[-1]
                                if code == 0x75 and isinstance(target, DictValue):
                                    target.add(zip(stack[0::2], stack[1::2], strict=False))
                                elif code == 0x65 and isinstance(target, ListValue):
                                    target.items.extend(stack)
                                else:
                                    target = None
                                if target is not None:
                                    pos += 1
                                    marks.pop()
                                    stack = self.stack = below
                                    continue
                    elif code == 0x28:  # MARK
                        pos += 1
                        held = self._held + MARK_COST
                        self._held = held
                        if held > max_bytes:
                            raise self._too_much(offset)
                        marks.append(stack)
                        stack = self.stack = []
                        depth = len(marks)
                        if depth > self.deepest_marks:
                            self.deepest_marks = depth
                            if depth > MAX_MARK_DEPTH and self.too_deep_at is None:
                                self.too_deep_at = offset
                        continue
                    elif 0x85 <= code <= 0x87 or code == 0x29:  # TUPLE1-3, EMPTY_TUPLE
                        size = code - 0x84 if code != 0x29 else 0
                        if len(stack) >= size:
                            pos += 1
                            if size:
                                items = stack[-size:]
                                del stack[-size:]
                            else:
                                items = []
                            value = TupleValue(items)
                        else:
                            value = None
                        if value is not None:
                            held = self._held + SLOT_COST
                            self._held = held
                            if held > max_bytes:
                                raise self._too_much(offset)
                            stack.append(value)
                            continue
                    else:
                        # Pushes of a fresh value: decided here, pushed below.
                        if code == 0x4B:  # BININT1
                            value = Const(buf[pos + 1], offset)
                            pos += 2
                        elif code == 0x4D:  # BININT2
                            value = Const(buf[pos + 1] | buf[pos + 2] << 8, offset)
                            pos += 3
                        elif code == 0x4A:  # BININT
                            value = Const(_I4.unpack_from(buf, pos + 1)[0], offset)
                            pos += 5
                        elif code == 0x47:  # BINFLOAT
                            value = Const(_F8.unpack_from(buf, pos + 1)[0], offset)
                            pos += 9
                        elif code == 0x7D:  # EMPTY_DICT
                            value = DictValue()
                            pos += 1
                        elif code == 0x5D:  # EMPTY_LIST
                            value = ListValue()
                            pos += 1
                        elif code == 0x4E:  # NONE
                            value = Const(None)
                            pos += 1
                        elif code == 0x88 or code == 0x89:  # NEWTRUE, NEWFALSE
                            value = Const(code == 0x88)
                            pos += 1
                        else:
                            handler = plain.get(code)
                            if handler is not None:
                                pos += 1
                                handler(self, offset, OPCODES[code], None)
                                stack = self.stack
                                if until is not None and until():
                                    return False
                                continue
                            value = None
                        if value is not None:
                            held = self._held + SLOT_COST
                            self._held = held
                            if held > max_bytes:
                                raise self._too_much(offset)
                            stack.append(value)
                            continue
                # The slow way: anything else, and whatever might not lie whole in `buf`.
                offset = base + pos
                source._pos = pos
                pos = -1  # the source's position counts until it is read back
                try:
                    code = source.read_byte()
                    if code < 0:
                        raise PickleDamage(
                            offset, "stream ends before STOP (truncated)", truncated=True
                        )
                    opcode = OPCODES.get(code)
                    if opcode is None:
                        raise PickleDamage(offset, f"byte 0x{code:02x} is not a pickle opcode")
                    arg = (
                        None if opcode.arg is Arg.NONE else read_arg(source, opcode, offset, large)
                    )
                    if found is not None and isinstance(arg, bytes | str) and len(arg) >= found_min:
                        found(arg, opcode.name, offset)
                except BaseException:
                    count -= 1
                    raise
                self.feed(offset, opcode, arg)
                if until is not None and until():
                    return False
                if code == 0x2E:  # STOP
                    return True
                stack = self.stack
                buf = source._buf
                pos = source._pos
                base = source._base
                limit = min(len(buf), end_bound - base)
                end = limit - 9
        finally:
            if pos >= 0:
                source._pos = pos
            self.opcodes = count

    def _mark(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self.charge(MARK_COST, offset)
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
        pid = self._pop(offset, opcode) if opcode.name == "BINPERSID" else Const(arg)
        self._push(self._hooks.persistent(self, pid, offset), offset)

    def _next_buffer(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._push(Opaque("<out-of-band buffer>"), offset)

    def _readonly_buffer(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._top(offset, opcode)

    # -- imports -------------------------------------------------------------------------

    def _import(self, module: str, name: str, offset: int, opcode: str) -> ImportedGlobal:
        if self.protocol < 3 and opcode in ("GLOBAL", "INST", "STACK_GLOBAL"):
            # What Unpickler(fix_imports=True) does for Python 2 names.
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        imported = ImportedGlobal(module, name, offset, opcode)
        self.charge(len(module) + len(name) + SLOT_COST, offset)
        self.imports.append(imported)
        return imported

    def _global(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, tuple)
        self._push(self._import(arg[0], arg[1], offset, opcode.name), offset)

    def _stack_global(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        name = self._pop(offset, opcode)
        module = self._pop(offset, opcode)
        operands = (module, name)
        if all(isinstance(v, Const) and isinstance(v.value, str) for v in operands):
            imported = self._import(_text(module), _text(name), offset, opcode.name)
        elif any(isinstance(v, Const) and not isinstance(v.value, str) for v in operands):
            raise PickleDamage(
                offset, "STACK_GLOBAL operands are not strings (a loader rejects this)"
            )
        else:
            imported = self._import(describe(module), describe(name), offset, opcode.name)
            imported.dynamic = True
        self._push(imported, offset)

    def _ext(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, int)
        if arg <= 0:
            raise PickleDamage(offset, f"{opcode.name} code {arg} is not positive")
        imported = self._import("<extension registry>", f"code {arg}", offset, opcode.name)
        imported.extension_code = arg
        self._push(imported, offset)

    def _attribute(self, owner: Value, attr: str, offset: int, via: str) -> Value:
        """`owner.attr` as a name of its own, when `owner` is an import or an instance of one."""
        base: tuple[str, str] | None = None
        if isinstance(owner, Instance):
            owner = owner.cls if owner.cls is not None else owner
        if isinstance(owner, ImportedGlobal) and not owner.dynamic and owner.extension_code is None:
            base = (owner.module, owner.name)
        elif isinstance(owner, Const) and owner.value is not None:
            base = ("builtins", type(owner.value).__name__)
        elif type(owner) in _CONTAINER_TYPES:
            base = ("builtins", _CONTAINER_TYPES[type(owner)])
        if base is None:
            if DUNDER.match(attr):
                what = f"{via} on {describe(owner)}, which cannot be resolved"
                self.unresolved.append(Unresolved(offset, what, True))
                return Hidden(f"<{via}>")
            # A method of an object we cannot name: nothing runs unless it is called,
            # and calling a value the stream computed is reported where it happens.
            return Opaque(f"<{via} of {describe(owner)}>")
        resolved = self._import(base[0], f"{base[1]}.{attr}", offset, "getattr")
        resolved.via = via
        return resolved

    # -- calls -----------------------------------------------------------------------------

    def _call(self, func: Value, args: Value, offset: int) -> Value:
        """Record what `func(*args)` runs at `offset`; the value the call leaves."""
        result = self._run_call(func, args, offset)
        return self._hooks.called(func, args, result, offset)

    def _run_call(self, func: Value, args: Value, offset: int) -> Value:
        if isinstance(func, Wrapped):
            return self._call_wrapped(func, args, offset)
        if not isinstance(func, ImportedGlobal):
            if not isinstance(func, Hidden):
                self.unresolved.append(
                    Unresolved(offset, f"calls {describe(func)}, a value the stream built", False)
                )
            return Instance(func, args, None)
        func.use(Use.CALL, offset)
        if len(func.call_args) < KEPT_CALLS:
            func.call_args.append(describe(args))
        wrapper = self._policy.wrapper(func.path)
        if wrapper is not None and not func.dynamic:
            return self._resolve_wrapper(wrapper, func, args, offset)
        cls: ImportedGlobal | None = func
        roles = self._policy.argument_roles(func.path)
        if roles and not func.dynamic:
            if isinstance(args, TupleValue):
                cls = self._apply_roles(func, roles, args.items, offset) or func
            else:
                what = f"{func.path} with arguments the stream computed ({describe(args)})"
                self.unresolved.append(Unresolved(offset, what, False))
        return Instance(func, args, cls)

    def _apply_roles(
        self, func: ImportedGlobal, roles: tuple[Role, ...], items: list[Value], offset: int
    ) -> ImportedGlobal | None:
        """A helper that constructs, calls, sets the state of or deserialises its arguments
        (copyreg's, NumPy's, torch's rebuild helpers, `defaultdict`'s factory); returns the
        class built."""
        built: ImportedGlobal | None = None
        for role, item in zip(roles, items, strict=False):
            if role is Role.LOAD:
                self._load(func, item, offset)
            if role is Role.CONSTRUCT and isinstance(item, ImportedGlobal):
                item.use(Use.CONSTRUCT, offset)
                built = built or item
            elif role is Role.CALL:
                self._call(item, Opaque("<arguments chosen later>"), offset)
            elif role is Role.SETSTATE and isinstance(item, ImportedGlobal):
                item.use(Use.SETSTATE, offset)
        return built

    def _load(self, loader: ImportedGlobal, data: Value, offset: int) -> None:
        """`loader` deserialises `data` when this pickle loads: data read from the file is
        scanned where it stands (`embedded.py`); data the stream computes cannot be."""
        if isinstance(data, Payload) or (
            isinstance(data, Const) and isinstance(data.value, bytes | str) and data.offset >= 0
        ):
            self.loaded[data.offset] = loader.path
        else:
            self.unresolved.append(
                Unresolved(offset, f"{loader.path} deserialises {describe(data)}", False)
            )

    def _resolve_wrapper(
        self, wrapper: str, func: ImportedGlobal, args: Value, offset: int
    ) -> Value:
        items = args.items if isinstance(args, TupleValue) else None
        if items is None:
            self.unresolved.append(Unresolved(offset, f"{func.path} with computed arguments", True))
            return Hidden(f"<{func.path}>")
        consts = _strings(items)
        if wrapper == "getattr":
            if len(items) < 2 or consts[1] is None:
                self.unresolved.append(
                    Unresolved(offset, f"{func.path}{describe(args)}: computed name", True)
                )
                return Hidden("<getattr>")
            return self._attribute(items[0], consts[1], offset, f"getattr(..., {consts[1]!r})")
        if wrapper == "getitem":
            if len(items) == 2 and consts[1] is not None and isinstance(items[0], ImportedGlobal):
                return self._attribute(items[0], consts[1], offset, f"[{consts[1]!r}]")
            return Opaque("<item>")
        if wrapper == "import":
            # `numpy.core._ufunc_reconstruct(module, name)` is `__import__(module).name`.
            if len(items) == 2 and consts[0] is not None and consts[1] is not None:
                resolved = self._import(consts[0], consts[1], offset, "import")
                resolved.via = f"{func.path}({consts[0]!r}, {consts[1]!r})"
                return resolved
            self.unresolved.append(
                Unresolved(offset, f"{func.path}{describe(args)}: computed module or name", True)
            )
            return Hidden(f"<{func.path}>")
        if wrapper == "encode":
            # Protocol 0-2 write bytes as `_codecs.encode(text, "latin1")`: the same data.
            same = len(items) == 2 and consts[1] in ("latin1", "latin-1", "iso-8859-1")
            if same and isinstance(items[0], Payload | Const):
                return items[0]
            return Instance(func, args, func)
        if wrapper == "partial":
            if not items:
                self.unresolved.append(Unresolved(offset, f"{func.path}()", True))
                return Hidden("<partial>")
            self._call(items[0], TupleValue(items[1:]), offset)
            return Wrapped("partial", items[0], None, offset)
        if wrapper == "type":
            if len(items) == 1:
                target = items[0]
                return (
                    target.cls if isinstance(target, Instance) and target.cls else Opaque("<type>")
                )
            self.unresolved.append(
                Unresolved(offset, f"{func.path} builds a new class{describe(args)}", True)
            )
            return Hidden("<new class>")
        # attrgetter, methodcaller, itemgetter: resolved when the getter is called.
        names: list[str] | None = [c for c in consts if c is not None]
        if wrapper == "methodcaller":
            names = [consts[0]] if consts and consts[0] is not None else None
        elif wrapper == "attrgetter" and (not consts or None in consts):
            names = None
        getter = Wrapped(wrapper, None, names, offset)
        if wrapper == "methodcaller":
            self.methodcallers.append(getter)
        return getter

    def _call_wrapped(self, func: Wrapped, args: Value, offset: int) -> Value:
        func.called = True
        if func.kind == "partial":
            assert func.target is not None
            return self._call(func.target, args, offset)
        if func.kind == "itemgetter":
            return Opaque("<item>")
        items = args.items if isinstance(args, TupleValue) else []
        if func.names is None or not items:
            self.unresolved.append(
                Unresolved(offset, f"operator.{func.kind} with computed operands", True)
            )
            return Hidden(f"<{func.kind}>")
        if func.kind == "methodcaller":
            method = self._attribute(
                items[0], func.names[0], offset, f"methodcaller({func.names[0]!r})"
            )
            return self._call(method, Opaque("<arguments of methodcaller>"), offset)
        value: Value = Opaque("<attribute>")
        for dotted in func.names:
            value = items[0]
            for attr in dotted.split("."):
                value = self._attribute(value, attr, offset, f"attrgetter({dotted!r})")
        return value

    def _reduce(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        args = self._pop(offset, opcode)
        func = self._pop(offset, opcode)
        self._push(self._call(func, args, offset), offset)

    def _newobj(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "NEWOBJ_EX":
            self._pop(offset, opcode)  # kwargs
        args = self._pop(offset, opcode)
        cls = self._pop(offset, opcode)
        if isinstance(cls, ImportedGlobal):
            cls.use(Use.CONSTRUCT, offset)
            result: Value = Instance(cls, args, cls)
        else:
            self.unresolved.append(
                Unresolved(
                    offset, f"{opcode.name} of {describe(cls)}, a value the stream built", False
                )
            )
            result = Instance(cls, args, None)
        self._push(self._hooks.called(cls, args, result, offset), offset)

    def _obj(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        items = self._pop_mark(offset, opcode)
        if not items:
            raise PickleDamage(offset, "OBJ without a class (a loader rejects this)")
        self._push(self._call(items[0], TupleValue(items[1:]), offset), offset)

    def _inst(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        assert isinstance(arg, tuple)
        items = self._pop_mark(offset, opcode)
        imported = self._import(arg[0], arg[1], offset, opcode.name)
        self._push(self._call(imported, TupleValue(items), offset), offset)

    # -- containers and mutation ---------------------------------------------------------

    def _build(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        state = self._pop(offset, opcode)
        target = self._top(offset, opcode)
        parts = state.items if isinstance(state, TupleValue) else [state]
        pairs = [p for part in parts if isinstance(part, DictValue) for p in part.dunder_pairs]
        self._check_dunders(pairs, target, offset, opcode, value_matters=True)
        if isinstance(target, ImportedGlobal):
            if not (isinstance(state, Const) and state.value is None):
                target.mutation_offsets.append(offset)
        elif isinstance(target, Instance):
            target.state = state
            if target.cls is not None:
                target.cls.use(Use.SETSTATE, offset)
        elif isinstance(target, Wrapped) and target.kind == "partial":
            self._retarget_partial(target, state, offset)
        self._hooks.built(target, state, offset)

    def _retarget_partial(self, partial: Wrapped, state: Value, offset: int) -> None:
        """`partial.__setstate__((func, args, kwds, dict))` replaces what the partial calls."""
        if isinstance(state, TupleValue) and state.items:
            partial.target = state.items[0]
            args = state.items[1] if len(state.items) > 1 else TupleValue([])
            self._call(partial.target, args, offset)
        else:
            self.unresolved.append(
                Unresolved(offset, f"functools.partial state {describe(state)}", True)
            )

    def _check_dunders(
        self,
        pairs: list[tuple[Value, Value]],
        target: Value,
        offset: int,
        opcode: Opcode,
        *,
        value_matters: bool,
    ) -> None:
        """Record dunder keys set on an object, except a constant string `__doc__` and the like."""
        keys = []
        for key, value in pairs:
            if not (isinstance(key, Const) and isinstance(key.value, str)):
                continue
            if not DUNDER.match(key.value):
                continue
            special = key.value in self._policy.special_dunders
            ordinary = value_matters and (
                not special
                or (
                    key.value in ORDINARY_DUNDER_STATE
                    and isinstance(value, Const)
                    and (value.value is None or isinstance(value.value, str))
                )
            )
            if not ordinary:
                keys.append(key.value)
        if keys:
            self.writes.append(
                AttributeWrite(offset, opcode.name, tuple(keys[:5]), describe(target))
            )

    def _setitems(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "SETITEM":
            value = self._pop(offset, opcode)
            items = [self._pop(offset, opcode), value]
        else:
            items = self._pop_mark(offset, opcode)
        target = self._top(offset, opcode)
        pairs = list(zip(items[0::2], items[1::2], strict=False))
        if isinstance(target, DictValue):
            target.add(pairs)
        elif isinstance(target, ImportedGlobal):
            target.mutation_offsets.append(offset)
            self._check_dunders(pairs, target, offset, opcode, value_matters=False)
        elif isinstance(target, Instance):
            target.pairs.extend(pairs)
            self._items_of(target, offset)

    def _appends(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        if opcode.name == "APPEND":
            items = [self._pop(offset, opcode)]
        else:
            items = self._pop_mark(offset, opcode)
        target = self._top(offset, opcode)
        if isinstance(target, ListValue):
            target.items.extend(items)
        elif isinstance(target, ImportedGlobal):
            target.mutation_offsets.append(offset)
        elif isinstance(target, Instance):
            target.items.extend(items)
            self._items_of(target, offset)

    def _additems(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        self._pop_mark(offset, opcode)
        target = self._top(offset, opcode)
        if isinstance(target, Instance):
            self._items_of(target, offset)
        elif isinstance(target, ImportedGlobal):
            target.mutation_offsets.append(offset)

    @staticmethod
    def _items_of(target: Instance, offset: int) -> None:
        if target.cls is not None:
            target.cls.use(Use.ITEMS, offset)

    def _from_mark(self, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        items = self._pop_mark(offset, opcode)
        value: Value
        if opcode.name == "TUPLE":
            value = TupleValue(items)
        elif opcode.name == "DICT":
            value = DictValue()
            value.add(zip(items[0::2], items[1::2], strict=False))
        elif opcode.name == "LIST":
            value = ListValue(items)
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
        self.charge(SLOT_COST, offset)
        self._memo[key] = self._top(offset, opcode)


_Handler = Callable[[PickleMachine, int, Opcode, ArgValue], None]
#: The builtin type of each container the machine builds, for `getattr(<list>, "remove")`.
_CONTAINER_TYPES: dict[type[Value], str] = {
    ListValue: "list",
    DictValue: "dict",
    SetValue: "set",
    TupleValue: "tuple",
}


def _pushes(make: Callable[[], Value]) -> _Handler:
    """A handler for an opcode that pushes a fresh value and reads nothing."""

    def push(machine: PickleMachine, offset: int, opcode: Opcode, arg: ArgValue) -> None:
        machine._push(make(), offset)

    return push


def _ignore(machine: PickleMachine, offset: int, opcode: Opcode, arg: ArgValue) -> None:
    """FRAME only announces how many bytes follow; the walker already checked it fits."""


def _text(value: Value) -> str:
    assert isinstance(value, Const) and isinstance(value.value, str)
    return value.value


def _strings(items: list[Value]) -> list[str | None]:
    return [i.value if isinstance(i, Const) and isinstance(i.value, str) else None for i in items]


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
    if isinstance(value, Instance):
        return f"{describe(value.func, depth + 1)}{describe(value.args, depth + 1)}"
    if isinstance(value, Wrapped):
        return f"<{value.kind}>"
    if isinstance(value, ListValue):
        return "[...]"
    if isinstance(value, DictValue):
        return "{...}"
    return "{...}" if isinstance(value, SetValue) else "<value>"


_M = PickleMachine
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
#: `_HANDLERS` by opcode byte.
_BY_CODE: list[_Handler | None] = [None] * 256
for _code, _opcode in OPCODES.items():
    _BY_CODE[_code] = _HANDLERS.get(_opcode.name)
#: What `_top` says of each opcode on an empty stack, and each opcode's name, by byte.
_EMPTY = {
    code: f"{op.name} on an empty stack (a loader rejects this)" for code, op in OPCODES.items()
}
_NAMES = {code: op.name for code, op in OPCODES.items()}
#: Handlers `run` calls as they are: opcodes without an argument, STOP aside.
_PLAIN: dict[int, _Handler] = {
    code: handler
    for code, handler in enumerate(_BY_CODE)
    if handler is not None and OPCODES[code].arg is Arg.NONE and OPCODES[code].name != "STOP"
}
