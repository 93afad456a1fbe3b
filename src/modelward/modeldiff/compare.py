"""Compare two `ModelStructure`s: tensors, graph nodes, and what each output depends on.

Nodes are matched by name when the name is shared and the op type agrees, then by
structure: a node's signature is its op type, domain, attributes and the signatures
of what feeds it, so an unchanged sub-network matches even when an exporter renamed
every node. For each graph output we compare its cone of influence (every node,
initializer and input it transitively reads): a node in the candidate's cone that
matches nothing in the reference's cone is how a spliced-in branch shows itself.
"""

from __future__ import annotations

import hashlib
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from modelward.findings import ATLAS_MODIFY_ARCHITECTURE, Finding, Location, Severity
from modelward.modeldiff.structure import GraphNode, ModelStructure

#: Names listed in one message before "and N more".
_LISTED = 12


class _Report(Protocol):
    def __call__(
        self, rule: str, severity: Severity, message: str, evidence: str | None = None
    ) -> None: ...


@dataclass
class Changes:
    """What differs, by kind; the findings are built from it."""

    tensors_added: list[str] = field(default_factory=list)
    tensors_removed: list[str] = field(default_factory=list)
    tensors_reshaped: list[str] = field(default_factory=list)
    tensors_retyped: list[str] = field(default_factory=list)
    nodes_added: list[str] = field(default_factory=list)
    nodes_removed: list[str] = field(default_factory=list)
    nodes_changed: list[str] = field(default_factory=list)
    #: Output name → labels of what it now depends on and did not before.
    rewired_outputs: dict[str, list[str]] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


def _listed(names: Iterable[str]) -> str:
    items = list(names)
    text = ", ".join(items[:_LISTED])
    return text + (f" and {len(items) - _LISTED} more" if len(items) > _LISTED else "")


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(d) for d in shape) + "]"


def compare(reference: ModelStructure, candidate: ModelStructure) -> Changes:
    changes = Changes()
    where = Location(candidate.path)

    def report(rule: str, severity: Severity, message: str, evidence: str | None = None) -> None:
        changes.findings.append(
            Finding(rule, severity, where, message, evidence, technique=ATLAS_MODIFY_ARCHITECTURE)
        )

    _compare_tensors(reference, candidate, changes, report)
    if reference.is_graph or candidate.is_graph:
        _compare_graphs(reference, candidate, changes, report)
    return changes


def _compare_tensors(
    reference: ModelStructure, candidate: ModelStructure, changes: Changes, report: _Report
) -> None:
    ref, cand = reference.tensors, candidate.tensors
    for name, tensor in cand.items():
        if name not in ref:
            changes.tensors_added.append(name)
            report(
                "MW-DIFF-TENSOR-ADDED",
                Severity.HIGH,
                f"tensor {name!r} ({tensor.dtype} {_shape(tensor.shape)}) is not in the reference",
            )
            continue
        before = ref[name]
        if before.shape != tensor.shape:
            changes.tensors_reshaped.append(name)
            report(
                "MW-DIFF-SHAPE",
                Severity.HIGH,
                f"tensor {name!r} changed shape {_shape(before.shape)} -> {_shape(tensor.shape)}",
            )
        if before.dtype != tensor.dtype:
            changes.tensors_retyped.append(name)
            report(
                "MW-DIFF-DTYPE",
                Severity.MEDIUM,
                f"tensor {name!r} changed dtype {before.dtype} -> {tensor.dtype}",
            )
    for name, tensor in ref.items():
        if name not in cand:
            changes.tensors_removed.append(name)
            report(
                "MW-DIFF-TENSOR-REMOVED",
                Severity.HIGH,
                f"tensor {name!r} ({tensor.dtype} {_shape(tensor.shape)}) of the reference is"
                " missing",
            )


def _signatures(structure: ModelStructure) -> list[str]:
    """Each node's structural signature; names matter only for inputs and initializers."""
    values: dict[str, str] = {name: f"input:{name}" for name in structure.inputs}
    values.update({name: f"tensor:{name}" for name in structure.tensors})
    result = []
    for node in structure.nodes:
        feeds = [values.get(name, f"value:{name}") for name in node.inputs]
        text = "\x00".join([node.domain, node.op_type, repr(node.attributes), *feeds])
        digest = hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:24]
        result.append(digest)
        for index, output in enumerate(node.outputs):
            values[output] = f"{digest}:{index}"
    return result


def match_nodes(reference: ModelStructure, candidate: ModelStructure) -> dict[int, int]:
    """Candidate node index → the reference node index it corresponds to."""
    ref_nodes, cand_nodes = reference.nodes, candidate.nodes
    by_name: dict[str, list[int]] = defaultdict(list)
    for index, node in enumerate(ref_nodes):
        if node.name:
            by_name[node.name].append(index)
    matched: dict[int, int] = {}
    for index, node in enumerate(cand_nodes):
        found = by_name.get(node.name, []) if node.name else []
        if len(found) == 1 and ref_nodes[found[0]].op_type == node.op_type:
            matched[index] = found[0]
    taken = set(matched.values())
    free: dict[str, list[int]] = defaultdict(list)
    for index, signature in enumerate(_signatures(reference)):
        if index not in taken:
            free[signature].append(index)
    for index, signature in enumerate(_signatures(candidate)):
        if index not in matched and free.get(signature):
            matched[index] = free[signature].pop(0)
    return matched


