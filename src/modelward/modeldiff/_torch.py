"""PyTorch checkpoints: state_dict keys, dtypes, shapes and storage offsets, never unpickled.

`data.pkl` is evaluated symbolically by a tiny machine that understands only what
`torch.save` writes for tensors: `_rebuild_tensor_v2(persistent_load(("storage",
<dtype>Storage, key, location, numel)), offset, size, stride, ...)` inside dicts
(`OrderedDict` included). Every other call becomes an object whose BUILD state is
kept, so a checkpoint holding a whole pickled `nn.Module` still yields its tensors,
named as its state_dict would name them (`_modules`/`_parameters`/`_buffers` left
out). Nothing is imported or called; opcodes come from the scanner's bounded walker.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from modelward.formats.base import Blob, ScanContext
from modelward.formats.pytorch import LEGACY_PICKLES
from modelward.formats.zip import ZipMember, read_zip
from modelward.modeldiff.structure import DiffError, ModelStructure, TensorInfo
from modelward.pickle.machine import SLOT_COST
from modelward.pickle.walker import ByteSource, PickleDamage, Skipped, iter_opcodes

#: `torch.<Name>Storage` → (safetensors dtype name, bytes per element).
STORAGE_DTYPES: dict[str, tuple[str, int]] = {
    "FloatStorage": ("F32", 4),
    "DoubleStorage": ("F64", 8),
    "HalfStorage": ("F16", 2),
    "BFloat16Storage": ("BF16", 2),
    "LongStorage": ("I64", 8),
    "IntStorage": ("I32", 4),
    "ShortStorage": ("I16", 2),
    "CharStorage": ("I8", 1),
    "ByteStorage": ("U8", 1),
    "BoolStorage": ("BOOL", 1),
    "ComplexFloatStorage": ("C64", 8),
    "ComplexDoubleStorage": ("C128", 16),
}
_REBUILDERS = frozenset({"_rebuild_tensor", "_rebuild_tensor_v2"})
_PARAMETER = "_rebuild_parameter"
#: Containers nested deeper than this are not searched for tensors.
_MAX_DEPTH = 64
_LOCAL_HEADER = struct.Struct("<4s22xHH")
#: `nn.Module` attributes that hold its children, parameters and buffers.
_MODULE_SLOTS = frozenset({"_modules", "_parameters", "_buffers"})


@dataclass(frozen=True)
class _Global:
    module: str
    name: str


@dataclass(frozen=True)
class _Storage:
    dtype: str
    itemsize: int
    key: str
    numel: int


@dataclass(frozen=True)
class _Tensor:
    storage: _Storage
    offset: int
    shape: tuple[int, ...]
    stride: tuple[int, ...]


class _Opaque:
    """A value the machine does not model (the result of an unknown call...)."""


class _Dict(dict[object, object]):
    """A dict that is also hashable by identity, so the machine can memoise it."""

    __hash__ = object.__hash__  # type: ignore[assignment]


class _List(list[object]):
    __hash__ = object.__hash__  # type: ignore[assignment]


class _Object(_Dict):
    """The result of an unknown call: empty until a BUILD gives it a dict state."""


def _evaluate(source: ByteSource, ctx: ScanContext) -> object:
    """Run one pickle stream on the tensor-only machine; return what STOP returns."""
    limits = ctx.config.limits
    stack: list[object] = []
    marks: list[list[object]] = []
    memo: dict[int, object] = {}
    held = 0

    def pop_mark() -> list[object]:
        nonlocal stack
        if not marks:
            raise DiffError("checkpoint pickle pops a MARK it never set")
        items, stack = stack, marks.pop()
        return items

    def pop() -> object:
        if not stack:
            raise DiffError("checkpoint pickle pops an empty stack")
        return stack.pop()

    for offset, opcode, arg in iter_opcodes(source, limits, ctx.check_deadline):
        # Every opcode creates at most one value: charge it as the scanner's machine does.
        held += SLOT_COST + (len(arg) if isinstance(arg, str | bytes) else 0)
        if held > limits.max_pickle_bytes:
            raise DiffError(
                f"checkpoint pickle would hold more than {limits.max_pickle_bytes} bytes"
                f" (max_pickle_bytes) at offset {offset}"
            )
        name = opcode.name
        if name == "STOP":
            return pop()
        if name == "MARK":
            marks.append(stack)
            stack = []
        elif name in ("PROTO", "FRAME"):
            continue
        elif name in ("POP", "POP_MARK"):
            pop_mark() if name == "POP_MARK" else pop()
        elif name == "DUP":
            stack.append(stack[-1] if stack else _Opaque())
        elif name in ("NONE", "NEWTRUE", "NEWFALSE"):
            stack.append({"NONE": None, "NEWTRUE": True, "NEWFALSE": False}[name])
        elif name in ("EMPTY_TUPLE", "TUPLE", "TUPLE1", "TUPLE2", "TUPLE3"):
            count = {"EMPTY_TUPLE": 0, "TUPLE1": 1, "TUPLE2": 2, "TUPLE3": 3}.get(name)
            items = pop_mark() if count is None else [pop() for _ in range(count)][::-1]
            stack.append(tuple(items))
        elif name in ("EMPTY_LIST", "LIST"):
            stack.append(_List(pop_mark() if name == "LIST" else []))
        elif name in ("APPEND", "APPENDS"):
            items = pop_mark() if name == "APPENDS" else [pop()]
            target = stack[-1] if stack else None
            if isinstance(target, list):
                target.extend(items)
        elif name in ("EMPTY_DICT", "DICT"):
            items = pop_mark() if name == "DICT" else []
            stack.append(_pairs_into(_Dict(), items))
        elif name in ("SETITEM", "SETITEMS"):
            items = pop_mark() if name == "SETITEMS" else [pop(), pop()][::-1]
            target = stack[-1] if stack else None
            if isinstance(target, dict):
                _pairs_into(target, items)
        elif name in ("GLOBAL", "INST"):
            module, attr = arg if isinstance(arg, tuple) else ("", "")
            if name == "INST":
                pop_mark()
                stack.append(_Opaque())
            else:
                stack.append(_Global(module, attr))
        elif name == "STACK_GLOBAL":
            attr_name, module_name = pop(), pop()
            stack.append(_Global(str(module_name), str(attr_name)))
        elif name in ("REDUCE", "NEWOBJ"):
            args, func = pop(), pop()
            stack.append(_call(func, args))
        elif name == "NEWOBJ_EX":
            pop(), pop()
            stack.append(_call(pop(), ()))
        elif name == "BUILD":
            state = pop()
            if isinstance(state, tuple) and state:  # (dict state, slot state)
                state = state[0]
            if stack and isinstance(stack[-1], _Object) and isinstance(state, dict):
                stack[-1].update(state)
        elif name == "ADDITEMS":
            pop_mark()
        elif name in ("EMPTY_SET", "FROZENSET", "OBJ", "NEXT_BUFFER"):
            if name in ("FROZENSET", "OBJ"):
                pop_mark()
            stack.append(_Opaque())
        elif name == "READONLY_BUFFER":
            continue
        elif name in ("EXT1", "EXT2", "EXT4"):
            stack.append(_Opaque())
        elif name in ("PERSID", "BINPERSID"):
            pid = arg if name == "PERSID" else pop()
            stack.append(_storage(pid))
        elif name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
            if stack:
                key = len(memo) if name == "MEMOIZE" else arg
                if isinstance(key, int):
                    memo[key] = stack[-1]
        elif name in ("GET", "BINGET", "LONG_BINGET"):
            if not isinstance(arg, int) or arg not in memo:
                raise DiffError(f"checkpoint pickle reads memo key {arg!r} it never stored")
            stack.append(memo[arg])
        else:  # every remaining opcode pushes its constant argument
            stack.append(_Opaque() if isinstance(arg, Skipped) else arg)
    raise DiffError("checkpoint pickle has no STOP")


def _pairs_into(target: dict[object, object], items: list[object]) -> dict[object, object]:
    for key, value in zip(items[::2], items[1::2], strict=False):
        if isinstance(key, str | int):
            target[key] = value
    return target


def _call(func: object, args: object) -> object:
    if not isinstance(func, _Global) or not isinstance(args, tuple):
        return _Object()  # legacy checkpoints pickle module classes as persistent ids
    if func.module == "collections" and func.name == "OrderedDict":
        return _Dict()
    if func.module == "torch._utils" and func.name in _REBUILDERS and len(args) >= 4:
        storage, offset, shape, stride = args[:4]
        if (
            isinstance(storage, _Storage)
            and isinstance(offset, int)
            and _ints(shape, minimum=0)
            and _ints(stride)
        ):
            return _Tensor(storage, offset, tuple(shape), tuple(stride))
    if func.module == "torch._utils" and func.name == _PARAMETER and args:
        return args[0]
    return _Object()


def _ints(value: object, minimum: int | None = None) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(v, int) and not isinstance(v, bool) and (minimum is None or v >= minimum)
        for v in value
    )


def _storage(pid: object) -> object:
    """`("storage", torch.<X>Storage, key, location, numel[, view metadata])`."""
    if not (isinstance(pid, tuple) and len(pid) >= 5 and pid[0] == "storage"):
        return _Opaque()
    kind, key, numel = pid[1], pid[2], pid[4]
    if not isinstance(kind, _Global) or not isinstance(numel, int):
        return _Opaque()
    dtype, itemsize = STORAGE_DTYPES.get(kind.name, (kind.name, 0))
    return _Storage(dtype, itemsize, str(key), numel)


def _tensors(
    value: object, prefix: str = "", depth: int = 0, seen: set[int] | None = None
) -> Iterator[tuple[str, _Tensor]]:
    """Tensors reachable through containers, named by their dotted key path.

    Each container is entered once (memo references can make a pickle a cyclic or
    exponentially shared graph); a tensor reached twice (tied weights) keeps both names.
    """
    seen = set() if seen is None else seen
    if isinstance(value, _Tensor):
        yield prefix, value
        return
    if depth > _MAX_DEPTH or id(value) in seen or not isinstance(value, dict | list | tuple):
        return
    seen.add(id(value))
    if isinstance(value, dict):
        for key, item in value.items():
            if isinstance(value, _Object) and key in _MODULE_SLOTS:
                yield from _tensors(item, prefix, depth + 1, seen)
            else:
                name = f"{prefix}.{key}" if prefix else str(key)
                yield from _tensors(item, name, depth + 1, seen)
    else:
        for index, item in enumerate(value):
            name = f"{prefix}.{index}" if prefix else str(index)
            yield from _tensors(item, name, depth + 1, seen)


def _contiguous(tensor: _Tensor) -> bool:
    expected = 1
    for size, stride in zip(reversed(tensor.shape), reversed(tensor.stride), strict=False):
        if size != 1 and stride != expected:
            return False
        expected *= size
    return len(tensor.shape) == len(tensor.stride)


@dataclass(frozen=True)
class _Place:
    """Where a storage's bytes are: absolute offset (None: not mappable), size, member name."""

    start: int | None
    size: int
    member: str


