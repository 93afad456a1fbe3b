"""AI-BOM: CycloneDX 1.6 documents of real model folders, checked against the bundled schema."""

from __future__ import annotations

import hashlib
import json
import os
from functools import cache
from pathlib import Path
from typing import Any

import cyclonedx
import jsonschema
import pytest
from referencing import Registry, Resource

from fixtures.model_cards import REVISION, write_hf_snapshot, write_model_folder
from fixtures.pickles import call_system_p4
from modelward.cli.main import main
from modelward.provenance.bom import (
    BomError,
    PythonPackage,
    build_bom,
    front_matter,
    installed_packages,
    read_requirements,
)

_SCHEMAS = (
    "bom-1.6.SNAPSHOT.schema.json",
    "spdx.SNAPSHOT.schema.json",
    "jsf-0.82.SNAPSHOT.schema.json",
)


@cache
def _validator() -> jsonschema.Draft7Validator:
    """The CycloneDX 1.6 schema bundled with cyclonedx-python-lib; its $refs resolved locally."""
    res = Path(cyclonedx.__file__).parent / "schema" / "_res"
    docs = {n: json.loads((res / n).read_text(encoding="utf-8")) for n in _SCHEMAS}
    registry: Registry[Any] = Registry().with_resources(
        (f"http://cyclonedx.org/schema/{n}", Resource.from_contents(d)) for n, d in docs.items()
    )
    return jsonschema.Draft7Validator(docs[_SCHEMAS[0]], registry=registry)


def assert_valid(doc: dict[str, Any]) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in _validator().iter_errors(doc)]
    assert errors == []
    assert doc["specVersion"] == "1.6"


