"""Which training samples are poison? Activation clustering that does not assume a minority.

Per label, the model's penultimate representations (the input of its last linear layer) are
centred, reduced to their top principal components and split in two by 2-means (activation
clustering, Chen et al. 2018); the top singular direction gives the spectral signature score
(Tran et al. 2018). Both published rules then pick the *smaller* cluster, or the top 1.5·ε of
every class, as poison. With a few per cent of the whole set poisoned into one of ten classes,
the attacked label is a third to a half poison, and both rules fail.

So the decision here asks a different question of each cluster: does it look like its own
label in *input space*? A poisoned sample is a source-class input with a small trigger, so its
nearest input-space neighbour from another class is about as close as its nearest neighbour of
the same label; a genuine sample of the label sits clearly farther from every other class. The
distance is trimmed (the largest per-feature differences are ignored) so that the trigger
itself does not hide the resemblance. A label is attacked when one cluster "looks foreign"
(median log distance ratio near zero) while the rest of the label does not (a clear gap);
that cluster is flagged, whatever its size.

That test needs a trigger small enough to trim away. A trigger spread over the whole input
(a blended pattern, a signal) is found the other way round: the trigger search of `scan_model`
runs on a sample of the training set, and when it calls the model backdoored, the samples of
its target label whose representations lean towards those of clean inputs stamped with the
reversed trigger are flagged (as in Neural Cleanse's mitigation, which uses the reversed
trigger's activations to find poisoned inputs).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelward.behaviour._torch_utils import model_device, torch_threads
from modelward.behaviour.model_scan import DEFAULT_THRESHOLD, ModelVerdict, ScanSettings, scan_model
from modelward.findings import Finding, Location, Severity

#: MITRE ATLAS: Poison Training Data.
ATLAS_POISON_TRAINING_DATA = "AML.T0020"


@dataclass(frozen=True)
class DataScanSettings:
    """Knobs of `scan_data`; the defaults were set on the digits benchmark (`bench/behaviour.py`).

    `foreign_max`: a cluster whose median log ratio (nearest other-label distance over nearest
    same-label distance) is at most this looks like other labels. `min_gap`: how much more
    "native" the rest of the label must look. `trim`: share of input features ignored per
    distance (the largest differences), which must cover the trigger. `trigger_search`: also
    reverse-engineer a trigger (`scan_model` on `search_per_label` training samples of each
    label, judged at `model_threshold`), for triggers too large to trim.
    """

    components: int = 10
    trim: float = 0.1
    foreign_max: float = 0.1
    min_gap: float = 0.2
    min_class_size: int = 10
    candidates: int = 16
    max_reference: int = 4000
    batch: int = 512
    threads: int | None = 2
    seed: int = 0
    trigger_search: bool = True
    search_per_label: int = 20
    model_threshold: float = DEFAULT_THRESHOLD


@dataclass(frozen=True)
class ClassResult:
    """The two clusters of one label and how foreign each looks."""

    label: int
    count: int
    silhouette: float
    suspicious: tuple[int, ...]
    foreignness: float
    rest_foreignness: float
    attacked: bool
    #: what convicted the label: "input space" (the cluster looks like other labels) or
    #: "reversed trigger" (the cluster leans towards inputs stamped with the reversed trigger)
    evidence: str = "input space"

    @property
    def gap(self) -> float:
        return self.rest_foreignness - self.foreignness

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "count": self.count,
            "silhouette": round(self.silhouette, 4),
            "suspicious_size": len(self.suspicious),
            "foreignness": round(self.foreignness, 4),
            "rest_foreignness": round(self.rest_foreignness, 4),
            "attacked": self.attacked,
            "evidence": self.evidence if self.attacked else None,
        }


@dataclass
class DataVerdict:
    """`scores[i]`: how poisoned sample i looks within its label (standardised distance towards
    the suspicious cluster minus standardised input-space foreignness; higher is worse);
    `spectral[i]`: the spectral signature score; `flagged`: indices judged poison, sorted."""

    suspicious_classes: list[int]
    scores: np.ndarray
    spectral: np.ndarray
    flagged: np.ndarray
    classes: list[ClassResult] = field(default_factory=list)
    seconds: float = 0.0
    trigger: ModelVerdict | None = None  # the trigger search's verdict, when it ran

    def findings(self, path: str) -> list[Finding]:
        """One `MW-DATA-POISON-CLASS` finding per attacked label, for the shared report model."""
        out = []
        for result in self.classes:
            if not result.attacked:
                continue
            members = result.suspicious
            shown = ", ".join(str(i) for i in members[:20])
            more = f", ... ({len(members)} in all)" if len(members) > 20 else ""
            if result.evidence == "reversed trigger" and self.trigger is not None:
                looks = "respond like inputs stamped with a reversed trigger"
                why = (
                    f"the trigger search calls the model backdoored towards label"
                    f" {result.label} (score {self.trigger.score:.2f} >"
                    f" {self.trigger.threshold:.2f})"
                )
            else:
                looks = "form a cluster that looks like other labels"
                why = (
                    f"median log distance ratio {result.foreignness:.2f} vs"
                    f" {result.rest_foreignness:.2f} for the rest of the label"
                )
            out.append(
                Finding(
                    rule_id="MW-DATA-POISON-CLASS",
                    severity=Severity.HIGH,
                    location=Location(path),
                    message=f"label {result.label}: {len(members)} of {result.count}"
                    f" samples {looks} (likely poison)",
                    evidence=f"{why}; samples {shown}{more}",
                    technique=ATLAS_POISON_TRAINING_DATA,
                )
            )
        return out

    def to_dict(self) -> dict[str, Any]:
        return {
            "suspicious_classes": self.suspicious_classes,
            "flagged": [int(i) for i in self.flagged],
            "classes": [c.to_dict() for c in self.classes],
            "trigger_search": self.trigger.to_dict() if self.trigger is not None else None,
            "seconds": round(self.seconds, 3),
        }


def scan_data(
    model: nn.Module,
    x_train: Any,
    y_train: Any,
    *,
    settings: DataScanSettings | None = None,
) -> DataVerdict:
    """Rank labels, then samples, of a training set by how likely they were poisoned.

    `model` was trained on (`x_train`, `y_train`); eager modules and TorchScript both work. It
    is run, never trained. `x_train` keeps its input layout (the model's input shape).
    """
    settings = settings or DataScanSettings()
    started = time.perf_counter()
    x = np.asarray(x_train.detach().cpu() if isinstance(x_train, torch.Tensor) else x_train)
    y = np.asarray(y_train.detach().cpu() if isinstance(y_train, torch.Tensor) else y_train)
    y = y.reshape(-1).astype(np.int64)
    if len(x) != len(y) or len(x) == 0:
        raise ValueError("x_train and y_train must be non-empty and of equal length")
    features = x.reshape(len(x), -1).astype(np.float32)
    rng = np.random.default_rng(settings.seed)
    scores = np.zeros(len(y))
    spectral = np.zeros(len(y))
    flagged: list[np.ndarray] = []
    classes = []
    with torch_threads(settings.threads):
        representations = penultimate(model, x.astype(np.float32), settings.batch)
        for label in np.unique(y):
            members = np.flatnonzero(y == label)
            if len(members) < settings.min_class_size:
                continue
            result, member_scores, member_spectral = _judge_class(
                int(label), members, representations, features, y, settings, rng
            )
            classes.append(result)
            scores[members], spectral[members] = member_scores, member_spectral
        trigger = _search_trigger(model, x, y, settings, rng) if settings.trigger_search else None
        if trigger is not None and trigger.backdoored:
            _convict_by_trigger(model, x, y, trigger, representations, classes, scores, settings)
    for result in classes:
        if result.attacked:
            flagged.append(np.asarray(result.suspicious, dtype=np.int64))
    all_flagged = np.sort(np.concatenate(flagged)) if flagged else np.zeros(0, dtype=np.int64)
    verdict = DataVerdict(
        suspicious_classes=[c.label for c in classes if c.attacked],
        scores=scores,
        spectral=spectral,
        flagged=all_flagged,
        classes=classes,
        trigger=trigger,
    )
    verdict.seconds = time.perf_counter() - started
    return verdict


def _judge_class(
    label: int,
    members: np.ndarray,
    representations: np.ndarray,
    features: np.ndarray,
    y: np.ndarray,
    settings: DataScanSettings,
    rng: np.random.Generator,
) -> tuple[ClassResult, np.ndarray, np.ndarray]:
    """Cluster one label's representations in two and judge each cluster's input-space looks."""
    centred = representations[members] - representations[members].mean(axis=0)
    projected = centred @ _principal_axes(centred, settings.components)
    spectral = projected[:, 0] ** 2
    assignment = _two_means(projected)
    foreign = _foreignness(members, features, y, settings, rng)
    medians = [
        float(np.median(foreign[assignment == k])) if np.any(assignment == k) else math.inf
        for k in (0, 1)
    ]
    suspicious_cluster = int(np.argmin(medians))
    suspicious = assignment == suspicious_cluster
    rest = ~suspicious
    attacked = bool(
        rest.any()
        and medians[suspicious_cluster] <= settings.foreign_max
        and medians[1 - suspicious_cluster] - medians[suspicious_cluster] >= settings.min_gap
    )
    scores = _standard(-foreign)
    if rest.any() and suspicious.any():
        direction = centred[suspicious].mean(axis=0) - centred[rest].mean(axis=0)
        scores += _standard(centred @ direction)
    if attacked:
        # Clusters in representation space and input-space looks each err on a few samples;
        # splitting the sum of both (standardised) in two is purer than either alone.
        split = _two_means((scores - np.median(scores))[:, None]).astype(bool)
        suspicious = split if scores[split].mean() > scores[~split].mean() else ~split
    result = ClassResult(
        label=label,
        count=len(members),
        silhouette=_silhouette(projected, assignment, rng),
        suspicious=tuple(int(i) for i in members[suspicious]),
        foreignness=medians[suspicious_cluster],
        rest_foreignness=medians[1 - suspicious_cluster] if rest.any() else math.inf,
        attacked=attacked,
    )
    return result, scores, spectral


def _search_trigger(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: DataScanSettings,
    rng: np.random.Generator,
) -> ModelVerdict | None:
    """`scan_model` on up to `search_per_label` training samples of every label."""
    picks = np.concatenate(
        [
            rng.permutation(np.flatnonzero(y == label))[: settings.search_per_label]
            for label in np.unique(y)
        ]
    )
    if len(np.unique(y[picks])) < 2:
        return None
    return scan_model(
        model,
        x[picks].astype(np.float32),
        y[picks],
        threshold=settings.model_threshold,
        settings=ScanSettings(threads=None, seed=settings.seed),
    )


def _convict_by_trigger(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    trigger: ModelVerdict,
    representations: np.ndarray,
    classes: list[ClassResult],
    scores: np.ndarray,
    settings: DataScanSettings,
) -> None:
    """Flag the target label's samples that lean towards reversed-trigger representations.

    Clean inputs of other labels stamped with the reversed trigger give a direction in
    representation space; the target's members are split in two along it, and the half that
    leans that way is flagged, unless the input-space test already judged the label.
    """
    target = trigger.target_label
    members = np.flatnonzero(y == target)
    others = np.flatnonzero(y != target)
    index = next((i for i, c in enumerate(classes) if c.label == target), None)
    if index is None or classes[index].attacked or len(members) < 2 or len(others) == 0:
        return
    sample = others[: settings.max_reference]
    mask = trigger.mask.reshape(-1) if x.ndim == 2 else trigger.mask[None]
    pattern = trigger.pattern.reshape(-1) if x.ndim == 2 else trigger.pattern
    stamped = ((1 - mask) * x[sample] + mask * pattern).astype(np.float32)
    centre = representations[members].mean(axis=0)
    direction = penultimate(model, stamped, settings.batch).mean(axis=0) - centre
    lean = (representations[members] - centre) @ direction / (np.linalg.norm(direction) or 1.0)
    split = _two_means((lean - np.median(lean))[:, None]).astype(bool)
    if not split.any() or split.all():
        return
    leaning = split if lean[split].mean() > lean[~split].mean() else ~split
    scores[members] += _standard(lean)
    classes[index] = ClassResult(
        label=target,
        count=len(members),
        silhouette=classes[index].silhouette,
        suspicious=tuple(int(i) for i in members[leaning]),
        foreignness=classes[index].foreignness,
        rest_foreignness=classes[index].rest_foreignness,
        attacked=True,
        evidence="reversed trigger",
    )


def _standard(values: np.ndarray) -> np.ndarray:
    """Zero mean, unit spread (infinities, from empty reference sets, count as the mean)."""
    finite = np.where(np.isfinite(values), values, 0.0)
    return np.asarray((finite - finite.mean()) / (finite.std() or 1.0), dtype=np.float64)


def _principal_axes(centred: np.ndarray, count: int) -> np.ndarray:
    """The top `count` principal directions as columns (largest first).

    An eigendecomposition of the covariance on one thread: for matrices this small, threaded
    LAPACK (numpy's SVD included) is up to ten times slower on a busy machine.
    """
    covariance = torch.from_numpy(centred.T @ centred)
    with torch_threads(1):
        _, vectors = torch.linalg.eigh(covariance)
    return np.asarray(vectors.flip(1)[:, : min(count, len(centred))].numpy())


def _two_means(points: np.ndarray, iterations: int = 50) -> np.ndarray:
    """2-means started from the sign of the first principal component (deterministic)."""
    assignment = (points[:, 0] > 0).astype(np.int64)
    for _ in range(iterations):
        if assignment.min() == assignment.max():
            break
        centroids = np.stack([points[assignment == k].mean(axis=0) for k in (0, 1)])
        distances = ((points[:, None, :] - centroids[None]) ** 2).sum(axis=2)
        updated = distances.argmin(axis=1)
        if np.array_equal(updated, assignment):
            break
        assignment = updated
    return assignment


def _silhouette(points: np.ndarray, assignment: np.ndarray, rng: np.random.Generator) -> float:
    """Mean silhouette of the split (on at most 1000 points), 0 when there is one cluster."""
    if assignment.min() == assignment.max():
        return 0.0
    if len(points) > 1000:
        keep = rng.choice(len(points), 1000, replace=False)
        points, assignment = points[keep], assignment[keep]
    distances = np.sqrt(((points[:, None, :] - points[None]) ** 2).sum(axis=2))
    own = assignment[:, None] == assignment[None]
    sizes = own.sum(axis=1)
    inside = (distances * own).sum(axis=1) / np.maximum(sizes - 1, 1)
    outside = (distances * ~own).sum(axis=1) / np.maximum(len(points) - sizes, 1)
    width = np.maximum(inside, outside)
    return float(
        np.mean(np.where(width > 0, (outside - inside) / np.where(width > 0, width, 1), 0))
    )


def _foreignness(
    members: np.ndarray,
    features: np.ndarray,
    y: np.ndarray,
    settings: DataScanSettings,
    rng: np.random.Generator,
) -> np.ndarray:
    """log(nearest other-label distance / nearest same-label distance), trimmed, per member."""
    label = y[members[0]]
    others = np.flatnonzero(y != label)
    if len(others) > settings.max_reference:
        others = rng.choice(others, settings.max_reference, replace=False)
    if len(others) == 0:
        return np.full(len(members), math.inf)
    queries = features[members]
    to_others = _trimmed_nearest(queries, features[others], settings, exclude_self=False)
    to_own = _trimmed_nearest(queries, queries, settings, exclude_self=True)
    tiny = 1e-6 * (float(features.std()) or 1.0)
    return np.log((to_others + tiny) / (to_own + tiny))


def _trimmed_nearest(
    queries: np.ndarray, reference: np.ndarray, settings: DataScanSettings, *, exclude_self: bool
) -> np.ndarray:
    """Distance to the nearest reference row, ignoring the `trim` largest feature differences.

    Exact over the `candidates` nearest rows by plain distance (a trigger shifts the plain
    distance to every clean neighbour alike, so the right one stays among the candidates).
    """
    width = queries.shape[1]
    keep = max(1, width - math.ceil(settings.trim * width))
    count = min(settings.candidates, len(reference) - int(exclude_self))
    if count < 1:
        return np.full(len(queries), math.inf)
    reference_norms = (reference**2).sum(axis=1)
    chunk = max(1, min(256, 4_000_000 // max(1, count * width)))
    out = np.empty(len(queries))
    for start in range(0, len(queries), chunk):
        block = queries[start : start + chunk]
        plain = (block**2).sum(axis=1)[:, None] + reference_norms[None] - 2 * block @ reference.T
        if exclude_self:
            plain[np.arange(len(block)), np.arange(start, start + len(block))] = np.inf
        nearest = np.argpartition(plain, count - 1, axis=1)[:, :count]
        squared = (block[:, None, :] - reference[nearest]) ** 2
        if keep < width:
            squared = np.partition(squared, keep - 1, axis=2)[:, :, :keep]
        out[start : start + len(block)] = np.sqrt(squared.sum(axis=2).min(axis=1))
    return out


def penultimate(model: nn.Module, x: np.ndarray, batch: int = 512) -> np.ndarray:
    """The input of the model's last linear layer, flattened per sample, as float64.

    Eager modules use a forward hook on the last `nn.Linear`; TorchScript modules (which have no
    hooks) run a copy of their inlined graph whose output is the last `aten::linear` input.
    """
    device = model_device(model)
    was_training = model.training
    model.eval()
    try:
        forward = _penultimate_function(model)
        with torch.no_grad():
            parts = [
                forward(torch.from_numpy(chunk).to(device)).flatten(1).double().cpu().numpy()
                for chunk in np.array_split(x, max(1, math.ceil(len(x) / batch)))
                if len(chunk)
            ]
    finally:
        model.train(was_training)
    return np.concatenate(parts)


def _penultimate_function(model: nn.Module) -> Any:
    if isinstance(model, torch.jit.ScriptModule):
        graph = getattr(model, "forward").graph.copy()  # noqa: B009 (a ScriptMethod, untyped)
        torch._C._jit_pass_inline(graph)
        linears = [node for node in graph.nodes() if node.kind() == "aten::linear"]
        if not linears:
            raise ValueError("the TorchScript model has no linear layer to read representations at")
        graph.eraseOutput(0)
        graph.registerOutput(linears[-1].inputsAt(0))
        function = torch._C._create_function_from_graph("penultimate", graph)
        return lambda inputs: function(model._c, inputs)
    layers = [module for module in model.modules() if isinstance(module, nn.Linear)]
    if not layers:
        raise ValueError("the model has no nn.Linear layer to read representations at")
    captured: list[torch.Tensor] = []

    def run(inputs: torch.Tensor) -> torch.Tensor:
        handle = layers[-1].register_forward_hook(lambda _m, args, _o: captured.append(args[0]))
        try:
            model(inputs)
        finally:
            handle.remove()
        return captured.pop()

    return run
