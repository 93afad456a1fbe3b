"""Every behavioural check runs where the model is: CPU, CUDA or MPS (`--device`).

The CPU cases always run; the CUDA ones run on a machine with a GPU and are skipped without.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from fixtures.backdoor_models import digits_split, make_backdoored_model
from modelward.behaviour import Strip, scan_data, scan_model
from modelward.behaviour._torch_utils import resolve_device
from modelward.behaviour.model_scan import ScanSettings
from modelward.cli.main import EXIT_ERROR, main

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
#: A short search: these tests check where tensors live, not detection quality.
QUICK = ScanSettings(warmup_steps=3, rounds=1, round_steps=2, natural_steps=2)


def test_auto_is_the_best_device_here() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    if not torch.cuda.is_available() and torch.backends.mps.is_available():
        expected = "mps"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu") == torch.device("cpu")


@pytest.mark.parametrize("name", ["gpu", "cuda:x", "cpu:0", "mps:1", "", "CUDA"])
def test_a_device_name_that_is_none_is_refused(name: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        resolve_device(name)


def test_a_device_this_machine_lacks_is_refused_not_replaced_by_the_cpu() -> None:
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with pytest.raises(ValueError, match="CUDA GPU"):
        resolve_device(f"cuda:{count}")


def _small_scan(device: torch.device) -> tuple[object, object]:
    _, _, x_test, y_test = digits_split()
    model, _, _, _, _ = make_backdoored_model(2)
    return scan_model(model.to(device), x_test[:60], y_test[:60], settings=QUICK), model


def test_scan_model_returns_host_arrays_from_a_cpu_model() -> None:
    verdict, _ = _small_scan(torch.device("cpu"))
    assert isinstance(verdict.mask, np.ndarray) and isinstance(verdict.pattern, np.ndarray)


@CUDA
def test_scan_model_runs_on_a_cuda_model_with_cpu_inputs() -> None:
    """Inputs given on the CPU follow the model to the GPU; the verdict comes back as NumPy."""
    verdict, model = _small_scan(torch.device("cuda"))
    assert next(model.parameters()).device.type == "cuda"  # type: ignore[attr-defined]
    assert isinstance(verdict.mask, np.ndarray)
    assert len(verdict.labels) == 10  # type: ignore[attr-defined]


@CUDA
def test_scan_data_and_strip_run_on_a_cuda_model() -> None:
    """The same poisoned training set is judged the same on the GPU as on the CPU."""
    _, _, x_test, _ = digits_split()
    model, spec, indices, x, y = make_backdoored_model(2)
    on_cpu = scan_data(model, x, y)
    on_gpu = scan_data(model.to("cuda"), x, y)
    assert on_gpu.suspicious_classes == on_cpu.suspicious_classes == [spec.target]
    assert np.isin(on_gpu.flagged, indices).mean() >= 0.8
    guard = Strip(model, x_test[:100], frr=0.05)
    flags = guard.is_triggered(spec.apply(x_test[100:160]))
    assert isinstance(flags, np.ndarray) and flags.mean() > 0.5


@CUDA
def test_cli_scans_on_the_gpu(tmp_path: Path, capsys) -> None:
    _, _, x_test, y_test = digits_split()
    model, spec, _, _, _ = make_backdoored_model(2)
    model_path, data_path = tmp_path / "model.pt", tmp_path / "clean.npz"
    torch.jit.save(torch.jit.trace(model, x_test[:1]), model_path)
    np.savez(data_path, x=x_test[:200].numpy(), y=y_test[:200].numpy())
    args = ["scan-model", str(model_path), "--data", str(data_path), "--device", "cuda"]
    assert main([*args, "--format", "json"]) == 1
    assert f'"target_label": {spec.target}' in capsys.readouterr().out


def test_cli_refuses_a_device_it_does_not_have(tmp_path: Path, capsys) -> None:
    _, _, x_test, y_test = digits_split()
    model, _, _, _, _ = make_backdoored_model(2)
    model_path, data_path = tmp_path / "model.pt", tmp_path / "clean.npz"
    torch.jit.save(torch.jit.trace(model, x_test[:1]), model_path)
    np.savez(data_path, x=x_test[:20].numpy(), y=y_test[:20].numpy())
    count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    args = ["scan-model", str(model_path), "--data", str(data_path), "--device", f"cuda:{count}"]
    assert main(args) == EXIT_ERROR
    assert "CUDA GPU" in capsys.readouterr().err
