"""ONNX: one protobuf `ModelProto`, tensors inline or in external data files.

ONNX holds no Python, but two things in it reach outside the model: nodes in a
custom operator domain run native code from a library the loader registers,
and `external_data` tensors name files the runtime opens (an absolute path or
`../` reads anything the process can; CVE-2024-27318). Nodes hide anywhere a
graph can: If/Loop/Scan bodies, model-local functions, training graphs.

We walk the model's top level and its main graph with a bounded wire-format
reader straight from the file, and hand each node, function and tensor
description (small, bounded) to `onnx`'s protobuf classes. Tensor payloads are
skipped, never read; files beyond protobuf's 2 GiB limit are walked the same way.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath, PureWindowsPath
from typing import TYPE_CHECKING, Any, BinaryIO

from modelward.findings import Severity
from modelward.formats._capped import CappedReporter
from modelward.formats._datafile import name_set
from modelward.formats._protowire import LEN, VARINT, ProtoError, read_varint
from modelward.formats.base import Blob, ScanContext

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

_DATA = "onnx_domains.toml"
_EVIDENCE_CHARS = 200


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


@dataclass
class _Model:
    """What the scan learns from the top level, for the summary and for function calls."""

    ir_version: int | None = None
    producer: list[str] = field(default_factory=list)
    opsets: list[str] = field(default_factory=list)
    functions: list[Any] = field(default_factory=list)
    graphs: list[_WireField] = field(default_factory=list)
    training: list[Any] = field(default_factory=list)


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
            import onnx  # noqa: F401  (lazy: heavy, and only ONNX files need it)
        except ImportError:
            out.report(
                "MW-ONNX-UNPARSED",
                Severity.MEDIUM,
                "cannot parse ONNX: install onnx (pip install onnx); model not checked",
            )
            out.finish()
            return
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


class _Walk:
    """One scan of one model: reads the file, checks what it finds, reports."""

    def __init__(self, blob: Blob, ctx: ScanContext, out: CappedReporter, stream: BinaryIO):
        self.blob = blob
        self.ctx = ctx
        self.out = out
        self.stream = stream
        self.limit = ctx.config.limits.max_header_bytes
        self.standard = name_set(_DATA, "standard")
        self.vendor = name_set(_DATA, "vendor")
        self.local_functions: set[tuple[str, str]] = set()
        #: Size of each external data file, or None when it is unsafe or missing (reported).
        self.external_files: dict[str, int | None] = {}

    def run(self) -> None:
        from google.protobuf.message import DecodeError

        model = _Model()
        top = FileMessage(self.stream, 0, self.blob.size)
        try:
            self._read_top(top, model)
            for function in model.functions:
                self.local_functions.add((function.domain, function.name))
            self._note(model)
            if not model.graphs:
                self._malformed("the model has no graph")
            for function in model.functions:
                self._check_nodes(function.node, f"function {function.domain}:{function.name}", 0)
            for graph_field in model.graphs:
                self._walk_graph(top.sub(graph_field), "graph")
            for info in model.training:
                for label, graph in (
                    ("training init", info.initialization),
                    ("training", info.algorithm),
                ):
                    self._check_graph(graph, label, 1)
        except ProtoError as exc:
            self._malformed(str(exc))
        except DecodeError as exc:
            self._malformed(f"a message does not decode ({exc})")
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

    def _read_top(self, top: FileMessage, model: _Model) -> None:
        import onnx

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
                opset = parse_message(onnx.OperatorSetIdProto, top.payload(f, self.limit))
                model.opsets.append(f"{opset.domain or 'ai.onnx'}:{opset.version}")
            elif f.number == 20:
                model.training.append(
                    parse_message(onnx.TrainingInfoProto, top.payload(f, self.limit))
                )
            elif f.number == 25:
                model.functions.append(
                    parse_message(onnx.FunctionProto, top.payload(f, self.limit))
                )

    def _note(self, model: _Model) -> None:
        self.out.report(
            "MW-ONNX-INFO",
            Severity.INFO,
            f"ONNX ir_version {model.ir_version}, producer {' '.join(model.producer) or '?'},"
            f" opsets {', '.join(model.opsets[:20]) or 'none'}",
        )

    def _walk_graph(self, graph: FileMessage, where: str) -> None:
        """The main graph, from the file: nodes parsed one by one, tensor payloads skipped."""
        import onnx

        for f in graph.fields(self.ctx):
            if f.wire_type != LEN:
                continue
            if f.number == _GRAPH_NODE:
                node = parse_message(onnx.NodeProto, graph.payload(f, self.limit))
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
        import onnx

        name, external, location = "", [], 0
        for f in tensor.fields(self.ctx):
            if f.number == _TENSOR_NAME and f.wire_type == LEN:
                name = tensor.payload(f, self.limit)[:_EVIDENCE_CHARS].decode("utf-8", "replace")
            elif f.number == _TENSOR_EXTERNAL_DATA and f.wire_type == LEN:
                external.append(
                    parse_message(onnx.StringStringEntryProto, tensor.payload(f, self.limit))
                )
            elif f.number == _TENSOR_DATA_LOCATION and f.wire_type == VARINT:
                location = f.value
        self._check_external(name, {e.key: e.value for e in external}, location, where)

    def _check_graph(self, graph: Any, where: str, depth: int) -> None:
        """A graph already in memory (a node's subgraph, a training graph)."""
        if depth > MAX_SUBGRAPH_DEPTH:
            self.out.report(
                "MW-ONNX-DEPTH",
                Severity.MEDIUM,
                f"subgraphs nested deeper than {MAX_SUBGRAPH_DEPTH} at {where[:_EVIDENCE_CHARS]};"
                " not checked further",
            )
            return
        self._check_nodes(graph.node, where, depth)
        for tensor in graph.initializer:
            self._check_tensor(tensor, where)
        for sparse in graph.sparse_initializer:
            self._check_tensor(sparse.values, where)
            self._check_tensor(sparse.indices, where)

    def _check_nodes(self, nodes: Any, where: str, depth: int) -> None:
        for node in nodes:
            self._check_node(node, where, depth)

    def _check_node(self, node: Any, where: str, depth: int) -> None:
        self.ctx.check_deadline()
        label = f"{where}/{node.name or node.op_type}"[:_EVIDENCE_CHARS]
        domain = node.domain
        if domain in self.vendor:
            self.out.report(
                "MW-ONNX-VENDOR-OP",
                Severity.LOW,
                f"node {label} uses {domain}:{node.op_type}, built into the runtime (not standard"
                " ONNX)",
                evidence=f"{domain}:{node.op_type}"[:_EVIDENCE_CHARS],
            )
        elif domain not in self.standard and (domain, node.op_type) not in self.local_functions:
            self.out.report(
                "MW-ONNX-CUSTOM-OP",
                Severity.HIGH,
                f"node {label} uses custom operator {domain}:{node.op_type}; runtimes run custom"
                " operators from native libraries the loader registers",
                evidence=f"{domain}:{node.op_type}"[:_EVIDENCE_CHARS],
            )
        for attribute in node.attribute:
            inner = f"{label}/{attribute.name}"
            graphs = [attribute.g] if attribute.HasField("g") else []
            for graph in [*graphs, *attribute.graphs]:
                self._check_graph(graph, inner, depth + 1)
            tensors = [attribute.t] if attribute.HasField("t") else []
            if attribute.HasField("sparse_tensor"):
                tensors += [attribute.sparse_tensor.values, attribute.sparse_tensor.indices]
            for sparse in attribute.sparse_tensors:
                tensors += [sparse.values, sparse.indices]
            for tensor in [*tensors, *attribute.tensors]:
                self._check_tensor(tensor, inner)

    def _check_tensor(self, tensor: Any, where: str) -> None:
        entries = {e.key: e.value for e in tensor.external_data}
        self._check_external(tensor.name[:_EVIDENCE_CHARS], entries, tensor.data_location, where)

    def _check_external(
        self, name: str, entries: dict[str, str], data_location: int, where: str
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
    message = message_class()
    message.ParseFromString(data)
    return message
