"""TensorFlow SavedModel (`saved_model.pb`) and Keras metadata (`keras_metadata.pb`).

Read with our own protobuf walker (`_protowire`), so no TensorFlow install is needed
and nothing is loaded. Every op in every meta graph's `GraphDef` and in its function
library is checked against `data/tf_ops.toml`: ops that reach files, processes or
Python are reported, and ops TensorFlow does not define (custom ops, which need a
native library loaded at run time) are MEDIUM. The Keras JSON in `keras_metadata.pb`
goes through the same config analysis as `.keras` files.
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cache

from modelward._datafile import load_table
from modelward.analysis import _protowire as pw
from modelward.analysis.keras_config import analyse_keras_json
from modelward.findings import Location, Severity
from modelward.formats.interface import Blob, ScanContext

# Field numbers from tensorflow/core/protobuf/{saved_model,meta_graph}.proto,
# tensorflow/core/protobuf/saved_object_graph.proto,
# tensorflow/core/framework/{graph,node_def,function,op_def}.proto and
# tensorflow/python/keras/protobuf/saved_metadata.proto.
_SAVED_MODEL_SCHEMA_VERSION = 1
_SAVED_MODEL_META_GRAPHS = 2
_META_GRAPH_INFO = 1
_META_GRAPH_GRAPH_DEF = 2
_META_GRAPH_OBJECT_GRAPH = 7
_META_INFO_TAGS = 4
_OBJECT_GRAPH_NODES = 1
_SAVED_OBJECT_USER_OBJECT = 4
_USER_OBJECT_IDENTIFIER = 1
_USER_OBJECT_METADATA = 3
_GRAPH_NODE = 1
_GRAPH_LIBRARY = 2
_LIBRARY_FUNCTION = 1
_FUNCTION_SIGNATURE = 1
_FUNCTION_NODE_DEF = 3
_OP_DEF_NAME = 1
_NODE_NAME = 1
_NODE_OP = 2
_METADATA_NODES = 1
_METADATA_NODE_PATH = 3
_METADATA_IDENTIFIER = 4
_METADATA_JSON = 5

#: Places where the checkpoint ops are expected: TF2 traced save/restore functions, TF1 `save/`.
_SAVER_FUNCTION = re.compile(r"_traced_(save|restore)(_\d+)?$")
_SAVER_SCOPE = re.compile(r"^save(_\d+)?/")
#: Examples of one op kept as evidence.
_EVIDENCE_PLACES = 5

SAVED_MODEL_NAME = "saved_model.pb"
#: The text-format SavedModel TensorFlow also loads; not parsed here.
SAVED_MODEL_TEXT_NAME = "saved_model.pbtxt"
KERAS_METADATA_NAME = "keras_metadata.pb"


@dataclass(frozen=True)
class OpPolicy:
    """What `data/tf_ops.toml` says about op names."""

    dangerous: dict[str, tuple[Severity, str]]
    saver: frozenset[str]
    standard: frozenset[str]


@cache
def op_policy() -> OpPolicy:
    table = load_table("tf_ops.toml")
    dangerous = {
        op: (Severity.parse(entry["severity"]), str(entry["why"]))
        for op, entry in table["dangerous"].items()
    }
    return OpPolicy(
        dangerous, frozenset(table["saver"]["ops"]), frozenset(table["standard"]["ops"])
    )


@dataclass(frozen=True)
class GraphNode:
    """One op use: the node's name and op, and the function it sits in ("" for the graph)."""

    name: str
    op: str
    function: str = ""

    @property
    def place(self) -> str:
        return f"{self.function}/{self.name}" if self.function else self.name


@dataclass
class SavedModelGraphs:
    """What a `saved_model.pb` holds that matters here."""

    schema_version: int
    tags: list[list[str]]
    nodes: list[GraphNode]
    functions: set[str]
    #: (identifier, JSON) of user objects carrying metadata: Keras configs before TF 2.5.
    user_metadata: list[tuple[str, bytes]]


