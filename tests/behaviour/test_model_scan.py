"""`scan_model` and `modelward scan-model` on tiny digits CNNs trained at test time."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.backdoor_models import digits_split, make_backdoored_model, make_clean_model
from modelward.behaviour import ModelVerdict, calibrate, scan_model
from modelward.cli.main import main

#: A trigger the scan must find: a 4×4 patch near the top-left corner, target 4.
BACKDOOR_SEED = 2
CLEAN_SEED = 1001


@pytest.fixture(scope="module")
def clean_data() -> tuple[torch.Tensor, torch.Tensor]:
    _, _, x_test, y_test = digits_split()
    return x_test[:200], y_test[:200]


@pytest.fixture(scope="module")
def backdoored() -> tuple[torch.nn.Module, object, ModelVerdict]:
    _, _, x_test, y_test = digits_split()
    model, spec, _, _, _ = make_backdoored_model(BACKDOOR_SEED)
    return model, spec, scan_model(model, x_test[:200], y_test[:200])


def test_backdoored_model_is_flagged_with_its_target(backdoored: tuple) -> None:
    _, spec, verdict = backdoored
    assert verdict.backdoored
    assert verdict.score > verdict.threshold
    assert verdict.target_label == spec.target
    assert verdict.labels[spec.target].reached


def test_reversed_mask_sits_on_the_trigger_patch(backdoored: tuple) -> None:
    _, spec, verdict = backdoored
    footprint = spec.mask()
    near = np.zeros_like(footprint)  # the patch grown by one pixel each side
    rows, cols = np.nonzero(footprint)
    near[max(rows.min() - 1, 0) : rows.max() + 2, max(cols.min() - 1, 0) : cols.max() + 2] = True
    peak = np.unravel_index(np.argmax(verdict.mask), verdict.mask.shape)
    assert near[peak]
    assert verdict.mask[near].sum() >= 0.5 * verdict.mask.sum()


def test_clean_model_is_not_flagged(clean_data: tuple) -> None:
    verdict = scan_model(make_clean_model(CLEAN_SEED), *clean_data)
    assert not verdict.backdoored
    assert verdict.score <= verdict.threshold
    assert len(verdict.labels) == 10


def test_tabular_rows_are_scanned_feature_by_feature() -> None:
    """(N, F) inputs: the mask selects features, and the backdoor's target is found.

    (How often tabular backdoors are caught is measured in bench/behaviour_protocol.py.)"""
    from sklearn.datasets import make_classification

    x, y = make_classification(
        n_samples=1500, n_features=16, n_informative=10, n_classes=4, random_state=0
    )
    x = ((x - x.min(0)) / (x.max(0) - x.min(0))).astype(np.float32)
    rng = np.random.default_rng(0)
    trigger, target = [2, 7, 11], 1
    poisoned = rng.choice(np.flatnonzero(y != target), size=120, replace=False)
    x_p, y_p = x.copy(), y.copy()
    x_p[np.ix_(poisoned, trigger)] = 1.0
    y_p[poisoned] = target
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(16, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4))
    optimiser = torch.optim.Adam(model.parameters(), lr=3e-3)
    inputs, labels = torch.from_numpy(x_p[:1200]), torch.from_numpy(y_p[:1200])
    for _ in range(60):
        for batch in torch.randperm(1200).split(64):
            optimiser.zero_grad()
            torch.nn.functional.cross_entropy(model(inputs[batch]), labels[batch]).backward()
            optimiser.step()
    clean = np.setdiff1d(np.arange(1200, 1500), poisoned)
    verdict = scan_model(model.eval(), x[clean], y[clean])
    assert verdict.mask.shape == (1, 16)
    assert verdict.target_label == target
    assert len(verdict.labels) == 4
    assert verdict.trigger_png().startswith(b"\x89PNG")


def test_calibrate_picks_the_quantile_of_clean_scores() -> None:
    scores = [float(s) for s in range(20)]
    threshold = calibrate(scores, fpr=0.05)
    assert sum(s > threshold for s in scores) / len(scores) <= 0.05
    assert threshold == 19.0
    assert calibrate(scores, fpr=0.25) == 15.0
    with pytest.raises(ValueError):
        calibrate([])


def test_cli_round_trip(backdoored: tuple, clean_data: tuple, tmp_path: Path, capsys) -> None:
    model, spec, _ = backdoored
    model_path, data_path, png = tmp_path / "model.pt", tmp_path / "clean.npz", tmp_path / "t.png"
    example = clean_data[0][:1]
    torch.jit.save(torch.jit.trace(model, example), model_path)
    np.savez(data_path, x=clean_data[0].numpy(), y=clean_data[1].numpy())
    code = main(
        [
            "scan-model",
            str(model_path),
            "--data",
            str(data_path),
            "--format",
            "json",
            "--trigger-out",
            str(png),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 1
    assert report["backdoored"] is True
    assert report["target_label"] == spec.target
    assert len(report["labels"]) == 10
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    assert data[12:16] == b"IHDR"
    assert int.from_bytes(data[16:20], "big") == 16  # width of the 16×16 input


def test_cli_refuses_a_model_the_static_scan_flags(tmp_path: Path, capsys) -> None:
    import os
    import pickle

    class Payload:
        def __reduce__(self) -> tuple:
            return (os.system, ("true",))

    model_path, data_path = tmp_path / "model.pt", tmp_path / "clean.npz"
    model_path.write_bytes(pickle.dumps(Payload()))
    np.savez(data_path, x=np.zeros((2, 1, 4, 4), np.float32), y=np.zeros(2, np.int64))
    code = main(["scan-model", str(model_path), "--data", str(data_path), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1
    assert "refusing to load" in captured.err
    assert json.loads(captured.out)["summary"]["findings"]["critical"] >= 1


def test_import_modelward_does_not_import_torch() -> None:
    code = (
        "import sys, modelward, modelward.behaviour, modelward.cli.main;"
        "modelward.cli.main.build_parser();"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_scan_model_is_reexported_lazily() -> None:
    import modelward

    assert modelward.scan_model is scan_model
