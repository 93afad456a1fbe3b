"""Files that popular libraries write in ordinary use scan without a medium-or-worse finding.

One case per kind of file, for the packages of the knowledge base that the dev extra installs
(torch, scikit-learn, numpy, scipy, joblib, keras, transformers, safetensors, gguf, onnx,
h5py). Each case writes real files with the real library into `tmp_path`, exactly as its users
do (`torch.save`, `pickle.dump`, `joblib.dump`, `np.save`, `model.save`, ...), and the scan
must stay below medium: a security team that sees an alarm on every Trainer or Lightning
checkpoint turns the scanner off. bench/everyday.py measures the same on a larger corpus.
"""

from __future__ import annotations

import argparse
import os
import pathlib
import pickle
import random
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import modelward
from modelward.findings import Severity

os.environ.setdefault("KERAS_BACKEND", "torch")

#: A case writes its files under the folder it is given.
Writer = Callable[[Path], None]
CASES: dict[str, Writer] = {}


def case(name: str) -> Callable[[Writer], Writer]:
    def register(func: Writer) -> Writer:
        CASES[name] = func
        return func

    return register


def _pickle_all(folder: Path, stem: str, obj: object, protocols: range = range(6)) -> None:
    """`pickle.dump` in every protocol the object allows (an older protocol some objects
    refuse, such as a KD-tree under 0 and 1, is left out by the case itself)."""
    for proto in protocols:
        with (folder / f"{stem}.p{proto}.pkl").open("wb") as stream:
            pickle.dump(obj, stream, protocol=proto)


def _mlp() -> Any:
    import torch.nn as nn

    return nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.1), nn.Linear(8, 2))


def _tiny_bert() -> Any:
    import transformers

    config = transformers.BertConfig(
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        vocab_size=64,
        max_position_embeddings=32,
    )
    return transformers.BertForSequenceClassification(config)


# --- torch and transformers ------------------------------------------------------------------


@case("training_args_bin")
def _training_args(folder: Path) -> None:
    # TrainingArguments needs accelerate (transformers[torch]); every user who writes this
    # file has it. The dev extra does not install it: then there is nothing to test.
    pytest.importorskip("accelerate")
    import torch
    import transformers

    args = transformers.TrainingArguments(
        output_dir=str(folder / "out"), report_to=[], learning_rate=3e-5, num_train_epochs=1
    )
    torch.save(args, folder / "training_args.bin")


@case("torch_whole_sequential")
def _whole_sequential(folder: Path) -> None:
    import torch

    torch.save(_mlp(), folder / "model.pt")
    torch.save(_mlp(), folder / "model_legacy.pt", _use_new_zipfile_serialization=False)


@case("transformers_whole_model")
def _whole_transformers(folder: Path) -> None:
    import torch

    model = _tiny_bert()
    torch.save(model, folder / "model.pt")
    torch.save(model.state_dict(), folder / "pytorch_model.bin")


@case("torch_optimizer_scheduler_state")
def _optimizer_scheduler(folder: Path) -> None:
    import torch

    model = _mlp()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    sched = torch.optim.lr_scheduler.StepLR(opt, 10)
    plateau = torch.optim.lr_scheduler.ReduceLROnPlateau(torch.optim.SGD(model.parameters()))
    torch.save(opt.state_dict(), folder / "optimizer.pt")
    torch.save(sched.state_dict(), folder / "scheduler.pt")
    torch.save(
        {
            "epoch": 2,
            "model": model.state_dict(),
            "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(),
            "plateau": plateau.state_dict(),
        },
        folder / "checkpoint.pt",
    )


@case("torch_rng_state")
def _rng_state(folder: Path) -> None:
    import torch

    torch.save(
        {
            "python": random.getstate(),
            "numpy": np.random.get_state(),
            "cpu": torch.random.get_rng_state(),
        },
        folder / "rng_state.pth",
    )


@case("lightning_style_hparams")
def _lightning_hparams(folder: Path) -> None:
    import torch

    hparams = argparse.Namespace(lr=1e-3, batch_size=32, data_dir=pathlib.PosixPath("/data/x"))
    torch.save(
        {
            "epoch": 1,
            "global_step": 10,
            "state_dict": _mlp().state_dict(),
            "hyper_parameters": {"hparams": hparams, "out_dir": pathlib.PosixPath("runs")},
            "hparams_name": "kwargs",
        },
        folder / "epoch=1-step=10.ckpt",
    )


@case("transformers_save_pretrained")
def _save_pretrained(folder: Path) -> None:
    model = _tiny_bert()
    model.save_pretrained(folder / "safe")
    model.save_pretrained(folder / "bin", safe_serialization=False)


# --- scipy ------------------------------------------------------------------------------------


@pytest.fixture(params=["csr", "csc", "coo", "lil", "dok"])
def sparse_format(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _sparse(folder: Path, fmt: str) -> None:
    from scipy import sparse

    dense = np.array([[1.0, 0, 2], [0, 0, 3], [4, 5, 0]])
    _pickle_all(folder, f"{fmt}_matrix", getattr(sparse, f"{fmt}_matrix")(dense))
    _pickle_all(folder, f"{fmt}_array", getattr(sparse, f"{fmt}_array")(dense), range(2, 6))


@case("scipy_kdtree")
def _kdtree(folder: Path) -> None:
    from scipy import spatial

    points = np.random.default_rng(0).normal(size=(20, 3))
    _pickle_all(folder, "kdtree", spatial.KDTree(points), range(2, 6))


@case("scipy_frozen_distribution")
def _frozen(folder: Path) -> None:
    from scipy import stats

    _pickle_all(folder, "norm", stats.norm(0, 1))
    _pickle_all(folder, "gamma", stats.gamma(2.0, scale=1.5), range(2, 6))


# --- scikit-learn and joblib ----------------------------------------------------------------


def _xy() -> tuple[Any, Any]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(30, 3))
    return x, (x[:, 0] > 0).astype(int)