def parse_saved_model(data: bytes | memoryview, ctx: ScanContext) -> SavedModelGraphs:
    """Every node of every meta graph and its function library; raise `pw.ProtoError`."""
    result = SavedModelGraphs(0, [], [], set(), [])
    for field in pw.iter_fields(data):
        if field.number == _SAVED_MODEL_SCHEMA_VERSION and field.wire_type == pw.VARINT:
            result.schema_version = int(field.value)
        elif field.number == _SAVED_MODEL_META_GRAPHS:
            tags: list[str] = []
            for meta in pw.iter_fields(field.data):
                if meta.number == _META_GRAPH_INFO:
                    tags += [t.text() for t in pw.fields_of(meta.data, _META_INFO_TAGS)]
                elif meta.number == _META_GRAPH_GRAPH_DEF:
                    _read_graph(meta.data, result, ctx)
                elif meta.number == _META_GRAPH_OBJECT_GRAPH:
                    _read_object_graph(meta.data, result, ctx)
            result.tags.append(tags)
    return result


def _read_graph(graph: memoryview, result: SavedModelGraphs, ctx: ScanContext) -> None:
    for field in pw.iter_fields(graph):
        ctx.check_deadline()
        if field.number == _GRAPH_NODE:
            result.nodes.append(_node(field.data, ""))
        elif field.number == _GRAPH_LIBRARY:
            for function in pw.fields_of(field.data, _LIBRARY_FUNCTION):
                _read_function(function.data, result, ctx)


def _read_object_graph(graph: memoryview, result: SavedModelGraphs, ctx: ScanContext) -> None:
    for node in pw.fields_of(graph, _OBJECT_GRAPH_NODES):
        ctx.check_deadline()
        for user in pw.fields_of(node.data, _SAVED_OBJECT_USER_OBJECT):
            metadata = b""
            for field in pw.fields_of(user.data, _USER_OBJECT_METADATA):
                metadata = bytes(field.data)
            if metadata:
                identifier = pw.string_field(user.data, _USER_OBJECT_IDENTIFIER)
                result.user_metadata.append((identifier, metadata))


def _read_function(function: memoryview, result: SavedModelGraphs, ctx: ScanContext) -> None:
    name = ""
    nodes: list[memoryview] = []
    for field in pw.iter_fields(function):
        if field.number == _FUNCTION_SIGNATURE:
            name = pw.string_field(field.data, _OP_DEF_NAME)
        elif field.number == _FUNCTION_NODE_DEF:
            nodes.append(field.data)
    result.functions.add(name)
    for node in nodes:
        ctx.check_deadline()
        result.nodes.append(_node(node, name or "<unnamed function>"))


def _node(node: memoryview, function: str) -> GraphNode:
    return GraphNode(pw.string_field(node, _NODE_NAME), pw.string_field(node, _NODE_OP), function)


def _is_saver_place(node: GraphNode) -> bool:
    if node.function:
        return bool(_SAVER_FUNCTION.search(node.function))
    return bool(_SAVER_SCOPE.match(node.name))


def check_ops(graphs: SavedModelGraphs, location: Location, ctx: ScanContext) -> None:
    """Report dangerous, out-of-place checkpoint and custom ops, one finding per op name."""
    policy = op_policy()
    places: dict[tuple[str, str], list[str]] = defaultdict(list)
    for node in graphs.nodes:
        if node.op in policy.standard or node.op in graphs.functions:
            continue
        if node.op in policy.saver:
            if _is_saver_place(node):
                continue
            kind = "saver"
        elif node.op in policy.dangerous:
            kind = "dangerous"
        else:
            kind = "custom"
        places[(kind, node.op)].append(node.place)
    for (kind, op), where in sorted(places.items()):
        evidence = f"{len(where)} node(s), e.g. {', '.join(where[:_EVIDENCE_PLACES])}"
        if kind == "dangerous":
            severity, why = policy.dangerous[op]
            ctx.report("MW-TF-DANGEROUS-OP", severity, location, f"op {op} {why}", evidence)
        elif kind == "saver":
            ctx.report(
                "MW-TF-SAVER-OP-OUTSIDE-SAVER",
                Severity.LOW,
                location,
                f"checkpoint op {op} used outside the standard save/restore functions;"
                " it reads or writes files named by tensors",
                evidence,
            )
        else:
            ctx.report(
                "MW-TF-CUSTOM-OP",
                Severity.MEDIUM,
                location,
                f"op {op} is not a standard TensorFlow op: a custom op library (native code)"
                " must be loaded to run this graph",
                evidence,
            )


