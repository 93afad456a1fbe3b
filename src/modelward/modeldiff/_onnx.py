"""ONNX: the main graph's nodes, inputs, outputs and initializers, walked from the file.

The scanner's bounded wire walker reads the file field by field; each node (small,
bounded by the header limit) is parsed by `onnx`'s protobuf class, and of each
initializer only the name, type, dims and where its bytes lie are read. Subgraphs
(If/Loop/Scan bodies) are summarised into their node's attributes, and the names they
read from the enclosing graph count as the node's inputs.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

from modelward.analysis._protowire import LEN, VARINT, ProtoError, read_varint
from modelward.formats.interface import Blob, ScanContext
from modelward.formats.onnx import (
    MAX_SUBGRAPH_DEPTH,
    FileMessage,
    MessageTooLarge,
    escapes_folder,
    parse_message,
)
from modelward.modeldiff.structure import DiffError, GraphNode, ModelStructure, TensorInfo

_MODEL_GRAPH = 7
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_INPUT, _GRAPH_OUTPUT = 1, 5, 11, 12
_T_DIMS, _T_TYPE, _T_FLOATS, _T_NAME, _T_RAW, _T_DOUBLES, _T_EXTERNAL = 1, 2, 4, 8, 9, 10, 13
_VALUE_NAME = 1
#: ONNX TensorProto.DataType → the safetensors dtype names every reader uses.
_DTYPES = {
    1: "F32",
    2: "U8",
    3: "I8",
    4: "U16",
    5: "I16",
    6: "I32",
    7: "I64",
    8: "STRING",
    9: "BOOL",
    10: "F16",
    11: "F64",
    12: "U32",
    13: "U64",
    14: "C64",
    15: "C128",
    16: "BF16",
}
_ATTRIBUTE_CHARS = 200


def read(blob: Blob, ctx: ScanContext) -> ModelStructure:
    from google.protobuf.message import DecodeError

    path = str(blob.fs_path or blob.location.path)
    structure = ModelStructure(path, "onnx")
    with ctx.open(blob) as stream:
        top = FileMessage(stream, 0, blob.size)
        try:
            graphs = [f for f in top.fields(ctx) if f.number == _MODEL_GRAPH and f.wire_type == LEN]
            if len(graphs) != 1:
                raise DiffError(f"{path}: the model has {len(graphs)} main graphs, not one")
            _read_graph(top.sub(graphs[0]), structure, blob, ctx)
        except (ProtoError, DecodeError) as exc:
            raise DiffError(f"{path}: ONNX protobuf is malformed ({exc})") from None
        except MessageTooLarge as exc:
            raise DiffError(
                f"{path}: a {exc.size}-byte node or tensor description is over the header limit"
            ) from None
    return structure


def _read_graph(
    graph: FileMessage, structure: ModelStructure, blob: Blob, ctx: ScanContext
) -> None:
    import onnx

    limit = ctx.config.limits.max_header_bytes
    inputs: list[str] = []
    outputs: list[str] = []
    for f in graph.fields(ctx):
        if f.wire_type != LEN:
            continue
        if f.number == _GRAPH_NODE:
            node = parse_message(onnx.NodeProto, graph.payload(f, limit))
            structure.nodes.append(_node(node))
        elif f.number == _GRAPH_INITIALIZER:
            tensor = _tensor(graph.sub(f), blob, ctx)
            structure.tensors[tensor.name] = tensor
        elif f.number in (_GRAPH_INPUT, _GRAPH_OUTPUT):
            info = graph.sub(f)
            name = next(
                (
                    info.payload(g, limit).decode("utf-8", "replace")
                    for g in info.fields(ctx)
                    if g.number == _VALUE_NAME and g.wire_type == LEN
                ),
                "",
            )
            (inputs if f.number == _GRAPH_INPUT else outputs).append(name)
    # Initializers may also be listed as graph inputs (IR < 4): they are weights, not inputs.
    structure.inputs = tuple(n for n in inputs if n not in structure.tensors)
    structure.outputs = tuple(outputs)


def _tensor(message: FileMessage, blob: Blob, ctx: ScanContext) -> TensorInfo:
    import onnx

    limit = ctx.config.limits.max_header_bytes
    name, data_type, dims = "", 0, []
    inline: dict[int, tuple[int, int]] = {}
    external: dict[str, str] = {}
    for f in message.fields(ctx):
        if f.number == _T_DIMS and f.wire_type == VARINT:
            dims.append(f.value)
        elif f.number == _T_DIMS and f.wire_type == LEN:
            packed = memoryview(message.payload(f, limit))
            pos = 0
            while pos < len(packed):
                value, pos = read_varint(packed, pos)
                dims.append(value)
        elif f.number == _T_TYPE and f.wire_type == VARINT:
            data_type = f.value
        elif f.number == _T_NAME and f.wire_type == LEN:
            name = message.payload(f, limit).decode("utf-8", "replace")
        elif f.number in (_T_RAW, _T_FLOATS, _T_DOUBLES) and f.wire_type == LEN:
            inline[f.number] = (f.start, f.value)
        elif f.number == _T_EXTERNAL and f.wire_type == LEN:
            entry = parse_message(onnx.StringStringEntryProto, message.payload(f, limit))
            external[entry.key] = entry.value
    dtype = _DTYPES.get(data_type, f"ONNX_{data_type}")
    path = str(blob.fs_path or blob.location.path)
    # Raw bytes, and float/double lists (packed little-endian fixed-width), map directly.
    where = inline.get(_T_RAW) or inline.get({"F32": _T_FLOATS, "F64": _T_DOUBLES}.get(dtype, 0))
    if where is not None:
        return TensorInfo(name, dtype, tuple(dims), path, where[0], where[1])
    if external:
        return _external(name, dtype, tuple(dims), external, blob)
    return TensorInfo(name, dtype, tuple(dims), path)


def _external(
    name: str, dtype: str, dims: tuple[int, ...], entries: dict[str, str], blob: Blob
) -> TensorInfo:
    """An initializer in an external file, mapped only when the file stays in the model's folder."""
    location = entries.get("location", "")
    unmapped = TensorInfo(name, dtype, dims, str(blob.fs_path or blob.location.path))
    if blob.fs_path is None or not location or escapes_folder(location) is not None:
        return unmapped
    folder = Path(os.path.realpath(blob.fs_path.parent))
    target = Path(os.path.realpath(folder / location))
    try:
        offset = int(entries.get("offset", "0"))
        size = target.stat().st_size if target.is_relative_to(folder) else -1
        length = int(entries.get("length", str(size - offset)))
    except (OSError, ValueError):
        return unmapped
    if offset < 0 or length < 0 or offset + length > size:
        return unmapped
    return TensorInfo(name, dtype, dims, str(target), offset, length, location)


