"""PyTorch checkpoints: state_dict keys, dtypes, shapes and storage offsets, never unpickled.

`data.pkl` runs on the scanner's pickle machine (`modelward.pickle.machine`) with hooks
that understand only what `torch.save` writes for tensors: `_rebuild_tensor_v2(
persistent_load(("storage", <dtype>Storage, key, location, numel)), offset, size, stride,
...)`. Every other call is an instance whose items and BUILD state the machine keeps, so a
checkpoint holding a whole pickled `nn.Module` still yields its tensors, named as its
state_dict would name them (`_modules`/`_parameters`/`_buffers` left out). Nothing is
imported or called; opcodes come from the scanner's bounded walker.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from modelward.formats.interface import Blob, ScanContext
from modelward.formats.pytorch import LEGACY_PICKLES
from modelward.formats.zip import ZipMember, read_zip
from modelward.modeldiff.structure import DiffError, ModelStructure, TensorInfo
from modelward.pickle.machine import (
    Const,
    DictValue,
    Hooks,
    ImportedGlobal,
    Instance,
    ListValue,
    PickleMachine,
    TupleValue,
    Value,
)
from modelward.pickle.policy import default_policy
from modelward.pickle.walker import ByteSource, PickleDamage, iter_opcodes

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


class _Storage(Value):
    __slots__ = ("dtype", "itemsize", "key", "numel")

    def __init__(self, dtype: str, itemsize: int, key: str, numel: int) -> None:
        self.dtype = dtype
        self.itemsize = itemsize
        self.key = key
        self.numel = numel


class _Tensor(Value):
    __slots__ = ("offset", "shape", "storage", "stride")

    def __init__(
        self, storage: _Storage, offset: int, shape: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.storage = storage
        self.offset = offset
        self.shape = shape
        self.stride = stride


class _TensorHooks(Hooks):
    """Storages from persistent ids, tensors from `torch._utils` rebuild calls."""

    def persistent(self, machine: PickleMachine, pid: Value, offset: int) -> Value:
        """`("storage", torch.<X>Storage, key, location, numel[, view metadata])`."""
        items = pid.items if isinstance(pid, TupleValue) else []
        if len(items) >= 5 and _const(items[0]) == "storage":
            kind, key, numel = items[1], _const(items[2]), _const(items[4])
            if isinstance(kind, ImportedGlobal) and _is_int(numel):
                dtype, itemsize = STORAGE_DTYPES.get(kind.name, (kind.name, 0))
                assert isinstance(numel, int)
                return _Storage(dtype, itemsize, str(key), numel)
        return super().persistent(machine, pid, offset)

    def called(self, func: Value, args: Value, result: Value, offset: int) -> Value:
        if not (isinstance(func, ImportedGlobal) and func.module == "torch._utils"):
            return result
        items = args.items if isinstance(args, TupleValue) else []
        if func.name == _PARAMETER and items:
            return items[0]
        if func.name in _REBUILDERS and len(items) >= 4:
            storage, start, shape, stride = items[:4]
            dims, steps = _int_tuple(shape, minimum=0), _int_tuple(stride)
            start_at = _const(start)
            if isinstance(storage, _Storage) and _is_int(start_at) and dims is not None:
                assert isinstance(start_at, int)
                if steps is not None:
                    return _Tensor(storage, start_at, dims, steps)
        return result


def _const(value: Value) -> object:
    return value.value if isinstance(value, Const) else None


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _int_tuple(value: Value, minimum: int | None = None) -> tuple[int, ...] | None:
    if not isinstance(value, TupleValue):
        return None
    numbers = tuple(_const(v) for v in value.items)
    if all(_is_int(n) and (minimum is None or n >= minimum) for n in numbers):  # type: ignore[operator]
        return numbers  # type: ignore[return-value]
    return None


def _evaluate(source: ByteSource, ctx: ScanContext) -> Value:
    """Run one pickle stream on the machine with tensor hooks; return what STOP returns."""
    limits = ctx.config.limits
    machine = PickleMachine(default_policy(), limits.max_pickle_bytes, _TensorHooks())
    for offset, opcode, arg in iter_opcodes(source, limits, ctx.check_deadline):
        try:
            machine.feed(offset, opcode, arg)
        except PickleDamage as exc:
            if exc.rule_id == "MW-PICKLE-LIMIT":
                raise DiffError(f"checkpoint pickle: {exc.message} at offset {offset}") from None
            raise
    if machine.result is None:
        raise DiffError("checkpoint pickle has no STOP")
    return machine.result


def _children(value: Value) -> Iterator[tuple[object, Value, bool]]:
    """(key, item, is a module slot) for each item a container or an instance holds."""
    if isinstance(value, DictValue):
        pairs = value.pairs
    elif isinstance(value, ListValue | TupleValue):
        yield from ((index, item, False) for index, item in enumerate(value.items))
        return
    elif isinstance(value, Instance):
        state = value.state
        parts = state.items if isinstance(state, TupleValue) else [state]
        for part in parts:
            if isinstance(part, DictValue):
                for key, item in part.pairs:
                    name = _const(key)
                    yield name, item, name in _MODULE_SLOTS
        pairs = value.pairs
        yield from ((index, item, False) for index, item in enumerate(value.items))
    else:
        return
    for key, item in pairs:
        name = _const(key)
        if isinstance(name, str | int) and not isinstance(name, bool):
            yield name, item, False


def _tensors(
    value: Value, prefix: str = "", depth: int = 0, seen: set[int] | None = None
) -> Iterator[tuple[str, _Tensor]]:
    """Tensors reachable through containers, named by their dotted key path.

    Each container is entered once (memo references can make a pickle a cyclic or
    exponentially shared graph); a tensor reached twice (tied weights) keeps both names.
    """
    seen = set() if seen is None else seen
    if isinstance(value, _Tensor):
        yield prefix, value
        return
    if depth > _MAX_DEPTH or id(value) in seen:
        return
    seen.add(id(value))
    for key, item, transparent in _children(value):
        if transparent:
            yield from _tensors(item, prefix, depth + 1, seen)
        elif key is not None:
            name = f"{prefix}.{key}" if prefix else str(key)
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


def _structure(root: Value, path: str, places: dict[str, _Place]) -> ModelStructure:
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


def _evaluate_checked(source: ByteSource, ctx: ScanContext, path: str) -> Value:
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
    root, key_list = results[3], results[4]
    if not isinstance(key_list, ListValue):
        raise DiffError(f"{path}: legacy checkpoint has no storage key list")
    keys = [_const(item) for item in key_list.items]
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
