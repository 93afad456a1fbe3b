"""Is this classifier backdoored? Trigger reverse-engineering per label (Neural Cleanse family).

For every label t we look for the smallest mask m and pattern p such that pasting p through m,
x' = (1 - m)·x + m·p, sends clean inputs of other classes to t. A backdoor target needs a much
smaller mask than the other labels. Three additions to plain Neural Cleanse:

- Label scheduling (K-Arm): a short warm-up on every label, then rounds spent only on the few
  most promising labels (smallest mask so far plus a UCB exploration bonus); a label stops
  early once it reaches the attack-success goal and its mask stops shrinking. Cost grows with
  the number of rounds, not linearly with the number of classes.
- Natural-easiness check: some labels are easy to reach with a small mask on a clean model
  (their class features are small strokes). For the best label we reverse-engineer again with
  the pattern fixed to that class's mean clean image: a naturally easy label is reached about as
  cheaply that way, a backdoor trigger (a pattern foreign to the class) is not.
- A calibrated threshold: the score is compared with a threshold chosen at a target false
  positive rate on clean models (`calibrate`), not a fixed "anomaly index > 2".

This runs the model: it is a behavioural check. Scan the file statically first.
"""

from __future__ import annotations

import math
import struct
import time
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from modelward.behaviour._torch_utils import (
    as_images,
    as_labels,
    image_view,
    model_device,
    predict_proba,
    torch_threads,
)

#: Score above which a model is called backdoored: `calibrate(scores, fpr=0.05)` = 0.394 on the
#: scores of 60 clean digits CNNs (`make_clean_model(1000 + s)`, s < 40, and `(2000 + s)`,
#: s < 20), rounded up; the procedure and its provenance are in docs/behaviour.md.
DEFAULT_THRESHOLD = 0.40

SUCCESS_GOAL = 0.9


@dataclass(frozen=True)
class ScanSettings:
    """Budget of the optimisation; the defaults fit 10-class 16×16 models in a few seconds."""

    warmup_steps: int = 60
    round_steps: int = 20
    rounds: int = 8
    arms_per_round: int = 3
    batch: int = 32
    lr: float = 0.2
    init_cost: float = 2.0
    patience: int = 30
    natural_steps: int = 100
    threads: int | None = 1
    seed: int = 0


@dataclass(frozen=True)
class LabelResult:
    """What the reverse-engineering found for one target label."""

    label: int
    mask_l1: float  # sum of the mask: pixels of trigger needed
    attack_success: float  # share of other-class inputs sent to the label by the trigger
    steps: int
    reached: bool  # the attack-success goal was met
    anomaly: float  # log2(peers' median mask L1 / this label's): higher is smaller

    def to_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "mask_l1": round(self.mask_l1, 4),
            "attack_success": round(self.attack_success, 4),
            "steps": self.steps,
            "reached": self.reached,
            "anomaly": round(self.anomaly, 4),
        }


@dataclass
class ModelVerdict:
    """The outcome of `scan_model`: the verdict, its evidence and the reversed trigger."""

    backdoored: bool
    score: float
    threshold: float
    target_label: int
    mask: np.ndarray  # (H, W) in [0, 1]
    pattern: np.ndarray  # (C, H, W) in the input range
    natural_ratio: float  # mask L1 with the class-mean pattern / with the free pattern
    labels: list[LabelResult] = field(default_factory=list)
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "backdoored": self.backdoored,
            "score": round(self.score, 4),
            "threshold": self.threshold,
            "target_label": self.target_label,
            "natural_ratio": (
                round(self.natural_ratio, 4) if math.isfinite(self.natural_ratio) else None
            ),
            "trigger_bbox": trigger_bbox(self.mask),
            "labels": [label.to_dict() for label in self.labels],
            "seconds": round(self.seconds, 3),
        }

    def trigger_png(self) -> bytes:
        """The reversed trigger (mask × pattern, scaled to 0–255) as a grey or RGB PNG."""
        image = self.mask[None] * self.pattern
        low, high = float(image.min()), float(image.max())
        image = (image - low) / (high - low) if high > low else np.zeros_like(image)
        pixels = np.round(image * 255).astype(np.uint8)
        return encode_png(pixels[0] if pixels.shape[0] != 3 else pixels.transpose(1, 2, 0))


