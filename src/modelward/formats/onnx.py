"""ONNX: one protobuf `ModelProto`, tensors inline or in external data files.

ONNX holds no Python, but two things in it reach outside the model: nodes in a
custom operator domain run native code from a library the loader registers,
and `external_data` tensors name files the runtime opens (an absolute path or
`../` reads anything the process can; CVE-2024-27318). Nodes hide anywhere a
graph can: If/Loop/Scan bodies, model-local functions, training graphs.

We walk the model's top level and its main graph with a bounded wire-format
reader straight from the file, and decode each node, function and tensor
description (small, bounded) with our own reader, checked against the message
layout written from `onnx.proto` (data/onnx_schema.toml) so that it refuses what
protobuf refuses: scanning never imports `onnx` or protobuf. Tensor payloads are
skipped, never read; files beyond protobuf's 2 GiB limit are walked the same way.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, BinaryIO

from modelward._datafile import load_table, name_set
from modelward.analysis._protowire import (
    FIXED32,
    FIXED64,
    LEN,
    VARINT,
    Decoded,
    MessageSchema,
    ProtoError,
    decode_message,
    int32,
    int64,
    read_varint,
)
from modelward.findings import Severity
from modelward.formats._capped import CappedReporter
from modelward.formats.interface import Blob, ScanContext

if TYPE_CHECKING:
    from google.protobuf.message import Message

#: Protobuf (and so `onnx.load`) cannot parse a message this large.
PROTOBUF_LIMIT = 2**31
#: If/Loop/Scan bodies nested deeper than this are not walked (and are reported).
MAX_SUBGRAPH_DEPTH = 32

# Field numbers of the messages walked from the file (onnx.proto).
_MODEL_WIRE_TYPES = {
    1: VARINT,  # ir_version
    2: LEN,  # producer_name
    3: LEN,  # producer_version
    4: LEN,  # domain
    5: VARINT,  # model_version
    6: LEN,  # doc_string
    7: LEN,  # graph
    8: LEN,  # opset_import
    14: LEN,  # metadata_props
    20: LEN,  # training_info
    25: LEN,  # functions
    26: LEN,  # configuration
}
_SHORT_TEXT_FIELDS = (2, 3, 4)
_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER = 1, 5, 15
_TENSOR_NAME, _TENSOR_EXTERNAL_DATA, _TENSOR_DATA_LOCATION = 8, 13, 14
_SPARSE_VALUES, _SPARSE_INDICES = 1, 2
_TENSOR_EXTERNAL = 1
#: TensorProto.DataLocation: a closed enum, so protobuf ignores any other value.
_DATA_LOCATIONS = (0, _TENSOR_EXTERNAL)
# The fields of the messages decoded in memory that the checks read (onnx.proto; the test
# of data/onnx_schema.toml holds them to the installed onnx's descriptors).
_NODE_NAME, _NODE_OP_TYPE, _NODE_ATTRIBUTE, _NODE_DOMAIN = 3, 4, 5, 7
_ATTR_NAME, _ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS = 1, 5, 6, 10, 11
_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS = 22, 23
_ATTR_SPARSE = (_ATTR_SPARSE_TENSOR, _ATTR_SPARSE_TENSORS)
_FUNCTION_NAME, _FUNCTION_NODE, _FUNCTION_DOMAIN = 1, 7, 10
_TRAINING_INITIALIZATION, _TRAINING_ALGORITHM = 1, 2
_OPSET_DOMAIN, _OPSET_VERSION = 1, 2
_ENTRY_KEY, _ENTRY_VALUE = 1, 2

#: The fields the checks read, per message, with the wire type each is declared with.
_KEEP: dict[str, dict[int, int]] = {
    "NodeProto": {_NODE_NAME: LEN, _NODE_OP_TYPE: LEN, _NODE_ATTRIBUTE: LEN, _NODE_DOMAIN: LEN},
    "AttributeProto": dict.fromkeys(
        (_ATTR_NAME, _ATTR_T, _ATTR_G, _ATTR_TENSORS, _ATTR_GRAPHS, *_ATTR_SPARSE), LEN
    ),
    "GraphProto": dict.fromkeys((_GRAPH_NODE, _GRAPH_INITIALIZER, _GRAPH_SPARSE_INITIALIZER), LEN),
    "TensorProto": {_TENSOR_NAME: LEN, _TENSOR_EXTERNAL_DATA: LEN, _TENSOR_DATA_LOCATION: VARINT},
    "SparseTensorProto": {_SPARSE_VALUES: LEN, _SPARSE_INDICES: LEN},
    "StringStringEntryProto": {_ENTRY_KEY: LEN, _ENTRY_VALUE: LEN},
    "FunctionProto": {_FUNCTION_NAME: LEN, _FUNCTION_NODE: LEN, _FUNCTION_DOMAIN: LEN},
    "TrainingInfoProto": {_TRAINING_INITIALIZATION: LEN, _TRAINING_ALGORITHM: LEN},
    "OperatorSetIdProto": {_OPSET_DOMAIN: LEN, _OPSET_VERSION: VARINT},
}

_DATA = "onnx_domains.toml"
_SCHEMA = "onnx_schema.toml"
_EVIDENCE_CHARS = 200
_ELEMENT_WIRE_TYPES = {"varint": VARINT, "fixed32": FIXED32, "fixed64": FIXED64}


@dataclass(frozen=True)
class _WireField:
    """A field read from the file: its number and wire type, and its value or payload extent."""

    number: int
    wire_type: int
    value: int
    #: For length-delimited fields: where the payload starts (its length is `value`).
    start: int


class FileMessage:
    """Iterates the fields of a message occupying `[start, end)` of a seekable stream.

    Public because `modelward diff` reads ONNX graphs with the same bounded walker.
    """

    def __init__(self, stream: BinaryIO, start: int, end: int) -> None:
        self.stream = stream
        self.start = start
        self.end = end

    def fields(self, ctx: ScanContext) -> Iterator[_WireField]:
        pos = self.start
        while pos < self.end:
            ctx.check_deadline()
            self.stream.seek(pos)
            window = memoryview(self.stream.read(min(20, self.end - pos)))
            key, used = read_varint(window, 0)
            number, wire_type = key >> 3, key & 7
            if number == 0:
                raise ProtoError(f"field number 0 at offset {pos}")
            if wire_type == VARINT:
                value, used = read_varint(window, used)
                start = pos + used
                pos = start
            elif wire_type == LEN:
                value, used = read_varint(window, used)
                start = pos + used
                if value > self.end - start:
                    raise ProtoError(
                        f"field {number} at offset {pos} claims {value} bytes,"
                        f" {self.end - start} remain"
                    )
                pos = start + value
            elif wire_type in (1, 5):  # fixed64, fixed32
                width = 8 if wire_type == 1 else 4
                start = pos + used
                if start + width > self.end:
                    raise ProtoError(f"truncated fixed field at offset {pos}")
                value = int.from_bytes(window[used : used + width], "little")
                pos = start + width
            else:
                raise ProtoError(f"unsupported wire type {wire_type} at offset {pos}")
            yield _WireField(number, wire_type, value, start)

    def payload(self, f: _WireField, limit: int) -> bytes:
        """The bytes of a length-delimited field, refusing more than `limit`."""
        if f.value > limit:
            raise MessageTooLarge(f.value, f.start)
        self.stream.seek(f.start)
        return self.stream.read(f.value)

    def sub(self, f: _WireField) -> FileMessage:
        return FileMessage(self.stream, f.start, f.start + f.value)


class MessageTooLarge(Exception):
    """A field is over the caller's size limit (the header limit, for nodes and tensors)."""

    def __init__(self, size: int, offset: int) -> None:
        super().__init__(size)
        self.size = size
        self.offset = offset


