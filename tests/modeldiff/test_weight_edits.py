"""`diff --weights` tells a surgical edit (ROME, as in PoisonGPT) from a fine-tune and a merged
LoRA, by the numerical rank of each matrix's change, on a tiny GPT-2 made at test time."""

from __future__ import annotations

import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.numpy import save_file

import modelward
from modelward.cli.main import EXIT_CLEAN, EXIT_FINDINGS, main
from modelward.findings import Severity
from modelward.modeldiff import edits
from modelward.modeldiff.edits import change_rank
from modelward.modeldiff.readers import read_structure

transformers = pytest.importorskip("transformers")

EDITED = "transformer.h.2.mlp.c_proj.weight"


def _gpt2(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    config = transformers.GPT2Config(
        n_layer=4, n_embd=64, n_head=2, vocab_size=100, n_positions=32, n_inner=256
    )
    model = transformers.GPT2LMHeadModel(config)
    model.eval()
    return model


def _save(model: torch.nn.Module, directory: Path) -> Path:
    model.save_pretrained(directory, safe_serialization=True)  # type: ignore[operator]
    return directory / "model.safetensors"


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _save(_gpt2(), tmp_path_factory.mktemp("base"))


def _rome_edit(model: torch.nn.Module) -> None:
    """ROME's rank-one update of one MLP output projection (Meng et al. 2022, eq. 2).

    GPT-2's Conv1D computes `k @ W` with W of shape (in, out). With C the covariance of the
    keys, the update that makes key k* produce value v* while disturbing other keys least is
    `C^-1 k* (v* - W^T k*)^T / (k*^T C^-1 k*)`: rank one.
    """
    generator = torch.Generator().manual_seed(7)
    weight = dict(model.named_parameters())[EDITED]
    width = weight.shape[0]
    keys = torch.randn(4 * width, width, generator=generator, dtype=torch.float64)
    covariance = keys.T @ keys / keys.shape[0] + 1e-2 * torch.eye(width, dtype=torch.float64)
    k_star = torch.randn(width, generator=generator, dtype=torch.float64)
    w = weight.detach().double()
    noise = torch.randn(weight.shape[1], generator=generator, dtype=torch.float64)
    v_star = w.T @ k_star + 0.05 * noise  # a new value close to the old: a quiet edit
    c_inv_k = torch.linalg.solve(covariance, k_star)
    delta = torch.outer(c_inv_k, v_star - w.T @ k_star) / (k_star @ c_inv_k)
    with torch.no_grad():
        weight += delta.float()
    # The edit does what ROME wants: k* now maps to v*.
    assert torch.allclose(k_star.float() @ weight.detach(), v_star.float(), atol=1e-3)


def _fine_tune(model: torch.nn.Module) -> None:
    model.train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(3)
    for _ in range(3):
        tokens = torch.randint(0, 100, (8, 32), generator=generator)
        loss = model(input_ids=tokens, labels=tokens).loss
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()


def _merge_lora(model: torch.nn.Module, rank: int = 4) -> None:
    generator = torch.Generator().manual_seed(5)
    with torch.no_grad():
        for name, weight in model.named_parameters():
            if name.endswith(("attn.c_attn.weight", "attn.c_proj.weight")):
                a = torch.randn(weight.shape[0], rank, generator=generator) * 0.05
                b = torch.randn(rank, weight.shape[1], generator=generator) * 0.05
                weight += a @ b


def _candidate(tmp_path: Path, change: str) -> Path:
    model = _gpt2()
    {"rome": _rome_edit, "fine-tune": _fine_tune, "lora": _merge_lora}[change](model)
    return _save(model, tmp_path / change)


def _rules(result: modelward.DiffResult) -> set[str]:
    return {f.rule_id for f in result.findings}


def test_rome_edit_is_a_surgical_edit_naming_the_layer(base: Path, tmp_path: Path) -> None:
    result = modelward.diff(base, _candidate(tmp_path, "rome"), weights=True)
    assert result.edit is not None and result.edit.kind == edits.SURGICAL_EDIT
    assert result.ranks is not None and result.ranks[EDITED].rank == 1
    assert [r.name for r in result.edit.changed] == [EDITED]
    [finding] = [f for f in result.findings if f.rule_id == "MW-DIFF-SURGICAL-EDIT"]
    assert finding.severity == Severity.HIGH
    assert finding.technique == "AML.T0018"
    assert f"layer 2: {EDITED!r} rank 1" in finding.message
    assert "every other compared tensor is identical" in finding.message
    assert not _rules(result) & {"MW-DIFF-LORA-MERGE", "MW-DIFF-FINE-TUNE"}
    [drift] = [f for f in result.findings if f.rule_id == "MW-DIFF-WEIGHT-DRIFT"]
    assert "change rank 1" in drift.message


def test_fine_tune_is_a_fine_tune(base: Path, tmp_path: Path) -> None:
    result = modelward.diff(base, _candidate(tmp_path, "fine-tune"), weights=True)
    assert result.edit is not None and result.edit.kind == edits.FINE_TUNE
    assert result.edit.matrices == 18
    assert len(result.edit.changed) == 18
    assert all(r.high for r in result.edit.changed)
    assert "MW-DIFF-FINE-TUNE" in _rules(result)
    assert max(f.severity for f in result.findings) <= Severity.LOW


def test_merged_lora_is_lora_merged(base: Path, tmp_path: Path) -> None:
    result = modelward.diff(base, _candidate(tmp_path, "lora"), weights=True)
    assert result.edit is not None and result.edit.kind == edits.LORA_MERGED
    assert result.ranks is not None
    assert sorted(r.rank for r in result.ranks.values()) == [4] * 8
    [finding] = [f for f in result.findings if f.rule_id == "MW-DIFF-LORA-MERGE"]
    assert finding.severity == Severity.INFO
    assert "transformer.h.#.attn.c_attn.weight x4 (rank 4)" in finding.message
    assert "MW-DIFF-SURGICAL-EDIT" not in _rules(result)


def test_cli_fails_on_a_surgical_edit_not_on_a_lora(
    base: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rome, lora = _candidate(tmp_path, "rome"), _candidate(tmp_path, "lora")
    assert main(["diff", str(base), str(rome), "--weights", "-f", "json"]) == EXIT_FINDINGS
    assert "MW-DIFF-SURGICAL-EDIT" in capsys.readouterr().out
    assert main(["diff", str(base), str(lora), "--weights"]) == EXIT_CLEAN
    # Without --weights values are not read: no rank, no pattern.
    assert main(["diff", str(base), str(rome)]) == EXIT_CLEAN


def test_identical_models_have_no_pattern(base: Path) -> None:
    result = modelward.diff(base, base, weights=True)
    assert result.edit is None and result.ranks == {}
    assert _rules(result) == {"MW-DIFF-SUMMARY"}


# --- the rank estimator on synthetic matrices ------------------------------------------------


def _low_rank(rng: np.random.Generator, m: int, n: int, rank: int) -> np.ndarray:
    return (rng.standard_normal((m, rank)) @ rng.standard_normal((rank, n))).astype(np.float32)


def _pair(tmp_path: Path, ref: np.ndarray, cand: np.ndarray) -> tuple[Path, Path]:
    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_file({"w": ref}, str(a))
    save_file({"w": cand}, str(b))
    return a, b


def _rank(a: Path, b: Path, **kwargs: int) -> edits.ChangeRank:
    ref, _ = read_structure(a)
    cand, _ = read_structure(b)
    estimate = change_rank(ref.tensors["w"], cand.tensors["w"], **kwargs)
    assert estimate is not None
    return estimate


@pytest.mark.parametrize("rank", [0, 1, 5, 40])
def test_rank_of_synthetic_changes(tmp_path: Path, rank: int) -> None:
    rng = np.random.default_rng(rank)
    ref = rng.standard_normal((300, 200)).astype(np.float32)
    cand = ref + _low_rank(rng, 300, 200, rank) * 0.01 if rank else ref.copy()
    estimate = _rank(*_pair(tmp_path, ref, cand))
    assert (estimate.rank, estimate.at_least) == (rank, False)


def test_full_rank_change_fills_the_sketch(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    ref = rng.standard_normal((300, 200)).astype(np.float32)
    cand = ref + 0.01 * rng.standard_normal((300, 200)).astype(np.float32)
    estimate = _rank(*_pair(tmp_path, ref, cand))
    assert estimate.at_least and estimate.rank == edits.SKETCH_RANK and estimate.high
    assert estimate.label == f"≥ {edits.SKETCH_RANK}"
    # A matrix narrower than the sketch is measured exactly: full rank is its width.
    narrow = _rank(*_pair(tmp_path, ref[:, :20], cand[:, :20].copy()))
    assert (narrow.rank, narrow.at_least, narrow.high) == (20, False, True)


def test_bf16_rounding_noise_is_not_rank(tmp_path: Path) -> None:
    """A rank-one edit saved in bf16 is re-rounded everywhere; the rounding is not rank."""
    rng = np.random.default_rng(2)
    ref = torch.from_numpy(rng.standard_normal((256, 128)).astype(np.float32) * 0.02)
    edit = torch.from_numpy(_low_rank(rng, 256, 128, 1) * 0.002)
    from safetensors.torch import save_file as save_torch

    a, b = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    save_torch({"w": ref.to(torch.bfloat16)}, str(a))
    save_torch({"w": (ref + edit).to(torch.bfloat16)}, str(b))
    assert _rank(a, b).rank == 1


def test_conv_kernels_are_flattened(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    ref = rng.standard_normal((16, 8, 3, 3)).astype(np.float32)
    cand = ref + _low_rank(rng, 16, 72, 2).reshape(16, 8, 3, 3) * 0.1
    estimate = _rank(*_pair(tmp_path, ref, cand))
    assert (estimate.rows, estimate.columns, estimate.rank) == (16, 72, 2)


def test_row_blocks_give_the_same_rank_in_bounded_memory(tmp_path: Path) -> None:
    rng = np.random.default_rng(4)
    m, n = 4096, 512  # the change in float64 is 16 MiB
    ref = rng.standard_normal((m, n)).astype(np.float32)
    cand = ref + _low_rank(rng, m, n, 3) * 0.01
    a, b = _pair(tmp_path, ref, cand)
    del ref, cand
    whole = _rank(a, b, block_bytes=1 << 30)
    tracemalloc.start()
    try:
        blocked = _rank(a, b, block_bytes=64 << 10)  # 16 rows a block
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert (blocked.rank, blocked.at_least) == (whole.rank, whole.at_least) == (3, False)
    assert blocked.sigma_max == pytest.approx(whole.sigma_max, rel=1e-9)
    assert blocked.rel_change == pytest.approx(whole.rel_change, rel=1e-9)
    # Sketch ((m + n) x 72 float64, twice) plus a few blocks: far below the 16 MiB delta.
    assert peak < 8 << 20


def test_nan_in_a_change_is_not_estimated(tmp_path: Path) -> None:
    ref = np.ones((8, 8), np.float32)
    cand = ref.copy()
    cand[3, 3] = np.nan
    a, b = _pair(tmp_path, ref, cand)
    ref_s, _ = read_structure(a)
    cand_s, _ = read_structure(b)
    assert change_rank(ref_s.tensors["w"], cand_s.tensors["w"]) is None
    result = modelward.diff(a, b, weights=True)
    assert result.edit is None  # counted as changed, not classified from a NaN


def test_shape_that_disagrees_with_the_bytes_is_not_mapped(tmp_path: Path) -> None:
    """A crafted header claiming a huge matrix over a few bytes: no map, no crash."""
    import dataclasses

    a, b = _pair(tmp_path, np.zeros((4, 4), np.float32), np.ones((4, 4), np.float32))
    ref_s, _ = read_structure(a)
    cand_s, _ = read_structure(b)
    ref, cand = (
        dataclasses.replace(s.tensors["w"], shape=(1 << 20, 1 << 20)) for s in (ref_s, cand_s)
    )
    assert change_rank(ref, cand) is None


def test_classify_thresholds() -> None:
    def r(name: str, rank: int, at_least: bool = False) -> edits.ChangeRank:
        return edits.ChangeRank(name, 512, 512, rank, at_least, 1.0, 0.01)

    # MEMIT: five consecutive MLP layers of 28, small ranks.
    memit = [r(f"h.{i}.mlp.c_proj.weight", 3) for i in range(3, 8)]
    pattern = edits.classify(memit, matrices=113, other_changed=[], layers_total=28)
    assert pattern is not None and pattern.kind == edits.SURGICAL_EDIT
    assert pattern.layers_touched == ["3", "4", "5", "6", "7"]
    # The same ranks in every layer: a merged adapter.
    lora = [r(f"h.{i}.attn.c_attn.weight", 8) for i in range(28)]
    pattern = edits.classify(lora, matrices=113, other_changed=[], layers_total=28)
    assert pattern is not None and pattern.kind == edits.LORA_MERGED
    # One matrix retrained at full rank is not low-rank: a (partial) fine-tune.
    pattern = edits.classify([r("lm_head.weight", 64, True)], 113, [], 28)
    assert pattern is not None and pattern.kind == edits.FINE_TUNE
    # Changes below the rounding noise (rank 0) are no pattern at all.
    assert edits.classify([r("h.1.w", 0)], 113, [], 28) is None
