"""Behavioural checks on models they were never tuned on: three architectures, six attacks.

    pip install -r bench/requirements-behaviour.txt      # + torchvision for resnet18
    python bench/behaviour_protocol.py --arch cnn mlp --out bench/out/protocol-cpu.md
    python bench/behaviour_protocol.py --arch resnet18 --device cuda --workers 4 \
        --out bench/out/protocol-gpu.md                   # on a GPU machine

Protocol (issue 16). Per architecture (`bench/backdoor_zoo.py`):

- tuning seeds: `--calibration` clean models (seeds 10000+i). Their `scan_model` scores give
  the architecture's threshold, `calibrate(scores, fpr=0.05)`, which the test models are then
  judged at (`scan_model`, and `scan_data`'s trigger search); nothing else is tuned here.
  `--thresholds ARCH=VALUE` reuses a threshold an earlier run calibrated (its rows included).
- test seeds, never used for tuning: `--models` clean models (20000+i) and as many backdoored
  models (30000+i), cycling through patch / blended / signal triggers × all-to-one /
  all-to-all, poison rate drawn from 1–10 %.

Reported on the test seeds only: for `scan_model`, TPR and FPR at the calibrated threshold and
at the default one, AUROC and seconds per model; for `scan_data`, sample-level recall and
precision on each poisoned training set and the share of clean training sets flagged, beside
IBM ART's `ActivationDefence` and `SpectralSignatureDefense` given the same penultimate layer.
ART's model-level detector (Neural Cleanse) exists only for Keras/TensorFlow and is not run.
Each model's attack success rate (ASR) on held-out inputs is measured too: a backdoor that did
not take is reported, not dropped.

Rows stream to `--jsonl` as models finish, so a run cut short keeps what it measured;
`--summarise FILE.jsonl` prints the tables again from such a file.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

BENCH = Path(__file__).resolve().parent
sys.path[:0] = [str(BENCH), str(BENCH.parent / "tests")]

CALIBRATION_SEEDS, CLEAN_SEEDS, BACKDOORED_SEEDS = 10_000, 20_000, 30_000
SCAN_INPUTS = 200  # clean held-out inputs given to scan_model
FPR = 0.05


@dataclass
class Row:
    """Everything measured on one model."""

    arch: str
    split: str  # "calibration" or "test"
    kind: str  # "clean" or "backdoored"
    seed: int
    device: str
    concurrency: int
    trigger: str | None = None
    mapping: str | None = None
    rate: float | None = None
    clean_accuracy: float = 0.0
    attack_success: float | None = None
    train_seconds: float = 0.0
    model_score: float = 0.0
    model_target: int = -1
    attack_target: int | None = None
    model_seconds: float = 0.0
    data_flagged: int = 0
    data_hits: int = 0
    poisoned: int = 0
    data_seconds: float = 0.0
    train_size: int = 0
    art: dict[str, dict[str, float]] = field(default_factory=dict)


def _penultimate_classifier(model: Any, shape: tuple[int, ...], device: str) -> Any:
    """An ART classifier whose activations at layer 0 are the input of the last linear layer."""
    import torch
    from art.estimators.classification import PyTorchClassifier
    from torch import nn

    head = [m for m in model.modules() if isinstance(m, nn.Linear)][-1]

    class Body(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            captured: list[torch.Tensor] = []
            handle = head.register_forward_hook(lambda _m, a, _o: captured.append(a[0]))
            try:
                self.model(x)
            finally:
                handle.remove()
            return captured[0].flatten(1)

    class Penultimate(PyTorchClassifier):  # type: ignore[misc]
        def get_activations(
            self, x: Any, layer: Any = None, batch_size: int = 128, **_: Any
        ) -> Any:
            return super().get_activations(x, layer=0, batch_size=batch_size)

    return Penultimate(
        model=nn.Sequential(Body(), head).eval(),
        loss=nn.CrossEntropyLoss(),
        input_shape=shape,
        nb_classes=10,
        clip_values=(0.0, 1.0),
        device_type="gpu" if device.startswith("cuda") else "cpu",
    )


def art_defences(
    model: Any, x: np.ndarray, y: np.ndarray, poisoned: np.ndarray, device: str
) -> dict[str, dict[str, float]]:
    """ART's activation clustering (2-means, PCA to 10 dims, its defaults otherwise) and
    spectral signatures (its defaults), on the same representations scan_data reads."""
    from art.defences.detector.poison import ActivationDefence, SpectralSignatureDefense

    classifier = _penultimate_classifier(model, x.shape[1:], device)
    onehot = np.eye(10, dtype=np.float32)[y]
    out = {}
    for name in ("ART ActivationDefence", "ART SpectralSignatureDefense"):
        started = time.perf_counter()
        if name == "ART ActivationDefence":
            defence = ActivationDefence(classifier, x, onehot)
            _, is_clean = defence.detect_poison(nb_clusters=2, nb_dims=10, reduce="PCA")
        else:
            _, is_clean = SpectralSignatureDefense(classifier, x, onehot).detect_poison()
        flagged = np.flatnonzero(np.asarray(is_clean) == 0)
        out[name] = {
            "flagged": len(flagged),
            "hits": int(np.isin(flagged, poisoned).sum()),
            "seconds": time.perf_counter() - started,
        }
    return out


@dataclass(frozen=True)
class Job:
    arch: str
    split: str
    kind: str
    seed: int
    trigger: str | None
    mapping: str | None


def plan(arch: str, calibration: int, models: int) -> list[Job]:
    from backdoor_zoo import MAPPINGS, TRIGGERS

    attacks = [(t, m) for m in MAPPINGS for t in TRIGGERS]
    jobs = [
        Job(arch, "calibration", "clean", CALIBRATION_SEEDS + i, None, None)
        for i in range(calibration)
    ]
    for i in range(models):
        jobs.append(Job(arch, "test", "clean", CLEAN_SEEDS + i, None, None))
        trigger, mapping = attacks[i % len(attacks)]
        jobs.append(Job(arch, "test", "backdoored", BACKDOORED_SEEDS + i, trigger, mapping))
    return jobs


def measure(job: Job, device: str, concurrency: int, with_art: bool, threshold: float) -> Row:
    import torch
    from backdoor_zoo import attack_success, poison, random_attack, task, train

    from modelward.behaviour import DataScanSettings, ScanSettings, scan_data, scan_model

    spec = task(job.arch)
    torch_device = torch.device(device)
    row = Row(
        job.arch, job.split, job.kind, job.seed, device, concurrency, job.trigger, job.mapping
    )
    x, y, poisoned = spec.x_train, spec.y_train, np.zeros(0, dtype=np.int64)
    attack = None
    if job.kind == "backdoored":
        assert job.trigger and job.mapping
        attack = random_attack(tuple(x.shape[1:]), job.trigger, job.mapping, job.seed)
        x, y, poisoned = poison(attack, x, y, job.seed)
        row.rate, row.attack_target = (
            attack.rate,
            (attack.target if attack.mapping == "all-to-one" else None),
        )
    row.poisoned, row.train_size = len(poisoned), len(y)
    started = time.perf_counter()
    model = train(spec, x, y, job.seed, torch_device)
    row.train_seconds = time.perf_counter() - started
    from backdoor_zoo import accuracy

    row.clean_accuracy = accuracy(model, spec.x_test, spec.y_test)
    if attack is not None:
        row.attack_success = attack_success(model, attack, spec.x_test, spec.y_test)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    verdict = scan_model(
        model,
        spec.x_test[:SCAN_INPUTS],
        spec.y_test[:SCAN_INPUTS],
        threshold=threshold,
        settings=ScanSettings(),
    )
    row.model_score, row.model_target = verdict.score, verdict.target_label
    row.model_seconds = verdict.seconds
    if job.split == "test":
        data = scan_data(
            model, x, y, settings=DataScanSettings(threads=1, model_threshold=threshold)
        )
        row.data_flagged = len(data.flagged)
        row.data_hits = int(np.isin(data.flagged, poisoned).sum())
        row.data_seconds = data.seconds
        if with_art:
            row.art = art_defences(model, x.numpy(), y.numpy(), poisoned, device)
    return row


def _worker_init(threads: int) -> None:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    threadpool_limits(threads)


Work = tuple[Job, str, int, bool, float]


def _run(args: Work) -> dict[str, Any]:
    return asdict(measure(*args))


def _measure_all(work: list[Work], workers: int, threads: int, sink: Any) -> list[dict[str, Any]]:
    """Measure in `workers` spawned processes (CUDA needs spawn), streaming rows to `sink`."""
    import multiprocessing

    rows = []
    with ProcessPoolExecutor(
        workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_init,
        initargs=(threads,),
    ) as pool:
        for row in pool.map(_run, work):
            rows.append(row)
            if sink:
                sink.write(json.dumps(row) + "\n")
                sink.flush()
            print(
                f"{row['arch']} {row['split']} {row['kind']} {row['seed']}"
                f" {row['trigger'] or ''} {row['mapping'] or ''}: acc {row['clean_accuracy']:.3f}"
                f" asr {row['attack_success'] if row['attack_success'] is not None else '-'}"
                f" score {row['model_score']:.2f} ({row['model_seconds']:.1f} s)"
                f" data {row['data_hits']}/{row['poisoned']} of {row['data_flagged']}",
                file=sys.stderr,
                flush=True,
            )
    return rows


# --- summary ------------------------------------------------------------------------------


def auroc(positive: list[float], negative: list[float]) -> float:
    """Probability a backdoored model outscores a clean one (ties count half)."""
    if not positive or not negative:
        return float("nan")
    wins = sum((p > n) + 0.5 * (p == n) for p in positive for n in negative)
    return wins / (len(positive) * len(negative))


def _rate(flags: list[bool]) -> str:
    return f"{np.mean(flags):.2f} ({sum(flags)}/{len(flags)})" if flags else "–"


def calibrated(rows: list[dict[str, Any]], given: dict[str, float]) -> dict[str, float]:
    """Per architecture: the given threshold, else `calibrate` on its calibration rows."""
    from modelward.behaviour import calibrate

    out = dict(given)
    for arch in {r["arch"] for r in rows if r["split"] == "calibration"} - set(given):
        scores = [
            r["model_score"] for r in rows if r["arch"] == arch and r["split"] == "calibration"
        ]
        out[arch] = calibrate(scores, FPR)
    return out


def summarise(rows: list[dict[str, Any]], given: dict[str, float] | None = None) -> str:
    from modelward.behaviour import DEFAULT_THRESHOLD

    thresholds = calibrated(rows, given or {})

    lines: list[str] = []
    archs = sorted({r["arch"] for r in rows}, key=["cnn", "resnet18", "mlp"].index)
    model_lines = [
        "Model level (`scan_model`), test seeds only; threshold calibrated at FPR 0.05 on the"
        " calibration seeds' clean models",
        "",
        "| arch | device | calibrated threshold | TPR | TPR, ASR ≥ 0.5 | FPR | TPR at 0.40 |"
        " FPR at 0.40 | AUROC | s/model (mean, max) | clean acc. | ASR (median) |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    attack_lines = [
        "Per attack (test seeds): `scan_model` TPR at the calibrated threshold, the target label"
        " found (all-to-one), ASR; `scan_data` and ART sample-level recall / precision",
        "",
        "| arch | trigger | mapping | models | ASR (min–max) | scan_model TPR | target right |"
        " scan_data R / P | ART AC R / P | ART SS R / P |",
        "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    data_lines = [
        "Sample level (which training samples are poison?), test seeds, pooled; clean: share of"
        " each clean training set flagged",
        "",
        "| arch | method | recall | precision | clean: flagged | s/model |",
        "| --- | --- | ---: | ---: | ---: | ---: |",
    ]
    for arch in archs:
        mine = [r for r in rows if r["arch"] == arch]
        test = [r for r in mine if r["split"] == "test"]
        clean = [r for r in test if r["kind"] == "clean"]
        bad = [r for r in test if r["kind"] == "backdoored"]
        if arch not in thresholds or not test:
            continue
        threshold = thresholds[arch]
        alone = min(r["concurrency"] for r in mine)
        seconds = [r["model_seconds"] for r in mine if r["concurrency"] == alone]
        model_lines.append(
            f"| {arch} | {mine[0]['device']} ×{alone} | {threshold:.3f} |"
            f" {_rate([r['model_score'] > threshold for r in bad])} |"
            f" {_rate([r['model_score'] > threshold for r in bad if r['attack_success'] >= 0.5])} |"
            f" {_rate([r['model_score'] > threshold for r in clean])} |"
            f" {_rate([r['model_score'] > DEFAULT_THRESHOLD for r in bad])} |"
            f" {_rate([r['model_score'] > DEFAULT_THRESHOLD for r in clean])} |"
            f" {auroc([r['model_score'] for r in bad], [r['model_score'] for r in clean]):.3f} |"
            f" {np.mean(seconds):.1f}, {np.max(seconds):.1f} |"
            f" {np.mean([r['clean_accuracy'] for r in test]):.3f} |"
            f" {np.median([r['attack_success'] for r in bad]) if bad else float('nan'):.2f} |"
        )
        groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
        for r in bad:
            groups.setdefault((r["trigger"], r["mapping"]), []).append(r)
        for (trigger, mapping), group in sorted(
            groups.items(), key=lambda kv: (kv[0][1], kv[0][0])
        ):
            asr = [r["attack_success"] for r in group]
            right = [
                r["model_target"] == r["attack_target"]
                for r in group
                if r["attack_target"] is not None
            ]
            attack_lines.append(
                f"| {arch} | {trigger} | {mapping} | {len(group)} | {min(asr):.2f}–{max(asr):.2f} |"
                f" {_rate([r['model_score'] > threshold for r in group])} |"
                f" {_rate(right) if right else '–'} | {_pooled(group, None)} |"
                f" {_pooled(group, 'ART ActivationDefence')} |"
                f" {_pooled(group, 'ART SpectralSignatureDefense')} |"
            )
        for method in (None, "ART ActivationDefence", "ART SpectralSignatureDefense"):
            if method and not all(method in r["art"] for r in test):
                continue
            flagged = [_get(r, method, "flagged") for r in clean]
            share = sum(flagged) / max(1, sum(r["train_size"] for r in clean))
            recall, precision = _recall_precision(bad, method)
            times = [_get(r, method, "seconds") for r in test]
            data_lines.append(
                f"| {arch} | {method or 'modelward scan_data'} | {recall:.3f} | {precision:.3f} |"
                f" {share:.4f} | {np.mean(times):.2f} |"
            )
    lines = [*model_lines, "", *data_lines, "", *attack_lines]
    return "\n".join(lines) + "\n"


def _get(row: dict[str, Any], method: str | None, key: str) -> float:
    if method is None:
        return float(
            row[{"flagged": "data_flagged", "hits": "data_hits", "seconds": "data_seconds"}[key]]
        )
    return float(row["art"][method][key])


def _recall_precision(group: list[dict[str, Any]], method: str | None) -> tuple[float, float]:
    hits = sum(_get(r, method, "hits") for r in group)
    flagged = sum(_get(r, method, "flagged") for r in group)
    return hits / max(1, sum(r["poisoned"] for r in group)), hits / max(1.0, flagged)


def _pooled(group: list[dict[str, Any]], method: str | None) -> str:
    if method and not all(method in r["art"] for r in group):
        return "–"
    recall, precision = _recall_precision(group, method)
    return f"{recall:.2f} / {precision:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--arch", nargs="+", default=["cnn", "mlp"], choices=["cnn", "resnet18", "mlp"]
    )
    parser.add_argument("--calibration", type=int, default=20, help="clean tuning models per arch")
    parser.add_argument("--models", type=int, default=30, help="test models of each kind per arch")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--workers", type=int, default=1, help="models measured at once")
    parser.add_argument("--threads", type=int, default=1, help="torch/BLAS threads per worker")
    parser.add_argument(
        "--solo",
        type=int,
        default=0,
        help="measure the first N models one at a time first (their seconds are the timing)",
    )
    parser.add_argument("--no-art", action="store_true", help="skip IBM ART's defences")
    parser.add_argument(
        "--thresholds",
        nargs="+",
        default=[],
        metavar="ARCH=VALUE",
        help="skip calibration for ARCH and judge at VALUE (from an earlier run's calibration)",
    )
    parser.add_argument("--jsonl", type=Path, help="append every row as it finishes")
    parser.add_argument("--out", type=Path, help="also write the tables here")
    parser.add_argument("--summarise", type=Path, help="only print the tables of a JSONL file")
    args = parser.parse_args()
    given = {arch: float(value) for arch, _, value in (t.partition("=") for t in args.thresholds)}
    if args.summarise:
        rows = [json.loads(line) for line in args.summarise.read_text().splitlines() if line]
        print(summarise(rows, given))
        return
    started, load = time.perf_counter(), os.getloadavg()[0]
    jobs = [job for arch in args.arch for job in plan(arch, args.calibration, args.models)]
    jobs = [job for job in jobs if job.split == "test" or job.arch not in given]
    rows: list[dict[str, Any]] = []
    sink = args.jsonl.open("a") if args.jsonl else None
    solo = args.solo
    for phase in ("calibration", "test"):
        work = [
            (job, args.device, args.workers, not args.no_art, given.get(job.arch, 0.0))
            for job in jobs
            if job.split == phase
        ]
        if phase == "test":
            thresholds = calibrated(rows, given)
            work = [(*w[:4], thresholds[w[0].arch]) for w in work]
        alone = [(*w[:2], 1, *w[3:]) for w in work[:solo]]
        solo -= len(alone)
        for part, workers in ((alone, 1), (work[len(alone) :], args.workers)):
            if part:
                rows += _measure_all(part, workers, args.threads, sink)
    import torch

    tables = summarise(rows, given)
    footer = (
        f"torch {torch.__version__}, Python {platform.python_version()}, {os.cpu_count()} CPUs,"
        f" device {args.device}"
        + (f" ({torch.cuda.get_device_name()})" if args.device.startswith("cuda") else "")
        + f", {args.workers} model(s) at once, {args.threads} thread(s) each,"
        f" load average {load:.1f} before, {os.getloadavg()[0]:.1f} after,"
        f" {time.perf_counter() - started:.0f} s in all"
    )
    print(tables + "\n" + footer)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(tables + "\n" + footer + "\n")


if __name__ == "__main__":
    main()
