"""STRIP on a tiny backdoored digits CNN: triggered inputs flagged at the configured FRR."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from fixtures.backdoor_models import digits_split, make_backdoored_model
from modelward.behaviour import Strip

FRR = 0.05


@pytest.fixture(scope="module")
def guarded() -> tuple[Strip, object, torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = digits_split()
    model, spec, _, _, _ = make_backdoored_model(2)
    # Calibration images and the inputs checked later are disjoint.
    return Strip(model, x_test[:200], frr=FRR), spec, x_test[200:], y_test[200:]


def test_measured_frr_on_held_out_clean_inputs_is_close_to_the_request(guarded: tuple) -> None:
    strip, _, x_held, _ = guarded
    measured = float(strip.is_triggered(x_held).mean())
    assert abs(measured - FRR) <= 0.05


def test_triggered_inputs_are_flagged(guarded: tuple) -> None:
    strip, spec, x_held, y_held = guarded
    triggered = spec.apply(x_held[y_held != spec.target])
    assert float(strip.is_triggered(triggered).mean()) >= 0.85


def test_single_input_and_entropy_order(guarded: tuple) -> None:
    strip, spec, x_held, y_held = guarded
    clean = x_held[y_held != spec.target][0]
    verdicts = strip.is_triggered(spec.apply(clean[None])[0])
    assert verdicts.shape == (1,)
    assert strip.entropy(spec.apply(clean[None]))[0] < strip.entropy(clean[None])[0]
    assert strip.threshold == pytest.approx(float(np.quantile(strip.clean_entropy, FRR)))


def test_frr_must_be_a_rate() -> None:
    with pytest.raises(ValueError):
        Strip(torch.nn.Linear(4, 2), torch.zeros(4, 1, 2, 2), frr=0.0)
