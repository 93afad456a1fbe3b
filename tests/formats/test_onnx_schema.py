"""data/onnx_schema.toml is what scripts/refresh_onnx_schemas.py writes from the installed onnx.

When `onnx` gains an operator-set domain or a message field, these fail: run
`python scripts/refresh_onnx_schemas.py` and review the difference.
"""

from __future__ import annotations

import importlib.util
import tomllib
from pathlib import Path
from types import ModuleType

import onnx
import onnx.defs
from google.protobuf.descriptor import FieldDescriptor

from modelward._datafile import load_table
from modelward.analysis._protowire import LEN, VARINT
from modelward.formats import onnx as scanner

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "refresh_onnx_schemas.py"


def _refresh_script() -> ModuleType:
    spec = importlib.util.spec_from_file_location("refresh_onnx_schemas", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_data_is_what_the_refresh_script_writes_from_the_installed_onnx() -> None:
    fresh = tomllib.loads(_refresh_script().render())
    committed = load_table("onnx_schema.toml")
    assert committed["operator_domains"] == fresh["operator_domains"]
    assert committed["messages"] == fresh["messages"]


def test_every_standard_operator_set_domain_is_standard_to_the_scanner() -> None:
    domains = {schema.domain for schema in onnx.defs.get_all_schemas_with_history()}
    standard = set(load_table("onnx_domains.toml")["standard"])
    standard |= set(load_table("onnx_schema.toml")["operator_domains"])
    assert domains <= standard
    assert not domains & set(load_table("onnx_domains.toml")["vendor"])


def test_the_fields_the_checks_read_are_onnx_protos() -> None:
    """Each field number the scanner keeps names the field it means, with its wire type."""
    names = {
        "NodeProto": {"name", "op_type", "attribute", "domain"},
        "AttributeProto": {
            "name",
            "t",
            "g",
            "tensors",
            "graphs",
            "sparse_tensor",
            "sparse_tensors",
        },
        "GraphProto": {"node", "initializer", "sparse_initializer"},
        "TensorProto": {"name", "external_data", "data_location"},
        "SparseTensorProto": {"values", "indices"},
        "StringStringEntryProto": {"key", "value"},
        "FunctionProto": {"name", "node", "domain"},
        "TrainingInfoProto": {"initialization", "algorithm"},
        "OperatorSetIdProto": {"domain", "version"},
    }
    assert set(scanner._KEEP) == set(names)
    for message, fields in scanner._KEEP.items():
        descriptor = getattr(onnx, message).DESCRIPTOR
        by_number = {f.number: f for f in descriptor.fields}
        assert {by_number[n].name for n in fields} == names[message], message
        for number, wire_type in fields.items():
            field = by_number[number]
            length_delimited = field.type in (
                FieldDescriptor.TYPE_STRING,
                FieldDescriptor.TYPE_BYTES,
                FieldDescriptor.TYPE_MESSAGE,
            )
            assert wire_type == (LEN if length_delimited else VARINT), field.full_name


def test_main_graph_walk_field_numbers_are_onnx_protos() -> None:
    graph = {f.name: f.number for f in onnx.GraphProto.DESCRIPTOR.fields}
    tensor = {f.name: f.number for f in onnx.TensorProto.DESCRIPTOR.fields}
    assert (graph["node"], graph["initializer"], graph["sparse_initializer"]) == (
        scanner._GRAPH_NODE,
        scanner._GRAPH_INITIALIZER,
        scanner._GRAPH_SPARSE_INITIALIZER,
    )
    assert (tensor["name"], tensor["external_data"], tensor["data_location"]) == (
        scanner._TENSOR_NAME,
        scanner._TENSOR_EXTERNAL_DATA,
        scanner._TENSOR_DATA_LOCATION,
    )
    assert onnx.TensorProto.EXTERNAL == scanner._TENSOR_EXTERNAL
