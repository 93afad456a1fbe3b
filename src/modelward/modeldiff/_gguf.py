"""GGUF: the tensor table, read by the GGUF scanner's own bounded header parser."""

from __future__ import annotations

from modelward.formats.gguf import GGUFError, read_tensor_table
from modelward.formats.interface import Blob, ScanContext
from modelward.modeldiff.structure import DiffError, ModelStructure, TensorInfo

#: ggml types whose elements are plain numbers, by their safetensors dtype name.
_PLAIN_TYPES = {
    0: "F32",
    1: "F16",
    24: "I8",
    25: "I16",
    26: "I32",
    27: "I64",
    28: "F64",
    30: "BF16",
}
#: Common quantised ggml types by their llama.cpp names (their bytes are compared raw).
_QUANT_TYPES = {
    2: "Q4_0",
    3: "Q4_1",
    6: "Q5_0",
    7: "Q5_1",
    8: "Q8_0",
    10: "Q2_K",
    11: "Q3_K",
    12: "Q4_K",
    13: "Q5_K",
    14: "Q6_K",
}


def read(blob: Blob, ctx: ScanContext) -> ModelStructure:
    path = str(blob.fs_path or blob.location.path)
    try:
        entries = read_tensor_table(blob, ctx)
    except GGUFError as exc:
        raise DiffError(f"{path}: GGUF header: {exc}") from None
    structure = ModelStructure(path, "gguf")
    for entry in entries:
        usable = entry.nbytes is not None and entry.offset + entry.nbytes <= blob.size
        structure.tensors[entry.name] = TensorInfo(
            entry.name,
            _type_name(entry.ggml_type),
            entry.dims,
            path,
            entry.offset if usable else None,
            entry.nbytes if usable else None,
        )
    return structure


def _type_name(ggml_type: int) -> str:
    known = _PLAIN_TYPES.get(ggml_type) or _QUANT_TYPES.get(ggml_type)
    return known or f"GGML_TYPE_{ggml_type}"
