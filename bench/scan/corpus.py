"""Build the benchmark corpus: labelled malicious and benign model files.

Files come from the test fixture factories in `tests/fixtures/` (real libraries write them;
hostile variants edit real files), plus the few cases the fixtures lack (`scan.pickles`).
Each case is one file or one folder under `<corpus>/files/`; `<corpus>/manifest.json` holds
the labels. Nothing here loads what it writes; payloads are harmless (`os.system('true')`).

Kinds: `payload` (code runs, or a strong indicator of it, on load), `malformed` (a hostile
structure: parser attacks, hidden bytes, escaping paths), `benign`.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from scan import pickles

REPO = Path(__file__).resolve().parents[2]
if str(REPO / "tests") not in sys.path:  # the fixtures import each other as `fixtures.*`
    sys.path.insert(0, str(REPO / "tests"))
os.environ.setdefault("KERAS_BACKEND", "torch")

PAYLOAD, MALFORMED, BENIGN = "payload", "malformed", "benign"


@dataclass(frozen=True)
class Case:
    """One labelled sample: a file, or a folder judged as a whole (a model repository)."""

    path: str
    kind: str
    format: str
    technique: str
    #: `evasion:<class>` or `bypass:<id>` for the cases of bench/scan/evasions.py, else "".
    evasion: str = ""

    @property
    def malicious(self) -> bool:
        return self.kind != BENIGN


class Writer:
    """Writes cases under `root` and records their labels."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cases: list[Case] = []

    def add(self, rel: str, kind: str, fmt: str, technique: str) -> Path:
        """Record a case and return its path, parent folders created."""
        self.cases.append(Case(rel, kind, fmt, technique))
        target = self.root / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def bytes(self, rel: str, data: bytes, kind: str, fmt: str, technique: str) -> None:
        self.add(rel, kind, fmt, technique).write_bytes(data)

    def files(self, paths: list[Path], kind: str, fmt: str, what: str) -> None:
        """Record the files a fixture factory wrote, one case each."""
        for path in paths:
            rel = path.relative_to(self.root).as_posix()
            self.cases.append(Case(rel, kind, fmt, f"{what} {path.name}".strip()))

    def folder(self, rel: str) -> Path:
        target = self.root / rel
        target.mkdir(parents=True, exist_ok=True)
        return target


# --- pickles -------------------------------------------------------------------------------


def pickle_files(w: Writer) -> None:
    from fixtures import pickles as fx

    for name, factory in fx.MALICIOUS.items():
        w.bytes(f"mal/pickle/{name}.pkl", factory(), PAYLOAD, "pickle", f"fixture {name}")
    for name, (module, attr, args) in pickles.UNLISTED_CALLABLES.items():
        w.bytes(
            f"mal/pickle/unlisted-{name}.pkl",
            pickles.call(module, attr, args),
            PAYLOAD,
            "pickle",
            f"callable off the usual deny-lists: {module}.{attr}",
        )
    system = fx.call_system_p4()
    for rel, technique in (
        ("mal/pickle/renamed/weights.bin", "pickle named .bin"),
        ("mal/pickle/renamed/model.safetensors", "pickle named .safetensors"),
        ("mal/pickle/renamed/config", "pickle without an extension"),
    ):
        w.bytes(rel, system, PAYLOAD, "pickle", technique)

    for protocol in (0, 2, 4, 5):
        w.bytes(
            f"ok/pickle/containers-p{protocol}.pkl",
            fx.plain_containers(protocol),
            BENIGN,
            "pickle",
            f"plain containers, protocol {protocol}",
        )
    w.bytes("ok/pickle/ordered-dict.pkl", fx.ordered_dict(2), BENIGN, "pickle", "OrderedDict")
    w.bytes("ok/pickle/numpy-arrays.pkl", fx.numpy_arrays(4), BENIGN, "pickle", "numpy arrays")
    for name, data in fx.torch_data_pkls().items():
        w.bytes(f"ok/pickle/torch-{name}.pkl", data, BENIGN, "pickle", f"torch data.pkl: {name}")


# --- PyTorch and TorchScript ----------------------------------------------------------------


def torch_files(w: Writer) -> None:
    from fixtures import torch_models, torchscript_models

    w.files(torch_models.write_benign(w.folder("ok/torch")), BENIGN, "pytorch", "")
    w.files(
        torch_models.write_malicious(w.folder("mal/torch")),
        PAYLOAD,
        "pytorch",
        "payload",
    )
    scripted = torchscript_models.scripted(
        w.add("ok/torchscript/scripted.pt", BENIGN, "torchscript", "torch.jit.script")
    )
    torchscript_models.traced(w.add("ok/torchscript/traced.pt", BENIGN, "torchscript", "trace"))
    for name, (rewrite, _rule, _severity) in torchscript_models.HOSTILE.items():
        rewrite(scripted, w.add(f"mal/torchscript/{name}.pt", PAYLOAD, "torchscript", name))