def _text(value: str | bytes) -> str:
    """Protobuf hands back bytes for a string field that is not valid UTF-8."""
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value


def _node(node: Any) -> GraphNode:
    attributes, subgraphs, outer = _attributes(node, 0)
    return GraphNode(
        name=_text(node.name),
        op_type=_text(node.op_type),
        domain=_text(node.domain),
        inputs=tuple(_text(i) for i in [*node.input, *sorted(outer)] if i),
        outputs=tuple(_text(o) for o in node.output),
        attributes=attributes,
        subgraphs=subgraphs,
    )


def _attributes(
    node: Any, depth: int
) -> tuple[tuple[tuple[str, str], ...], tuple[str, ...], set[str]]:
    """Canonical attribute texts, subgraph summaries, and outer names the subgraphs read."""
    import onnx

    parts: list[tuple[str, str]] = []
    summaries: list[str] = []
    outer: set[str] = set()
    for attribute in sorted(node.attribute, key=lambda a: a.name):
        graphs = [attribute.g] if attribute.HasField("g") else []
        graphs += list(attribute.graphs)
        if graphs:
            for graph in graphs:
                ops, reads = _subgraph(graph, depth + 1)
                summaries.append(f"{_text(attribute.name)}: {ops}")
                outer |= reads
            parts.append((_text(attribute.name), f"<{'; '.join(summaries[-len(graphs) :])}>"))
        elif attribute.type in (onnx.AttributeProto.TENSOR, onnx.AttributeProto.TENSORS):
            digest = hashlib.sha256(attribute.SerializeToString()).hexdigest()[:16]
            parts.append((_text(attribute.name), f"<tensor {digest}>"))
        else:
            value = repr(onnx.helper.get_attribute_value(attribute))[:_ATTRIBUTE_CHARS]
            parts.append((_text(attribute.name), value))
    return tuple(parts), tuple(summaries), outer


def _subgraph(graph: Any, depth: int) -> tuple[str, set[str]]:
    """A subgraph's op types in order, and the names it reads from enclosing graphs."""
    if depth > MAX_SUBGRAPH_DEPTH:
        raise DiffError(f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH}")
    local = {_text(v.name) for v in graph.input} | {_text(t.name) for t in graph.initializer}
    ops: list[str] = []
    reads: set[str] = set()
    for node in graph.node:
        attributes, _, inner = _attributes(node, depth)
        text = ", ".join(f"{k}={v}" for k, v in attributes)
        op = _text(node.op_type)
        ops.append(f"{op}({text})" if text else op)
        reads |= {_text(i) for i in [*node.input, *inner] if i and _text(i) not in local}
        local |= {_text(o) for o in node.output}
    return ",".join(ops), reads - local