def _read_all(blob: Blob, ctx: ScanContext) -> bytes | None:
    limit = ctx.config.limits.max_header_bytes
    if blob.size > limit:
        ctx.report(
            "MW-TF-TOO-LARGE",
            Severity.MEDIUM,
            blob.location,
            f"{blob.size}-byte protobuf over the {limit}-byte limit; not scanned",
        )
        return None
    with ctx.open(blob, limit=limit + 1) as stream:
        return stream.read(limit + 1)


def _malformed(blob: Blob, ctx: ScanContext, what: str, exc: Exception) -> None:
    ctx.report(
        "MW-TF-MALFORMED",
        Severity.MEDIUM,
        blob.location,
        f"{what} could not be parsed; not scanned (crafted to evade scanning?)",
        evidence=str(exc)[:300],
    )


def _looks_like_saved_model(head: bytes) -> bool:
    """Schema version 1 then a meta graph that opens with its MetaInfoDef (field 1)."""
    if not head.startswith(b"\x08\x01\x12"):
        return False
    try:
        _, pos = pw.read_varint(memoryview(head), 3)
    except pw.ProtoError:
        return False
    return head[pos : pos + 1] == b"\x0a"


class SavedModelScanner:
    """`saved_model.pb`: recognised by its name or by the SavedModel header bytes."""

    name = "tf-savedmodel"

    def detect(self, blob: Blob, head: bytes) -> bool:
        name = blob.name.replace("\\", "/").rsplit("/", 1)[-1]
        if name == SAVED_MODEL_TEXT_NAME:
            return True
        named = name == SAVED_MODEL_NAME
        return (named and head[:1] in (b"\x08", b"\x12")) or _looks_like_saved_model(head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        if blob.name.replace("\\", "/").endswith(SAVED_MODEL_TEXT_NAME):
            ctx.report(
                "MW-TF-UNSUPPORTED",
                Severity.MEDIUM,
                blob.location,
                "text-format SavedModel (saved_model.pbtxt) is loaded by TensorFlow but not"
                " parsed by modelward; its ops were not checked",
            )
            return
        data = _read_all(blob, ctx)
        if data is None:
            return
        try:
            graphs = parse_saved_model(data, ctx)
        except pw.ProtoError as exc:
            _malformed(blob, ctx, "SavedModel protobuf", exc)
            return
        if not graphs.tags:
            ctx.report(
                "MW-TF-MALFORMED",
                Severity.MEDIUM,
                blob.location,
                "SavedModel without any meta graph; nothing to scan",
            )
            return
        check_ops(graphs, blob.location, ctx)
        for identifier, metadata in graphs.user_metadata:
            ctx.check_deadline()
            analyse_keras_json(
                metadata, blob.location, ctx, source=f"object graph user object {identifier}"
            )


def iter_keras_metadata(data: bytes | memoryview) -> Iterator[tuple[str, str, memoryview]]:
    """(node path, identifier, JSON bytes) of each object in a `keras_metadata.pb`."""
    for node in pw.fields_of(data, _METADATA_NODES):
        json_data = memoryview(b"")
        for field in pw.fields_of(node.data, _METADATA_JSON):
            json_data = field.data
        yield (
            pw.string_field(node.data, _METADATA_NODE_PATH),
            pw.string_field(node.data, _METADATA_IDENTIFIER),
            json_data,
        )


class KerasMetadataScanner:
    """`keras_metadata.pb` in a tf.keras SavedModel: the Keras configs of every layer."""

    name = "keras-metadata"

    def detect(self, blob: Blob, head: bytes) -> bool:
        named = blob.name.replace("\\", "/").rsplit("/", 1)[-1] == KERAS_METADATA_NAME
        return head[:1] == b"\x0a" and (named or b"_tf_keras_" in head)

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        data = _read_all(blob, ctx)
        if data is None:
            return
        try:
            for path, identifier, json_data in iter_keras_metadata(data):
                ctx.check_deadline()
                if json_data:
                    analyse_keras_json(
                        bytes(json_data),
                        blob.location,
                        ctx,
                        source=f"{path or '?'} ({identifier or 'no identifier'})",
                    )
        except pw.ProtoError as exc:
            _malformed(blob, ctx, "Keras metadata protobuf", exc)


SAVED_MODEL = SavedModelScanner()
KERAS_METADATA = KerasMetadataScanner()


# FingerprintDef (tensorflow/core/protobuf/fingerprint.proto): five uint64 hashes, a version.
_FINGERPRINT_HASHES = frozenset({1, 2, 3, 4, 5})
_FINGERPRINT_VERSION = 6
FINGERPRINT_NAME = "fingerprint.pb"
#: The SSTable footer magic that ends a checkpoint's `.index` (TensorBundle) file.
_TABLE_MAGIC = bytes.fromhex("57fb808b247547db")
_SHARD_NAME = re.compile(r"\.data-\d{5}-of-\d{5}$")
#: Largest non-seekable member read through to check its last bytes.
_MAX_STREAMED_TAIL = 16 * 1024 * 1024


def _is_fingerprint(data: bytes) -> bool:
    try:
        fields = list(pw.iter_fields(data))
    except pw.ProtoError:
        return False
    return bool(fields) and all(
        (f.number in _FINGERPRINT_HASHES and f.wire_type == pw.VARINT)
        or (f.number == _FINGERPRINT_VERSION and f.wire_type == pw.LEN)
        for f in fields
    )


class FingerprintScanner:
    """`fingerprint.pb` next to a SavedModel: hashes only, nothing that runs."""

    name = "tf-fingerprint"

    def detect(self, blob: Blob, head: bytes) -> bool:
        return (
            blob.name.replace("\\", "/").rsplit("/", 1)[-1] == FINGERPRINT_NAME
            and len(head) == blob.size
            and _is_fingerprint(head)
        )

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        """Detection parsed the whole message; a fingerprint holds no code."""


def _tail(blob: Blob, n: int) -> bytes:
    if blob.size < n:
        return b""
    with blob.open() as stream:
        if blob.fs_path is not None:
            stream.seek(blob.size - n)
            return stream.read(n)
        if blob.size > _MAX_STREAMED_TAIL:
            return b""
        return stream.read()[-n:]


class CheckpointScanner:
    """TensorFlow checkpoint files (`variables.index`, `variables.data-00000-of-00001`).

    The index is an SSTable recognised by its footer magic; data shards are raw tensor
    bytes with no header, recognised by their name next to an index. Neither is read
    further: TensorFlow treats both as data. Registered after every content-based
    scanner, so a pickle or zip given a shard's name is still scanned as what it is.
    """

    name = "tf-checkpoint"

    def detect(self, blob: Blob, head: bytes) -> bool:
        name = blob.name.replace("\\", "/").rsplit("/", 1)[-1]
        if name.endswith(".index"):
            return _tail(blob, len(_TABLE_MAGIC)) == _TABLE_MAGIC
        match = _SHARD_NAME.search(name)
        if match is None:
            return False
        if blob.fs_path is None:
            return True
        return blob.fs_path.with_name(name[: match.start()] + ".index").is_file()

    def scan(self, blob: Blob, ctx: ScanContext) -> None:
        """Tensor data and its index hold no code; reading them would only cost time."""


FINGERPRINT = FingerprintScanner()
CHECKPOINT = CheckpointScanner()
