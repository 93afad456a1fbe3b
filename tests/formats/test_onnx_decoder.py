"""The ONNX scanner's own protobuf decoder against `onnx`'s: same refusals, same fields read.

The scanner decodes nodes, functions, training graphs and tensor descriptions without the
`onnx` package (analysis/_protowire.py `decode_message`, steered by data/onnx_schema.toml). Here
`onnx`'s protobuf classes are the oracle: on real messages, damaged ones and arbitrary wire
bytes, both refuse the same inputs and, where both decode, read the same op types, domains,
names, subgraphs and external-data entries.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import onnx
import pytest
from google.protobuf.message import DecodeError
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.fuzzing import mutated
from fixtures.onnx_models import (
    custom_op_in_function,
    custom_op_in_loop,
    everything,
    nested_node,
    nested_subgraphs,
)
from modelward.analysis._protowire import MAX_DEPTH, int32, int64
from modelward.formats import onnx as scanner

ROOTS = (
    "NodeProto",
    "FunctionProto",
    "TrainingInfoProto",
    "OperatorSetIdProto",
    "StringStringEntryProto",
)


# --- What the checks read, through onnx's classes and through the scanner's decoder ----------


def _entries_pb(entries: Any) -> dict[Any, str]:
    return {
        e.key: e.value.decode("utf-8", "surrogateescape") if isinstance(e.value, bytes) else e.value
        for e in entries
    }


def _tensor_pb(t: Any) -> tuple[Any, ...]:
    return (t.name, t.data_location, _entries_pb(t.external_data))


def _graph_pb(g: Any) -> tuple[Any, ...]:
    return (
        [_node_pb(n) for n in g.node],
        [_tensor_pb(t) for t in g.initializer],
        [(_tensor_pb(s.values), _tensor_pb(s.indices)) for s in g.sparse_initializer],
    )


def _node_pb(n: Any) -> tuple[Any, ...]:
    attributes = []
    for a in n.attribute:
        graphs = ([a.g] if a.HasField("g") else []) + list(a.graphs)
        tensors = [a.t] if a.HasField("t") else []
        if a.HasField("sparse_tensor"):
            tensors += [a.sparse_tensor.values, a.sparse_tensor.indices]
        for s in a.sparse_tensors:
            tensors += [s.values, s.indices]
        tensors += list(a.tensors)
        attributes.append(
            (str(a.name), [_graph_pb(g) for g in graphs], [_tensor_pb(t) for t in tensors])
        )
    return (str(n.name), str(n.op_type), str(n.domain), attributes)


def summary_pb(root: str, data: bytes) -> tuple[Any, ...] | None:
    """What the checks read, through `onnx`; None when protobuf refuses the bytes."""
    message = getattr(onnx, root)()
    try:
        message.ParseFromString(data)
    except DecodeError:
        return None
    if root == "NodeProto":
        return _node_pb(message)
    if root == "FunctionProto":
        return (str(message.name), str(message.domain), [_node_pb(n) for n in message.node])
    if root == "TrainingInfoProto":
        return (_graph_pb(message.initialization), _graph_pb(message.algorithm))
    if root == "OperatorSetIdProto":
        return (str(message.domain), message.version)
    return (_entries_pb([message]),)


_EMPTY_TENSOR: tuple[Any, ...] = ("", 0, {})


def _tensor_wire(t: Any) -> tuple[Any, ...]:
    if t is None:
        return _EMPTY_TENSOR
    locations = [v for v in map(int32, t.get(14, [])) if v in (0, 1)]
    entries = scanner._external_entries(t.get(13, []))
    return (scanner._raw_text(scanner._last(t, 8)), locations[-1] if locations else 0, entries)


def _graph_wire(g: Any) -> tuple[Any, ...]:
    g = g or {}
    return (
        [_node_wire(n) for n in g.get(1, [])],
        [_tensor_wire(t) for t in g.get(5, [])],
        [
            (_tensor_wire(scanner._single(s, 1)), _tensor_wire(scanner._single(s, 2)))
            for s in g.get(15, [])
        ],
    )


def _text(message: Any, number: int) -> str:
    return scanner._text(scanner._last(message, number))


def _node_wire(n: Any) -> tuple[Any, ...]:
    attributes = [
        (
            _text(a, 1),
            [_graph_wire(g) for g in scanner._graphs(a)],
            [_tensor_wire(t) for t in scanner._tensors(a)],
        )
        for a in n.get(5, [])
    ]
    return (_text(n, 3), _text(n, 4), _text(n, 7), attributes)


def summary_wire(root: str, data: bytes) -> tuple[Any, ...] | None:
    """What the checks read, through the scanner's decoder; None when it refuses the bytes."""
    try:
        message = scanner.decode(data, root)
    except scanner.Undecodable:
        return None
    if root == "NodeProto":
        return _node_wire(message)
    if root == "FunctionProto":
        return (_text(message, 1), _text(message, 10), [_node_wire(n) for n in message.get(7, [])])
    if root == "TrainingInfoProto":
        return (
            _graph_wire(scanner._single(message, 1)),
            _graph_wire(scanner._single(message, 2)),
        )
    if root == "OperatorSetIdProto":
        return (_text(message, 1), int64(message.get(2, [0])[-1]))
    return (scanner._external_entries([message]),)


