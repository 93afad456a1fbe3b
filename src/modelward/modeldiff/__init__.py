"""`modelward diff`: what changed between a reference model and a candidate (ATLAS AML.T0018.001).

(The package is `modeldiff`, not `diff`, so that `modelward.diff` stays the function.)

    >>> result = modelward.diff("reference.onnx", "candidate.onnx", weights=True)
    >>> result.verdict, [f.rule_id for f in result.findings]

Each file is read structurally by a per-format reader (never loaded); the comparison
reports tensors and nodes added, removed, reshaped or retyped, and graph outputs that
now depend on operations they did not. With `weights=True` tensor values are compared
too, so a fine-tune (values drift, structure identical) is told apart from a
re-architecture, and the rank of each matrix's change tells a fine-tune from a merged
LoRA or a surgical ROME/MEMIT-style edit (`edits`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from os import PathLike
from pathlib import Path

from modelward.config import ScanConfig
from modelward.findings import (
    ATLAS_MODIFY_ARCHITECTURE,
    Finding,
    Location,
    ScanReport,
    ScanResult,
    Severity,
)
from modelward.modeldiff.compare import Changes, compare
from modelward.modeldiff.edits import ChangeRank, EditPattern, analyse_edits, edit_finding
from modelward.modeldiff.readers import read_structure
from modelward.modeldiff.structure import DiffError, GraphNode, ModelStructure, TensorInfo
from modelward.modeldiff.weights import TensorDrift, tensor_drift

IDENTICAL = "identical"
WEIGHTS_ONLY = "weights only (fine-tune-like)"
ARCHITECTURE_CHANGED = "architecture changed"
#: Relative L2 drift above which a tensor's change is LOW rather than INFO: more than
#: half its norm moved, which looks like replaced rather than fine-tuned weights.
LARGE_DRIFT = 0.5


@dataclass
class DiffResult:
    """The outcome of one comparison; `findings` are what renderers and exit codes use."""

    reference: ModelStructure
    candidate: ModelStructure
    changes: Changes
    findings: list[Finding] = field(default_factory=list)
    #: Per-tensor drift, only when weights were compared.
    drift: list[TensorDrift] | None = None
    #: Shared tensors whose values could not be compared (dtype/shape differ, not mappable).
    not_compared: list[str] = field(default_factory=list)
    #: Numerical rank of every changed matrix, only when weights were compared.
    ranks: dict[str, ChangeRank] | None = None
    #: Fine-tune, LoRA-merged or surgical edit (None: no matrix changed above noise).
    edit: EditPattern | None = None
    seconds: float = 0.0

    @property
    def architecture_changed(self) -> bool:
        return any(f.severity >= Severity.MEDIUM for f in self.changes.findings)

    @property
    def verdict(self) -> str:
        if self.architecture_changed:
            return ARCHITECTURE_CHANGED
        if self.changes.findings or any(d.changed for d in self.drift or []):
            return WEIGHTS_ONLY
        return IDENTICAL

    def to_report(self) -> ScanReport:
        """A `ScanReport` with one result, for the table/json/sarif renderers."""
        result = ScanResult(
            path=self.candidate.path,
            format=f"diff {self.reference.format} -> {self.candidate.format}",
            findings=list(self.findings),
            seconds=self.seconds,
        )
        return ScanReport([result], seconds=self.seconds)


def diff(
    reference: str | PathLike[str],
    candidate: str | PathLike[str],
    weights: bool = False,
    config: ScanConfig | None = None,
) -> DiffResult:
    """Compare two model files structurally (and by value with `weights=True`).

    Raises `DiffError` when a file's format has no structural reader or is too damaged
    to compare, `OSError` when it cannot be read.
    """
    start = time.monotonic()
    ref, ref_problems = read_structure(Path(reference), config)
    cand, cand_problems = read_structure(Path(candidate), config)
    changes = compare(ref, cand)
    result = DiffResult(ref, cand, changes, [*ref_problems, *cand_problems, *changes.findings])
    if weights:
        result.drift, result.not_compared = tensor_drift(ref, cand)
        result.ranks, result.edit = analyse_edits(ref, cand, result.drift)
        result.findings.extend(_drift_findings(result.drift, cand.path, result.ranks))
        if result.edit is not None:
            result.findings.append(edit_finding(result.edit, cand.path))
    result.findings.append(_summary(result))
    result.seconds = time.monotonic() - start
    return result


def _drift_findings(
    drifts: list[TensorDrift], path: str, ranks: dict[str, ChangeRank] | None = None
) -> list[Finding]:
    findings = []
    for drift in drifts:
        if not drift.changed:
            continue
        if drift.max_abs is None or drift.rel_l2 is None:
            numbers = "raw bytes differ (quantised values not decoded)"
            severity = Severity.INFO
        else:
            numbers = f"max abs diff {drift.max_abs:.6g}, relative L2 {drift.rel_l2:.6g}"
            severity = Severity.LOW if not drift.rel_l2 <= LARGE_DRIFT else Severity.INFO
        rank = (ranks or {}).get(drift.name)
        if rank is not None:
            numbers += f", change rank {rank.label}"
        findings.append(
            Finding(
                "MW-DIFF-WEIGHT-DRIFT",
                severity,
                Location(path),
                f"tensor {drift.name!r} values changed: {numbers}",
                technique=ATLAS_MODIFY_ARCHITECTURE,
            )
        )
    return findings


def _summary(result: DiffResult) -> Finding:
    changes = result.changes
    parts = [
        f"{len(v)} {k}"
        for k, v in (
            ("tensors added", changes.tensors_added),
            ("tensors removed", changes.tensors_removed),
            ("tensors reshaped", changes.tensors_reshaped),
            ("tensors retyped", changes.tensors_retyped),
            ("nodes added", changes.nodes_added),
            ("nodes removed", changes.nodes_removed),
            ("nodes changed", changes.nodes_changed),
            ("outputs rewired", changes.rewired_outputs),
        )
        if v
    ]
    if result.drift is not None:
        moved = sum(d.changed for d in result.drift)
        parts.append(f"{moved} of {len(result.drift)} compared tensors drifted")
        if result.edit is not None:
            parts.append(f"change pattern: {result.edit.kind}")
        if result.not_compared:
            parts.append(f"{len(result.not_compared)} shared tensors not compared")
    detail = "; ".join(parts) or "no structural difference"
    return Finding(
        "MW-DIFF-SUMMARY",
        Severity.INFO,
        Location(result.candidate.path),
        f"{result.verdict}: {detail} (reference {result.reference.path},"
        f" {result.reference.format}; candidate {result.candidate.format})",
        technique=ATLAS_MODIFY_ARCHITECTURE,
    )


__all__ = [
    "ARCHITECTURE_CHANGED",
    "IDENTICAL",
    "WEIGHTS_ONLY",
    "ChangeRank",
    "DiffError",
    "DiffResult",
    "EditPattern",
    "GraphNode",
    "ModelStructure",
    "TensorDrift",
    "TensorInfo",
    "diff",
]
