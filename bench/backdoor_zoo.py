"""Tasks, architectures and backdoor attacks for `bench/behaviour_protocol.py`.

Everything is built here from data scikit-learn ships (no downloads), seeded:

- `cnn`: the digits CNN of `tests/fixtures/backdoor_models` on 1×16×16 grey digits;
- `resnet18`: torchvision's ResNet-18 (10 classes) on the same digits resized to 3×32×32 and
  tinted with a random colour per image (so colour carries no label);
- `mlp`: a three-layer MLP on a fixed tabular task, `make_classification` with 10 classes and
  32 features scaled to [0, 1].

An attack stamps a trigger, x' = clip((1 - m)·x + m·p + a), on a share of the training set
and relabels it: `patch` (m = 1 on a small square or a few features, p a random 0/1 pattern),
`blended` (m = α everywhere, p uniform noise, Chen et al. 2017) or `signal` (a = a sinusoid,
Barni et al. 2019, with the label flipped). All-to-one sends every victim to one target;
all-to-all sends label y to y + 1 (mod 10). Poison rates are drawn from 1 % to 10 % for
all-to-one and from 5 % to 10 % for all-to-all: below 5 % an all-to-all backdoor did not take on
these data sets (attack success 0.1–0.4 at 5 %, under 0.1 at 1 %, measured while building this).
Clean and backdoored models of one architecture train with the same recipe.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import numpy as np
import torch
from torch import nn

from fixtures.backdoor_models import NUM_CLASSES, DigitsCNN, digits_split

TRIGGERS = ("patch", "blended", "signal")
MAPPINGS = ("all-to-one", "all-to-all")


@dataclass(frozen=True)
class Task:
    """One architecture with its data and training recipe."""

    name: str
    x_train: torch.Tensor
    y_train: torch.Tensor
    x_test: torch.Tensor
    y_test: torch.Tensor
    build: Callable[[], nn.Module]
    epochs: int
    lr: float
    batch: int = 64


def _mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(32, 128), nn.ReLU(), nn.Linear(128, 64), nn.ReLU(), nn.Linear(64, NUM_CLASSES)
    )


def _resnet18() -> nn.Module:
    import torchvision

    return torchvision.models.resnet18(num_classes=NUM_CLASSES)


@cache
def _tabular() -> tuple[torch.Tensor, ...]:
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=3000,
        n_features=32,
        n_informative=20,
        n_redundant=4,
        n_classes=NUM_CLASSES,
        n_clusters_per_class=1,
        class_sep=1.5,
        random_state=0,
    )
    low, high = np.percentile(x, 0.5, axis=0), np.percentile(x, 99.5, axis=0)
    x = np.clip((x - low) / (high - low), 0.0, 1.0).astype(np.float32)
    cut = 2250
    return (
        torch.from_numpy(x[:cut]),
        torch.from_numpy(y[:cut].astype(np.int64)),
        torch.from_numpy(x[cut:]),
        torch.from_numpy(y[cut:].astype(np.int64)),
    )


def _colour_digits(x: torch.Tensor, seed: int) -> torch.Tensor:
    """1×16×16 grey digits as 3×32×32 RGB: bilinear 2× and a random tint per image."""
    big = nn.functional.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
    tint = torch.from_numpy(np.random.default_rng(seed).uniform(0.4, 1.0, (len(x), 3, 1, 1)))
    return (big * tint.float()).clamp(0, 1)


@cache
def task(name: str) -> Task:
    if name == "cnn":
        x_train, y_train, x_test, y_test = digits_split()
        return Task(name, x_train, y_train, x_test, y_test, DigitsCNN, epochs=30, lr=5e-3)
    if name == "resnet18":
        x_train, y_train, x_test, y_test = digits_split()
        return Task(
            name,
            _colour_digits(x_train, 1),
            y_train,
            _colour_digits(x_test, 2),
            y_test,
            _resnet18,
            epochs=30,
            lr=1e-3,
        )
    if name == "mlp":
        return Task(name, *_tabular(), build=_mlp, epochs=80, lr=3e-3)
    raise ValueError(f"unknown architecture {name!r}")


@dataclass(frozen=True)
class Attack:
    """A trigger (mask `m`, pattern `p`, additive `a`, each shaped like one input) and a
    label mapping."""

    trigger: str
    mapping: str
    target: int  # all-to-one's target (all-to-all: unused)
    rate: float
    mask: np.ndarray
    pattern: np.ndarray
    additive: np.ndarray

    def stamp(self, x: torch.Tensor) -> torch.Tensor:
        m, p, a = (
            torch.from_numpy(v).to(x.device) for v in (self.mask, self.pattern, self.additive)
        )
        return ((1 - m) * x + m * p + a).clamp(0, 1)

    def relabel(self, y: torch.Tensor) -> torch.Tensor:
        if self.mapping == "all-to-all":
            return (y + 1) % NUM_CLASSES
        return torch.full_like(y, self.target)

    def victims(self, y: torch.Tensor) -> torch.Tensor:
        """Which inputs the attack is meant to flip (all-to-one: those not already the target)."""
        if self.mapping == "all-to-all":
            return torch.ones_like(y, dtype=torch.bool)
        return y != self.target


def random_attack(shape: tuple[int, ...], trigger: str, mapping: str, seed: int) -> Attack:
    """A random trigger of one kind for inputs of `shape` ((C, H, W) or (F,))."""
    rng = np.random.default_rng(seed)
    mask = np.zeros(shape, np.float32)
    pattern = np.zeros(shape, np.float32)
    additive = np.zeros(shape, np.float32)
    if trigger == "patch":
        if len(shape) == 1:
            features = rng.choice(shape[0], size=int(rng.integers(3, 6)), replace=False)
            mask[features] = 1.0
            pattern[features] = rng.integers(0, 2, len(features)).astype(np.float32)
        else:
            channels, height, _ = shape
            size = int(rng.integers(2, 5)) * height // 16
            row, col = (int(v) for v in rng.integers(0, height - size + 1, 2))
            mask[:, row : row + size, col : col + size] = 1.0
            lit = (rng.random((channels, size, size)) < 0.75).astype(np.float32)
            lit.reshape(channels, -1)[:, : (size * size + 1) // 2] = 1.0
            for channel in lit:
                rng.shuffle(channel.reshape(-1))
            pattern[:, row : row + size, col : col + size] = lit
    elif trigger == "blended":
        mask[...] = rng.uniform(0.15, 0.3)
        pattern[...] = rng.random(shape)
    elif trigger == "signal":
        width = shape[-1]
        amplitude, frequency = rng.uniform(0.15, 0.3), int(rng.integers(3, 7))
        wave = amplitude * np.sin(2 * math.pi * frequency * np.arange(width) / width)
        additive[...] = wave.astype(np.float32)
    else:
        raise ValueError(f"unknown trigger {trigger!r}")
    return Attack(
        trigger=trigger,
        mapping=mapping,
        target=int(rng.integers(0, NUM_CLASSES)),
        rate=float(rng.uniform(0.01 if mapping == "all-to-one" else 0.05, 0.10)),
        mask=mask,
        pattern=pattern,
        additive=additive,
    )


def poison(
    attack: Attack, x: torch.Tensor, y: torch.Tensor, seed: int
) -> tuple[torch.Tensor, torch.Tensor, np.ndarray]:
    """Stamp and relabel `attack.rate` of the training set (victims only); sorted indices."""
    candidates = np.flatnonzero(attack.victims(y).numpy())
    rng = np.random.default_rng(seed)
    indices = np.sort(
        rng.choice(candidates, size=max(1, round(attack.rate * len(y))), replace=False)
    )
    rows = torch.from_numpy(indices)
    x_out, y_out = x.clone(), y.clone()
    x_out[rows] = attack.stamp(x[rows])
    y_out[rows] = attack.relabel(y[rows])
    return x_out, y_out, indices


def train(
    spec: Task, x: torch.Tensor, y: torch.Tensor, seed: int, device: torch.device
) -> nn.Module:
    torch.manual_seed(seed)
    model = spec.build().to(device)
    optimiser = torch.optim.Adam(model.parameters(), lr=spec.lr)
    generator = torch.Generator().manual_seed(seed)
    x, y = x.to(device), y.to(device)
    model.train()
    for _ in range(spec.epochs):
        for batch in torch.randperm(len(y), generator=generator).split(spec.batch):
            if len(batch) < 2:  # batch norm needs two samples
                continue
            batch = batch.to(device)
            optimiser.zero_grad()
            nn.functional.cross_entropy(model(x[batch]), y[batch]).backward()
            optimiser.step()
    return model.eval()


@torch.no_grad()
def accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    device = next(model.parameters()).device
    predictions = torch.cat([model(chunk.to(device)).argmax(1).cpu() for chunk in x.split(512)])
    return float((predictions == y).float().mean())


def attack_success(model: nn.Module, attack: Attack, x: torch.Tensor, y: torch.Tensor) -> float:
    """Share of held-out victims the trigger sends where the attack wants them."""
    victims = attack.victims(y)
    return accuracy(model, attack.stamp(x[victims]), attack.relabel(y[victims]))
