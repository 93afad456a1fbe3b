"""STRIP: a run-time guard that flags inputs carrying a trigger (Gao et al., 2019).

Superimpose the input on random clean images and look at the prediction entropy: a clean input
blended with other images yields varied, uncertain predictions (high entropy), while an input
carrying a trigger keeps being sent to the target label (low entropy). The entropy threshold is
the `frr` quantile of clean inputs' entropies, so about `frr` of clean inputs are rejected.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from modelward.behaviour._torch_utils import as_images, model_device, predict_proba, torch_threads


class Strip:
    """Entropy test for single inputs, calibrated on clean inputs to a false-rejection rate.

    `x_clean` (N, C, H, W) supplies the overlay images and the calibration entropies; keep it
    apart from the inputs you later check (about 100+ images for an FRR of a few percent).
    Overlays are added and clipped to the clean data's range (STRIP's saturating blend).
    """

    def __init__(
        self,
        model: nn.Module,
        x_clean: Any,
        *,
        frr: float = 0.05,
        overlays: int = 16,
        seed: int = 0,
        threads: int | None = 1,
    ) -> None:
        if not 0 < frr < 1:
            raise ValueError(f"frr must be in (0, 1), not {frr}")
        self.model, self.frr, self.overlays, self.threads = model, frr, overlays, threads
        self.pool = as_images(x_clean, model_device(model))
        if len(self.pool) < 2:
            raise ValueError("Strip needs at least two clean inputs")
        self.low, self.high = float(self.pool.min()), float(self.pool.max())
        self.generator = torch.Generator().manual_seed(seed)
        self.clean_entropy = self.entropy(self.pool)
        self.threshold = float(np.quantile(self.clean_entropy, frr))

    def entropy(self, x: Any) -> np.ndarray:
        """Mean prediction entropy (nats) of each input superimposed on `overlays` clean images."""
        images = as_images(x if np.ndim(x) == 4 else np.asarray(x)[None], self.pool.device)
        was_training = self.model.training
        self.model.eval()
        try:
            with torch_threads(self.threads):
                picks = torch.randint(
                    len(self.pool), (len(images), self.overlays), generator=self.generator
                )
                blended = (images[:, None] + self.pool[picks]).clamp(self.low, self.high)
                probs = predict_proba(self.model, blended.flatten(0, 1))
        finally:
            self.model.train(was_training)
        entropy = -(probs * probs.clamp(min=1e-12).log()).sum(1)
        return entropy.view(len(images), self.overlays).mean(1).cpu().numpy()

    def is_triggered(self, x: Any) -> np.ndarray:
        """True for each input (one (C, H, W) or a batch) whose entropy is below the threshold."""
        return self.entropy(x) < self.threshold