def large_checkpoint(w: Writer, size_gb: float) -> None:
    from fixtures import torch_models

    torch_models.write_large_checkpoint(
        w.add(LARGE_CASE, BENIGN, "pytorch", f"{size_gb:g} GiB state_dict"),
        megabytes=int(size_gb * 1024),
    )


#: The big benign checkpoint; the run also times every tool on it alone.
LARGE_CASE = "ok/large/state_dict_large.pt"


# --- joblib / scikit-learn / numpy ----------------------------------------------------------


def sklearn_numpy(w: Writer) -> None:
    from fixtures import numpy_arrays, sklearn_models

    w.files(sklearn_models.write_benign(w.folder("ok/sklearn")), BENIGN, "sklearn", "")
    w.files(
        sklearn_models.write_malicious(w.folder("mal/joblib")),
        PAYLOAD,
        "joblib",
        "payload",
    )
    w.files(numpy_arrays.write_benign(w.folder("ok/numpy")), BENIGN, "numpy", "")
    w.files(
        numpy_arrays.write_malicious(w.folder("mal/numpy")),
        PAYLOAD,
        "numpy",
        "object array",
    )


# --- safetensors / ONNX / GGUF ---------------------------------------------------------------


def safetensors_files(w: Writer) -> None:
    from fixtures import safetensors_files as fx

    fx.benign_numpy(w.add("ok/safetensors/numpy.safetensors", BENIGN, "safetensors", "numpy"))
    fx.benign_torch(w.add("ok/safetensors/torch.safetensors", BENIGN, "safetensors", "torch"))
    for name, (factory, _rule) in fx.HOSTILE.items():
        factory(w.add(f"mal/safetensors/{name}.safetensors", MALFORMED, "safetensors", name))


#: ONNX variants that point at code or files outside the model; the rest are malformed.
ONNX_PAYLOADS = ("custom_op", "external_traversal", "external_absolute", "external_symlink")


def onnx_files(w: Writer) -> None:
    """One folder per case: external-data variants write files beside (and above) the model."""
    from fixtures import onnx_models as fx

    benign = {
        "mlp": fx.benign_mlp,
        "control_flow": fx.benign_control_flow,
        "external_data": fx.benign_external_data,
        "local_function": fx.benign_local_function,
    }
    for name, factory in benign.items():
        w.cases.append(Case(f"ok/onnx/{name}", BENIGN, "onnx", f"fixture {name}"))
        factory(w.folder(f"ok/onnx/{name}/model") / "model.onnx")
    for name, (factory, _rule) in fx.HOSTILE.items():
        if name == "over_protobuf_limit":
            continue  # a 2 GiB file: the big-file case is the torch checkpoint
        kind = PAYLOAD if name.startswith(ONNX_PAYLOADS) else MALFORMED
        w.cases.append(Case(f"mal/onnx/{name}", kind, "onnx", f"fixture {name}"))
        factory(w.folder(f"mal/onnx/{name}/model") / "model.onnx")


def gguf_files(w: Writer) -> None:
    from fixtures import chat_templates
    from fixtures import gguf_files as fx

    for name, template in chat_templates.BENIGN.items():
        fx.write_gguf(
            w.add(f"ok/gguf/{name}.gguf", BENIGN, "gguf", f"{name} chat template"),
            chat_template=template,
        )
    for name, (factory, _rule) in fx.HOSTILE.items():
        kind = PAYLOAD if name.startswith("ssti") else MALFORMED
        factory(w.add(f"mal/gguf/{name}.gguf", kind, "gguf", f"fixture {name}"))


# --- Keras ---------------------------------------------------------------------------------


def keras_files(w: Writer) -> None:
    from fixtures import keras_models as fx

    fx.save(fx.benign_model(), w.add("ok/keras/cnn.keras", BENIGN, "keras", "Conv2D model"))
    fx.save(fx.benign_model(), w.add("ok/keras/cnn.h5", BENIGN, "keras-h5", "legacy HDF5"))
    fx.write_plain_hdf5(w.add("ok/keras/plain.h5", BENIGN, "keras-h5", "HDF5 dataset only"))
    fx.save(fx.lambda_model(), w.add("mal/keras/lambda.keras", PAYLOAD, "keras", "Lambda"))
    fx.save(fx.lambda_model(), w.add("mal/keras/lambda.h5", PAYLOAD, "keras-h5", "Lambda"))
    fx.write_h5_with_config(
        w.add("mal/keras/legacy_lambda.h5", PAYLOAD, "keras-h5", "tf.keras 2 Lambda os.system"),
        fx.legacy_lambda_config(fx.os_lambda_bytecode()),
    )
    with tempfile.TemporaryDirectory() as tmp:
        dense = fx.save(fx.benign_model(), Path(tmp) / "dense.keras")
        wrapped = fx.save(fx.torch_wrapper_model(), Path(tmp) / "wrapped.keras")
        for name, source, mutate in (
            ("os_system_activation", dense, fx.os_system_activation),
            ("subprocess_layer", dense, fx.subprocess_layer),
            ("get_file_activation", dense, fx.get_file_activation),
            ("pickled_torch_module", wrapped, fx.pickled_torch_module),
        ):
            fx.rewrite_config(
                source, w.add(f"mal/keras/{name}.keras", PAYLOAD, "keras", name), mutate
            )