@case("sklearn_gaussian_process_kernel")
def _gaussian_process(folder: Path) -> None:
    import joblib
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    x, y = _xy()
    kernel = ConstantKernel(1.0) * RBF(1.0) + WhiteKernel(0.1)
    gp = GaussianProcessRegressor(kernel).fit(x, y)
    _pickle_all(folder, "gp", gp, range(2, 6))
    joblib.dump(gp, folder / "gp.joblib")


@case("sklearn_function_transformer_log1p")
def _function_transformer(folder: Path) -> None:
    import joblib
    from sklearn.preprocessing import FunctionTransformer

    x, _ = _xy()
    ft = FunctionTransformer(np.log1p, inverse_func=np.expm1).fit(np.abs(x))
    _pickle_all(folder, "log1p", ft, range(2, 6))
    joblib.dump(ft, folder / "log1p.joblib")


@case("joblib_compressed_dump")
def _joblib_compressed(folder: Path) -> None:
    import joblib
    from sklearn.ensemble import RandomForestClassifier

    x, y = _xy()
    data = {"weights": np.ones((20, 5)), "ids": np.arange(10), "names": ["a", "b"]}
    joblib.dump(data, folder / "arrays.joblib", compress=3)
    joblib.dump(data, folder / "arrays.joblib.xz", compress=("xz", 3))
    forest = RandomForestClassifier(3, random_state=0).fit(x, y)
    joblib.dump(forest, folder / "forest.joblib.z", compress=("zlib", 3))


# --- numpy ------------------------------------------------------------------------------------


@case("numpy_matrix")
def _matrix(folder: Path) -> None:
    matrix = np.matrix([[1, 2], [3, 4]])
    _pickle_all(folder, "matrix", matrix)
    np.save(folder / "matrix.npy", matrix)


@case("numpy_masked_array")
def _masked(folder: Path) -> None:
    _pickle_all(folder, "masked", np.ma.masked_array([1.0, 2.0, 3.0], mask=[0, 1, 0]))


@case("numpy_object_array_npy")
def _object_npy(folder: Path) -> None:
    obj = np.array([{"a": 1}, [1, 2], "text", None, 3.5], dtype=object)
    np.save(folder / "objects.npy", obj, allow_pickle=True)


# --- keras, safetensors, gguf, onnx, h5py ----------------------------------------------------


@case("keras_keras_and_h5")
def _keras(folder: Path) -> None:
    import keras

    model = keras.Sequential(
        [keras.Input((4,)), keras.layers.Dense(8, activation="relu"), keras.layers.Dense(2)]
    )
    model.compile(optimizer="adam", loss="mse")
    model.save(folder / "model.keras")
    model.save(folder / "model.h5")
    model.save_weights(folder / "model.weights.h5")


@case("safetensors_with_metadata")
def _safetensors(folder: Path) -> None:
    import torch
    from safetensors.torch import save_file

    save_file({"w": torch.randn(4, 4)}, folder / "model.safetensors", metadata={"format": "pt"})


@case("gguf_writer")
def _gguf(folder: Path) -> None:
    import gguf

    writer = gguf.GGUFWriter(str(folder / "tiny.gguf"), "llama")
    writer.add_name("tiny")
    writer.add_context_length(32)
    writer.add_token_list(["a", "b", "c"])
    writer.add_tensor("token_embd.weight", np.ones((3, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


@case("onnx_helper_and_torch_export")
def _onnx(folder: Path) -> None:
    onnx = pytest.importorskip("onnx")
    import torch
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 2), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["X", "W"], ["Y"])],
        "tiny",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    onnx.save(helper.make_model(graph), str(folder / "helper.onnx"))
    torch.onnx.export(_mlp().eval(), (torch.randn(1, 4),), str(folder / "mlp.onnx"), dynamo=False)


@case("h5py_datasets_attrs")
def _h5py(folder: Path) -> None:
    h5py = pytest.importorskip("h5py")

    with h5py.File(folder / "data.h5", "w") as f:
        f.create_dataset("data", data=np.arange(100.0), compression="gzip")
        f.create_group("meta").attrs["name"] = "run-1"


# --- the tests --------------------------------------------------------------------------------


def _assert_quiet(folder: Path) -> None:
    files = sorted(p for p in folder.rglob("*") if p.is_file())
    assert files, "the case wrote nothing"
    report = modelward.scan(folder)
    alarms = [
        f"{Path(r.path).name}: {f.severity.name.lower()} {f.rule_id}: {f.message}"
        for r in report.results
        for f in r.findings
        if f.severity >= Severity.MEDIUM
    ]
    assert not alarms, "medium-or-worse findings on ordinary files:\n" + "\n".join(alarms)


@pytest.mark.parametrize("name", list(CASES))
def test_everyday_file_scans_below_medium(name: str, tmp_path: Path) -> None:
    CASES[name](tmp_path)
    _assert_quiet(tmp_path)


def test_pickled_scipy_sparse_matrix_scans_below_medium(sparse_format: str, tmp_path: Path) -> None:
    _sparse(tmp_path, sparse_format)
    _assert_quiet(tmp_path)