class Undecodable(ProtoError):
    """A node, function or tensor description protobuf's parser would refuse."""


@cache
def message_schemas() -> dict[str, MessageSchema]:
    """The layout of every message a node, function or training graph can hold."""
    return {
        name: MessageSchema(
            messages={int(n): str(t) for n, t in entry["messages"].items()},
            packed={int(n): _ELEMENT_WIRE_TYPES[str(t)] for n, t in entry["packed"].items()},
        )
        for name, entry in load_table(_SCHEMA)["messages"].items()
    }


def decode(data: bytes, message: str, tick: Callable[[], None] | None = None) -> Decoded:
    """`data` as ONNX message `message` (e.g. "NodeProto"), checked the way protobuf would,
    with the fields the checks read (`_KEEP`).

    Raises `Undecodable` where `onnx`'s `ParseFromString` raises `DecodeError`.
    """
    try:
        return decode_message(memoryview(data), message_schemas(), message, _KEEP, tick=tick)
    except ProtoError as exc:
        raise Undecodable(f"onnx.{message}: {exc}") from None


def _merged(occurrences: list[Decoded]) -> Decoded:
    """The occurrences of a singular message field as the one message protobuf makes of them."""
    if len(occurrences) == 1:
        return occurrences[0]
    merged: Decoded = {}
    for occurrence in occurrences:
        for number, values in occurrence.items():
            merged.setdefault(number, []).extend(values)
    return merged


