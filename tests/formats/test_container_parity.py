"""Differential tests: modelward reads the container bytes the real loaders read.

For each evasion class a harmless twin is built and loaded by the real loader
(`torch.load(weights_only=False)`, `np.load`, `zipfile`) to prove the path reaches the
member it would unpickle (a data marker comes back, or the import of the missing module
`mw_probe` fails); the malicious twin (`os.system('true')` in that member) is only ever
scanned, and must be critical.
"""

from __future__ import annotations

import io
import pickle
import warnings
import zipfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

import modelward
from fixtures.containers import (
    ZipEntry,
    build_zip,
    central_directory,
    end_record,
    legacy_tar_checkpoint,
    local_records,
    marker_pickle,
    payload_pickle,
    probe_pickle,
    torch_entries,
    with_member,
    zip64_locator,
    zip64_record,
)
from modelward.findings import ScanResult, Severity

DATA = b"archive/data.pkl"


def _scan(path: Path) -> ScanResult:
    return modelward.scan(path).results[0]


def _torch_load(path: Path) -> object:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.load(path, weights_only=False)


def _critical(result: ScanResult) -> bool:
    return any(f.severity == Severity.CRITICAL for f in result.findings)


def _second_directory_in_comment(first: bytes, second: bytes) -> bytes:
    """A checkpoint whose real end record ends the file in a scanner's eyes, while a second
    directory and end record sit inside its comment: both loaders take the last record."""
    benign = torch_entries(first)
    evil = [e for e in torch_entries(second) if e.name == DATA]
    local, offsets = local_records(benign)
    extra_local, extra_offsets = local_records(evil, len(local))
    cd = central_directory(benign, offsets)
    cd_offset = len(local) + len(extra_local)
    body = local + extra_local + cd
    # The second directory: the benign members but data.pkl, which is the extra record.
    swapped = [e for e in benign if e.name != DATA] + evil
    swapped_offsets = [o for e, o in zip(benign, offsets, strict=True) if e.name != DATA]
    cd2 = central_directory(swapped, [*swapped_offsets, *extra_offsets])
    first_end = len(body)
    cd2_offset = first_end + 22
    # Its comment length does not reach the end of the file (loaders ignore it).
    inner = end_record(len(swapped), len(cd2), cd2_offset, comment_len=7)
    comment = cd2 + inner
    return body + end_record(len(benign), len(cd), cd_offset, comment)


def _zip64_locator_elsewhere(first: bytes, second: bytes) -> bytes:
    """zipfile reads the ZIP64 record right before the locator; miniz follows the locator's
    offset to another record, whose directory lists another data.pkl."""
    benign = torch_entries(first)
    evil = [e for e in torch_entries(second) if e.name == DATA]
    local, offsets = local_records(benign)
    extra_local, extra_offsets = local_records(evil, len(local))
    body = local + extra_local
    swapped = [e for e in benign if e.name != DATA] + evil
    swapped_offsets = [o for e, o in zip(benign, offsets, strict=True) if e.name != DATA]
    cd2 = central_directory(swapped, [*swapped_offsets, *extra_offsets])
    cd2_offset = len(body)
    record2_at = cd2_offset + len(cd2)
    body += cd2 + zip64_record(len(swapped), len(cd2), cd2_offset)
    cd = central_directory(benign, offsets)
    cd_offset = len(body)
    body += cd
    body += zip64_record(len(benign), len(cd), cd_offset) + zip64_locator(record2_at)
    return body + end_record(len(benign), len(cd), cd_offset)


def _upper_case_name(first: bytes, second: bytes) -> bytes:
    del first
    return build_zip(with_member(torch_entries(second), DATA, name=b"archive/DATA.PKL"))


def _duplicate_name(first: bytes, second: bytes) -> bytes:
    # torch's binary search lands on the later copy here (checked by the twin).
    return build_zip([*torch_entries(first), ZipEntry.of(DATA, second)])


def _duplicate_in_other_case(first: bytes, second: bytes) -> bytes:
    return build_zip([*torch_entries(first), ZipEntry.of(b"archive/Data.pkl", second)])


def _code_folder(first: bytes, second: bytes) -> bytes:
    del first
    extra = [ZipEntry.of("archive/code/__torch__/readme.py", b"# notes\n")]
    return build_zip(torch_entries(second) + extra)


def _encryption_flag_in_local_header(first: bytes, second: bytes) -> bytes:
    """picklescan GHSA-w8jq-xcqf-f792: a flag bit zipfile trips on, torch ignores."""
    del first
    return build_zip(with_member(torch_entries(second), DATA, local_flags=0x1))


def _bad_crc(first: bytes, second: bytes) -> bytes:
    """picklescan GHSA-7q5r-7gvp-wc82: zipfile raises on the CRC; torch never checks it."""
    del first
    return build_zip(with_member(torch_entries(second), DATA, crc=0x1234_5678))


def _local_name_differs(first: bytes, second: bytes) -> bytes:
    """zipfile refuses a local header whose name differs; miniz never compares them."""
    del first
    return build_zip(with_member(torch_entries(second), DATA, local_name=b"archive/readme.txt"))


def _corrupt_entry_first(first: bytes, second: bytes) -> bytes:
    """modelscan #354: an entry before data.pkl whose local header is broken."""
    del first
    entries = torch_entries(second)
    broken = ZipEntry.of("archive/aaa", b"zz")
    data = bytearray(build_zip([entries[0], broken, *entries[1:]]))
    _, offsets = local_records([entries[0], broken, *entries[1:]])
    data[offsets[1] : offsets[1] + 4] = b"XXXX"
    return bytes(data)


