"""Behavioural checks on small digits CNNs: model scan, data scan, STRIP, and IBM ART's defences.

    pip install -r bench/requirements-behaviour.txt
    python bench/behaviour.py                 # 15 clean + 15 backdoored models (the full run)
    python bench/behaviour.py --models 3      # a quick check

Every model is trained here, seeded, on scikit-learn's bundled digits (no downloads), with
`tests/fixtures/backdoor_models` (16×16 upsampled digits; backdoors: a random 2–4 px patch at a
random position, random target, 5–10 % of the training set poisoned). Seeds are held out: the
model-scan threshold was calibrated on clean seeds 1000–1039 and backdoored seeds 0–39, the
data-scan settings were set on backdoored seeds 0–15 and clean seeds 100–105; this bench uses
backdoored seeds 200+i and clean seeds 2000+i.

Per model, in the same process and run: `scan_model` (L1; model-level TPR/FPR at the default
threshold and AUROC of its score), `scan_data` (sample-level recall/precision on the poisoned
training set; false flags on the clean one), `Strip` at 1 % false rejections (detection rate on
triggered test inputs of the other classes), and ART's `ActivationDefence` (2-means, PCA to 10
dims, "smaller" cluster analysis: ART's defaults) and `SpectralSignatureDefense` (defaults:
expected poison 0.33, ε multiplier 1.5) given the same penultimate representations. One case
more poisons a label beyond half its samples (`--majority`).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from threadpoolctl import threadpool_limits
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from fixtures.backdoor_models import (
    TriggerSpec,
    digits_split,
    make_backdoored_model,
    make_clean_model,
    poison,
    train_cnn,
)
from modelward.behaviour import (
    DEFAULT_THRESHOLD,
    DataScanSettings,
    Strip,
    scan_data,
    scan_model,
)

BACKDOORED_SEEDS = 200
CLEAN_SEEDS = 2000
STRIP_FRR = 0.01


@dataclass
class Row:
    """Everything measured on one model."""

    kind: str
    seed: int
    target: int | None = None
    poison_share: float | None = None  # share of the target label's samples that are poison
    model_score: float = 0.0
    model_flagged: bool = False
    model_seconds: float = 0.0
    data_classes: list[int] = field(default_factory=list)
    data_flagged: int = 0
    data_hits: int = 0
    poisoned: int = 0
    data_seconds: float = 0.0
    strip_detect: float | None = None
    strip_frr: float = 0.0
    strip_seconds: float = 0.0
    art: dict[str, dict[str, float]] = field(default_factory=dict)


def art_defences(
    model: nn.Module, x: np.ndarray, y: np.ndarray, poisoned: np.ndarray
) -> dict[str, dict[str, float]]:
    """ART's activation clustering and spectral signatures, on the penultimate layer."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense
    from art.estimators.classification import PyTorchClassifier

    class Penultimate(PyTorchClassifier):  # type: ignore[misc]
        """ART reads its last layer's output (the logits); give it the head's input instead."""

        def get_activations(
            self, x: Any, layer: Any = None, batch_size: int = 128, **kw: Any
        ) -> Any:
            return super().get_activations(
                x, layer=len(self.layer_names) - 2, batch_size=batch_size
            )

    sequential = nn.Sequential(model.features, nn.Flatten(), model.head).eval()
    classifier = Penultimate(
        model=sequential,
        loss=nn.CrossEntropyLoss(),
        input_shape=x.shape[1:],
        nb_classes=10,
        clip_values=(0.0, 1.0),
    )
    onehot = np.eye(10, dtype=np.float32)[y]
    out = {}
    for name, make in (
        ("ART ActivationDefence", lambda: ActivationDefence(classifier, x, onehot)),
        ("ART SpectralSignatureDefense", lambda: SpectralSignatureDefense(classifier, x, onehot)),
    ):
        started = time.perf_counter()
        defence = make()
        if name.endswith("ActivationDefence"):
            _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
        else:
            _, is_clean = defence.detect_poison()
        flagged = np.flatnonzero(np.asarray(is_clean) == 0)
        hits = int(np.isin(flagged, poisoned).sum())
        out[name] = {
            "flagged": len(flagged),
            "hits": hits,
            "seconds": time.perf_counter() - started,
        }
    return out