def _single(message: Decoded, number: int) -> Decoded | None:
    """A singular message field (merged), or None when absent."""
    occurrences = message.get(number)
    return _merged(occurrences) if occurrences else None


def _last(message: Decoded, number: int) -> bytes:
    """A string field: its last value (protobuf's rule), b"" when absent."""
    values = message.get(number)
    return values[-1] if values else b""


@dataclass
class _Model:
    """What the scan learns from the top level, for the summary and for function calls."""

    ir_version: int | None = None
    producer: list[str] = field(default_factory=list)
    opsets: list[str] = field(default_factory=list)
    functions: list[Decoded] = field(default_factory=list)
    graphs: list[_WireField] = field(default_factory=list)
    training: list[Decoded] = field(default_factory=list)


class OnnxScanner:
    """Custom operator domains and external-data paths, anywhere in an ONNX model."""

    name = "onnx"

    def detect(self, blob: Blob, head: bytes) -> bool:
        """Conservatively sniff ModelProto: `ir_version` first, then well-typed model fields.

        ONNX has no magic number; every writer emits `ir_version` (field 1) first.
        """
        view = memoryview(head)
        seen = 0
        try:
            key, pos = read_varint(view, 0)
            ir_version, pos = read_varint(view, pos)
            if key != 0x08 or not 1 <= ir_version <= 100:
                return False
            while pos < len(view):
                key, pos = read_varint(view, pos)
                number, wire_type = key >> 3, key & 7
                if _MODEL_WIRE_TYPES.get(number) != wire_type:
                    return False
                value, pos = read_varint(view, pos)
                if wire_type == LEN:
                    if number in _SHORT_TEXT_FIELDS and not _is_short_text(view[pos : pos + value]):
                        return False
                    pos += value
                seen += 1
        except ProtoError:
            return seen > 0 and len(head) < blob.size
        # A field running past the head (the graph, usually) or past the end of a truncated
        # file still identifies the model; the scan reports the truncation.
        return seen > 0

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        out = CappedReporter(ctx, blob.location)
        try:
            if blob.size >= PROTOBUF_LIMIT:
                out.report(
                    "MW-ONNX-TOO-LARGE",
                    Severity.MEDIUM,
                    f"{blob.size} bytes is over protobuf's 2 GiB limit: ONNX tools cannot load"
                    " it as one message (walked field by field instead)",
                )
            with ctx.open(blob) as stream:
                _Walk(blob, ctx, out, stream).run()
        finally:
            out.finish()


ONNX = OnnxScanner()


def _is_short_text(data: memoryview) -> bool:
    if len(data) > 1024:
        return False
    try:
        text = bytes(data).decode("utf-8")
    except UnicodeDecodeError:
        return False
    # Writers put multi-line text here (CatBoost: "Git info:\n    Commit: ..."): printable
    # apart from line breaks and tabs.
    return text.replace("\n", " ").replace("\r", " ").replace("\t", " ").isprintable()


def _raw_text(data: bytes) -> str | bytes:
    """A proto2 string field as `onnx` returns it: str, or bytes when it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        return data


def _text(data: bytes) -> str:
    """A string field formatted as an f-string formats what `onnx` returns for it."""
    return str(_raw_text(data))


def _external_entries(entries: Iterable[Decoded]) -> dict[str | bytes, str]:
    """`external_data` key/value entries; a later key wins, as in `{e.key: e.value ...}`.

    A key that is not UTF-8 stays bytes (it is no key the checks know); a value that is not
    UTF-8 keeps its bytes through `surrogateescape`, as a file name does.
    """
    return {
        _raw_text(_last(entry, _ENTRY_KEY)): _last(entry, _ENTRY_VALUE).decode(
            "utf-8", "surrogateescape"
        )
        for entry in entries
    }


def _graphs(attribute: Decoded) -> list[Decoded]:
    """An attribute's subgraphs, in `[g, *graphs]` order (g merged, if present)."""
    g = _single(attribute, _ATTR_G)
    graphs = attribute.get(_ATTR_GRAPHS, [])
    return graphs if g is None else [g, *graphs]