def _structure(root: object, path: str, places: dict[str, _Place]) -> ModelStructure:
    structure = ModelStructure(path, "pytorch")
    for name, tensor in _tensors(root):
        place = places.get(tensor.storage.key, _Place(None, 0, ""))
        start, member = place.start, place.member
        item = tensor.storage.itemsize
        count = math.prod(tensor.shape)
        mappable = (
            start is not None
            and item > 0
            and _contiguous(tensor)
            and tensor.offset >= 0
            and (tensor.offset + count) * item <= place.size
        )
        structure.tensors[name] = TensorInfo(
            name,
            tensor.storage.dtype,
            tensor.shape,
            path,
            start + tensor.offset * item if mappable and start is not None else None,
            count * item if mappable else None,
            member or None,
        )
    return structure


def _evaluate_checked(source: ByteSource, ctx: ScanContext, path: str) -> object:
    try:
        return _evaluate(source, ctx)
    except PickleDamage as exc:
        raise DiffError(f"{path}: checkpoint pickle: {exc.message}") from None
    except DiffError as exc:
        raise DiffError(f"{path}: {exc}") from None


def read_zip_checkpoint(blob: Blob, ctx: ScanContext) -> ModelStructure:
    path = str(blob.fs_path or blob.location.path)
    with read_zip(blob, ctx) as archive:
        data_pkl = next((m for m in archive.members if m.name.endswith("/data.pkl")), None)
        if data_pkl is None:
            raise DiffError(f"{path}: checkpoint has no data.pkl")
        top = data_pkl.name[: -len("data.pkl")]
        with ctx.open(archive.member_blob(data_pkl)) as stream:
            source = ByteSource(stream, ctx.check_deadline, ctx.config.limits)
            root = _evaluate_checked(source, ctx, path)
        places: dict[str, _Place] = {}
        with blob.open() as raw:
            for member in archive.members:
                if member.name.startswith(f"{top}data/"):
                    key = member.name[len(f"{top}data/") :]
                    start = _stored_data_start(raw, member, blob.size)
                    places[key] = _Place(start, member.uncompressed_size, member.name)
    return _structure(root, path, places)


