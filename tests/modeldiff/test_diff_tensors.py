"""`modelward diff` on tensor tables: PyTorch checkpoints (zip and legacy, read from the pickle
without unpickling), safetensors and GGUF, and across formats."""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

import modelward
from fixtures.diff_models import (
    fine_tuned_state,
    gguf_file,
    safetensors_file,
    safetensors_of_torch_model,
    torch_fine_tuned,
    torch_model,
    torch_spliced_state_dict,
    torch_state_dict,
)
from fixtures.torch_models import Payload
from modelward.findings import Severity
from modelward.modeldiff import ARCHITECTURE_CHANGED, IDENTICAL, WEIGHTS_ONLY, DiffError


def _by_rule(result: modelward.DiffResult) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for f in result.findings:
        found.setdefault(f.rule_id, []).append(f.message)
    return found


def test_torch_injected_layer_and_reshaped_layer(tmp_path: Path) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    candidate = torch_spliced_state_dict(tmp_path / "c.pt")
    result = modelward.diff(reference, candidate)
    assert result.verdict == ARCHITECTURE_CHANGED
    assert sorted(result.changes.tensors_added) == ["3.bias", "3.weight"]
    assert sorted(result.changes.tensors_reshaped) == ["2.bias", "2.weight"]
    rules = _by_rule(result)
    assert any("[4, 16] -> [5, 16]" in m for m in rules["MW-DIFF-SHAPE"])
    assert {f.severity for f in result.findings if f.rule_id != "MW-DIFF-SUMMARY"} == {
        Severity.HIGH
    }


def test_torch_state_dict_is_read_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    candidate = torch_spliced_state_dict(tmp_path / "c.pt")

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("diff unpickled a checkpoint")

    import pickle

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    result = modelward.diff(reference, candidate)
    assert len(result.changes.tensors_added) == 2


def test_torch_fine_tune_drift_matches_numpy(tmp_path: Path) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    candidate = torch_fine_tuned(tmp_path / "c.pt")
    result = modelward.diff(reference, candidate, weights=True)
    assert result.verdict == WEIGHTS_ONLY
    assert not result.architecture_changed
    before = torch_model().state_dict()
    after = fine_tuned_state()
    assert result.drift is not None and len(result.drift) == len(before)
    for drift in result.drift:
        a = before[drift.name].double().numpy()
        b = after[drift.name].double().numpy()
        assert drift.max_abs == pytest.approx(np.max(np.abs(b - a)), rel=1e-6)
        assert drift.rel_l2 == pytest.approx(np.linalg.norm(b - a) / np.linalg.norm(a), rel=1e-6)


@pytest.mark.parametrize("legacy", [False, True])
def test_whole_module_and_legacy_checkpoints_name_tensors_like_the_state_dict(
    tmp_path: Path, legacy: bool
) -> None:
    reference = torch_state_dict(tmp_path / "r.pt")
    candidate = tmp_path / "module.pt"
    torch.save(torch_model(), candidate, _use_new_zipfile_serialization=not legacy)
    result = modelward.diff(reference, candidate, weights=True)
    assert result.verdict == IDENTICAL
    assert result.drift is not None and len(result.drift) == 4
    assert result.not_compared == []


def test_legacy_state_dict_weights_are_located(tmp_path: Path) -> None:
    reference = torch_state_dict(tmp_path / "r.pt", legacy=True)
    candidate = torch_fine_tuned(tmp_path / "c.pt")
    result = modelward.diff(reference, candidate, weights=True)
    assert result.verdict == WEIGHTS_ONLY
    assert result.drift is not None and all(d.changed for d in result.drift)
    assert all(d.rel_l2 is not None and d.rel_l2 < 0.2 for d in result.drift)


def test_safetensors_against_torch_of_the_same_weights(tmp_path: Path) -> None:
    st = safetensors_of_torch_model(tmp_path / "m.safetensors")
    pt = torch_state_dict(tmp_path / "m.pt")
    result = modelward.diff(st, pt, weights=True)
    assert result.verdict == IDENTICAL
    assert result.drift is not None and len(result.drift) == 4
    assert "safetensors" in result.findings[-1].message