def _cone(structure: ModelStructure, output: str) -> tuple[set[int], set[str]]:
    """Node indices and leaf names (inputs, initializers) that `output` depends on."""
    producer = {name: i for i, node in enumerate(structure.nodes) for name in node.outputs}
    nodes: set[int] = set()
    leaves: set[str] = set()
    pending = [output]
    seen: set[str] = set()
    while pending:
        name = pending.pop()
        if name in seen:
            continue
        seen.add(name)
        index = producer.get(name)
        if index is None:
            if name in structure.tensors or name in structure.inputs:
                leaves.add(name)
            continue
        if index not in nodes:
            nodes.add(index)
            pending.extend(structure.nodes[index].inputs)
    return nodes, leaves


def _role(node: GraphNode, structure: ModelStructure) -> str:
    """Whether a node is pre-processing (reads a model input) or post-processing."""
    roles = []
    if set(node.inputs) & set(structure.inputs):
        roles.append("pre-processing: reads a model input")
    if set(node.outputs) & set(structure.outputs):
        roles.append("post-processing: writes a model output")
    return f" ({'; '.join(roles)})" if roles else ""


def _compare_graphs(
    reference: ModelStructure, candidate: ModelStructure, changes: Changes, report: _Report
) -> None:
    matched = match_nodes(reference, candidate)
    matched_ref = set(matched.values())
    for index, node in enumerate(candidate.nodes):
        if index not in matched:
            changes.nodes_added.append(node.label)
            report(
                "MW-DIFF-NODE-ADDED",
                Severity.HIGH,
                f"node {node.label} is not in the reference{_role(node, candidate)}",
                evidence=f"inputs {_listed(node.inputs)} -> outputs {_listed(node.outputs)}",
            )
            continue
        before = reference.nodes[matched[index]]
        differences = _node_differences(before, node)
        if differences:
            changes.nodes_changed.append(node.label)
            prepost = _role(node, candidate) or _role(before, reference)
            report(
                "MW-DIFF-NODE-CHANGED",
                Severity.HIGH if prepost else Severity.MEDIUM,
                f"node {node.label} changed{prepost}: {'; '.join(differences)}",
            )
    for index, node in enumerate(reference.nodes):
        if index not in matched_ref:
            changes.nodes_removed.append(node.label)
            report(
                "MW-DIFF-NODE-REMOVED",
                Severity.HIGH,
                f"node {node.label} of the reference is missing{_role(node, reference)}",
            )
    translate = _translator(reference, candidate, matched)
    _compare_io(reference, candidate, translate, report)
    _compare_cones(reference, candidate, matched, translate, changes, report)


def _node_differences(before: GraphNode, after: GraphNode) -> list[str]:
    found = []
    if (before.domain, before.op_type) != (after.domain, after.op_type):
        found.append(f"op {before.op_type} -> {after.op_type}")
    old, new = dict(before.attributes), dict(after.attributes)
    for key in sorted(old.keys() | new.keys()):
        if old.get(key) != new.get(key):
            found.append(f"{key}: {old.get(key, '<unset>')[:80]} -> {new.get(key, '<unset>')[:80]}")
    if before.name and before.name == after.name and before.inputs != after.inputs:
        found.append(f"inputs {_listed(before.inputs)} -> {_listed(after.inputs)}")
    return found


def _translator(
    reference: ModelStructure, candidate: ModelStructure, matched: dict[int, int]
) -> Callable[[str], str]:
    """Candidate value name → the reference's name for the same value (its producer matched)."""
    names: dict[str, str] = {}
    for index, node in enumerate(candidate.nodes):
        if index in matched:
            before = reference.nodes[matched[index]].outputs
            names.update(zip(node.outputs, before, strict=False))
    return lambda name: names.get(name, name)


def _compare_io(
    reference: ModelStructure,
    candidate: ModelStructure,
    translate: Callable[[str], str],
    report: _Report,
) -> None:
    for kind, old, new in (
        ("input", reference.inputs, candidate.inputs),
        ("output", reference.outputs, candidate.outputs),
    ):
        added = [n for n in new if translate(n) not in old]
        kept = {translate(n) for n in new}
        removed = [n for n in old if n not in kept]
        if added or removed:
            report(
                "MW-DIFF-IO",
                Severity.MEDIUM,
                f"model {kind}s changed: added {_listed(added) or 'none'}, removed"
                f" {_listed(removed) or 'none'}",
            )


def _compare_cones(
    reference: ModelStructure,
    candidate: ModelStructure,
    matched: dict[int, int],
    translate: Callable[[str], str],
    changes: Changes,
    report: _Report,
) -> None:
    for position, output in enumerate(candidate.outputs):
        if translate(output) in reference.outputs:
            ref_output = translate(output)
        elif position < len(reference.outputs):
            ref_output = reference.outputs[position]
        else:
            continue  # a new output: reported by MW-DIFF-IO
        ref_nodes, ref_leaves = _cone(reference, ref_output)
        cand_nodes, cand_leaves = _cone(candidate, output)
        new_nodes = sorted(i for i in cand_nodes if matched.get(i) not in ref_nodes)
        new_leaves = sorted(cand_leaves - ref_leaves)
        if not new_nodes and not new_leaves:
            continue
        labels = [candidate.nodes[i].label for i in new_nodes] + new_leaves
        changes.rewired_outputs[output] = labels
        report(
            "MW-DIFF-OUTPUT-REWIRED",
            Severity.CRITICAL,
            f"model output {output!r} now depends on {len(labels)} node(s)/tensor(s) it did not"
            f" depend on in the reference: {_listed(labels)}",
        )