def _stored_data_start(raw: BinaryIO, member: ZipMember, size: int) -> int | None:
    """Where an uncompressed member's bytes start in the file (None if compressed or damaged)."""
    if member.compress_type != 0 or member.is_encrypted:
        return None
    raw.seek(member.header_offset)
    header = raw.read(_LOCAL_HEADER.size)
    if len(header) != _LOCAL_HEADER.size:
        return None
    magic, name_len, extra_len = _LOCAL_HEADER.unpack(header)
    start = member.header_offset + _LOCAL_HEADER.size + name_len + extra_len
    if magic != b"PK\x03\x04" or start + member.uncompressed_size > size:
        return None
    return int(start)


def read_legacy(blob: Blob, ctx: ScanContext) -> ModelStructure:
    """Five pickles, then each storage as an 8-byte element count and its bytes, in key order."""
    path = str(blob.fs_path or blob.location.path)
    with ctx.open(blob) as stream:
        source = ByteSource(stream, ctx.check_deadline, ctx.config.limits)
        results = [_evaluate_checked(source, ctx, path) for _ in range(LEGACY_PICKLES)]
        data_start = source.offset
    root, keys = results[3], results[4]
    if not isinstance(keys, list):
        raise DiffError(f"{path}: legacy checkpoint has no storage key list")
    storages = {t.storage.key: t.storage for _, t in _tensors(root)}
    places: dict[str, _Place] = {}
    position: int | None = data_start
    for key in keys:
        storage = storages.get(str(key))
        if storage is None or position is None or storage.itemsize == 0:
            position = None  # an unknown storage's size is unknown: later offsets are too
            continue
        size = storage.numel * storage.itemsize
        places[str(key)] = _Place(position + 8, size, f"storage {key}")
        position += 8 + size
        if position > blob.size:
            raise DiffError(f"{path}: legacy storages run past the end of the file")
    return _structure(root, path, places)