def assert_same(root: str, data: bytes) -> None:
    assert summary_wire(root, data) == summary_pb(root, data), (root, data.hex())


# --- Inputs ------------------------------------------------------------------------------------


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        out.append(value & 0x7F | (0x80 if value > 0x7F else 0))
        value >>= 7
        if not value:
            return bytes(out)


def _seeds() -> list[tuple[str, bytes]]:
    """Serialized nodes, functions, training graphs and opsets of real models."""
    found: list[tuple[str, bytes]] = []
    with tempfile.TemporaryDirectory() as folder:
        for factory in (everything, custom_op_in_loop, custom_op_in_function):
            model = onnx.load(str(factory(Path(folder) / "m.onnx")), load_external_data=False)
            found += [("NodeProto", n.SerializeToString()) for n in model.graph.node]
            found += [("FunctionProto", f.SerializeToString()) for f in model.functions]
            found += [("TrainingInfoProto", t.SerializeToString()) for t in model.training_info]
            found += [("OperatorSetIdProto", o.SerializeToString()) for o in model.opset_import]
    return found


SEEDS = _seeds()
_NUMBERS = st.sampled_from([1, 2, 3, 4, 5, 6, 7, 8, 10, 11, 13, 14, 15, 22, 23, 0, 99, 2**29 - 1])
_TEXT = st.sampled_from([b"", b"ai.onnx", b"com.microsoft", b"evil", b"location", b"\xff\xfe"])


