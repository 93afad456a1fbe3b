"""Small torch helpers for the behavioural checks (only `modelward.behaviour` imports torch)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np
import torch
from torch import nn


@contextmanager
def torch_threads(threads: int | None) -> Iterator[None]:
    """Run with `threads` intra-op threads (None: leave torch's setting), restoring it after."""
    if threads is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


#: What `--device` accepts: `auto`, `cpu`, `cuda`, `cuda:N` or `mps`.
DEVICE_CHOICES = "auto, cpu, cuda, cuda:N or mps"


def resolve_device(name: str) -> torch.device:
    """The torch device `name` asks for; `auto` is CUDA, else MPS, else the CPU.

    Raises `ValueError` for a name that is none of those and for a device this machine does not
    have (a CUDA index past the last GPU, MPS off a Mac), so a typo is never a silent CPU run.
    """
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    kind, _, index = name.partition(":")
    if kind not in ("cpu", "cuda", "mps") or (index and (kind != "cuda" or not index.isdigit())):
        raise ValueError(f"unknown device {name!r}: use {DEVICE_CHOICES}")
    if kind == "cuda":
        count = torch.cuda.device_count() if torch.cuda.is_available() else 0
        if count == 0:
            raise ValueError(f"device {name!r} asked for, but torch sees no CUDA GPU here")
        if index and int(index) >= count:
            raise ValueError(f"device {name!r} asked for, but torch sees {count} CUDA GPU(s)")
    if kind == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device 'mps' asked for, but MPS is not available here")
    return torch.device(name)


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def as_images(x: Any, device: torch.device) -> torch.Tensor:
    """(N, C, H, W) float32 on `device`, from a tensor or array."""
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if tensor.ndim != 4:
        raise ValueError(
            f"inputs must be images (N, C, H, W) or feature rows (N, F), not shape"
            f" {tuple(tensor.shape)}"
        )
    return tensor.to(device=device, dtype=torch.float32)


class FeatureRows(nn.Module):
    """A tabular model seen as an image model: (N, 1, 1, F) in, the rows (N, F) passed on."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.flatten(1))  # type: ignore[no-any-return]


def image_view(model: nn.Module, x: Any) -> tuple[nn.Module, Any]:
    """Tabular inputs (N, F) as one-row images (N, 1, 1, F), so a mask selects features.

    Image inputs (N, C, H, W) and their model are returned as they are.
    """
    if np.ndim(x) != 2:
        return model, x
    rows = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
    return FeatureRows(model), rows[:, None, None, :]


def as_labels(y: Any, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    return tensor.to(device=device, dtype=torch.int64).reshape(-1)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Softmax outputs in batches, without gradients."""
    return torch.cat([model(chunk).softmax(dim=1) for chunk in x.split(batch)])  # type: ignore[no-untyped-call]