def _tensors(attribute: Decoded) -> Iterator[Decoded | None]:
    """An attribute's tensors: t, sparse_tensor's values and indices, each of sparse_tensors'
    values and indices, then tensors (the order the `onnx`-based scan checked them in).
    None stands for a sparse tensor's absent values or indices."""
    t = _single(attribute, _ATTR_T)
    if t is not None:
        yield t
    sparse_tensor = _single(attribute, _ATTR_SPARSE_TENSOR)
    sparse_tensors = attribute.get(_ATTR_SPARSE_TENSORS, [])
    for sparse in sparse_tensors if sparse_tensor is None else [sparse_tensor, *sparse_tensors]:
        yield _single(sparse, _SPARSE_VALUES)
        yield _single(sparse, _SPARSE_INDICES)
    yield from attribute.get(_ATTR_TENSORS, [])


class _Walk:
    """One scan of one model: reads the file, checks what it finds, reports."""

    def __init__(self, blob: Blob, ctx: ScanContext, out: CappedReporter, stream: BinaryIO):
        self.blob = blob
        self.ctx = ctx
        self.out = out
        self.stream = stream
        self.limit = ctx.config.limits.max_header_bytes
        self.standard = name_set(_DATA, "standard") | name_set(_SCHEMA, "operator_domains")
        self.vendor = name_set(_DATA, "vendor")
        self.local_functions: set[tuple[str, str]] = set()
        #: Size of each external data file, or None when it is unsafe or missing (reported).
        self.external_files: dict[str, int | None] = {}

    def run(self) -> None:
        model = _Model()
        top = FileMessage(self.stream, 0, self.blob.size)
        try:
            self._read_top(top, model)
            for function in model.functions:
                self.local_functions.add(
                    (
                        _text(_last(function, _FUNCTION_DOMAIN)),
                        _text(_last(function, _FUNCTION_NAME)),
                    )
                )
            self._note(model)
            if not model.graphs:
                self._malformed("the model has no graph")
            for function in model.functions:
                domain = _text(_last(function, _FUNCTION_DOMAIN))
                where = f"function {domain}:{_text(_last(function, _FUNCTION_NAME))}"
                self._check_nodes(function.get(_FUNCTION_NODE, []), where, 0)
            for graph_field in model.graphs:
                self._walk_graph(top.sub(graph_field), "graph")
            for info in model.training:
                for label, number in (
                    ("training init", _TRAINING_INITIALIZATION),
                    ("training", _TRAINING_ALGORITHM),
                ):
                    self._check_graph(_single(info, number) or {}, label, 1)
        except Undecodable as exc:
            self._malformed(f"a message does not decode ({exc})")
        except ProtoError as exc:
            self._malformed(str(exc))
        except MessageTooLarge as exc:
            self.out.report(
                "MW-ONNX-TOO-LARGE",
                Severity.MEDIUM,
                f"a {exc.size}-byte node, function or tensor description is over the"
                f" {self.limit}-byte header limit; the rest of the model is not checked",
                offset=exc.offset,
            )

    def _malformed(self, problem: str) -> None:
        self.out.report(
            "MW-ONNX-MALFORMED", Severity.MEDIUM, f"ONNX protobuf is malformed: {problem}"
        )

    def _decode(self, data: bytes, message: str) -> Decoded:
        return decode(data, message, self.ctx.check_deadline)

    def _read_top(self, top: FileMessage, model: _Model) -> None:
        for f in top.fields(self.ctx):
            expected = _MODEL_WIRE_TYPES.get(f.number)
            if expected is not None and expected != f.wire_type:
                raise ProtoError(f"model field {f.number} has wire type {f.wire_type}")
            if f.number == 1:
                model.ir_version = f.value
            elif f.number in (2, 3):
                model.producer.append(
                    top.payload(f, self.limit)[:_EVIDENCE_CHARS].decode("utf-8", "replace")
                )
            elif f.number == 7:
                model.graphs.append(f)
            elif f.number == 8:
                opset = self._decode(top.payload(f, self.limit), "OperatorSetIdProto")
                domain = _text(_last(opset, _OPSET_DOMAIN))
                version = int64(opset.get(_OPSET_VERSION, [0])[-1])
                model.opsets.append(f"{domain or 'ai.onnx'}:{version}")
            elif f.number == 20:
                model.training.append(self._decode(top.payload(f, self.limit), "TrainingInfoProto"))
            elif f.number == 25:
                model.functions.append(self._decode(top.payload(f, self.limit), "FunctionProto"))

    def _note(self, model: _Model) -> None:
        self.out.report(
            "MW-ONNX-INFO",
            Severity.INFO,
            f"ONNX ir_version {model.ir_version}, producer {' '.join(model.producer) or '?'},"
            f" opsets {', '.join(model.opsets[:20]) or 'none'}",
        )

    def _walk_graph(self, graph: FileMessage, where: str) -> None:
        """The main graph, from the file: nodes decoded one by one, tensor payloads skipped."""
        for f in graph.fields(self.ctx):
            if f.wire_type != LEN:
                continue
            if f.number == _GRAPH_NODE:
                node = self._decode(graph.payload(f, self.limit), "NodeProto")
                self._check_node(node, where, 0)
            elif f.number == _GRAPH_INITIALIZER:
                self._walk_tensor(graph.sub(f), where)
            elif f.number == _GRAPH_SPARSE_INITIALIZER:
                sparse = graph.sub(f)
                for part in sparse.fields(self.ctx):
                    if part.number in (_SPARSE_VALUES, _SPARSE_INDICES) and part.wire_type == LEN:
                        self._walk_tensor(sparse.sub(part), where)

    def _walk_tensor(self, tensor: FileMessage, where: str) -> None:
        """A TensorProto from the file, reading only its name and external-data fields."""
        name, external, location = "", [], 0
        for f in tensor.fields(self.ctx):
            if f.number == _TENSOR_NAME and f.wire_type == LEN:
                name = tensor.payload(f, self.limit)[:_EVIDENCE_CHARS].decode("utf-8", "replace")
            elif f.number == _TENSOR_EXTERNAL_DATA and f.wire_type == LEN:
                external.append(
                    self._decode(tensor.payload(f, self.limit), "StringStringEntryProto")
                )
            elif f.number == _TENSOR_DATA_LOCATION and f.wire_type == VARINT:
                location = f.value
        self._check_external(name, _external_entries(external), location, where)

    def _check_graph(self, graph: Decoded, where: str, depth: int) -> None:
        """A graph already in memory (a node's subgraph, a training graph)."""
        if depth > MAX_SUBGRAPH_DEPTH:
            self.out.report(
                "MW-ONNX-DEPTH",
                Severity.MEDIUM,
                f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} at {where[:_EVIDENCE_CHARS]};"
                " not checked further",
            )
            return
        self._check_nodes(graph.get(_GRAPH_NODE, []), where, depth)
        for tensor in graph.get(_GRAPH_INITIALIZER, []):
            self._check_tensor(tensor, where)
        for sparse in graph.get(_GRAPH_SPARSE_INITIALIZER, []):
            self._check_tensor(_single(sparse, _SPARSE_VALUES), where)
            self._check_tensor(_single(sparse, _SPARSE_INDICES), where)

    def _check_nodes(self, nodes: Iterable[Decoded], where: str, depth: int) -> None:
        for node in nodes:
            self._check_node(node, where, depth)

    def _check_node(self, node: Decoded, where: str, depth: int) -> None:
        self.ctx.check_deadline()
        op_type, domain = _text(_last(node, _NODE_OP_TYPE)), _text(_last(node, _NODE_DOMAIN))
        label = f"{where}/{_text(_last(node, _NODE_NAME)) or op_type}"[:_EVIDENCE_CHARS]
        if domain in self.vendor:
            self.out.report(
                "MW-ONNX-VENDOR-OP",
                Severity.LOW,
                f"node {label} uses {domain}:{op_type}, built into the runtime (not standard ONNX)",
                evidence=f"{domain}:{op_type}"[:_EVIDENCE_CHARS],
            )
        elif domain not in self.standard and (domain, op_type) not in self.local_functions:
            self.out.report(
                "MW-ONNX-CUSTOM-OP",
                Severity.HIGH,
                f"node {label} uses custom operator {domain}:{op_type}; runtimes run custom"
                " operators from native libraries the loader registers",
                evidence=f"{domain}:{op_type}"[:_EVIDENCE_CHARS],
            )
        for attribute in node.get(_NODE_ATTRIBUTE, []):
            if (len(attribute) <= 1 and _ATTR_NAME in attribute) or not attribute:
                continue  # a plain attribute (ints, floats, strings): nothing to check
            inner = f"{label}/{_text(_last(attribute, _ATTR_NAME))}"
            for graph in _graphs(attribute):
                self._check_graph(graph, inner, depth + 1)
            for tensor in _tensors(attribute):
                self._check_tensor(tensor, inner)

    def _check_tensor(self, tensor: Decoded | None, where: str) -> None:
        if tensor is None:  # an absent sparse tensor's values or indices: an empty tensor
            return
        entries = _external_entries(tensor.get(_TENSOR_EXTERNAL_DATA, []))
        locations = [
            v for v in map(int32, tensor.get(_TENSOR_DATA_LOCATION, [])) if v in _DATA_LOCATIONS
        ]
        location = locations[-1] if locations else 0
        name = _raw_text(_last(tensor, _TENSOR_NAME))[:_EVIDENCE_CHARS]
        self._check_external(name, entries, location, where)

    def _check_external(
        self,
        name: str | bytes,
        entries: Mapping[str | bytes, str],
        data_location: int,
        where: str,
    ) -> None:
        if data_location != _TENSOR_EXTERNAL and not entries:
            return
        label = f"tensor {name!r} in {where[:_EVIDENCE_CHARS]}"
        location = entries.get("location", "")
        if not location:
            self.out.report(
                "MW-ONNX-EXTERNAL-DATA",
                Severity.MEDIUM,
                f"{label} is stored externally but names no file",
            )
            return
        size = self._external_file(location, label)
        if size is None:
            return
        try:
            begin = int(entries.get("offset", "0"))
            length = int(entries["length"]) if "length" in entries else size - begin
        except ValueError:
            problem = "offset or length is not an integer"
        else:
            if begin >= 0 and length >= 0 and begin + length <= size:
                return
            problem = f"bytes {begin}..{begin + length} are outside the {size}-byte file"
        self.out.report(
            "MW-ONNX-EXTERNAL-DATA",
            Severity.MEDIUM,
            f"{label} reads external data from {location[:_EVIDENCE_CHARS]!r}: {problem}",
            evidence=str(entries)[:_EVIDENCE_CHARS],
        )

    def _external_file(self, location: str, label: str) -> int | None:
        """The size of the file `location` names, once per location; None (reported) if unsafe."""
        if location not in self.external_files:
            self.external_files[location] = self._resolve_external(location, label)
        return self.external_files[location]

    def _resolve_external(self, location: str, label: str) -> int | None:
        evidence = location[:_EVIDENCE_CHARS]
        escape = escapes_folder(location)
        if escape is not None:
            self.out.report(
                "MW-ONNX-EXTERNAL-PATH",
                Severity.HIGH,
                f"{label} reads external data from {escape}; loading it reads any file the"
                " process can",
                evidence=evidence,
            )
            return None
        if self.blob.fs_path is None:
            self.out.report(
                "MW-ONNX-EXTERNAL-DATA",
                Severity.LOW,
                f"{label} reads external data from {evidence!r}, which cannot be checked inside"
                " a container",
                evidence=evidence,
            )
            return None
        folder = Path(os.path.realpath(self.blob.fs_path.parent))
        target = Path(os.path.realpath(folder / location))
        if not target.is_relative_to(folder):
            self.out.report(
                "MW-ONNX-EXTERNAL-PATH",
                Severity.HIGH,
                f"{label} reads external data through a symlink that leaves the model's folder",
                evidence=f"{evidence} -> {target}"[: _EVIDENCE_CHARS * 2],
            )
            return None
        try:
            if target.is_file():
                self.ctx.result.data_files.append(str(target))
                return target.stat().st_size
            why = ""
        except OSError as exc:  # a name too long, a permission denied: not readable either
            why = f" ({exc.strerror})"
        self.out.report(
            "MW-ONNX-EXTERNAL-MISSING",
            Severity.MEDIUM,
            f"{label} reads external data from {evidence!r}, which is missing{why}",
            evidence=evidence,
        )
        return None


def escapes_folder(location: str) -> str | None:
    """How an external-data path leaves the model's folder, or None when it stays inside."""
    if "\x00" in location:
        return "a path with a NUL byte"
    if (
        PurePosixPath(location).is_absolute()
        or PureWindowsPath(location).drive
        or location.startswith("\\")
    ):
        return "an absolute path"
    if ".." in PureWindowsPath(location).parts:
        return "a path that climbs out with '..'"
    return None


def parse_message(message_class: type[Message], data: bytes) -> Any:
    """`data` parsed by one of `onnx`'s protobuf classes. For `modelward diff`, which reads
    attribute values with `onnx.helper`; the scanner decodes with `decode` instead."""
    message = message_class()
    message.ParseFromString(data)
    return message
