"""HDF5: legacy Keras `.h5` configs analysed from attributes only; other HDF5 is a note."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

import modelward
from fixtures import keras_models as km
from modelward.findings import Severity
from modelward.formats import hdf5


def test_legacy_h5_saved_by_keras_is_clean(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.benign_model(), tmp_path / "model.h5"))
    assert report.results[0].format == "hdf5"
    assert [f for f in report.findings if f.severity > Severity.INFO] == []


def test_lambda_in_h5_model_config_is_critical(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.lambda_model(), tmp_path / "lambda.h5"))
    [hit] = [f for f in report.findings if f.rule_id == "MW-KERAS-LAMBDA"]
    assert hit.severity == Severity.CRITICAL
    assert "model_config" in (hit.evidence or "")


def test_tf_keras_2_lambda_list_form_is_critical(tmp_path: Path) -> None:
    config = km.legacy_lambda_config(km.os_lambda_bytecode())
    report = modelward.scan(km.write_h5_with_config(tmp_path / "legacy.h5", config))
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("MW-KERAS-LAMBDA", Severity.CRITICAL)
    ]


def test_registered_custom_layer_in_h5_is_medium(tmp_path: Path) -> None:
    report = modelward.scan(km.save(km.custom_object_model(), tmp_path / "custom.h5"))
    custom = [f for f in report.findings if f.rule_id == "MW-KERAS-CUSTOM-OBJECT"]
    assert [f.severity for f in custom] == [Severity.MEDIUM]
    assert "outsidepkg>OutsideDense" in (custom[0].evidence or "")


def test_hdf5_without_keras_config_is_info(tmp_path: Path) -> None:
    report = modelward.scan(km.write_plain_hdf5(tmp_path / "data.h5"))
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("MW-HDF5-NO-KERAS-CONFIG", Severity.INFO)
    ]


def test_hdf5_after_a_user_block_is_found(tmp_path: Path) -> None:
    import h5py

    path = tmp_path / "userblock.h5"
    with h5py.File(path, "w", userblock_size=1024) as f:
        f.attrs["model_config"] = km.legacy_lambda_config(km.os_lambda_bytecode())
    with path.open("r+b") as f:
        f.write(b"\x00not hdf5 at the start")
    report = modelward.scan(path)
    assert report.results[0].format == "hdf5"
    assert report.has_findings_at(Severity.CRITICAL)


def test_truncated_hdf5_is_malformed_not_a_crash(tmp_path: Path) -> None:
    whole = km.save(km.benign_model(), tmp_path / "model.h5").read_bytes()
    cut = tmp_path / "cut.h5"
    cut.write_bytes(whole[:700])
    report = modelward.scan(cut)
    assert report.results[0].format == "hdf5"
    assert report.has_findings_at(Severity.MEDIUM)


def test_hdf5_inside_a_tar_is_read_from_memory(tmp_path: Path) -> None:
    import tarfile

    inner = km.write_h5_with_config(
        tmp_path / "legacy.h5", km.legacy_lambda_config(km.os_lambda_bytecode())
    )
    bundle = tmp_path / "bundle.tar"
    with tarfile.open(bundle, "w") as tar:
        tar.add(inner, arcname="models/legacy.h5")
    [hit] = modelward.scan(bundle).findings
    assert (hit.rule_id, hit.severity) == ("MW-KERAS-LAMBDA", Severity.CRITICAL)
    assert hit.location.members == ("models/legacy.h5",)


def test_scanner_start_up_imports_no_ml_library() -> None:
    probe = (
        "import sys, modelward, modelward.scanner, modelward.cli.main\n"
        "print(sorted(m for m in ('h5py', 'keras', 'torch', 'tensorflow') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_missing_h5py_is_a_medium_finding(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = km.write_plain_hdf5(tmp_path / "data.h5")
    monkeypatch.setitem(sys.modules, "h5py", None)  # what importlib sees when it is absent
    report = modelward.scan(path)
    assert [(f.rule_id, f.severity) for f in report.findings] == [
        ("MW-HDF5-NO-H5PY", Severity.MEDIUM)
    ]


def test_a_crashing_h5py_child_is_a_finding_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = km.write_plain_hdf5(tmp_path / "data.h5")
    # A child that kills itself stands in for the HDF5 library crashing on a crafted file.
    monkeypatch.setattr(hdf5, "_child", segfaulting_child)
    [finding] = modelward.scan(path).findings
    assert (finding.rule_id, finding.severity) == ("MW-HDF5-MALFORMED", Severity.MEDIUM)
    assert "-11" in (finding.evidence or "")


def segfaulting_child(conn: object, source: object, limit: int) -> None:
    """Stands in for `hdf5._child` in the forked child (module level, so it can be sent there)."""
    os.kill(os.getpid(), signal.SIGSEGV)