def measure(kind: str, seed: int, majority: bool = False) -> Row:
    x_train, y_train, x_test, y_test = digits_split()
    spec: TriggerSpec | None = None
    poisoned = np.zeros(0, dtype=np.int64)
    if kind == "clean":
        model, x, y = make_clean_model(seed), x_train, y_train
    elif majority:
        target, pos, size = 3, (11, 2), 3
        x, y, poisoned = poison(x_train, y_train, target, pos, size, rate=0.12, seed=seed)
        model = train_cnn(x, y, seed)
        spec = TriggerSpec(target, pos, size, 0.12, np.ones((size, size), np.float32))
    else:
        model, spec, poisoned, x, y = make_backdoored_model(seed)
    row = Row(kind=kind, seed=seed, poisoned=len(poisoned))
    if spec is not None:
        row.target = spec.target
        row.poison_share = len(poisoned) / int((y == spec.target).sum())

    verdict = scan_model(model, x_test[:200], y_test[:200])
    row.model_score, row.model_flagged = verdict.score, verdict.backdoored
    row.model_seconds = verdict.seconds

    data = scan_data(model, x, y, settings=DataScanSettings(threads=1))
    row.data_classes, row.data_flagged = data.suspicious_classes, len(data.flagged)
    row.data_hits = int(np.isin(data.flagged, poisoned).sum())
    row.data_seconds = data.seconds

    started = time.perf_counter()
    guard = Strip(model, x_test[:200], frr=STRIP_FRR)
    row.strip_frr = float(guard.is_triggered(x_test[200:]).mean())
    if spec is not None:
        others = x_test[y_test != spec.target]
        row.strip_detect = float(guard.is_triggered(spec.apply(others)).mean())
    row.strip_seconds = time.perf_counter() - started

    row.art = art_defences(model, x.numpy(), y.numpy(), poisoned)
    return row


