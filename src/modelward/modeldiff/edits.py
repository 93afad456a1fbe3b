"""What kind of weight change a diff is: fine-tune, merged LoRA, or a surgical edit (AML.T0018).

A fine-tune moves every matrix a little, at full rank. A merged LoRA adds `B @ A` of a small
rank r to many projection matrices. A ROME or MEMIT edit (PoisonGPT) adds a rank-one or rank-k
update to one or a few MLP matrices and leaves every other byte alone. So the signature of a
change is, per matrix, the numerical rank of `delta = candidate - reference`, and over the
whole model, how many matrices moved and in how many layers.

The rank is estimated with a randomised range finder (Halko, Martinsson and Tropp 2011) in
two passes over row blocks read from the two memory-maps, so a full delta is never held:

1. `Y = delta @ omega`, `omega` a seeded Gaussian of `SKETCH_RANK + OVERSAMPLE` columns,
   accumulated block by block (`Y[rows] = delta[rows] @ omega`);
2. `Q = orth(Y)`, then `B = Q.T @ delta` accumulated block by block; the singular values of
   `B` are those of `delta` within the sketch.

The rank is the number of singular values above `RELATIVE_TOLERANCE * sigma_max` and above the
rounding noise of the dtype (a re-rounded bf16 matrix is full rank at the ulp level). Memory is
a few row blocks of `BLOCK_BYTES` plus `(rows + columns) * (SKETCH_RANK + OVERSAMPLE)` floats.
"""

from __future__ import annotations

import math
import re
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field

from modelward.findings import Finding, Location, Severity
from modelward.modeldiff.structure import ModelStructure, TensorInfo
from modelward.modeldiff.weights import NUMPY_DTYPES, TensorDrift, comparable, map_tensor, widen

#: MITRE ATLAS "Manipulate AI Model": the weights were edited after training.
ATLAS_MANIPULATE_MODEL = "AML.T0018"

#: Ranks up to this are measured; a sketch that fills up reports "≥ SKETCH_RANK".
SKETCH_RANK = 64
OVERSAMPLE = 8
#: float64 bytes of one row block of one operand.
BLOCK_BYTES = 16 << 20
#: Singular values below this fraction of the largest do not count.
RELATIVE_TOLERANCE = 1e-3
#: Multiple of the dtype's rounding noise (eps * rms(W) * (sqrt(m) + sqrt(n))) that counts.
NOISE_FACTOR = 2.0
#: A matrix whose sketch (omega, Y, Q and B) would need more than this is not estimated.
MAX_SKETCH_BYTES = 512 << 20
SEED = 0x6D77
#: Machine epsilon of the float dtypes whose rank can be estimated.
_EPS = {"F16": 2.0**-10, "BF16": 2.0**-7, "F32": 2.0**-23, "F64": 2.0**-52}

#: A surgical edit touches at most max(this, SURGICAL_FRACTION of the matrices) tensors...
SURGICAL_MAX_TENSORS = 5
SURGICAL_FRACTION = 0.05

SURGICAL_EDIT = "surgical edit"
LORA_MERGED = "LoRA-merged"
FINE_TUNE = "fine-tune"

_LAYER = re.compile(r"(?:^|[._])(\d+)(?=[._]|$)")


@dataclass(frozen=True)
class ChangeRank:
    """The numerical rank of one matrix's change (`rows` x `columns`: conv kernels flattened).

    `at_least` when the sketch was full: the rank is `rank` or more.
    """

    name: str
    rows: int
    columns: int
    rank: int
    at_least: bool
    sigma_max: float
    rel_change: float

    @property
    def label(self) -> str:
        return f"≥ {self.rank}" if self.at_least else str(self.rank)

    @property
    def high(self) -> bool:
        """More than the sketch measures, or more than half the smaller dimension (near full
        rank: the relative tolerance drops the smallest singular values of a small matrix)."""
        return self.at_least or 2 * self.rank > min(self.rows, self.columns)


@dataclass
class EditPattern:
    """The whole diff classified; `changed` are the matrices whose change is above noise."""

    kind: str
    changed: list[ChangeRank]
    matrices: int
    #: Changed tensors that are not matrices, or whose rank could not be estimated.
    other_changed: list[str] = field(default_factory=list)
    layers_touched: list[str] = field(default_factory=list)
    layers_total: int = 0