def _by_type(doc: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    return [c for c in doc.get("components", []) if c["type"] == kind]


def _props(component: dict[str, Any], name: str) -> list[str]:
    return [p["value"] for p in component.get("properties", []) if p["name"] == name]


def test_hf_snapshot_bom_is_valid_and_complete(tmp_path: Path) -> None:
    snapshot = write_hf_snapshot(tmp_path / "hub")
    doc = build_bom(snapshot)
    assert_valid(doc)
    (model,) = _by_type(doc, "machine-learning-model")
    assert model["name"] == "acme/tiny-bert"
    assert model["purl"] == f"pkg:huggingface/acme/tiny-bert@{REVISION}"
    assert model["licenses"] == [{"license": {"id": "Apache-2.0"}}]
    assert model["tags"] == ["bert", "tiny"]
    assert _props(model, "huggingface:language") == ["en", "fr"]
    assert _props(model, "modelward:format") == ["safetensors"]
    params = model["modelCard"]["modelParameters"]
    assert params["task"] == "fill-mask"
    assert params["architectureFamily"] == "bert"
    assert params["modelArchitecture"] == "BertForMaskedLM"
    data = {d["bom-ref"]: d["name"] for d in _by_type(doc, "data")}
    assert sorted(data.values()) == ["bookcorpus", "wikipedia"]
    assert {d["ref"] for d in params["datasets"]} == set(data)
    (ancestor,) = model["pedigree"]["ancestors"]
    assert ancestor["purl"] == "pkg:huggingface/google-bert/bert-base-uncased"
    files = {f["name"]: f for f in model["components"]}
    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    weight = files["model.safetensors"]
    expected = hashlib.sha256((snapshot / "model.safetensors").read_bytes()).hexdigest()
    assert weight["hashes"] == [{"alg": "SHA-256", "content": expected}]
    assert _props(weight, "modelward:format") == ["safetensors"]


def test_folder_of_models_and_a_loose_weight(tmp_path: Path) -> None:
    write_model_folder(tmp_path / "models" / "a")
    write_model_folder(tmp_path / "models" / "nested" / "b", card=None)
    (tmp_path / "models" / "notes.txt").write_text("not a model\n", encoding="utf-8")
    loose = tmp_path / "models" / "weights.bin"
    loose.write_bytes(call_system_p4())
    doc = build_bom(tmp_path / "models", scan=True)
    assert_valid(doc)
    models = {m["name"]: m for m in _by_type(doc, "machine-learning-model")}
    assert sorted(models) == ["a", "b", "weights.bin"]
    assert "modelCard" in models["b"]  # config.json alone gives architecture
    assert "licenses" not in models["b"]
    single = models["weights.bin"]
    assert single["hashes"] == [
        {"alg": "SHA-256", "content": hashlib.sha256(loose.read_bytes()).hexdigest()}
    ]
    assert _props(single, "modelward:format") == ["pickle"]
    assert _props(single, "modelward:scan:verdict") == ["critical"]
    assert any("os" in f for f in _props(single, "modelward:scan:finding"))
    weight = next(f for f in models["a"]["components"] if f["name"] == "model.safetensors")
    assert _props(weight, "modelward:scan:verdict") == ["clean"]


def test_requirements_and_pylock_become_library_components(tmp_path: Path) -> None:
    reqs = tmp_path / "requirements.txt"
    reqs.write_text(
        "# pinned\nnumpy==1.26.4\nTorch[cuda] == 2.13.0 ; python_version>'3'\nrich>=13\n"
        "-r other.txt\ngit+https://example.invalid/x.git\n",
        encoding="utf-8",
    )
    assert read_requirements(reqs) == [
        PythonPackage("numpy", "1.26.4"),
        PythonPackage("Torch", "2.13.0"),
        PythonPackage("rich", None),
    ]
    lock = tmp_path / "pylock.toml"
    lock.write_text(
        'lock-version = "1.0"\n[[packages]]\nname = "safetensors"\nversion = "0.4.5"\n',
        encoding="utf-8",
    )
    assert read_requirements(lock) == [PythonPackage("safetensors", "0.4.5")]
    doc = build_bom(write_model_folder(tmp_path / "m"), packages=read_requirements(reqs))
    assert_valid(doc)
    purls = sorted(c["purl"] for c in _by_type(doc, "library"))
    assert purls == ["pkg:pypi/numpy@1.26.4", "pkg:pypi/rich", "pkg:pypi/torch@2.13.0"]


def test_environment_packages_include_installed_ones() -> None:
    names = {p.name.lower(): p.version for p in installed_packages()}
    assert names["cyclonedx-python-lib"]
    assert names["jsonschema"]


def test_front_matter_subset() -> None:
    meta = front_matter(
        "---\nlicense: 'mit'\ndatasets: [a/b, c]\nmodel-index:\n  - name: x\n    results: []\n"
        "language:\n- en # comment\n---\n# body\nlicense: gpl\n"
    )
    assert meta == {"license": "mit", "datasets": ["a/b", "c"], "language": ["en"]}
    assert front_matter("# no front matter\n") == {}


def test_cli_writes_valid_bom_and_fails_on_missing_path(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    snapshot = write_hf_snapshot(tmp_path / "hub")
    out = tmp_path / "bom.json"
    assert main(["bom", str(snapshot), "--environment", "--output", str(out)]) == 0
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert_valid(doc)
    assert any(c["name"] == "cyclonedx-python-lib" for c in _by_type(doc, "library"))
    assert main(["bom", str(tmp_path / "missing")]) == 2
    assert "no such file" in capsys.readouterr().err
    with pytest.raises(BomError):
        build_bom(tmp_path / "missing")


def test_snapshot_of_symlinks_to_blobs(tmp_path: Path) -> None:
    """A real cache snapshot is links into `../../blobs`; hashes are the content's."""
    saved = write_model_folder(tmp_path / "saved")
    repo = tmp_path / "hub" / "models--acme--linked"
    snapshot = repo / "snapshots" / REVISION
    snapshot.mkdir(parents=True)
    (repo / "blobs").mkdir()
    for path in sorted(saved.iterdir()):
        digest = hashlib.sha256(path.read_bytes()).hexdigest()
        (repo / "blobs" / digest).write_bytes(path.read_bytes())
        os.symlink(Path("..", "..", "blobs", digest), snapshot / path.name)
    doc = build_bom(snapshot)
    assert_valid(doc)
    (model,) = _by_type(doc, "machine-learning-model")
    assert model["purl"] == f"pkg:huggingface/acme/linked@{REVISION}"
    hashes = {f["name"]: f["hashes"][0]["content"] for f in model["components"]}
    assert hashes["config.json"] == hashlib.sha256((saved / "config.json").read_bytes()).hexdigest()


def test_models_with_the_same_name_get_distinct_refs(tmp_path: Path) -> None:
    write_model_folder(tmp_path / "x" / "model")
    write_model_folder(tmp_path / "y" / "model")
    doc = build_bom(tmp_path)
    assert_valid(doc)
    refs = [m["bom-ref"] for m in _by_type(doc, "machine-learning-model")]
    assert refs == ["model:model", "model:model#2"]


def test_scan_puts_folder_findings_on_the_model(tmp_path: Path) -> None:
    """`auto_map` code paths are a finding on the folder, so on the model component."""
    folder = write_model_folder(tmp_path / "m")
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    config["auto_map"] = {"AutoModel": "../../evil.Model"}
    (folder / "config.json").write_text(json.dumps(config), encoding="utf-8")
    doc = build_bom(folder, scan=True)
    assert_valid(doc)
    (model,) = _by_type(doc, "machine-learning-model")
    assert _props(model, "modelward:scan:verdict") == ["high"]
    assert any("MW-HF-CODE-PATH" in f for f in _props(model, "modelward:scan:finding"))
    clean = write_model_folder(tmp_path / "clean")
    (model,) = _by_type(build_bom(clean, scan=True), "machine-learning-model")
    assert _props(model, "modelward:scan:verdict") == ["clean"]


def test_loose_file_is_a_model_by_its_bytes(tmp_path: Path) -> None:
    (tmp_path / "weights.dat").write_bytes(call_system_p4())  # a pickle under another name
    (tmp_path / "notes.md").write_text("# notes\n", encoding="utf-8")
    doc = build_bom(tmp_path)
    assert_valid(doc)
    (model,) = _by_type(doc, "machine-learning-model")
    assert model["name"] == "weights.dat"
    assert _props(model, "modelward:format") == ["pickle"]


def test_bom_refs_are_unique_when_models_share_a_base_and_datasets(tmp_path: Path) -> None:
    write_model_folder(tmp_path / "a")
    write_model_folder(tmp_path / "b")
    doc = build_bom(tmp_path)
    assert_valid(doc)
    refs: list[str] = []

    def collect(components: list[dict[str, Any]]) -> None:
        for c in components:
            refs.append(c["bom-ref"])
            collect(c.get("components", []))
            collect(c.get("pedigree", {}).get("ancestors", []))

    collect(doc["components"])
    assert len(refs) == len(set(refs))
    assert sum(c["type"] == "data" for c in doc["components"]) == 2  # shared, not repeated


def test_cli_unwritable_output_is_an_error(tmp_path: Path) -> None:
    folder = write_model_folder(tmp_path / "m")
    assert main(["bom", str(folder), "-o", str(tmp_path / "no" / "such" / "bom.json")]) == 2
    assert main(["bom", str(folder), "-r", str(tmp_path / "missing.txt")]) == 2
