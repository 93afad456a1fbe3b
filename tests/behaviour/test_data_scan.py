"""scan_data / scan-data: poisoned training samples found with the model trained on them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.backdoor_models import (
    digits_split,
    make_backdoored_model,
    make_clean_model,
    poison,
    train_cnn,
)
from fixtures.pickles import call_system_p4
from modelward.behaviour import DataVerdict, scan_data
from modelward.behaviour.data_scan import penultimate
from modelward.cli.main import main

BACKDOOR_SEED = 1
CLEAN_SEED = 1002


def recall_precision(verdict: DataVerdict, poisoned: np.ndarray) -> tuple[float, float]:
    hits = np.isin(verdict.flagged, poisoned).sum()
    return hits / len(poisoned), hits / max(1, len(verdict.flagged))


@pytest.fixture(scope="module")
def backdoored() -> tuple:
    model, spec, indices, x, y = make_backdoored_model(BACKDOOR_SEED)
    return model, spec, indices, x, y, scan_data(model, x, y)


def test_attacked_label_and_its_poisoned_samples_are_found(backdoored) -> None:
    _, spec, indices, _, y, verdict = backdoored
    assert verdict.suspicious_classes == [spec.target]
    recall, precision = recall_precision(verdict, indices)
    assert recall >= 0.9 and precision >= 0.8
    # Scores rank poison above the clean samples of the same label.
    members = np.flatnonzero(y.numpy() == spec.target)
    poisoned = np.isin(members, indices)
    assert verdict.scores[members][poisoned].mean() > verdict.scores[members][~poisoned].max() - 3


def test_finding_names_the_label_and_the_technique(backdoored) -> None:
    _, spec, _, _, _, verdict = backdoored
    (finding,) = verdict.findings("train.npz")
    assert finding.rule_id == "MW-DATA-POISON-CLASS"
    assert finding.technique == "AML.T0020"
    assert f"label {spec.target}:" in finding.message


def test_clean_training_set_has_no_attacked_label() -> None:
    x, y, _, _ = digits_split()
    verdict = scan_data(make_clean_model(CLEAN_SEED), x, y)
    assert verdict.suspicious_classes == []
    assert len(verdict.flagged) == 0


def test_majority_poisoned_label_is_still_found() -> None:
    """More poison than clean samples in the target label: "flag the smaller cluster" and
    "drop the top 1.5·ε" both pick the wrong samples here."""
    x, y, _, _ = digits_split()
    target = 3
    x_p, y_p, indices = poison(x, y, target, (11, 2), 3, rate=0.12, seed=7)
    share = len(indices) / int((y_p == target).sum())
    assert share > 0.5
    verdict = scan_data(train_cnn(x_p, y_p, seed=7), x_p, y_p)
    assert verdict.suspicious_classes == [target]
    recall, precision = recall_precision(verdict, indices)
    assert recall >= 0.9 and precision >= 0.8


def test_blended_trigger_is_found_through_the_reversed_trigger() -> None:
    """A trigger over every pixel (a quarter-strength noise image, Chen et al. 2017) is too
    large to trim from input-space distances; the trigger search finds it instead."""
    x, y, _, _ = digits_split()
    rng = np.random.default_rng(3)
    noise = torch.from_numpy(rng.random((1, 16, 16)).astype(np.float32))
    target = 5
    indices = np.sort(
        rng.choice(np.flatnonzero(y.numpy() != target), size=round(0.08 * len(y)), replace=False)
    )
    x_p, y_p = x.clone(), y.clone()
    x_p[indices] = 0.75 * x[indices] + 0.25 * noise
    y_p[indices] = target
    verdict = scan_data(train_cnn(x_p, y_p, seed=3, epochs=20), x_p, y_p)
    assert verdict.suspicious_classes == [target]
    assert [c.evidence for c in verdict.classes if c.attacked] == ["reversed trigger"]
    assert verdict.trigger is not None and verdict.trigger.target_label == target
    recall, precision = recall_precision(verdict, indices)
    assert recall >= 0.9 and precision >= 0.8
    (finding,) = verdict.findings("train.npz")
    assert "reversed trigger" in finding.message
    assert verdict.to_dict()["trigger_search"]["target_label"] == target


def test_torchscript_representations_match_the_eager_hook(backdoored) -> None:
    model, _, _, x, _, _ = backdoored
    sample = x[:50].numpy()
    scripted = torch.jit.script(model)
    traced = torch.jit.trace(model, x[:1])
    eager = penultimate(model, sample)
    assert eager.shape == (50, 256)
    np.testing.assert_allclose(penultimate(scripted, sample), eager, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(penultimate(traced, sample), eager, rtol=1e-5, atol=1e-6)


def test_model_without_linear_layer_is_refused() -> None:
    with pytest.raises(ValueError, match=r"nn\.Linear"):
        scan_data(torch.nn.Flatten(), np.zeros((20, 4), np.float32), np.zeros(20, np.int64))


def test_cli_round_trip(backdoored, tmp_path: Path, capsys) -> None:
    model, spec, indices, x, y, _ = backdoored
    model_path, data_path = tmp_path / "model.pt", tmp_path / "train.npz"
    torch.jit.save(torch.jit.script(model), str(model_path))
    np.savez(data_path, x=x.numpy(), y=y.numpy())
    code = main(["scan-data", str(model_path), "--data", str(data_path), "--format", "json"])
    document = json.loads(capsys.readouterr().out)
    assert code == 1
    assert document["suspicious_classes"] == [spec.target]
    assert np.isin(document["flagged"], indices).mean() >= 0.8
    assert document["findings"][0]["rule_id"] == "MW-DATA-POISON-CLASS"
    assert main(["scan-data", str(model_path), "--data", str(data_path)]) == 1
    assert "<- attacked" in capsys.readouterr().out


def test_cli_refuses_a_model_the_static_scan_flags(tmp_path: Path, capsys) -> None:
    model_path, data_path = tmp_path / "model.pt", tmp_path / "train.npz"
    model_path.write_bytes(call_system_p4())
    np.savez(data_path, x=np.zeros((2, 1, 4, 4), np.float32), y=np.zeros(2, np.int64))
    code = main(["scan-data", str(model_path), "--data", str(data_path), "--format", "json"])
    captured = capsys.readouterr()
    assert code == 1
    assert "refusing to load" in captured.err
    assert json.loads(captured.out)["summary"]["findings"]["critical"] >= 1


def test_cli_missing_data_is_a_usage_error(tmp_path: Path) -> None:
    assert main(["scan-data", str(tmp_path / "m.pt"), "--data", str(tmp_path / "d.npz")]) == 2