def matrix_shape(tensor: TensorInfo) -> tuple[int, int] | None:
    """`(rows, columns)` of a float tensor seen as a matrix (conv kernels: out x the rest)."""
    if tensor.dtype not in _EPS or len(tensor.shape) < 2:
        return None
    rows, columns = tensor.shape[0], math.prod(tensor.shape[1:])
    if rows < 2 or columns < 2:
        return None
    return rows, columns


def change_rank(
    ref: TensorInfo,
    cand: TensorInfo,
    *,
    sketch: int = SKETCH_RANK,
    oversample: int = OVERSAMPLE,
    block_bytes: int = BLOCK_BYTES,
    seed: int = SEED,
) -> ChangeRank | None:
    """Numerical rank of `cand - ref`, two passes over row blocks; None when not estimable.

    Not estimable: not a float matrix, not comparable, a shape that disagrees with the byte
    range, too large a sketch, or NaN/inf in the change.
    """
    import numpy as np

    shape = matrix_shape(ref)
    if shape is None or not comparable(ref, cand):
        return None
    m, n = shape
    width = min(sketch + oversample, m, n)
    dtype = NUMPY_DTYPES[ref.dtype]
    if ref.nbytes != m * n * np.dtype(dtype).itemsize or 2 * (m + n) * width * 8 > MAX_SKETCH_BYTES:
        return None  # a header whose shape disagrees with its byte range, or too wide a sketch
    a = map_tensor(ref, dtype, m * n).reshape(m, n)
    b = map_tensor(cand, dtype, m * n).reshape(m, n)
    step = max(1, block_bytes // (8 * n))
    omega = np.random.default_rng(seed).standard_normal((n, width))
    y = np.empty((m, width))
    ref_sq = 0.0
    diff_sq = 0.0
    with np.errstate(all="ignore"):
        for start in range(0, m, step):
            x = widen(a[start : start + step], ref.dtype)
            delta = widen(b[start : start + step], ref.dtype) - x
            ref_sq += float(np.vdot(x, x))
            diff_sq += float(np.vdot(delta, delta))
            y[start : start + step] = delta @ omega
        del omega
        if not (np.isfinite(y).all() and math.isfinite(ref_sq) and math.isfinite(diff_sq)):
            return None
        q, _ = np.linalg.qr(y)
        del y
        sketched = np.zeros((q.shape[1], n))
        for start in range(0, m, step):
            x = widen(a[start : start + step], ref.dtype)
            delta = widen(b[start : start + step], ref.dtype) - x
            sketched += q[start : start + step].T @ delta
    try:
        singular = np.linalg.svd(sketched, compute_uv=False)
    except np.linalg.LinAlgError:
        return None
    sigma_max = float(singular[0]) if singular.size else 0.0
    rms = math.sqrt(ref_sq / (m * n))
    noise = NOISE_FACTOR * _EPS[ref.dtype] * rms * (math.sqrt(m) + math.sqrt(n))
    tolerance = max(RELATIVE_TOLERANCE * sigma_max, noise, np.finfo(np.float64).tiny)
    rank = int(np.count_nonzero(singular > tolerance))
    at_least = rank >= sketch and width < min(m, n)
    rel_change = math.sqrt(diff_sq / ref_sq) if ref_sq > 0 else math.inf
    return ChangeRank(ref.name, m, n, sketch if at_least else rank, at_least, sigma_max, rel_change)


def layer_of(name: str) -> str | None:
    """The first number in a dotted tensor name (`transformer.h.11.mlp...` -> `11`)."""
    match = _LAYER.search(name)
    return match.group(1) if match else None


def role_of(name: str) -> str:
    """A tensor name with its layer numbers replaced (`h.#.attn.c_attn.weight`)."""
    return _LAYER.sub(lambda m: m.group(0).replace(m.group(1), "#"), name)


def analyse_edits(
    reference: ModelStructure, candidate: ModelStructure, drifts: Iterable[TensorDrift]
) -> tuple[dict[str, ChangeRank], EditPattern | None]:
    """The rank of every changed matrix among `drifts`, and the diff's pattern (None: nothing
    changed above noise in any matrix)."""
    ranks: dict[str, ChangeRank] = {}
    matrices = 0
    layers: set[str] = set()
    other: list[str] = []
    for drift in drifts:
        ref, cand = reference.tensors[drift.name], candidate.tensors[drift.name]
        is_matrix = matrix_shape(ref) is not None
        if is_matrix:
            matrices += 1
            layer = layer_of(drift.name)
            if layer is not None:
                layers.add(layer)
        if not drift.changed:
            continue
        estimate = change_rank(ref, cand) if is_matrix else None
        if estimate is None:
            other.append(drift.name)
        else:
            ranks[drift.name] = estimate
    return ranks, classify(list(ranks.values()), matrices, other, len(layers))


def classify(
    ranks: list[ChangeRank], matrices: int, other_changed: list[str], layers_total: int
) -> EditPattern | None:
    """Surgical edit, LoRA-merged or fine-tune, from the ranks of the changed matrices.

    - surgical edit: every changed matrix has a low-rank change, and they are few (at most
      `max(SURGICAL_MAX_TENSORS, SURGICAL_FRACTION * matrices)` changed tensors, fewer than
      half the matrices) in at most half the layers;
    - LoRA-merged: otherwise, when most changed matrices have a low-rank change;
    - fine-tune: most changes are full rank (or beyond the sketch).

    A matrix whose change is below the dtype's rounding noise (rank 0) is not counted.
    """
    changed = [r for r in ranks if r.rank > 0]
    if not changed:
        return None
    low = [r for r in changed if not r.high]
    touched = sorted({t for r in changed if (t := layer_of(r.name)) is not None}, key=int)
    count = len(changed) + len(other_changed)
    few = count <= max(SURGICAL_MAX_TENSORS, math.ceil(SURGICAL_FRACTION * matrices))
    few = few and 2 * count < max(matrices, 1)
    localised = layers_total == 0 or len(touched) <= max(1, layers_total // 2)
    if len(low) == len(changed) and few and localised:
        kind = SURGICAL_EDIT
    elif 2 * len(low) > len(changed):
        kind = LORA_MERGED
    else:
        kind = FINE_TUNE
    return EditPattern(kind, changed, matrices, list(other_changed), touched, layers_total)


def edit_finding(pattern: EditPattern, path: str) -> Finding:
    """MW-DIFF-SURGICAL-EDIT (high), MW-DIFF-LORA-MERGE or MW-DIFF-FINE-TUNE (info)."""
    changed = pattern.changed
    where = f"{len(changed)} of {pattern.matrices} compared matrices changed"
    if pattern.layers_total:
        where += f", in {len(pattern.layers_touched)} of {pattern.layers_total} layers"
    others = ""
    if pattern.other_changed:
        shown = ", ".join(repr(n) for n in pattern.other_changed[:5])
        more = len(pattern.other_changed) - 5
        others = f"; other tensors changed: {shown}" + (f" and {more} more" if more > 0 else "")
    if pattern.kind == SURGICAL_EDIT:
        edits = "; ".join(
            f"{_layer_label(r.name)}{r.name!r} rank {r.label}, relative change {r.rel_change:.3g}"
            for r in changed
        )
        identical = "" if pattern.other_changed else "; every other compared tensor is identical"
        return Finding(
            "MW-DIFF-SURGICAL-EDIT",
            Severity.HIGH,
            Location(path),
            f"surgical edit: {where}, each by a low-rank update ({edits}){identical}{others}."
            " This is the signature of a ROME/MEMIT model edit (PoisonGPT): chosen facts or"
            " behaviours rewritten while other outputs stay normal. It is not a fine-tune of"
            " the reference",
            technique=ATLAS_MANIPULATE_MODEL,
        )
    if pattern.kind == LORA_MERGED:
        low = [r for r in changed if not r.high]
        by_role: dict[str, list[ChangeRank]] = defaultdict(list)
        for r in low:
            by_role[role_of(r.name)].append(r)
        roles = ", ".join(
            f"{role} x{len(rs)} (rank {_rank_span(rs)})" for role, rs in sorted(by_role.items())
        )
        return Finding(
            "MW-DIFF-LORA-MERGE",
            Severity.INFO,
            Location(path),
            f"LoRA-merged: {where}, {len(low)} of them by low-rank updates: {roles}{others}",
            technique=ATLAS_MANIPULATE_MODEL,
        )
    high = sum(r.high for r in changed)
    return Finding(
        "MW-DIFF-FINE-TUNE",
        Severity.INFO,
        Location(path),
        f"fine-tune: {where}, {high} of them at (near) full rank or rank ≥ {SKETCH_RANK}"
        f" (broad drift){others}",
        technique=ATLAS_MANIPULATE_MODEL,
    )


def _layer_label(name: str) -> str:
    layer = layer_of(name)
    return f"layer {layer}: " if layer is not None else ""


def _rank_span(ranks: list[ChangeRank]) -> str:
    labels = sorted({r.rank for r in ranks})
    return str(labels[0]) if len(labels) == 1 else f"{labels[0]}-{labels[-1]}"
