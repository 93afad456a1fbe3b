"""Per-tensor drift between two models' values, read memory-mapped in chunks.

Only tensors present in both with the same dtype and shape, and whose bytes can be
mapped, are compared. Values are widened to float64 chunk by chunk, so memory stays
at a few chunks whatever the model's size. Quantised GGUF blocks are not decoded:
their raw bytes are compared (equal or not).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from modelward.modeldiff.structure import ModelStructure, TensorInfo

if TYPE_CHECKING:
    import numpy as np

#: Elements per chunk (8 MiB of float64 per operand).
CHUNK = 1 << 20
NUMPY_DTYPES = {
    "F32": "<f4",
    "F16": "<f2",
    "F64": "<f8",
    "I8": "i1",
    "I16": "<i2",
    "I32": "<i4",
    "I64": "<i8",
    "U8": "u1",
    "U16": "<u2",
    "U32": "<u4",
    "U64": "<u8",
    "BOOL": "u1",
    "BF16": "<u2",  # widened by hand: numpy has no bfloat16
}


@dataclass(frozen=True)
class TensorDrift:
    """How far one tensor moved. `max_abs`/`rel_l2` are None for undecoded (quantised) bytes.

    `rel_l2` is ||candidate - reference|| / ||reference|| (inf when the reference is all
    zeros and the candidate is not).
    """

    name: str
    elements: int
    changed: bool
    max_abs: float | None = None
    rel_l2: float | None = None


def comparable(ref: TensorInfo, cand: TensorInfo) -> bool:
    return (
        ref.dtype == cand.dtype
        and ref.shape == cand.shape
        and ref.offset is not None
        and cand.offset is not None
        and ref.nbytes is not None
        and ref.nbytes == cand.nbytes
    )


def tensor_drift(
    reference: ModelStructure, candidate: ModelStructure
) -> tuple[list[TensorDrift], list[str]]:
    """Drift of every comparable tensor, and the names of shared tensors not compared."""
    drifts: list[TensorDrift] = []
    skipped: list[str] = []
    for name, cand in candidate.tensors.items():
        ref = reference.tensors.get(name)
        if ref is None:
            continue
        if not comparable(ref, cand):
            skipped.append(name)
            continue
        drifts.append(_drift(ref, cand))
    return drifts, skipped


def map_tensor(tensor: TensorInfo, dtype: str, count: int) -> np.ndarray[Any, Any]:
    import numpy as np

    assert tensor.offset is not None
    if count == 0:
        return np.zeros(0, dtype=dtype)
    return np.memmap(tensor.file, dtype=dtype, mode="r", offset=tensor.offset, shape=(count,))


def widen(chunk: np.ndarray[Any, Any], dtype: str) -> np.ndarray[Any, Any]:
    import numpy as np

    if dtype == "BF16":
        return (chunk.astype(np.uint32) << 16).view(np.float32).astype(np.float64)
    return chunk.astype(np.float64)


def _drift(ref: TensorInfo, cand: TensorInfo) -> TensorDrift:
    import numpy as np

    assert ref.nbytes is not None
    numpy_dtype = NUMPY_DTYPES.get(ref.dtype)
    if numpy_dtype is None:
        a, b = map_tensor(ref, "u1", ref.nbytes), map_tensor(cand, "u1", ref.nbytes)
        changed = any(
            not np.array_equal(a[i : i + CHUNK], b[i : i + CHUNK])
            for i in range(0, ref.nbytes, CHUNK)
        )
        return TensorDrift(ref.name, math.prod(ref.shape), changed)
    count = ref.nbytes // np.dtype(numpy_dtype).itemsize
    a, b = map_tensor(ref, numpy_dtype, count), map_tensor(cand, numpy_dtype, count)
    max_abs = 0.0
    diff_sq = 0.0
    ref_sq = 0.0
    with np.errstate(all="ignore"):  # NaN and inf in a tensor are values to report, not errors
        for start in range(0, count, CHUNK):
            x = widen(a[start : start + CHUNK], ref.dtype)
            y = widen(b[start : start + CHUNK], ref.dtype)
            delta = y - x
            if delta.size:
                max_abs = max(max_abs, float(np.max(np.abs(delta))))
            diff_sq += float(np.dot(delta, delta))
            ref_sq += float(np.dot(x, x))
    rel_l2 = math.sqrt(diff_sq / ref_sq) if ref_sq > 0 else (math.inf if diff_sq > 0 else 0.0)
    changed = diff_sq > 0 or math.isnan(diff_sq)
    return TensorDrift(ref.name, count, changed, max_abs, rel_l2)
