"""Hostile input to the diff readers: damaged files are a `DiffError`, never a crash or a hang,
and nothing in them runs."""

from __future__ import annotations

import io
import tempfile
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import modelward
from fixtures.diff_models import (
    onnx_classifier,
    safetensors_file,
    safetensors_of_torch_model,
    torch_state_dict,
)
from modelward.config import ScanConfig
from modelward.findings import ScanResult
from modelward.formats.interface import ScanContext
from modelward.modeldiff import DiffError
from modelward.modeldiff._torch import _evaluate, _tensors
from modelward.pickle.machine import Const, DictValue, ListValue, TupleValue
from modelward.pickle.walker import ByteSource, PickleDamage

_WORK = Path(tempfile.mkdtemp(prefix="modelward-diff-hostile-"))
_SEEDS = {
    "pt": torch_state_dict(_WORK / "seed.pt").read_bytes(),
    "legacy": torch_state_dict(_WORK / "seed_legacy.pt", legacy=True).read_bytes(),
    "onnx": onnx_classifier(_WORK / "seed.onnx", trigger=True).read_bytes(),
    "safetensors": safetensors_of_torch_model(_WORK / "seed.safetensors").read_bytes(),
}
_REFERENCE = torch_state_dict(_WORK / "reference.pt")


def _ctx() -> ScanContext:
    return ScanContext(config=ScanConfig(), result=ScanResult("x"), dispatch=lambda b, c: "")


@given(st.binary(max_size=2048))
def test_pickle_machine_survives_any_bytes(data: bytes) -> None:
    ctx = _ctx()
    source = ByteSource(io.BytesIO(data), ctx.check_deadline, ctx.config.limits)
    try:
        value = _evaluate(source, ctx)
    except (DiffError, PickleDamage) as exc:
        assert str(exc)  # a reason a person can read
    else:
        # Random bytes never spell a storage-backed `_rebuild_tensor_v2` call.
        assert list(_tensors(value)) == []


def test_self_referencing_pickle_is_walked_once() -> None:
    """A dict holding itself twice per level would be 2**64 paths if walked naively."""
    root = DictValue()
    root.add([(Const("a"), root), (Const("b"), ListValue([root, TupleValue([root])]))])
    assert list(_tensors(root)) == []


@given(
    st.sampled_from(sorted(_SEEDS)),
    st.lists(st.tuples(st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=8),
    st.integers(0, 2**20),
)
def test_damaged_models_are_diff_errors_or_diffs(
    kind: str, edits: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(_SEEDS[kind])
    for at, value in edits:
        data[at % len(data)] = value
    data = data[: max(1, len(data) - cut % 64)] if cut % 3 == 0 else data
    with tempfile.TemporaryDirectory(dir=_WORK) as folder:
        candidate = Path(folder) / f"candidate.{kind}"
        candidate.write_bytes(bytes(data))
        try:
            result = modelward.diff(_REFERENCE, candidate, weights=True)
        except DiffError:
            return
        assert result.verdict in (
            "identical",
            "weights only (fine-tune-like)",
            "architecture changed",
        )


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=30,
)


@given(
    st.dictionaries(
        st.sampled_from(["class_name", "config", "layers", "input_layers", "output_layers"]),
        _JSON,
    ),
    st.lists(_JSON, max_size=4),
)
def test_keras_configs_of_any_shape(top: dict[str, object], layers: list[object]) -> None:
    import json
    import zipfile

    config = dict(top)
    config["config"] = {"layers": layers, **top}
    with tempfile.TemporaryDirectory(dir=_WORK) as folder:
        path = Path(folder) / "m.keras"
        with zipfile.ZipFile(path, "w") as archive:
            archive.writestr("config.json", json.dumps(config))
        try:
            result = modelward.diff(path, path)
        except DiffError as exc:
            assert "config.json" in str(exc) or "layer" in str(exc)
        else:
            assert result.verdict == "identical"


def test_weights_are_compared_chunk_by_chunk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Chunk boundaries do not change the numbers (a 7-element chunk over 1000 elements)."""
    from modelward.modeldiff import weights

    rng = np.random.default_rng(0)
    a = {"w": rng.standard_normal(1000).astype(np.float32)}
    b = {"w": (a["w"] + rng.standard_normal(1000).astype(np.float32) * 0.1).astype(np.float32)}
    left = safetensors_file(tmp_path / "a.safetensors", a)
    right = safetensors_file(tmp_path / "b.safetensors", b)
    monkeypatch.setattr(weights, "CHUNK", 7)
    (drift,) = modelward.diff(left, right, weights=True).drift or []
    x, y = a["w"].astype(np.float64), b["w"].astype(np.float64)
    assert drift.max_abs == pytest.approx(np.max(np.abs(y - x)))
    assert drift.rel_l2 == pytest.approx(np.linalg.norm(y - x) / np.linalg.norm(x))


def test_pickle_machine_memory_is_bounded() -> None:
    """A list of a million ints is refused under a small `max_pickle_bytes`."""
    import pickle

    from modelward.config import Limits

    data = pickle.dumps(list(range(1_000_000)), protocol=2)
    ctx = ScanContext(
        config=ScanConfig(limits=Limits(max_pickle_bytes=1_000_000)),
        result=ScanResult("x"),
        dispatch=lambda b, c: "",
    )
    source = ByteSource(io.BytesIO(data), ctx.check_deadline, ctx.config.limits)
    with pytest.raises(DiffError, match="max_pickle_bytes"):
        _evaluate(source, ctx)
