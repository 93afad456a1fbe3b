"""Keras 3 `.keras` archives: layers from `config.json` as graph nodes.

A layer is a node whose inputs are the layers its inbound nodes name
(`keras_history`), or the previous layer in a Sequential model; its attributes are
its config entries. Weights (`model.weights.h5`) are not read: a Keras diff is of
architecture only.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

from modelward.formats.interface import Blob, ScanContext
from modelward.formats.zip import read_zip
from modelward.modeldiff.structure import DiffError, GraphNode, ModelStructure

_CONFIG = "config.json"
#: Nesting searched for `keras_history` references inside a layer's inbound nodes.
_MAX_DEPTH = 32


def read(blob: Blob, ctx: ScanContext) -> ModelStructure:
    path = str(blob.fs_path or blob.location.path)
    limit = ctx.config.limits.max_header_bytes
    with read_zip(blob, ctx) as archive:
        member = next((m for m in archive.members if m.name == _CONFIG), None)
        if member is None or member.is_encrypted:
            raise DiffError(f"{path}: Keras archive has no readable {_CONFIG}")
        with ctx.open(archive.member_blob(member)) as stream:
            data = stream.read(limit + 1)
    if len(data) > limit:
        raise DiffError(f"{path}: {_CONFIG} is over the {limit}-byte header limit")
    try:
        config = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise DiffError(f"{path}: {_CONFIG} is not valid JSON ({exc})") from None
    return _model(config, path)


def _model(config: Any, path: str) -> ModelStructure:
    inner = config.get("config") if isinstance(config, dict) else None
    layers = inner.get("layers") if isinstance(inner, dict) else None
    if not isinstance(inner, dict) or not isinstance(layers, list):
        raise DiffError(f"{path}: {_CONFIG} describes no model with layers")
    structure = ModelStructure(path, "keras")
    sequential = config.get("class_name") == "Sequential"
    previous: tuple[str, ...] = ()
    for layer in layers:
        if not isinstance(layer, dict):
            raise DiffError(f"{path}: a layer in {_CONFIG} is not an object")
        node = _layer(layer, previous if sequential else None)
        structure.nodes.append(node)
        previous = node.outputs
    if sequential:
        structure.inputs = structure.nodes[0].inputs if structure.nodes else ()
        structure.outputs = previous
    else:
        structure.inputs = tuple(_history(inner.get("input_layers"), 0))
        structure.outputs = tuple(_history(inner.get("output_layers"), 0))
    return structure


def _layer(layer: dict[str, Any], previous: tuple[str, ...] | None) -> GraphNode:
    raw = layer.get("config")
    settings: dict[str, Any] = raw if isinstance(raw, dict) else {}
    name = str(layer.get("name") or settings.get("name") or "")
    inputs = previous if previous is not None else tuple(_history(layer.get("inbound_nodes"), 0))
    attributes = tuple(
        (key, json.dumps(value, sort_keys=True))
        for key, value in sorted(settings.items())
        if key != "name"
    )
    return GraphNode(
        name=name,
        op_type=str(layer.get("class_name", "")),
        domain=str(layer.get("module") or ""),
        inputs=inputs,
        outputs=(name,),
        attributes=attributes,
    )


def _history(value: Any, depth: int) -> Iterator[str]:
    """Layer names referenced by `keras_history` triples or `[name, node, tensor]` lists."""
    if depth > _MAX_DEPTH:
        return
    if isinstance(value, dict):
        history = value.get("keras_history")
        if isinstance(history, list) and history and isinstance(history[0], str):
            yield history[0]
            return
        for item in value.values():
            yield from _history(item, depth + 1)
    elif isinstance(value, list):
        if len(value) == 3 and isinstance(value[0], str) and isinstance(value[1], int):
            yield value[0]
            return
        for item in value:
            yield from _history(item, depth + 1)