# --- archives and Hugging Face folders --------------------------------------------------------


def archives(w: Writer) -> None:
    from fixtures import archives as fx

    evil, benign = fx.malicious_pickle(), fx.benign_pickle()
    readme = b"# a model\n"
    w.bytes(
        "mal/archive/pickle_in.zip",
        fx.zip_bytes({"README.md": readme, "model/model.pkl": evil}),
        PAYLOAD,
        "zip",
        "zip holding a malicious pickle",
    )
    w.bytes(
        "mal/archive/pickle_in.tar.gz",
        gzip.compress(
            fx.tar_bytes([fx.TarEntry("m/README.md", readme), fx.TarEntry("m/model.pkl", evil)])
        ),
        PAYLOAD,
        "tar",
        "tar.gz holding a malicious pickle",
    )
    w.bytes(
        "mal/archive/nested_4.zip",
        fx.nested_archive(4, evil),
        PAYLOAD,
        "zip",
        "pickle 4 containers deep (zip, tar.gz, zip, tar.gz)",
    )
    w.bytes(
        "ok/archive/pickle_in.zip",
        fx.zip_bytes({"README.md": readme, "model.pkl": benign}),
        BENIGN,
        "zip",
        "zip holding a benign pickle",
    )
    w.bytes(
        "ok/archive/pickle_in.tar.gz",
        gzip.compress(fx.tar_bytes([fx.TarEntry("m/model.pkl", benign)])),
        BENIGN,
        "tar",
        "tar.gz holding a benign pickle",
    )


def hf_folders(w: Writer) -> None:
    from fixtures import hf_folders as fx

    plain = "ok/hf/gpt2_tiny"
    w.cases.append(Case(plain, BENIGN, "hf-folder", "save_pretrained + tokenizer"))
    fx.save_tokenizer(fx.save_tiny_model(w.folder(plain)))
    both = "ok/hf/gpt2_tiny_with_bin"
    w.cases.append(Case(both, BENIGN, "hf-folder", "safetensors + pytorch_model.bin"))
    fx.save_tiny_model(w.folder(both), pickle_weights=True)
    remote = "mal/hf/trust_remote_code"
    w.cases.append(Case(remote, PAYLOAD, "hf-folder", "auto_map + modeling .py (os.system)"))
    with tempfile.TemporaryDirectory() as tmp:
        fx.save_custom_code_model(w.folder(remote), Path(tmp), payload="return os.system('true')")
    template = "mal/hf/hostile_chat_template"
    w.cases.append(Case(template, PAYLOAD, "hf-folder", "tokenizer chat template SSTI"))
    fx.save_tokenizer(fx.save_tiny_model(w.folder(template)), fx.HOSTILE_TEMPLATE)


# --- the build -------------------------------------------------------------------------------

#: Groups of cases in build order.
GROUPS: dict[str, Callable[[Writer], None]] = {
    "pickle": pickle_files,
    "torch": torch_files,
    "sklearn+numpy": sklearn_numpy,
    "safetensors": safetensors_files,
    "onnx": onnx_files,
    "gguf": gguf_files,
    "keras": keras_files,
    "archives": archives,
    "hf": hf_folders,
}


def build(corpus: Path, large_gb: float = 1.0, log: Callable[[str], None] = print) -> list[Case]:
    """Write the corpus under `corpus/files` and the labels to `corpus/manifest.json`.

    A group whose library is missing is left out (and said so); the others still build.
    """
    files = corpus / "files"
    if files.exists():
        shutil.rmtree(files)
    files.mkdir(parents=True)
    w = Writer(files)
    from scan.evasions import EVASION_GROUPS  # it imports this module

    steps = list(GROUPS.items()) + list(EVASION_GROUPS.items())
    if large_gb > 0:
        steps.append(("large", lambda w: large_checkpoint(w, large_gb)))
    for name, builder in steps:
        start = time.monotonic()
        before = len(w.cases)
        try:
            builder(w)
        except Exception as exc:
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