def auroc(positive: list[float], negative: list[float]) -> float:
    """Probability a backdoored model outscores a clean one (ties count half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def summarise(rows: list[Row]) -> str:
    backdoored = [r for r in rows if r.kind == "backdoored"]
    clean = [r for r in rows if r.kind == "clean"]
    majority = [r for r in rows if r.kind == "majority"]
    lines = [
        f"Models: {len(backdoored)} backdoored, {len(clean)} clean"
        + (f", {len(majority)} majority-poisoned" if majority else ""),
        "",
        "Model level (is this model backdoored?)",
        "",
        "| method | TPR | FPR | AUROC | s/model (mean, max) |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    tpr = np.mean([r.model_flagged for r in backdoored])
    fpr = np.mean([r.model_flagged for r in clean])
    area = auroc([r.model_score for r in backdoored], [r.model_score for r in clean])
    seconds = [r.model_seconds for r in rows]
    lines.append(
        f"| modelward scan_model (threshold {DEFAULT_THRESHOLD}) | {tpr:.2f} | {fpr:.2f} |"
        f" {area:.3f} | {np.mean(seconds):.1f}, {np.max(seconds):.1f} |"
    )
    tpr = np.mean([bool(r.data_classes) for r in backdoored])
    fpr = np.mean([bool(r.data_classes) for r in clean])
    seconds = [r.data_seconds for r in rows]
    lines.append(
        f"| modelward scan_data (any label attacked) | {tpr:.2f} | {fpr:.2f} | – |"
        f" {np.mean(seconds):.1f}, {np.max(seconds):.1f} |"
    )
    lines += [
        "",
        "Sample level (which training samples are poison?), pooled over the backdoored models;"
        " on clean models, the share of the training set flagged",
        "",
        "| method | recall | precision | target label right | clean: flagged | s/model |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    size = len(digits_split()[1])

    def sample_row(
        name: str,
        flagged: list[int],
        hits: list[int],
        clean_flags: list[int],
        seconds: list[float],
        right: str,
    ) -> str:
        poisoned = sum(r.poisoned for r in backdoored)
        recall = sum(hits) / max(1, poisoned)
        precision = sum(hits) / max(1, sum(flagged))
        share = sum(clean_flags) / max(1, size * len(clean))
        return (
            f"| {name} | {recall:.3f} | {precision:.3f} | {right} | {share:.3f} |"
            f" {np.mean(seconds):.2f} |"
        )

    right = sum(r.data_classes == [r.target] for r in backdoored)
    lines.append(
        sample_row(
            "modelward scan_data",
            [r.data_flagged for r in backdoored],
            [r.data_hits for r in backdoored],
            [r.data_flagged for r in clean],
            [r.data_seconds for r in rows],
            f"{right}/{len(backdoored)}",
        )
    )
    for name in ("ART ActivationDefence", "ART SpectralSignatureDefense"):
        lines.append(
            sample_row(
                name,
                [int(r.art[name]["flagged"]) for r in backdoored],
                [int(r.art[name]["hits"]) for r in backdoored],
                [int(r.art[name]["flagged"]) for r in clean],
                [r.art[name]["seconds"] for r in rows],
                "–",
            )
        )
    detect = [r.strip_detect for r in backdoored if r.strip_detect is not None]
    lines += [
        "",
        f"STRIP at {STRIP_FRR:.0%} requested false rejections (200 calibration images):"
        f" detection {np.mean(detect):.3f} of triggered test inputs (min {np.min(detect):.3f});"
        f" measured FRR on held-out clean images {np.mean([r.strip_frr for r in rows]):.3f};"
        f" {np.mean([r.strip_seconds for r in rows]):.2f} s/model",
        "",
        "Poison share of the attacked label: "
        + ", ".join(f"{r.poison_share:.2f}" for r in backdoored + majority if r.poison_share),
    ]
    for r in majority:
        recall = r.data_hits / max(1, r.poisoned)
        precision = r.data_hits / max(1, r.data_flagged)
        art = ", ".join(
            f"{name}: recall {v['hits'] / max(1, r.poisoned):.2f}"
            f" precision {v['hits'] / max(1, v['flagged']):.2f}"
            for name, v in r.art.items()
        )
        lines.append(
            f"\nMajority case (seed {r.seed}, label {r.target}, poison share {r.poison_share:.2f}):"
            f" scan_data flags labels {r.data_classes}, recall {recall:.2f}, precision"
            f" {precision:.2f}; {art}"
        )
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=int, default=15, help="models of each kind (default 15)")
    parser.add_argument("--majority", type=int, default=1, help="majority-poisoned cases")
    parser.add_argument("--json", type=Path, help="also write every row as JSON")
    args = parser.parse_args()
    # One thread for every method, torch and BLAS alike: on a shared 2-core machine threaded
    # BLAS (scikit-learn's PCA and k-means inside ART, numpy) was up to 40x slower under load.
    # threadpoolctl only limits libraries already loaded: load scipy's and scikit-learn's first.
    import art.defences.detector.poison
    import scipy.linalg  # noqa: F401
    import sklearn.cluster  # noqa: F401

    torch.set_num_threads(1)
    threadpool_limits(1)
    started = time.perf_counter()
    load = os.getloadavg()[0]
    rows = []
    plan = [("backdoored", BACKDOORED_SEEDS + i, False) for i in range(args.models)]
    plan += [("clean", CLEAN_SEEDS + i, False) for i in range(args.models)]
    plan += [("majority", 7 + i, True) for i in range(args.majority)]
    for kind, seed, majority in plan:
        row = measure("backdoored" if majority else kind, seed, majority)
        row.kind = kind
        rows.append(row)
        art = "+".join(f"{v['seconds']:.1f}" for v in row.art.values())
        print(
            f"{kind} {seed}: model {row.model_score:.2f} {row.model_flagged},"
            f" data {row.data_classes} {row.data_hits}/{row.poisoned} of {row.data_flagged},"
            f" {row.model_seconds:.1f}+{row.data_seconds:.1f}+{row.strip_seconds:.1f} s,"
            f" ART {art} s",
            file=sys.stderr,
            flush=True,
        )
    print(summarise(rows))
    print(
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" 1 thread (torch and BLAS), load average {load:.1f} before,"
        f" {os.getloadavg()[0]:.1f} after,"
        f" {time.perf_counter() - started:.0f} s in all"
    )
    if args.json:
        args.json.write_text(json.dumps([asdict(r) for r in rows], indent=1))


if __name__ == "__main__":
    main()
