"""`modelward diff` on ONNX: a spliced trigger branch is named, its output rewiring is critical,
and a fine-tune or an exporter's renaming is not an architecture change."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from onnx.reference import ReferenceEvaluator

import modelward
from fixtures.diff_models import (
    TARGET_LOGITS,
    TRIGGER_NODES,
    classifier_weights,
    fine_tuned_weights,
    onnx_classifier,
    onnx_loop_pair,
)
from modelward.findings import ATLAS_MODIFY_ARCHITECTURE, Severity
from modelward.modeldiff import ARCHITECTURE_CHANGED, IDENTICAL, WEIGHTS_ONLY


def _rules(result: modelward.DiffResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in result.findings:
        found.setdefault(f.rule_id, []).append(f.message)
    return found


def test_spliced_branch_really_is_a_backdoor(tmp_path: Path) -> None:
    """The fixture is a working trojan: a white patch forces the target logits."""
    model = ReferenceEvaluator(str(onnx_classifier(tmp_path / "c.onnx", trigger=True)))
    clean = np.zeros((1, 1, 8, 8), dtype=np.float32)
    stamped = clean.copy()
    stamped[..., 6:, 6:] = 1.0
    assert not np.array_equal(model.run(None, {"pixels": clean})[0], TARGET_LOGITS)
    np.testing.assert_array_equal(model.run(None, {"pixels": stamped})[0], TARGET_LOGITS)


@pytest.mark.parametrize("node_names", [True, False])
def test_spliced_trigger_branch_is_named_and_rewires_the_output(
    tmp_path: Path, node_names: bool
) -> None:
    reference = onnx_classifier(tmp_path / "r.onnx", node_names=node_names)
    candidate = onnx_classifier(tmp_path / "c.onnx", trigger=True, node_names=node_names)
    result = modelward.diff(reference, candidate)
    rules = _rules(result)
    assert result.verdict == ARCHITECTURE_CHANGED
    added = result.changes.nodes_added
    assert len(added) == len(TRIGGER_NODES)
    ops = ["Slice", "ReduceMean", "Flatten", "Greater", "Where"]
    assert [label.split("(")[-1].rstrip(")") for label in added] == ops
    if node_names:
        assert all(any(name in label for label in added) for name in TRIGGER_NODES)
    # The original layers are matched (by name, or by structure when unnamed), not re-added.
    assert result.changes.nodes_removed == []
    assert sorted(result.changes.tensors_added) == sorted(
        ["patch_starts", "patch_ends", "patch_axes", "trigger_threshold", "target_logits"]
    )
    rewired = result.changes.rewired_outputs["logits"]
    assert len([label for label in rewired if "(" in label]) == len(TRIGGER_NODES)
    assert "target_logits" in rewired and "trigger_threshold" in rewired
    critical = [f for f in result.findings if f.severity == Severity.CRITICAL]
    assert [f.rule_id for f in critical] == ["MW-DIFF-OUTPUT-REWIRED"]
    assert "'logits'" in critical[0].message
    assert all(f.technique == ATLAS_MODIFY_ARCHITECTURE for f in result.findings)
    # The Where writes the model output: it is post-processing, and the Slice reads the input.
    assert any("post-processing" in m for m in rules["MW-DIFF-NODE-ADDED"])
    assert any("pre-processing" in m for m in rules["MW-DIFF-NODE-ADDED"])


def test_removing_the_branch_is_reported_the_other_way(tmp_path: Path) -> None:
    trojan = onnx_classifier(tmp_path / "t.onnx", trigger=True)
    clean = onnx_classifier(tmp_path / "c.onnx")
    result = modelward.diff(trojan, clean)
    assert len(result.changes.nodes_removed) == len(TRIGGER_NODES)
    assert result.changes.nodes_added == []
    assert result.changes.rewired_outputs == {}


def test_identical_models(tmp_path: Path) -> None:
    a = onnx_classifier(tmp_path / "a.onnx")
    b = onnx_classifier(tmp_path / "b.onnx")
    result = modelward.diff(a, b, weights=True)
    assert result.verdict == IDENTICAL
    assert [f.rule_id for f in result.findings] == ["MW-DIFF-SUMMARY"]
    assert result.drift is not None and len(result.drift) == 4
    assert not any(d.changed for d in result.drift)


def test_renamed_nodes_match_by_structure(tmp_path: Path) -> None:
    a = onnx_classifier(tmp_path / "a.onnx")
    b = onnx_classifier(tmp_path / "b.onnx", prefix="exported/")
    result = modelward.diff(a, b)
    assert result.verdict == IDENTICAL
    assert not result.changes.nodes_added and not result.changes.nodes_removed


def test_fine_tune_shows_only_weight_drift_with_correct_numbers(tmp_path: Path) -> None:
    reference = onnx_classifier(tmp_path / "r.onnx")
    tuned = fine_tuned_weights()
    candidate = onnx_classifier(tmp_path / "c.onnx", weights=tuned)
    structural = modelward.diff(reference, candidate)
    assert structural.verdict == IDENTICAL  # without --weights values are not read
    result = modelward.diff(reference, candidate, weights=True)
    assert result.verdict == WEIGHTS_ONLY
    assert {f.rule_id for f in result.findings} == {
        "MW-DIFF-WEIGHT-DRIFT",
        "MW-DIFF-FINE-TUNE",  # every matrix moved at full rank
        "MW-DIFF-SUMMARY",
    }
    assert not result.architecture_changed
    original = classifier_weights()
    assert result.drift is not None
    for drift in result.drift:
        before = original[drift.name].astype(np.float64)
        after = tuned[drift.name].astype(np.float64)
        assert drift.max_abs == pytest.approx(np.max(np.abs(after - before)))
        assert drift.rel_l2 == pytest.approx(
            np.linalg.norm(after - before) / np.linalg.norm(before)
        )
    assert max(f.severity for f in result.findings) == Severity.INFO


def test_changed_attribute_is_reported(tmp_path: Path) -> None:
    import onnx

    reference = onnx_classifier(tmp_path / "r.onnx")
    model = onnx.load(str(reference))
    model.graph.node[0].attribute[0].i = 2  # Flatten axis
    candidate = tmp_path / "c.onnx"
    onnx.save(model, str(candidate))
    result = modelward.diff(reference, candidate)
    changed = [f for f in result.findings if f.rule_id == "MW-DIFF-NODE-CHANGED"]
    assert len(changed) == 1
    assert "axis: 1 -> 2" in changed[0].message
    # Flatten reads the model input: a changed pre-processing op is high.
    assert changed[0].severity == Severity.HIGH


def test_change_inside_a_loop_body_reading_the_outer_graph(tmp_path: Path) -> None:
    reference, candidate = onnx_loop_pair(tmp_path)
    result = modelward.diff(reference, candidate)
    changed = [f.message for f in result.findings if f.rule_id == "MW-DIFF-NODE-CHANGED"]
    assert len(changed) == 1
    assert "body:" in changed[0] and "Add" in changed[0] and "secret" in changed[0]
    assert result.changes.tensors_added == ["secret"]
    # The body reads `secret` from the enclosing graph, so the output now depends on it.
    assert result.changes.rewired_outputs == {"Z": ["secret"]}


def test_external_data_initializers_are_mapped_for_weights(tmp_path: Path) -> None:
    from fixtures.onnx_models import benign_external_data

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    a = benign_external_data(tmp_path / "a" / "m.onnx")
    b = benign_external_data(tmp_path / "b" / "m.onnx")
    result = modelward.diff(a, b, weights=True)
    assert result.verdict == IDENTICAL
    assert result.not_compared == []
    assert result.drift and all(not d.changed for d in result.drift)
    external = [t for t in result.candidate.tensors.values() if t.member is not None]
    assert external and all(Path(t.file).parent == tmp_path / "b" for t in external)