def _fields(children: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    """Messages of arbitrary fields: nested, text, varints, fixed, groups, garbage."""
    one = st.one_of(
        st.tuples(_NUMBERS, children | _TEXT | st.binary(max_size=6)).map(
            lambda f: _varint(f[0] << 3 | 2) + _varint(len(f[1])) + f[1]
        ),
        st.tuples(_NUMBERS, st.sampled_from([0, 1, 7, 2**31, 2**32 + 1, 2**64 - 1, 2**69])).map(
            lambda f: _varint(f[0] << 3) + _varint(f[1])
        ),
        st.tuples(_NUMBERS, st.sampled_from([1, 5]), st.binary(min_size=8, max_size=8)).map(
            lambda f: _varint(f[0] << 3 | f[1]) + f[2][: 8 if f[1] == 1 else 4]
        ),
        st.tuples(_NUMBERS, children, st.sampled_from([3, 4, 4, 4])).map(
            lambda f: _varint(f[0] << 3 | 3) + f[1] + _varint(f[0] << 3 | f[2])
        ),
        st.binary(min_size=1, max_size=3),
    )
    return st.lists(one, max_size=6).map(b"".join)


WIRE = st.recursive(st.just(b""), _fields, max_leaves=25)


# --- Tests -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("root", "data"), SEEDS)
def test_real_messages_read_the_same(root: str, data: bytes) -> None:
    assert summary_wire(root, data) is not None
    assert_same(root, data)


@given(st.sampled_from(SEEDS), st.lists(st.tuples(st.integers(0, 10**6), st.integers(0, 255))))
def test_fuzz_damaged_messages_decode_as_protobuf_does(
    seed: tuple[str, bytes], edits: list[tuple[int, int]]
) -> None:
    root, data = seed
    edits = [(position % len(data), value) for position, value in edits[:6]]
    assert_same(root, mutated(data, edits, len(data)))


@given(st.sampled_from(SEEDS), st.integers(0, 10**6))
def test_fuzz_truncated_messages_decode_as_protobuf_does(
    seed: tuple[str, bytes], keep: int
) -> None:
    root, data = seed
    assert_same(root, data[: keep % len(data)])


@given(st.sampled_from(ROOTS), WIRE)
def test_fuzz_arbitrary_wire_bytes_decode_as_protobuf_does(root: str, data: bytes) -> None:
    assert_same(root, data)


@pytest.mark.parametrize("levels", [32, 33, 34])
def test_nesting_limit_is_protobufs(levels: int) -> None:
    """33 levels of subgraphs are 100 messages under the node, protobuf's limit; 34 are over."""
    assert_same("NodeProto", nested_node(levels))
    assert (summary_pb("NodeProto", nested_node(levels)) is None) == (levels > 33)


@pytest.mark.parametrize("groups", [MAX_DEPTH - 1, MAX_DEPTH, MAX_DEPTH + 1])
def test_unknown_groups_nest_as_deep_as_protobuf_allows(groups: int) -> None:
    data = b"\xcb\x0f" * groups + b"\xcc\x0f" * groups  # field 121, start and end group
    assert_same("NodeProto", data)
    assert_same("OperatorSetIdProto", b"\x12\x00" + data)


@pytest.mark.parametrize(("levels", "rule"), [(33, "MW-ONNX-DEPTH"), (34, "MW-ONNX-MALFORMED")])
def test_subgraphs_past_the_limits_are_reported(tmp_path: Path, levels: int, rule: str) -> None:
    result = modelward.scan(nested_subgraphs(tmp_path / "deep.onnx", levels)).results[0]
    assert result.format == "onnx"
    rules = {f.rule_id for f in result.findings}
    assert rule in rules
    assert "MW-SCAN-ERROR" not in rules and result.errors == []


def test_text_that_is_not_utf8_is_shown_as_onnx_shows_it(tmp_path: Path) -> None:
    node = onnx.NodeProto(op_type="Run")
    data = node.SerializeToString() + b"\x3a\x02\xff\xfe"  # domain = b"\xff\xfe"
    assert_same("NodeProto", data)
    path = tmp_path / "m.onnx"
    path.write_bytes(b"\x08\x08\x3a" + _varint(len(data) + 2) + b"\x0a" + _varint(len(data)) + data)
    [custom] = [f for f in modelward.scan(path).findings if f.rule_id == "MW-ONNX-CUSTOM-OP"]
    assert custom.evidence == "b'\\xff\\xfe':Run"


def test_external_location_that_is_not_utf8_is_checked(tmp_path: Path) -> None:
    """`onnx` returns such a location as bytes (the old scan crashed on it); it is a path."""
    folder = tmp_path / "model"
    folder.mkdir()
    entry = b"\x0a\x08location\x12\x06..\xff/ab"  # key "location", value b"..\xff/ab"
    tensor = b"\x42\x01W" + b"\x6a" + _varint(len(entry)) + entry + b"\x70\x01"
    graph = b"\x2a" + _varint(len(tensor)) + tensor  # GraphProto.initializer
    (folder / "m.onnx").write_bytes(b"\x08\x08\x3a" + _varint(len(graph)) + graph)
    result = modelward.scan(folder / "m.onnx").results[0]
    assert result.errors == []
    assert "MW-ONNX-EXTERNAL-MISSING" in {f.rule_id for f in result.findings}


_NO_IMPORT_SCRIPT = """
import json, sys
import modelward
report = modelward.scan(sys.argv[1])
print(json.dumps({
    "rules": sorted({f.rule_id for f in report.findings}),
    "imported": sorted(m for m in ("onnx", "google.protobuf") if m in sys.modules),
}))
"""


def test_scanning_onnx_imports_neither_onnx_nor_protobuf(tmp_path: Path) -> None:
    path = everything(tmp_path / "model.onnx")
    expected = sorted({f.rule_id for f in modelward.scan(path).findings})
    assert "MW-ONNX-CUSTOM-OP" in expected and "MW-ONNX-EXTERNAL-PATH" in expected
    run = subprocess.run(
        [sys.executable, "-c", _NO_IMPORT_SCRIPT, str(path)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    seen = json.loads(run.stdout.strip().splitlines()[-1])
    assert seen == {"rules": expected, "imported": []}