def trigger_bbox(mask: np.ndarray, share: float = 0.5) -> list[int]:
    """[row0, col0, row1, col1] (inclusive) of the pixels holding ≥ `share` of the mask's peak."""
    rows, cols = np.nonzero(mask >= share * float(mask.max()))
    if len(rows) == 0:
        return [0, 0, 0, 0]
    return [int(rows.min()), int(cols.min()), int(rows.max()), int(cols.max())]


def encode_png(pixels: np.ndarray) -> bytes:
    """A minimal 8-bit PNG writer (greyscale (H, W) or RGB (H, W, 3)); no imaging library."""
    height, width = pixels.shape[:2]
    colour = 2 if pixels.ndim == 3 else 0
    raw = b"".join(b"\x00" + pixels[row].tobytes() for row in range(height))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", width, height, 8, colour, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(raw, 9))
        + chunk(b"IEND", b"")
    )


class _TriggerSearch:
    """Masks and patterns for every label, optimised together in batches.

    Each label has its own cost weight λ, adapted as in Neural Cleanse: raised while the
    trigger succeeds (to shrink the mask), lowered while it fails.
    """

    def __init__(
        self,
        model: nn.Module,
        x: torch.Tensor,
        y: torch.Tensor,
        labels: int,
        settings: ScanSettings,
        fixed_patterns: torch.Tensor | None = None,
    ) -> None:
        self.model, self.x, self.y, self.settings = model, x, y, settings
        self.low, self.high = float(x.min()), float(x.max())
        channels, height, width = x.shape[1:]
        # Everything the search computes with lives where the inputs (and the model) are:
        # CPU, CUDA or MPS. The random picks come from a CPU generator, so a seed gives the
        # same picks on every device.
        device = x.device
        self.mask_logit = torch.full(
            (labels, 1, height, width), -2.0, requires_grad=True, device=device
        )
        self.fixed_patterns = fixed_patterns
        self.pattern_logit = torch.zeros(
            (labels, channels, height, width), requires_grad=True, device=device
        )
        params = [self.mask_logit]
        if fixed_patterns is None:
            params.append(self.pattern_logit)
        self.optimiser = torch.optim.Adam(params, lr=settings.lr, betas=(0.5, 0.9))
        self.cost = torch.full((labels,), settings.init_cost, device=device)
        self.best_l1 = torch.full((labels,), math.inf, device=device)
        self.best_success = torch.zeros(labels, device=device)
        self.last_l1 = torch.full((labels,), float(height * width), device=device)
        self.last_success = torch.zeros(labels, device=device)
        self.best_mask = torch.zeros((labels, height, width), device=device)
        self.best_pattern = torch.zeros((labels, channels, height, width), device=device)
        self.steps = torch.zeros(labels, dtype=torch.int64, device=device)
        self.last_improved = torch.zeros(labels, dtype=torch.int64, device=device)
        self.generator = torch.Generator().manual_seed(settings.seed)

    def mask(self) -> torch.Tensor:
        return torch.sigmoid(self.mask_logit)

    def pattern(self) -> torch.Tensor:
        if self.fixed_patterns is not None:
            return self.fixed_patterns
        return self.low + (self.high - self.low) * torch.sigmoid(self.pattern_logit)

    def done(self, label: int) -> bool:
        """Reached the goal and the mask has not shrunk for `patience` steps."""
        return bool(
            self.best_success[label] >= SUCCESS_GOAL
            and self.steps[label] - self.last_improved[label] >= self.settings.patience
        )

    def step(self, active: Sequence[int], count: int) -> None:
        labels = torch.tensor(list(active), dtype=torch.int64, device=self.x.device)
        area = float(self.x.shape[2] * self.x.shape[3])
        for _ in range(count):
            picks = torch.randint(len(self.y), (self.settings.batch,), generator=self.generator)
            picks = picks.to(self.x.device)
            xb, yb = self.x[picks], self.y[picks]
            mask, pattern = self.mask()[labels], self.pattern()[labels]
            stamped = (1 - mask[:, None]) * xb[None] + (mask * pattern)[:, None]
            logits = self.model(stamped.flatten(0, 1)).view(len(labels), len(yb), -1)
            targets = labels[:, None].expand(-1, len(yb))
            weight = (yb[None] != targets).float()
            losses = nn.functional.cross_entropy(
                logits.flatten(0, 1), targets.flatten(), reduction="none"
            ).view_as(weight)
            ce = (losses * weight).sum(1) / weight.sum(1).clamp(min=1)
            l1 = mask.flatten(1).sum(1)
            loss = (ce + self.cost[labels] * l1 / area).sum()
            self.optimiser.zero_grad()
            loss.backward()  # type: ignore[no-untyped-call]
            self.optimiser.step()
            with torch.no_grad():
                hits = (logits.argmax(2) == targets).float()
                success = (hits * weight).sum(1) / weight.sum(1).clamp(min=1)
                self._record(labels, l1.detach(), success, mask.detach(), pattern.detach())

    def _record(
        self,
        labels: torch.Tensor,
        l1: torch.Tensor,
        success: torch.Tensor,
        mask: torch.Tensor,
        pattern: torch.Tensor,
    ) -> None:
        self.steps[labels] += 1
        self.last_l1[labels], self.last_success[labels] = l1, success
        ok = success >= SUCCESS_GOAL
        better = ok & (l1 < self.best_l1[labels] * 0.99)
        for i in torch.nonzero(better).flatten().tolist():
            label = int(labels[i])
            self.best_l1[label], self.best_success[label] = l1[i], success[i]
            self.best_mask[label], self.best_pattern[label] = mask[i, 0], pattern[i]
            self.last_improved[label] = self.steps[label]
        factor = torch.where(ok, 1.3, 1 / 1.3)
        self.cost[labels] = (self.cost[labels] * factor).clamp(1e-3, 1e3)

    def mask_l1(self, label: int) -> float:
        """Best successful mask L1, or (when never reached) the current one, as an upper bound."""
        best = float(self.best_l1[label])
        return best if math.isfinite(best) else max(float(self.last_l1[label]), 1.0)


