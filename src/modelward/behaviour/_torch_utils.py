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


def model_device(model: nn.Module) -> torch.device:
    for tensor in model.parameters():
        return tensor.device
    return torch.device("cpu")


def as_images(x: Any, device: torch.device) -> torch.Tensor:
    """(N, C, H, W) float32 on `device`, from a tensor or array."""
    tensor = torch.as_tensor(np.asarray(x) if not isinstance(x, torch.Tensor) else x)
    if tensor.ndim != 4:
        raise ValueError(f"inputs must be (N, C, H, W), not shape {tuple(tensor.shape)}")
    return tensor.to(device=device, dtype=torch.float32)


def as_labels(y: Any, device: torch.device) -> torch.Tensor:
    tensor = torch.as_tensor(np.asarray(y) if not isinstance(y, torch.Tensor) else y)
    return tensor.to(device=device, dtype=torch.int64).reshape(-1)


@torch.no_grad()
def predict_proba(model: nn.Module, x: torch.Tensor, batch: int = 512) -> torch.Tensor:
    """Softmax outputs in batches, without gradients."""
    return torch.cat([model(chunk).softmax(dim=1) for chunk in x.split(batch)])  # type: ignore[no-untyped-call]
