"""Safetensors: the tensor table is the whole structure; offsets come straight from the header."""

from __future__ import annotations

from modelward.formats.interface import Blob, ScanContext
from modelward.formats.safetensors import DTYPE_BITS, load_header_json
from modelward.modeldiff.structure import DiffError, ModelStructure, TensorInfo

_LENGTH_BYTES = 8


def read(blob: Blob, ctx: ScanContext) -> ModelStructure:
    path = str(blob.fs_path or blob.location.path)
    limit = ctx.config.limits.max_header_bytes
    with ctx.open(blob) as stream:
        length = int.from_bytes(stream.read(_LENGTH_BYTES), "little")
        if length > min(blob.size - _LENGTH_BYTES, limit):
            raise DiffError(f"{path}: safetensors header length {length} is out of bounds")
        raw = stream.read(length)
    try:
        header = load_header_json(raw.decode("utf-8"))
    except (ValueError, RecursionError) as exc:
        raise DiffError(f"{path}: safetensors header is not valid JSON ({exc})") from None
    if not isinstance(header, dict):
        raise DiffError(f"{path}: safetensors header is not a JSON object")
    data_start = _LENGTH_BYTES + length
    structure = ModelStructure(path, "safetensors")
    for name, entry in header.items():
        ctx.check_deadline()
        if name == "__metadata__":
            continue
        structure.tensors[name] = _tensor(path, name, entry, data_start, blob.size)
    return structure


def _tensor(path: str, name: str, entry: object, data_start: int, size: int) -> TensorInfo:
    if not isinstance(entry, dict):
        raise DiffError(f"{path}: tensor {name!r} is not an object")
    dtype, shape, offsets = entry.get("dtype"), entry.get("shape"), entry.get("data_offsets")
    if (
        not isinstance(dtype, str)
        or not isinstance(shape, list)
        or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape)
    ):
        raise DiffError(f"{path}: tensor {name!r} has no usable dtype and shape")
    offset: int | None = None
    nbytes: int | None = None
    if (
        dtype in DTYPE_BITS
        and isinstance(offsets, list)
        and len(offsets) == 2
        and all(isinstance(o, int) and not isinstance(o, bool) for o in offsets)
        and 0 <= offsets[0] <= offsets[1]
        and data_start + offsets[1] <= size
    ):
        offset, nbytes = data_start + offsets[0], offsets[1] - offsets[0]
    return TensorInfo(name, dtype, tuple(shape), path, offset, nbytes)