def test_safetensors_added_removed_reshaped_retyped(tmp_path: Path) -> None:
    base = {
        "embed": np.ones((10, 4), dtype=np.float32),
        "head": np.ones((4, 2), dtype=np.float32),
        "norm": np.ones(4, dtype=np.float32),
    }
    changed = {
        "embed": np.ones((10, 4), dtype=np.float16),
        "head": np.ones((4, 3), dtype=np.float32),
        "backdoor.proj": np.ones((4, 4), dtype=np.float32),
    }
    result = modelward.diff(
        safetensors_file(tmp_path / "a.safetensors", base),
        safetensors_file(tmp_path / "b.safetensors", changed),
    )
    c = result.changes
    assert (c.tensors_added, c.tensors_removed) == (["backdoor.proj"], ["norm"])
    assert (c.tensors_reshaped, c.tensors_retyped) == (["head"], ["embed"])
    severities = {f.rule_id: f.severity for f in result.findings}
    assert severities["MW-DIFF-DTYPE"] == Severity.MEDIUM
    assert severities["MW-DIFF-TENSOR-REMOVED"] == Severity.HIGH


def test_bf16_and_integer_drift(tmp_path: Path) -> None:
    ref = {"w": torch.linspace(-2, 2, 64).to(torch.bfloat16), "n": torch.arange(8)}
    cand = {"w": (torch.linspace(-2, 2, 64) * 1.5).to(torch.bfloat16), "n": torch.arange(8) * 2}
    from safetensors.torch import save_file

    save_file(ref, str(tmp_path / "a.safetensors"))
    save_file(cand, str(tmp_path / "b.safetensors"))
    result = modelward.diff(tmp_path / "a.safetensors", tmp_path / "b.safetensors", weights=True)
    drift = {d.name: d for d in result.drift or []}
    a, b = ref["w"].double().numpy(), cand["w"].double().numpy()
    assert drift["w"].max_abs == pytest.approx(np.max(np.abs(b - a)))
    assert drift["n"].max_abs == 7.0
    assert drift["n"].rel_l2 == pytest.approx(1.0)
    # A relative L2 of 1 (values doubled) is more than a fine-tune: low, not info.
    assert any(
        f.severity == Severity.LOW and "'n'" in f.message
        for f in result.findings
        if f.rule_id == "MW-DIFF-WEIGHT-DRIFT"
    )


def test_gguf_tensor_tables(tmp_path: Path) -> None:
    base = {"blk.0.attn": np.ones((4, 8), dtype=np.float32), "blk.0.ffn": np.ones(8, np.float32)}
    spliced = {
        "blk.0.attn": np.ones((4, 16), dtype=np.float32),
        "blk.0.ffn": np.ones(8, np.float32),
        "blk.0.trigger": np.ones(4, np.float32),
    }
    a = gguf_file(tmp_path / "a.gguf", base, quantised="blk.0.q")
    b = gguf_file(tmp_path / "b.gguf", spliced)
    result = modelward.diff(a, b)
    c = result.changes
    assert c.tensors_added == ["blk.0.trigger"]
    assert c.tensors_removed == ["blk.0.q"]
    assert c.tensors_reshaped == ["blk.0.attn"]


def test_gguf_weight_drift_plain_and_quantised(tmp_path: Path) -> None:
    base = {"w": np.linspace(0, 1, 32, dtype=np.float32)}
    moved = {"w": np.linspace(0, 1, 32, dtype=np.float32) + 0.5}
    a = gguf_file(tmp_path / "a.gguf", base, quantised="q")
    b = gguf_file(tmp_path / "b.gguf", moved, quantised="q")
    result = modelward.diff(a, b, weights=True)
    drift = {d.name: d for d in result.drift or []}
    assert drift["w"].max_abs == pytest.approx(0.5)
    assert not drift["q"].changed and drift["q"].max_abs is None
    assert result.reference.tensors["q"].dtype == "Q8_0"
    assert result.verdict == WEIGHTS_ONLY


def test_malicious_checkpoint_is_read_not_run(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A checkpoint carrying a REDUCE of os.system: the diff sees its tensors, runs nothing."""
    state: dict[str, Any] = dict(torch_model().state_dict())
    state["hook"] = Payload()
    path = tmp_path / "evil.pt"
    torch.save(state, path)

    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the payload ran")

    monkeypatch.setattr(os, "system", refuse)
    result = modelward.diff(torch_state_dict(tmp_path / "r.pt"), path)
    assert result.verdict == IDENTICAL  # same tensors; the payload is `modelward scan`'s job
    assert math.isfinite(result.seconds)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a model at all", b"\x80\x02}q\x00.", b"PK\x03\x04" + bytes(40)],
)
def test_unreadable_or_unsupported_files_raise_diff_error(tmp_path: Path, content: bytes) -> None:
    good = torch_state_dict(tmp_path / "r.pt")
    bad = tmp_path / "bad.bin"
    bad.write_bytes(content)
    with pytest.raises(DiffError):
        modelward.diff(good, bad)
