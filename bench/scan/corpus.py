"""Build the benchmark corpus: labelled malicious and benign model files, written by the real
libraries where a library writes the format.

Each case is one file or one folder under `<corpus>/files/`; `<corpus>/manifest.json` holds
the labels. Nothing here loads what it writes. Payloads are harmless (`os.system('true')`,
`print`).
"""

from __future__ import annotations

import io
import json
import os
import pickle
import shutil
import struct
import sys
import tarfile
import time
import zipfile
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from scan import pickles

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

os.environ.setdefault("KERAS_BACKEND", "torch")


@dataclass(frozen=True)
class Case:
    """One labelled sample: a file, or a folder judged as a whole (a Hugging Face repo)."""

    path: str
    malicious: bool
    format: str
    technique: str


class Writer:
    """Writes cases under `root` and records their labels."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def path(self, rel: str) -> Path:
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def add(self, rel: str, malicious: bool, fmt: str, technique: str) -> Path:
        self.cases.append(Case(rel, malicious, fmt, technique))
        return self.path(rel)

    def bytes(self, rel: str, data: bytes, malicious: bool, fmt: str, technique: str) -> None:
        self.add(rel, malicious, fmt, technique).write_bytes(data)


# --- pickles -------------------------------------------------------------------------------


def malicious_pickles(w: Writer) -> None:
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        w.bytes(
            f"mal/pickle/reduce_proto{protocol}.pkl",
            pickle.dumps(pickles.SystemPayload(), protocol=protocol),
            True,
            "pickle",
            f"GLOBAL/STACK_GLOBAL posix.system + REDUCE, protocol {protocol}",
        )
    crafted: dict[str, tuple[bytes, str]] = {
        "builtins_exec.pkl": (
            pickles.call("builtins", "exec", ("print('hi')",)),
            "builtins.exec of a code string",
        ),
        "builtins_eval.pkl": (
            pickles.call("builtins", "eval", ("print('hi')",)),
            "builtins.eval of a code string",
        ),
        "subprocess_run.pkl": (
            pickles.call("subprocess", "run", (["true"],)),
            "subprocess.run",
        ),
        "memo_stack_global.pkl": (
            pickles.memo_stack_global(),
            "STACK_GLOBAL with module/name fetched from the memo",
        ),
        "inst.pkl": (pickles.inst(), "INST os.system (protocol 0)"),
        "obj.pkl": (pickles.obj(), "OBJ os.system"),
        "newobj.pkl": (pickles.newobj(), "NEWOBJ subprocess.Popen"),
        "newobj_ex.pkl": (pickles.newobj_ex(), "NEWOBJ_EX subprocess.Popen(shell=True)"),
        "ext2.pkl": (pickles.ext(), "EXT2 extension-registry callable + REDUCE"),
        "second_stream.pkl": (pickles.second_stream(), "benign pickle + malicious second stream"),
        "build_dunder.pkl": (
            pickles.build_dunder(),
            "BUILD on allowed collections.Counter setting __reduce__",
        ),
    }
    for name, (module, attr, args) in pickles.UNLISTED_CALLABLES.items():
        crafted[f"unlisted_{name}.pkl"] = (
            pickles.call(module, attr, args),
            f"unlisted callable {module}.{attr}",
        )
    for name, (data, technique) in crafted.items():
        w.bytes(f"mal/pickle/{name}", data, True, "pickle", technique)
    # Same bytes, names scanners keyed on extensions do not look at.
    payload = pickle.dumps(pickles.SystemPayload(), protocol=4)
    w.bytes("mal/pickle/renamed_weights.bin", payload, True, "pickle", "pickle named .bin")
    w.bytes("mal/pickle/renamed_config.dat", payload, True, "pickle", "pickle named .dat")


def pickle_files(w: Writer) -> None:
    malicious_pickles(w)
    benign_pickles(w)


def benign_pickles(w: Writer) -> None:
    import numpy as np

    plain = {"lr": 0.001, "betas": (0.9, 0.999), "steps": list(range(10)), "name": "adam"}
    for protocol in (2, 4, 5):
        w.bytes(
            f"ok/pickle/dict_proto{protocol}.pkl",
            pickle.dumps(plain, protocol=protocol),
            False,
            "pickle",
            f"plain containers, protocol {protocol}",
        )
    arrays = {"w": np.arange(12, dtype=np.float32).reshape(3, 4), "b": np.zeros(3)}
    w.bytes(
        "ok/pickle/numpy_arrays.pkl",
        pickle.dumps(arrays, protocol=4),
        False,
        "pickle",
        "dict of numpy arrays (numpy reconstruct globals)",
    )


# --- PyTorch -------------------------------------------------------------------------------


def _small_mlp():  # type: ignore[no-untyped-def]
    import torch

    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 4), torch.nn.Softmax(-1)
    )


def torch_files(w: Writer, large_gb: float) -> None:
    import torch

    model = _small_mlp()
    state = model.state_dict()
    torch.save(state, w.add("ok/torch/state_dict.pt", False, "pytorch-zip", "torch.save"))
    torch.save(
        state,
        w.add("ok/torch/state_dict_legacy.pt", False, "pytorch-legacy", "legacy torch.save"),
        _use_new_zipfile_serialization=False,
    )
    torch.save(model, w.add("ok/torch/whole_module.pt", False, "pytorch-zip", "whole nn.Module"))
    mixed = {
        "model": state,
        "optimizer": torch.optim.SGD(model.parameters(), lr=0.1).state_dict(),
        "epoch": 7,
        "half": torch.ones(3, dtype=torch.float16),
        "bf16": torch.ones(3, dtype=torch.bfloat16),
        "ints": torch.arange(5),
    }
    torch.save(mixed, w.add("ok/torch/checkpoint.pth", False, "pytorch-zip", "training checkpoint"))
    scripted = torch.jit.script(model)
    scripted.save(str(w.add("ok/torch/scripted.pt", False, "torchscript", "torch.jit.script")))

    evil = dict(state)
    evil["extra"] = pickles.SystemPayload()
    torch.save(
        evil,
        w.add("mal/torch/state_dict_payload.pt", True, "pytorch-zip", "payload in a state_dict"),
    )
    torch.save(
        evil,
        w.add("mal/torch/legacy_payload.pt", True, "pytorch-legacy", "payload in legacy torch"),
        _use_new_zipfile_serialization=False,
    )
    torch.save(
        {"model": state, "cb": pickles.SystemPayload()},
        w.add("mal/torch/payload_named.bin", True, "pytorch-zip", "torch zip named .bin"),
    )
    _torchscript_unknown_op(w, scripted)
    if large_gb > 0:
        _large_checkpoint(w, large_gb)


def _torchscript_unknown_op(w: Writer, scripted: object) -> None:
    """A TorchScript archive whose code calls an op in a namespace nobody registered."""
    import torch

    buffer = io.BytesIO()
    torch.jit.save(scripted, buffer)
    out = w.add(
        "mal/torch/torchscript_unknown_op.pt",
        True,
        "torchscript",
        "TorchScript code calling torch.ops.evilns.run",
    )
    rewritten = 0
    with (
        zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src,
        zipfile.ZipFile(out, "w", zipfile.ZIP_STORED) as dst,
    ):
        for info in src.infolist():
            data = src.read(info)
            if info.filename.endswith(".py") and b"torch.relu(" in data:
                data = data.replace(b"torch.relu(", b"torch.ops.evilns.run(", 1)
                rewritten += 1
            dst.writestr(info, data)
    if not rewritten:
        raise RuntimeError("TorchScript code layout changed: no torch.relu call to rewrite")


def _large_checkpoint(w: Writer, size_gb: float) -> None:
    """A benign state_dict of a few big tensors, to show what a scan reads of it."""
    import torch

    tensors = 4
    per_tensor = int(size_gb * (1 << 30)) // (tensors * 4)
    state = {f"layers.{i}.weight": torch.full((per_tensor,), 0.5) for i in range(tensors)}
    torch.save(
        state,
        w.add(
            "ok/torch/large_state_dict.pt",
            False,
            "pytorch-zip",
            f"{size_gb:g} GiB state_dict ({tensors} float32 tensors)",
        ),
    )


# --- joblib / scikit-learn / numpy ----------------------------------------------------------


def sklearn_joblib_numpy(w: Writer) -> None:
    import joblib
    import numpy as np
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 5))
    y = (x[:, 0] > 0).astype(int)
    logreg = LogisticRegression().fit(x, y)
    forest = RandomForestClassifier(n_estimators=5, max_depth=3, random_state=0).fit(x, y)
    pipeline = make_pipeline(StandardScaler(), LogisticRegression()).fit(x, y)

    w.bytes(
        "ok/sklearn/logreg.pkl",
        pickle.dumps(logreg, protocol=5),
        False,
        "pickle",
        "scikit-learn LogisticRegression",
    )
    joblib.dump(forest, w.add("ok/sklearn/forest.joblib", False, "joblib", "RandomForest"))
    joblib.dump(
        pipeline,
        w.add("ok/sklearn/pipeline_zlib.joblib", False, "joblib", "Pipeline, zlib"),
        compress=("zlib", 3),
    )
    joblib.dump(
        pipeline,
        w.add("ok/sklearn/pipeline_xz.joblib", False, "joblib", "Pipeline, xz"),
        compress=("xz", 3),
    )

    payload = {"model": logreg, "hook": pickles.SystemPayload()}
    joblib.dump(payload, w.add("mal/joblib/plain.joblib", True, "joblib", "joblib, uncompressed"))
    for method in ("zlib", "gzip", "bz2", "xz", "lzma"):
        joblib.dump(
            payload,
            w.add(f"mal/joblib/{method}.joblib", True, "joblib", f"joblib, {method} compressed"),
            compress=(method, 3),
        )

    np.save(w.add("ok/numpy/floats.npy", False, "numpy", "float32 array"), x.astype(np.float32))
    np.savez(
        w.add("ok/numpy/arrays.npz", False, "numpy-npz", "npz of numeric arrays"),
        x=x,
        y=y,
    )
    np.savez_compressed(
        w.add("ok/numpy/arrays_compressed.npz", False, "numpy-npz", "compressed npz"), x=x
    )
    objects = np.array([pickles.SystemPayload(), 1], dtype=object)
    np.save(
        w.add("mal/numpy/object_array.npy", True, "numpy", "object .npy with payload"),
        objects,
        allow_pickle=True,
    )
    np.savez(
        w.add("mal/numpy/object_array.npz", True, "numpy-npz", "npz member with object array"),
        x=x,
        objects=objects,
    )


# --- safetensors / ONNX / GGUF ---------------------------------------------------------------


def _safetensors_raw(header: dict[str, object], data: bytes, length: int | None = None) -> bytes:
    text = json.dumps(header).encode()
    return struct.pack("<Q", len(text) if length is None else length) + text + data


def safetensors_files(w: Writer) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    tensors = {"w": np.ones((8, 8), dtype=np.float32), "b": np.zeros(8, dtype=np.float32)}
    save_file(
        tensors,
        str(w.add("ok/safetensors/model.safetensors", False, "safetensors", "save_file")),
        metadata={"format": "np"},
    )
    data = bytes(64)
    header = {"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]}}
    w.bytes(
        "mal/safetensors/header_length_past_eof.safetensors",
        _safetensors_raw(header, data, length=1 << 40),
        True,
        "safetensors",
        "header length larger than the file",
    )
    outside = {"a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 1 << 20]}}
    w.bytes(
        "mal/safetensors/offsets_outside.safetensors",
        _safetensors_raw(outside, data),
        True,
        "safetensors",
        "data_offsets past the end of the data",
    )
    overlap = {
        "a": {"dtype": "F32", "shape": [4, 4], "data_offsets": [0, 64]},
        "b": {"dtype": "F32", "shape": [4, 4], "data_offsets": [32, 96]},
    }
    w.bytes(
        "mal/safetensors/overlapping.safetensors",
        _safetensors_raw(overlap, bytes(96)),
        True,
        "safetensors",
        "overlapping tensors",
    )
    w.bytes(
        "mal/safetensors/not_json.safetensors",
        struct.pack("<Q", 20) + b"{'a': __import__}   " + data,
        True,
        "safetensors",
        "header is not JSON",
    )


def onnx_files(w: Writer) -> None:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((4, 4), dtype=np.float32), "W")
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["h"]), helper.make_node("Relu", ["h"], ["y"])],
        "mlp",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [weight],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.save(model, str(w.add("ok/onnx/mlp.onnx", False, "onnx", "MatMul+Relu")))

    custom = helper.make_graph(
        [helper.make_node("Exec", ["x"], ["y"], domain="com.evil.ops", command="true")],
        "custom",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
    )
    custom_model = helper.make_model(
        custom,
        opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.evil.ops", 1)],
    )
    onnx.save(
        custom_model,
        str(w.add("mal/onnx/custom_domain.onnx", True, "onnx", "op in unknown domain")),
    )

    escaping = onnx.TensorProto()
    escaping.name = "W"
    escaping.data_type = TensorProto.FLOAT
    escaping.dims.extend([4, 4])
    escaping.data_location = TensorProto.EXTERNAL
    for key, value in (("location", "../../../../etc/hostname"), ("offset", "0"), ("length", "64")):
        entry = escaping.external_data.add()
        entry.key = key
        entry.value = value
    leaky = helper.make_graph(
        [helper.make_node("MatMul", ["x", "W"], ["y"])],
        "leaky",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])],
        [escaping],
    )
    onnx.save(
        helper.make_model(leaky, opset_imports=[helper.make_opsetid("", 17)]),
        str(w.add("mal/onnx/external_data_escape.onnx", True, "onnx", "external data ../ path")),
    )


CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + "
    "message['content'] + '<|im_end|>' + '\\n'}}{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)
SSTI = (
    "{% for message in messages %}{{ message['content'] }}{% endfor %}"
    "{{ cycler.__init__.__globals__.os.popen('true').read() }}"
)


def gguf_files(w: Writer) -> None:
    import gguf
    import numpy as np

    for rel, template, malicious, technique in (
        ("ok/gguf/chatml.gguf", CHATML, False, "ChatML template"),
        ("mal/gguf/ssti_template.gguf", SSTI, True, "chat template SSTI (os.popen)"),
    ):
        writer = gguf.GGUFWriter(str(w.add(rel, malicious, "gguf", technique)), "llama")
        writer.add_block_count(1)
        writer.add_chat_template(template)
        writer.add_tensor("tok_embd.weight", np.ones((8, 4), dtype=np.float32))
        writer.write_header_to_file()
        writer.write_kv_data_to_file()
        writer.write_tensors_to_file()
        writer.close()


# --- Keras ---------------------------------------------------------------------------------


def keras_files(w: Writer) -> None:
    import keras

    inputs = keras.Input((4,))
    dense = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.Dense(8)(inputs)))
    dense.save(w.add("ok/keras/dense.keras", False, "keras", "Dense model, .keras"))
    dense.save(w.add("ok/keras/dense.h5", False, "keras-h5", "Dense model, legacy HDF5"))

    inputs = keras.Input((4,))
    hidden = keras.layers.Lambda(lambda t: t * 2.0)(inputs)
    with_lambda = keras.Model(inputs, keras.layers.Dense(2)(hidden))
    with_lambda.save(w.add("mal/keras/lambda.keras", True, "keras", "Lambda layer bytecode"))
    with_lambda.save(w.add("mal/keras/lambda.h5", True, "keras-h5", "Lambda layer in HDF5"))


# --- archives and Hugging Face folders --------------------------------------------------------


def _zip_bytes(members: dict[str, bytes]) -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return out.getvalue()


def _tar_gz(path: Path, members: dict[str, bytes]) -> None:
    with tarfile.open(path, "w:gz") as archive:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            archive.addfile(info, io.BytesIO(data))


def archives_and_folders(w: Writer) -> None:
    evil = pickle.dumps(pickles.SystemPayload(), protocol=4)
    benign = pickle.dumps({"weights": [1.0, 2.0]}, protocol=4)
    readme = b"# a model\n"
    w.bytes(
        "mal/archive/model_in.zip",
        _zip_bytes({"README.md": readme, "model/model.pkl": evil}),
        True,
        "zip",
        "zip holding a malicious pickle",
    )
    w.bytes(
        "mal/archive/zip_in_zip.zip",
        _zip_bytes({"inner.zip": _zip_bytes({"weights.pkl": evil})}),
        True,
        "zip",
        "zip in a zip holding a malicious pickle",
    )
    _tar_gz(
        w.add("mal/archive/model_in.tar.gz", True, "tar", "tar.gz holding a malicious pickle"),
        {"model/README.md": readme, "model/model.pkl": evil},
    )
    w.bytes(
        "ok/archive/model.zip",
        _zip_bytes({"README.md": readme, "model.pkl": benign}),
        False,
        "zip",
        "zip holding a benign pickle",
    )
    _tar_gz(
        w.add("ok/archive/model.tar.gz", False, "tar", "tar.gz holding a benign pickle"),
        {"model/README.md": readme, "model/model.pkl": benign},
    )
    _hf_folder(w, "ok/hf/plain_repo", remote_code=False)
    _hf_folder(w, "mal/hf/trust_remote_code_repo", remote_code=True)


def _hf_folder(w: Writer, rel: str, remote_code: bool) -> None:
    import numpy as np
    from safetensors.numpy import save_file

    technique = "auto_map + modeling .py (trust_remote_code)" if remote_code else "config+weights"
    w.cases.append(Case(rel, remote_code, "hf-folder", technique))
    folder = w.path(rel)
    folder.mkdir(parents=True, exist_ok=True)
    config: dict[str, object] = {"model_type": "bert", "hidden_size": 8, "architectures": ["X"]}
    if remote_code:
        config["auto_map"] = {"AutoModel": "modeling_evil.EvilModel"}
        (folder / "modeling_evil.py").write_text(
            "import os\n\nos.system('true')\n\n\nclass EvilModel:\n    pass\n"
        )
    (folder / "config.json").write_text(json.dumps(config, indent=2))
    save_file({"w": np.ones((2, 2), dtype=np.float32)}, str(folder / "model.safetensors"))


# --- the build -------------------------------------------------------------------------------

#: Groups of cases in build order: name -> builder.
GROUPS: dict[str, Callable[[Writer], None]] = {
    "pickle": pickle_files,
    "sklearn-joblib-numpy": sklearn_joblib_numpy,
    "safetensors": safetensors_files,
    "onnx": onnx_files,
    "gguf": gguf_files,
    "keras": keras_files,
    "archives": archives_and_folders,
}


def build(corpus: Path, large_gb: float = 1.0, log: Callable[[str], None] = print) -> list[Case]:
    """Write the corpus under `corpus/files` and the labels to `corpus/manifest.json`."""
    files = corpus / "files"
    if files.exists():
        shutil.rmtree(files)
    files.mkdir(parents=True)
    w = Writer(files)
    steps: list[tuple[str, Callable[[Writer], None]]] = [
        *GROUPS.items(),
        ("torch", lambda w: torch_files(w, large_gb)),
    ]
    for name, builder in steps:
        start = time.monotonic()
        before = len(w.cases)
        try:
            builder(w)
        except Exception as exc:  # a library missing here must not stop the other groups
            for case in w.cases[before:]:
                _remove(files / case.path)
            del w.cases[before:]
            log(f"  {name}: FAILED ({type(exc).__name__}: {exc}); group left out")
            continue
        log(f"  {name}: {len(w.cases) - before} cases in {time.monotonic() - start:.1f} s")
    (corpus / "manifest.json").write_text(
        json.dumps([asdict(c) for c in w.cases], indent=1), encoding="utf-8"
    )
    return w.cases


def _remove(path: Path) -> None:
    if path.is_dir():
        shutil.rmtree(path)
    else:
        path.unlink(missing_ok=True)


def load_manifest(corpus: Path) -> list[Case]:
    return [Case(**entry) for entry in json.loads((corpus / "manifest.json").read_text())]


def case_files(corpus: Path, case: Case) -> Iterator[Path]:
    target = corpus / "files" / case.path
    if target.is_dir():
        yield from sorted(p for p in target.rglob("*") if p.is_file())
    else:
        yield target