ZIP_CASES: dict[str, Callable[[bytes, bytes], bytes]] = {
    "second-end-record-in-comment": _second_directory_in_comment,
    "zip64-locator-elsewhere": _zip64_locator_elsewhere,
    "upper-case-data-pkl": _upper_case_name,
    "duplicate-data-pkl": _duplicate_name,
    "duplicate-other-case": _duplicate_in_other_case,
    "code-folder-without-constants": _code_folder,
    "encryption-flag-local-only": _encryption_flag_in_local_header,
    "bad-crc": _bad_crc,
    "local-name-differs": _local_name_differs,
    "corrupt-entry-before-data-pkl": _corrupt_entry_first,
}


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_torch_zip_evasions(tmp_path: Path, case: str) -> None:
    build = ZIP_CASES[case]
    twin = tmp_path / "twin.pt"
    twin.write_bytes(build(marker_pickle("decoy"), marker_pickle("loaded")))
    assert _torch_load(twin) == {"marker": "loaded"}, "the twin must prove the path"
    twin_result = _scan(twin)
    assert twin_result.max_severity is None or twin_result.max_severity < Severity.CRITICAL
    evil = tmp_path / "evil.pt"
    evil.write_bytes(build(marker_pickle("decoy"), payload_pickle()))
    result = _scan(evil)
    assert _critical(result), (case, result.findings)


def test_second_end_record_is_reported_when_readers_disagree(tmp_path: Path) -> None:
    path = tmp_path / "m.pt"
    path.write_bytes(_zip64_locator_elsewhere(marker_pickle("a"), marker_pickle("b")))
    with zipfile.ZipFile(path) as archive:  # zipfile reads the first directory's data.pkl
        assert pickle.loads(archive.read("archive/data.pkl")) == {"marker": "a"}
    rules = {(f.rule_id, f.severity) for f in _scan(path).findings}
    assert ("MW-ZIP-READERS-DISAGREE", Severity.HIGH) in rules


def _npz_member(marker: object) -> bytes:
    out = io.BytesIO()
    np.save(out, np.array([marker], dtype=object), allow_pickle=True)
    return out.getvalue()


class _Evil:
    def __reduce__(self) -> tuple[object, tuple[str]]:
        import os

        return (os.system, ("true",))


@pytest.mark.parametrize("trick", ["nul-suffix", "end-record-in-comment"])
def test_npz_evasions(tmp_path: Path, trick: str) -> None:
    def build(value: object) -> bytes:
        good = ZipEntry.of("w.npy", _npz_member("decoy"))
        chosen = ZipEntry.of("w.npy", _npz_member(value))
        if trick == "nul-suffix":
            # zipfile files `w.npy\0x` under `w.npy`, after the first: np.load reads it.
            return build_zip([good, ZipEntry.of(b"w.npy\x00x", chosen.raw)])
        local, offsets = local_records([good, chosen])
        cd = central_directory([good], offsets[:1])
        cd2 = central_directory([chosen], offsets[1:])
        inner = end_record(1, len(cd2), len(local) + len(cd) + 22, comment_len=3)
        return local + cd + end_record(1, len(cd), len(local), cd2 + inner)

    twin = tmp_path / "twin.npz"
    twin.write_bytes(build("loaded"))
    with np.load(twin, allow_pickle=True) as arrays:
        assert arrays["w"][0] == "loaded"
    evil = tmp_path / "evil.npz"
    evil.write_bytes(build(_Evil()))
    assert _critical(_scan(evil))


def test_real_files_stay_clean(tmp_path: Path) -> None:
    paths = []
    for name, obj in {"sd": {"w": torch.ones(3)}, "nested": {"a": [torch.zeros(2), 3]}}.items():
        path = tmp_path / f"{name}.pt"
        torch.save(obj, path)
        paths.append(path)
    npz = tmp_path / "a.npz"
    np.savez(npz, a=np.arange(3), b=np.ones(2))
    paths.append(npz)
    for path in paths:
        result = _scan(path)
        assert result.max_severity is None or result.max_severity < Severity.MEDIUM, result


@pytest.mark.parametrize("where", ["storage_views", "second_storage_args", "second_tensor_args"])
def test_legacy_tar_pickles_after_raw_bytes(tmp_path: Path, where: str) -> None:
    twin = legacy_tar_checkpoint(tmp_path / "twin.tar", **{where: probe_pickle()})
    with pytest.raises(ModuleNotFoundError, match="mw_probe"):
        _torch_load(twin)  # torch.load unpickled the record that follows raw bytes
    assert any("mw_probe" in (f.evidence or "") + f.message for f in _scan(twin).findings)
    evil = legacy_tar_checkpoint(tmp_path / "evil.tar", **{where: pickle.dumps(_Evil(), 2)})
    result = _scan(evil)
    assert result.format == "pytorch-tar"
    assert _critical(result), result.findings


def test_legacy_tar_twin_loads_and_scans_clean(tmp_path: Path) -> None:
    path = legacy_tar_checkpoint(tmp_path / "ok.tar")
    assert _torch_load(path) == {"marker": "MW-MARKER"}
    result = _scan(path)
    assert result.format == "pytorch-tar"
    assert result.max_severity is None or result.max_severity < Severity.MEDIUM, result.findings
