"""HDF5: legacy Keras `.h5` configs analysed from attributes only; other HDF5 is a note."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest

import modelward
from fixtures import hdf5_files as hf
from fixtures import keras_models as km
from modelward.config import Limits, ScanConfig
from modelward.findings import Finding, Severity


def findings(path: Path, config: ScanConfig | None = None) -> list[tuple[str, Severity]]:
    report = modelward.scan(path, config=config) if config else modelward.scan(path)
    assert report.results[0].format == "hdf5"
    return [(f.rule_id, f.severity) for f in report.findings]


def lambda_config() -> str:
    return km.legacy_lambda_config(km.os_lambda_bytecode())


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


def test_keras2_fixed_length_bytes_config_is_read(tmp_path: Path) -> None:
    path = hf.keras2_fixed_bytes(tmp_path / "keras2.h5", lambda_config())
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_dense_attribute_storage_is_read(tmp_path: Path) -> None:
    path = hf.dense_attributes(tmp_path / "dense.h5", lambda_config())
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_config_over_64_kib_in_a_huge_heap_object_is_read(tmp_path: Path) -> None:
    # Over 64 KiB a fixed-length attribute only fits densely, as a "huge" heap object.
    config = km.legacy_lambda_config(km.os_lambda_bytecode())
    padded = config[:-2] + ', "pad": "' + "x" * 80_000 + '"}}'
    path = hf.keras2_fixed_bytes(tmp_path / "big.h5", padded, libver="latest")
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_hundreds_of_attributes_deepen_the_name_index(tmp_path: Path) -> None:
    path = tmp_path / "many.h5"
    with h5py.File(path, "w", libver=("v108", "v108")) as f:
        for i in range(400):
            f.attrs[f"attribute_{i:04d}"] = "x" * 40
        f.attrs["model_config"] = lambda_config()
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_committed_string_datatype_is_followed(tmp_path: Path) -> None:
    path = hf.committed_string_type(tmp_path / "committed.h5", lambda_config())
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


@pytest.mark.parametrize("others", [3, 60])
def test_attributes_in_the_shared_message_heap_are_read(tmp_path: Path, others: int) -> None:
    path = hf.shared_messages(tmp_path / "sohm.h5", lambda_config(), others)
    if path is None:
        pytest.skip("h5py's HDF5 library does not expose H5Pset_shared_mesg_index")
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_latest_format_vlen_config_is_read(tmp_path: Path) -> None:
    path = tmp_path / "latest.h5"
    with h5py.File(path, "w", libver="latest") as f:
        f.attrs["model_config"] = lambda_config()
    assert findings(path) == [("MW-KERAS-LAMBDA", Severity.CRITICAL)]


def test_array_or_number_config_is_not_text(tmp_path: Path) -> None:
    path = tmp_path / "notext.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = np.array([b"{}"])
        f.attrs["training_config"] = 3
    assert sorted(findings(path)) == [("MW-KERAS-CONFIG-MALFORMED", Severity.MEDIUM)] * 2


def test_empty_config_attribute_is_malformed_as_h5py_sees_it(tmp_path: Path) -> None:
    path = tmp_path / "empty.h5"
    with h5py.File(path, "w") as f:
        f.attrs["model_config"] = h5py.Empty("S10")
    assert findings(path) == [("MW-HDF5-MALFORMED", Severity.MEDIUM)]


def test_config_over_the_limit_is_reported_by_size(tmp_path: Path) -> None:
    path = hf.keras2_fixed_bytes(tmp_path / "keras2.h5", lambda_config())
    small = ScanConfig(limits=Limits(max_header_bytes=100))
    assert findings(path, small) == [("MW-KERAS-CONFIG-TOO-LARGE", Severity.MEDIUM)]
    vlen = km.write_h5_with_config(tmp_path / "vlen.h5", lambda_config())
    assert findings(vlen, small) == [("MW-KERAS-CONFIG-TOO-LARGE", Severity.MEDIUM)]


def malformed(path: Path) -> Finding:
    report = modelward.scan(path)
    assert report.results[0].format == "hdf5"
    assert not report.results[0].errors
    [finding] = report.findings
    assert (finding.rule_id, finding.severity) == ("MW-HDF5-MALFORMED", Severity.MEDIUM)
    return finding


def test_cyclic_continuation_chunks_are_malformed(tmp_path: Path) -> None:
    data = km.write_h5_with_config(tmp_path / "ok.h5", lambda_config()).read_bytes()
    path = tmp_path / "cycle.h5"
    path.write_bytes(hf.cyclic_continuation(data))
    assert "cycle" in (malformed(path).evidence or "")


def test_huge_lengths_and_addresses_are_malformed(tmp_path: Path) -> None:
    data = km.write_h5_with_config(tmp_path / "ok.h5", lambda_config()).read_bytes()
    for name, address, length in [("len", 64, 2**62), ("addr", 2**60, 64)]:
        path = tmp_path / f"{name}.h5"
        path.write_bytes(hf.with_root_continuation(data, address, length))
        malformed(path)


def test_a_bad_metadata_checksum_is_malformed_as_in_hdf5(tmp_path: Path) -> None:
    data = bytearray(hf.dense_attributes(tmp_path / "d.h5", lambda_config()).read_bytes())
    data[data.index(b"BTHD") + 8] ^= 0x01
    path = tmp_path / "checksum.h5"
    path.write_bytes(bytes(data))
    assert "checksum" in (malformed(path).evidence or "")


def test_scanning_an_h5_imports_no_h5py_numpy_or_multiprocessing(tmp_path: Path) -> None:
    path = hf.dense_attributes(tmp_path / "dense.h5", lambda_config())
    probe = (
        "import sys, modelward\n"
        f"report = modelward.scan({str(path)!r})\n"
        "assert report.findings, report\n"
        "print(sorted(m for m in ('h5py', 'numpy', 'multiprocessing') if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
