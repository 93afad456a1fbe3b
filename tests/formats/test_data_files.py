"""Data files that popular libraries write and ship, which no code-running loader opens, are
notes (info), never alarms; and files a loader does read are read as it reads them."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
import scipy.io
from onnx import TensorProto, helper

import modelward
from modelward.findings import Severity


def _findings(path: Path) -> list[tuple[str, Severity]]:
    [result] = modelward.scan(path).results
    return [(f.rule_id, f.severity) for f in result.findings]


@pytest.mark.parametrize("version", [1, 2])
def test_netcdf_written_by_scipy_is_a_note(tmp_path: Path, version: int) -> None:
    path = tmp_path / "data.bin"  # the name says nothing; the bytes do
    with scipy.io.netcdf_file(path, "w", version=version) as handle:
        handle.createDimension("x", 3)
        handle.createVariable("v", "f4", ("x",))[:] = [1.0, 2.0, 3.0]
    assert _findings(path) == [("MW-FORMAT-NOT-MODEL", Severity.INFO)]


def test_matlab_file_written_by_scipy_is_a_note(tmp_path: Path) -> None:
    path = tmp_path / "weights.pt"
    with path.open("wb") as handle:
        scipy.io.savemat(handle, {"w": np.arange(6.0).reshape(2, 3)})
    assert _findings(path) == [("MW-FORMAT-NOT-MODEL", Severity.INFO)]


def test_python2_npy_header_numpy_ships_is_read_as_np_load_reads_it() -> None:
    shipped = Path(np.__file__).parent / "lib" / "tests" / "data" / "win64python2.npy"
    if not shipped.exists():
        pytest.skip("this numpy wheel ships no test data")
    assert b"(2L," in shipped.read_bytes()[:128]
    assert np.load(shipped).shape == (2,)
    assert [f for f in _findings(shipped) if f[1] >= Severity.MEDIUM] == []


def test_onnx_with_a_multi_line_producer_version_is_onnx(tmp_path: Path) -> None:
    """CatBoost writes `producer_version` as several lines of git information."""
    node = helper.make_node("Identity", ["x"], ["y"])
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    model = helper.make_model(graph, producer_name="CatBoost")
    model.producer_version = "Git info:\n    Commit: 0123abc\n    Branch: tags/v1.2"
    path = tmp_path / "model.onnx"
    onnx.save(model, path)
    [result] = modelward.scan(path).results
    assert result.format == "onnx"
    assert [f for f in result.findings if f.severity >= Severity.MEDIUM] == []