def _schedule(search: _TriggerSearch, labels: int, settings: ScanSettings) -> None:
    """K-Arm style: warm up every label, then spend rounds on the most promising ones."""
    search.step(range(labels), settings.warmup_steps)
    for round_index in range(settings.rounds):
        live = [label for label in range(labels) if not search.done(label)]
        if not live:
            break
        chosen = sorted(live, key=lambda label: _priority(search, label), reverse=True)
        search.step(chosen[: settings.arms_per_round], settings.round_steps + round_index)


def _priority(search: _TriggerSearch, label: int) -> float:
    """UCB-style: small mask and high attack success so far, plus an exploration bonus."""
    reach = float(search.best_success[label].clamp(max=SUCCESS_GOAL)) / SUCCESS_GOAL
    total = float(search.steps.sum())
    bonus = math.sqrt(2 * math.log(total) / float(search.steps[label]))
    return reach - math.log(search.mask_l1(label)) + bonus


def gap_scores(l1: np.ndarray, peers: int) -> list[float]:
    """Per label: log2 of (median mask L1 of the `peers` smallest other labels / its own).

    The peers are the labels the schedule spent its rounds on, so they were optimised about as
    long as the candidate; labels left at their warm-up estimate do not inflate the score.
    A backdoor target needs a mask several times smaller than its peers (score ≥ 1).
    """
    scores = []
    for label in range(len(l1)):
        others = np.sort(np.delete(l1, label))[: max(1, peers)]
        scores.append(math.log2(float(np.median(others)) / float(l1[label])))
    return scores


def combine_score(anomaly: float, natural_ratio: float) -> float:
    """The anomaly of the smallest mask, discounted when the label is naturally easy.

    A natural ratio near 1 (the class's own mean image does as well as the free pattern) pulls
    the score to zero; from a ratio of 2 up the anomaly counts in full.
    """
    return anomaly * min(1.0, max(0.0, math.log2(max(natural_ratio, 1.0))))


