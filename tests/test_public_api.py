"""The public API of `import modelward`: its names, their laziness and the shipped types."""

from __future__ import annotations

import importlib
import importlib.resources
import json
import subprocess
import sys

import pytest

import modelward
from modelward._lazy import lazy_exports

#: What `import modelward` offers (docs/api.md); growing it is a decision, not an accident.
PUBLIC = [
    "DiffResult",
    "Finding",
    "GateResult",
    "Limits",
    "Location",
    "ModelwardError",
    "ScanConfig",
    "ScanReport",
    "ScanResult",
    "Severity",
    "UnsafeModelError",
    "__version__",
    "build_bom",
    "check_model_id",
    "check_package",
    "diff",
    "gate",
    "hash_model",
    "run_backdoor_scan",
    "safe_load",
    "scan",
    "scan_model",
    "sign",
    "verify",
]

LAZY_PACKAGES = [
    "modelward",
    "modelward.behaviour",
    "modelward.integrity",
    "modelward.remote",
    "modelward.store",
]

#: Heavy libraries that only the names needing them may import.
HEAVY = ("torch", "cryptography", "sqlalchemy", "httpx", "cyclonedx", "huggingface_hub", "onnx")


def _fresh(code: str) -> set[str]:
    script = f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_the_public_names_are_the_documented_ones() -> None:
    assert sorted(modelward.__all__) == sorted(PUBLIC)


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_every_exported_name_resolves_and_is_listed_by_dir(package: str) -> None:
    module = importlib.import_module(package)
    names = module.__all__
    assert len(set(names)) == len(names)
    if package == "modelward.behaviour":
        pytest.importorskip("torch")
    for name in names:
        assert getattr(module, name) is not None
    assert set(names) <= set(dir(module))


@pytest.mark.parametrize("package", LAZY_PACKAGES)
def test_an_unknown_name_is_an_attribute_error(package: str) -> None:
    module = importlib.import_module(package)
    with pytest.raises(AttributeError, match=f"module '{package}' has no attribute 'nope'"):
        module.nope  # noqa: B018


def test_import_modelward_and_dir_load_no_heavy_library() -> None:
    modules = _fresh(
        "import modelward, modelward.store, modelward.behaviour, modelward.remote, "
        "modelward.integrity\n"
        "for m in (modelward, modelward.store, modelward.behaviour, modelward.remote, "
        "modelward.integrity):\n    dir(m)"
    )
    assert sorted(n for n in HEAVY if n in modules) == []


def test_the_behavioural_scan_says_it_runs_the_model_and_keeps_its_first_name() -> None:
    pytest.importorskip("torch")
    from modelward.behaviour.model_scan import scan_model

    assert modelward.run_backdoor_scan is scan_model
    assert modelward.scan_model is scan_model


def test_the_error_base_is_exported() -> None:
    from modelward.errors import ModelwardError

    assert modelward.ModelwardError is ModelwardError
    assert issubclass(ModelwardError, Exception)


def test_the_installed_package_ships_py_typed() -> None:
    assert importlib.resources.files("modelward").joinpath("py.typed").is_file()


def test_lazy_exports_imports_on_first_read_and_supports_aliases() -> None:
    getattr_, dir_ = lazy_exports("modelward", {"dumps_alias": "json:dumps", "JSONDecoder": "json"})
    assert getattr_("dumps_alias") is json.dumps
    assert getattr_("JSONDecoder") is json.JSONDecoder
    assert {"dumps_alias", "JSONDecoder", "scan"} <= set(dir_())
    with pytest.raises(AttributeError):
        getattr_("dumps")