def scan_model(
    model: nn.Module,
    x_clean: Any,
    y_clean: Any,
    *,
    threshold: float = DEFAULT_THRESHOLD,
    settings: ScanSettings | None = None,
) -> ModelVerdict:
    """Reverse-engineer a trigger per label of `model` on clean inputs and judge the model.

    Unlike `modelward.scan`, which only reads bytes, this *runs* `model` (forward and
    backward passes): pass a model you have already loaded, after a static scan of its
    file (`modelward.behaviour.load_after_static_scan` scans, then loads only a clean file).

    `x_clean` (N, C, H, W) and `y_clean` (N,) are correctly labelled clean inputs in the range
    the model expects (a few dozen per class is enough). Tabular models take feature rows
    `x_clean` (N, F): the mask then selects features. The model is run, not trained.
    """
    settings = settings or ScanSettings()
    started = time.perf_counter()
    with torch_threads(settings.threads):
        was_training = model.training
        model.eval()
        for parameter in model.parameters():
            parameter.requires_grad_(False)
        try:
            device = model_device(model)
            runnable, images = image_view(model, x_clean)
            x, y = as_images(images, device), as_labels(y_clean, device)
            if len(x) != len(y) or len(x) == 0:
                raise ValueError("x_clean and y_clean must be non-empty and of equal length")
            labels = int(predict_proba(runnable, x[:1]).shape[1])
            if labels < 2:
                raise ValueError("scan_model needs a classifier with at least two labels")
            verdict = _judge(runnable, x, y, labels, settings, threshold)
        finally:
            model.train(was_training)
    verdict.seconds = time.perf_counter() - started
    return verdict


def _judge(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: int,
    settings: ScanSettings,
    threshold: float,
) -> ModelVerdict:
    search = _TriggerSearch(model, x, y, labels, settings)
    _schedule(search, labels, settings)
    l1 = np.array([search.mask_l1(label) for label in range(labels)])
    anomalies = gap_scores(l1, settings.arms_per_round)
    target = int(np.argmin(l1))
    natural_ratio = _natural_ratio(model, x, y, labels, target, settings, l1[target])
    score = combine_score(anomalies[target], natural_ratio)
    results = [
        LabelResult(
            label=label,
            mask_l1=float(l1[label]),
            attack_success=float(
                search.best_success[label]
                if math.isfinite(float(search.best_l1[label]))
                else search.last_success[label]
            ),
            steps=int(search.steps[label]),
            reached=math.isfinite(float(search.best_l1[label])),
            anomaly=anomalies[label],
        )
        for label in range(labels)
    ]
    return ModelVerdict(
        backdoored=score > threshold,
        score=score,
        threshold=threshold,
        target_label=target,
        mask=search.best_mask[target].cpu().numpy().copy(),
        pattern=search.best_pattern[target].cpu().numpy().copy(),
        natural_ratio=natural_ratio,
        labels=results,
    )


def _natural_ratio(
    model: nn.Module,
    x: torch.Tensor,
    y: torch.Tensor,
    labels: int,
    target: int,
    settings: ScanSettings,
    free_l1: float,
) -> float:
    """Mask L1 needed with the target class's mean clean image as the pattern, over `free_l1`."""
    own = x[y == target]
    if len(own) == 0:
        return math.inf
    patterns = own.mean(0, keepdim=True).expand(labels, -1, -1, -1)
    search = _TriggerSearch(model, x, y, labels, settings, fixed_patterns=patterns)
    search.step([target], settings.natural_steps)
    return search.mask_l1(target) / free_l1


def model_scores(
    models: Iterable[nn.Module], x_clean: Any, y_clean: Any, settings: ScanSettings | None = None
) -> list[float]:
    """`scan_model` scores of several models (for `calibrate`)."""
    return [scan_model(model, x_clean, y_clean, settings=settings).score for model in models]


def calibrate(clean_scores: Sequence[float], fpr: float = 0.05) -> float:
    """The threshold that flags at most `fpr` of clean models' scores.

    Scores must come from models known to be clean, scanned with the same settings and data
    kind as the models to judge. Returns the (1 - fpr) empirical quantile (the `higher`
    method, so the FPR on these scores is never above `fpr`).
    """
    if not clean_scores:
        raise ValueError("calibrate needs scores from at least one clean model")
    if not 0 <= fpr < 1:
        raise ValueError(f"fpr must be in [0, 1), not {fpr}")
    return float(np.quantile(np.asarray(clean_scores, dtype=float), 1 - fpr, method="higher"))
